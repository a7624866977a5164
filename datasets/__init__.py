"""CorrDiff datapipes: one reader per data layout behind the `DownscalingDataset` interface."""

from datasets.base import ChannelMetadata, DataError, DownscalingDataset
from datasets.registry import BUILTIN_DATASETS, DatasetConfigError, build_dataset, dataset_class

__all__ = [
    "BUILTIN_DATASETS",
    "ChannelMetadata",
    "DataError",
    "DatasetConfigError",
    "DownscalingDataset",
    "build_dataset",
    "dataset_class",
]
