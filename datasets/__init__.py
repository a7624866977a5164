"""CorrDiff datapipes: one reader per data layout behind the `DownscalingDataset` interface.

The names below load on first use, so importing one torch-free submodule
(``datasets.variable_metadata``, ``datasets.stats_file``) does not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "BUILTIN_DATASETS": "datasets.registry",
    "ChannelMetadata": "datasets.base",
    "DataError": "helpers.infrastructure.errors",
    "DatasetConfigError": "helpers.infrastructure.errors",
    "DownscalingDataset": "datasets.base",
    "build_dataset": "datasets.registry",
    "dataset_class": "datasets.registry",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'datasets' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
