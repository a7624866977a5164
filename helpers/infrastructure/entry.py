"""What the Hydra entry points (train.py, generate.py) share: quiet warnings, one-line errors."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable

from helpers.infrastructure.errors import run_cli

logger = logging.getLogger("corrdiff")


NOISY_LIBRARY_WARNINGS = (
    r".*are legacy implementations that will be deprecated.*",  # physicsnemo's CorrDiff API
    r".*`torch.jit.script` is deprecated.*",
    r"Could not initialize using ENV, SLURM or OPENMPI methods.*",  # a plain single process
)


def quiet_library_warnings() -> None:
    """Hide library warnings that say nothing actionable to a user of this tool."""
    for pattern in NOISY_LIBRARY_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)


def run_guarded(job: Callable[[], None]) -> int:
    """`run_cli` reporting through the run's logger, so the line also reaches its log file."""
    return run_cli(job, report=logger.error)
