"""Checking where a run will write before it does any work.

A checkpoint directory under a file, an output file in a read-only directory or an output name
that is an existing directory would otherwise fail after minutes or hours of work (or, for the
training run directory, inside Hydra with a traceback). These checks run first: in a Hydra
callback before Hydra creates its run directory, and again in the trainer and the generator
for callers that do not go through Hydra.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback

from helpers.infrastructure.errors import ConfigError, one_line, report_to_stderr


def _blocking_file(path: Path) -> Path | None:
    """The first ancestor of ``path`` (or ``path`` itself) that exists and is not a directory."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return None if candidate.is_dir() else candidate
    return None


def ensure_writable_directory(path: str | os.PathLike, option: str) -> Path:
    """Create ``path`` if needed and prove a file can be written in it."""
    path = Path(path)
    blocker = _blocking_file(path)
    if blocker is not None:
        raise ConfigError(
            f"{option}={str(path)!r} cannot be created: {str(blocker)!r} is a file, not a "
            f"directory; choose another location with ++{option}=<path>"
        )
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write_test"):
            pass
    except OSError as err:
        raise ConfigError(
            f"{option}={str(path)!r} is not writable ({err.strerror or err}); choose a "
            f"writable location with ++{option}=<path>"
        ) from err
    return path


def check_output_file(path: str | os.PathLike, option: str) -> Path:
    """``path`` can be written as a file: not a directory, and its directory is writable."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(
            f"{option}={str(path)!r} is an existing directory; give a file name, e.g. "
            f"++{option}={path / 'corrdiff_output.nc'}"
        )
    ensure_writable_directory(path.parent if str(path.parent) else Path("."), option)
    return path


def _select(config: Any, dotted: str) -> Any:
    """A config value, or None where it is absent, mandatory (``???``) or does not resolve:
    the config validation reports those with the field's name."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        return OmegaConf.select(config, dotted, default=None, throw_on_missing=False)
    except OmegaConfBaseException:
        return None


class CheckOutputPaths(Callback):
    """Hydra callback: check the run directory and the output file before Hydra creates them.

    Named in ``conf/hydra_settings.yaml`` and ``conf/hydra_generate.yaml``; an unusable path
    ends the command with one ``error:`` line and exit status 1.
    """

    def on_run_start(self, config: Any, **kwargs: Any) -> None:
        try:
            run_dir = _select(config, "hydra.run.dir")
            checkpoint_dir = _select(config, "training.io.checkpoint_dir")
            option = ("training.io.checkpoint_dir" if checkpoint_dir is not None
                      and str(checkpoint_dir) == str(run_dir) else "hydra.run.dir")
            if run_dir is not None and run_dir != "???":
                ensure_writable_directory(run_dir, option)
            output = _select(config, "generation.io.output_filename")
            if output is not None and output != "???":
                check_output_file(output, "generation.io.output_filename")
        except ConfigError as err:  # Hydra would print a traceback: end here, as run_cli does
            report_to_stderr(f"error: {one_line(err)}")
            sys.exit(1)
