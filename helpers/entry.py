"""Turning expected failures into one clear line and a non-zero exit at the entry points."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable

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


def expected_errors() -> tuple[type[BaseException], ...]:
    """Errors that describe a user-fixable problem: no traceback needed."""
    from datasets.base import DataError
    from datasets.registry import DatasetConfigError
    from helpers.config_schema import ConfigError
    from helpers.models import CheckpointError
    from helpers.training_loop import TrainingDiverged

    return (DataError, DatasetConfigError, ConfigError, CheckpointError, TrainingDiverged,
            FileNotFoundError)


def run_guarded(job: Callable[[], object]) -> int:
    """Run ``job``; log an expected error as ``error: <message>`` and return 1, else 0."""
    try:
        job()
    except expected_errors() as err:
        logger.error("error: %s", err)
        return 1
    return 0
