"""The dataset interface every CorrDiff datapipe implements.

Training and generation only ever talk to a `DownscalingDataset`: they ask it for channel
metadata, the high-res grid and its coordinates, and normalized sample pairs. A new data format
therefore means one new subclass, nothing else.
"""

from __future__ import annotations

import datetime
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

ArrayLike = np.ndarray | torch.Tensor


@dataclass(frozen=True)
class ChannelMetadata:
    """One channel of a sample: a variable name, an optional vertical level, and whether it is an
    auxiliary (static, e.g. orography) field appended to the input rather than a weather field."""

    name: str
    level: str = ""
    auxiliary: bool = False

    @property
    def label(self) -> str:
        """Name used for this channel in output files, e.g. ``temperature850`` or ``2t``."""
        return f"{self.name}{self.level}"


class ChannelNormalizer:
    """Per-channel z-score ``(x - mean) / std`` along the channel axis (-3) of numpy or torch
    arrays shaped ``[..., C, H, W]``; kept separate so every datapipe normalizes the same way."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        self.mean = np.asarray(mean, dtype=np.float32)
        self.std = np.asarray(std, dtype=np.float32)
        if self.mean.shape != self.std.shape or self.mean.ndim != 1:
            raise ValueError(
                f"mean and std must be 1-D and of equal length, got {self.mean.shape} and "
                f"{self.std.shape}"
            )
        bad = np.flatnonzero(~np.isfinite(self.std) | (self.std <= 0))
        if bad.size:
            raise ValueError(
                f"standard deviation of channel(s) {bad.tolist()} is not a positive number "
                f"({self.std[bad].tolist()}); fix the statistics so every std is > 0"
            )

    def _shaped(self, values: np.ndarray, like: ArrayLike) -> ArrayLike:
        if like.ndim < 3 or like.shape[-3] != values.shape[0]:
            raise ValueError(
                f"expected an array shaped [..., {values.shape[0]}, H, W], got {tuple(like.shape)}"
            )
        column = values.reshape(-1, 1, 1)
        if isinstance(like, torch.Tensor):
            return torch.as_tensor(column, device=like.device, dtype=like.dtype)
        return column.astype(like.dtype if np.issubdtype(like.dtype, np.floating) else np.float32)

    def normalize(self, x: ArrayLike) -> ArrayLike:
        return (x - self._shaped(self.mean, x)) / self._shaped(self.std, x)

    def denormalize(self, x: ArrayLike) -> ArrayLike:
        return x * self._shaped(self.std, x) + self._shaped(self.mean, x)


class DownscalingDataset(Dataset, ABC):
    """A set of (high-res target, low-res input) pairs on one high-res grid.

    ``__getitem__`` returns normalized float32 ``(img_clean [C_out, H, W], img_lr [C_in, H, W])``:
    the low-res input is already interpolated to the high-res grid, with static invariants
    appended as auxiliary channels at the end of ``input_channels()``.
    """

    @abstractmethod
    def input_channels(self) -> list[ChannelMetadata]:
        """Channels of ``img_lr``, auxiliary ones last."""

    @abstractmethod
    def output_channels(self) -> list[ChannelMetadata]:
        """Channels of ``img_clean``."""

    @abstractmethod
    def image_shape(self) -> tuple[int, int]:
        """High-res grid size ``(H, W)``."""

    @abstractmethod
    def time(self) -> list[datetime.datetime]:
        """Valid time of each sample, in sample order."""

    def latitude(self) -> np.ndarray:
        """Latitude (degrees north) of the high-res grid, ``(H, W)``; NaN where unknown."""
        return np.full(self.image_shape(), np.nan, dtype=np.float32)

    def longitude(self) -> np.ndarray:
        """Longitude (degrees east) of the high-res grid, ``(H, W)``; NaN where unknown."""
        return np.full(self.image_shape(), np.nan, dtype=np.float32)

    @abstractmethod
    def normalize_input(self, x: ArrayLike) -> ArrayLike:
        """Physical units to model units for arrays shaped ``[..., C_in, H, W]``."""

    @abstractmethod
    def denormalize_input(self, x: ArrayLike) -> ArrayLike:
        """Model units to physical units for arrays shaped ``[..., C_in, H, W]``."""

    @abstractmethod
    def normalize_output(self, x: ArrayLike) -> ArrayLike:
        """Physical units to model units for arrays shaped ``[..., C_out, H, W]``."""

    @abstractmethod
    def denormalize_output(self, x: ArrayLike) -> ArrayLike:
        """Model units to physical units for arrays shaped ``[..., C_out, H, W]``."""

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def __getitem__(self, idx: int) -> tuple[np.ndarray, np.ndarray]: ...


class ZScoredDataset(DownscalingDataset):
    """A dataset normalised by per-channel z-scores: subclasses set ``input_normalizer`` and
    ``output_normalizer`` and get the four (de)normalisation methods."""

    input_normalizer: ChannelNormalizer
    output_normalizer: ChannelNormalizer

    def normalize_input(self, x: ArrayLike) -> ArrayLike:
        return self.input_normalizer.normalize(x)

    def denormalize_input(self, x: ArrayLike) -> ArrayLike:
        return self.input_normalizer.denormalize(x)

    def normalize_output(self, x: ArrayLike) -> ArrayLike:
        return self.output_normalizer.normalize(x)

    def denormalize_output(self, x: ArrayLike) -> ArrayLike:
        return self.output_normalizer.denormalize(x)


class DataError(ValueError):
    """Bad or inconsistent input data; the message names the file/variable and the fix."""
