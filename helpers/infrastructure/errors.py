"""The one home of user-facing errors, and the one way every command line reports them.

A problem a user can fix (a bad config value, a missing or malformed file, a checkpoint that
does not fit) raises a subclass of `UserError` where it is detected, with the offending value
and the fix in its message. Every entry point runs its work through `run_cli`, which turns
those errors (and operating-system errors such as a missing file or a read-only directory) into
one line, ``error: <message>``, and exit status 1. Anything else is a bug and keeps its
traceback. Torch-free, so every module can import it cheaply.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Callable

logger = logging.getLogger("corrdiff")


class UserError(Exception):
    """A problem the user can fix; the message names the problem and the fix."""


class ConfigError(UserError, ValueError):
    """The config is invalid; the message names the field and what to set."""


class DatasetConfigError(ConfigError):
    """The dataset config names an unknown type, a missing file or class, or a bad option."""


class DataError(UserError, ValueError):
    """Bad or inconsistent input data; the message names the file/variable and the fix."""


class CheckpointError(UserError, RuntimeError):
    """A checkpoint file is missing, corrupt, unsafe or does not fit the run."""


class TrainingDiverged(UserError, RuntimeError):
    """The loss or the gradients stayed non-finite for too many steps in a row."""


class GeneratedFileError(UserError, ValueError):
    """A generated file is missing, incomplete or cannot be written where asked."""


class UsageError(UserError, ValueError):
    """A command-line value that cannot be used."""


EXPECTED_ERRORS: tuple[type[BaseException], ...] = (UserError, OSError)

# torch re-raises an error from a DataLoader worker with the worker's whole traceback in the
# message ("Caught DataError in DataLoader worker process 0.\nOriginal Traceback ..."); its
# last line is "<module>.<Class>: <the original message>".
_WORKER_WRAPPED = re.compile(r"^Caught \w+ in DataLoader worker process \d+\.")
_QUALIFIED_CLASS = re.compile(r"^[\w.]+: ")


def one_line(err: BaseException) -> str:
    """The message of an expected error as one line a user can act on."""
    if isinstance(err, OSError) and err.strerror:
        where = err.filename if err.filename is not None else ""
        other = f" -> {err.filename2}" if err.filename2 is not None else ""
        return f"{where}{other}: {err.strerror}" if where else err.strerror
    message = str(err).strip()
    if _WORKER_WRAPPED.match(message):
        lines = [line for line in message.splitlines() if line.strip()]
        message = _QUALIFIED_CLASS.sub("", lines[-1].strip(), count=1)
    return " ".join(message.split()) or type(err).__name__


def report_to_stderr(message: str) -> None:
    print(message, file=sys.stderr)


def run_cli(job: Callable[[], object],
            report: Callable[[str], None] = report_to_stderr) -> int:
    """Run ``job``; an expected error is reported as ``error: <message>`` and gives 1.

    An ``int`` that ``job`` returns is the exit status; anything else counts as success.
    ``report`` prints the line: stderr by default, the run's logger for the Hydra entry points
    (so it reaches the run's log file).
    """
    try:
        status = job()
    except EXPECTED_ERRORS as err:
        report(f"error: {one_line(err)}")
        return 1
    except KeyboardInterrupt:
        report("interrupted")
        return 130
    return status if isinstance(status, int) and not isinstance(status, bool) else 0
