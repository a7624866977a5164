"""CorrDiff datapipes: one reader per data layout behind the `DownscalingDataset` interface."""

from datasets.base import ChannelMetadata, DownscalingDataset
from datasets.registry import BUILTIN_DATASETS, build_dataset, dataset_class
from helpers.errors import DataError, DatasetConfigError

__all__ = [
    "BUILTIN_DATASETS",
    "ChannelMetadata",
    "DataError",
    "DatasetConfigError",
    "DownscalingDataset",
    "build_dataset",
    "dataset_class",
]
