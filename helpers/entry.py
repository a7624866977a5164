"""Turning expected failures into one clear line and a non-zero exit at the entry points."""

from __future__ import annotations

import logging
from collections.abc import Callable

logger = logging.getLogger("corrdiff")


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
