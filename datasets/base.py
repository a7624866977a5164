"""The dataset interface every CorrDiff datapipe implements.

Training and generation only ever talk to a `DownscalingDataset`: they ask it for channel
metadata, the high-res grid and its coordinates, and normalized sample pairs. A new data format
therefore means one new subclass, nothing else.
"""

from __future__ import annotations

import datetime
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import Dataset

from datasets import transforms
from datasets.transforms import check_transform as transforms_check
from datasets.variable_metadata import ChannelMetadata
from helpers.infrastructure.errors import DataError

ArrayLike = np.ndarray | torch.Tensor


class ChannelNormalizer:
    """Per-channel z-score ``(T(x) - mean) / std`` along the channel axis (-3) of numpy or torch
    arrays shaped ``[..., C, H, W]``; kept separate so every datapipe normalizes the same way.

    ``transforms`` (``none``, ``log1p``, ``sqrt`` per channel; see `datasets.transforms`) are
    applied before z-scoring and inverted after; channels flagged ``nonnegative`` are clamped
    at zero when de-normalized, so physical outputs of those channels are never negative."""

    def __init__(self, mean: Sequence[float], std: Sequence[float],
                 transforms: Sequence[str] | None = None,
                 nonnegative: Sequence[bool] | None = None):
        self.mean = np.asarray(mean, dtype=np.float32)
        self.std = np.asarray(std, dtype=np.float32)
        if self.mean.shape != self.std.shape or self.mean.ndim != 1:
            raise DataError(
                f"mean and std must be 1-D and of equal length, got {self.mean.shape} and "
                f"{self.std.shape}"
            )
        n = self.mean.size
        self.transforms = [transforms_check(t) for t in (transforms or ["none"] * n)]
        self.nonnegative = np.asarray(nonnegative if nonnegative is not None else [False] * n,
                                      dtype=bool)
        if len(self.transforms) != n or self.nonnegative.shape != (n,):
            raise DataError(f"transforms and nonnegative need one entry per channel ({n})")
        bad = np.flatnonzero(~np.isfinite(self.std) | (self.std <= 0))
        if bad.size:
            raise DataError(
                f"standard deviation of channel(s) {bad.tolist()} is not a positive number "
                f"({self.std[bad].tolist()}); fix the statistics so every std is > 0"
            )

    @classmethod
    def from_stats(cls, stats: Sequence) -> ChannelNormalizer:
        """From ``stats.json`` entries (`datasets.stats_file.ChannelStats`), one per channel."""
        return cls([s.mean for s in stats], [s.std for s in stats],
                   [s.transform for s in stats], [s.nonnegative for s in stats])

    def _shaped(self, values: np.ndarray, like: ArrayLike) -> ArrayLike:
        if like.ndim < 3 or like.shape[-3] != values.shape[0]:
            raise ValueError(
                f"expected an array shaped [..., {values.shape[0]}, H, W], got {tuple(like.shape)}"
            )
        column = values.reshape(-1, 1, 1)
        if isinstance(like, torch.Tensor):
            return torch.as_tensor(column, device=like.device, dtype=like.dtype)
        return column.astype(like.dtype if np.issubdtype(like.dtype, np.floating) else np.float32)

    def _per_channel(self, x: ArrayLike, function) -> ArrayLike:
        """``function(transform, x[..., c, :, :])`` on every transformed channel (a copy)."""
        channels = [c for c, t in enumerate(self.transforms) if t != "none"]
        if not channels:
            return x
        x = x.clone() if isinstance(x, torch.Tensor) else np.array(x, dtype=np.result_type(
            x.dtype, np.float32))
        for c in channels:
            x[..., c, :, :] = function(self.transforms[c], x[..., c, :, :])
        return x

    def normalize(self, x: ArrayLike) -> ArrayLike:
        x = self._per_channel(x, transforms.forward)
        return (x - self._shaped(self.mean, x)) / self._shaped(self.std, x)

    def denormalize(self, x: ArrayLike) -> ArrayLike:
        y = self._per_channel(x * self._shaped(self.std, x) + self._shaped(self.mean, x),
                              transforms.inverse)
        for c in np.flatnonzero(self.nonnegative):
            y[..., c, :, :] = transforms.clamp_nonnegative(y[..., c, :, :])
        return y

    def physical_zero(self) -> np.ndarray:
        """Per channel, the physical value that normalizes to 0 (the neutral fill value)."""
        return self.denormalize(np.zeros((self.mean.size, 1, 1), np.float32))[:, 0, 0]


class PhysicalSample(NamedTuple):
    """One sample in physical units, as written to files and drawn: ``truth [C_out, H, W]``
    (NaN at missing pixels) and ``inputs [C_in, H, W]`` (the interpolated input with its
    auxiliary channels; NaN where an input's validity mask says missing)."""

    truth: np.ndarray
    inputs: np.ndarray


class DownscalingDataset(Dataset, ABC):
    """A set of (high-res target, low-res input) pairs on one high-res grid.

    ``__getitem__`` returns normalized float32 ``(img_clean [C_out, H, W], img_lr [C_in, H, W])``
    (and the lead-time label for forecast datasets, see `lead_time_hours`): the low-res input is
    already interpolated to the high-res grid, with static invariants appended as auxiliary
    channels at the end of ``input_channels()``.
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

    def has_missing_outputs(self) -> bool:
        """True when targets may hold NaN for missing pixels (outside a land mask or radar
        coverage, say); training then leaves those pixels out of the loss."""
        return False

    def lead_time_hours(self) -> list[int] | None:
        """Forecast datasets: the lead times (hours) that lead-time labels index, label ``k``
        meaning ``lead_time_hours()[k]``; such datasets return ``(img_clean, img_lr, label)``
        from ``__getitem__``. None (the default) for datasets without lead times."""
        return None

    def lead_time_label(self, idx: int) -> int | None:
        """The lead-time label of sample ``idx`` without reading it (None: no lead times)."""
        return None

    def probability_channels(self) -> list[int]:
        """Output channels that are category probabilities (one-hot in the truth, summing to 1
        across them): trained with cross-entropy, generated as probabilities."""
        return []

    def sample_latlon(self, idx: int) -> tuple[np.ndarray, np.ndarray]:
        """``(lat, lon)`` of sample ``idx``'s grid, ``(H, W)`` each. Datasets whose samples sit
        at different places (windows of a larger domain) override this."""
        return self.latitude(), self.longitude()

    def physical_sample(self, idx: int) -> PhysicalSample:
        """Sample ``idx`` in physical units (for writing and drawing). This default
        de-normalises ``self[idx]``; readers that read physical values override it (see
        `ZScoredDataset`) so nothing goes through model units and back."""
        return self.sample_in_both_units(idx)[1]

    def sample_in_both_units(self, idx: int) -> tuple[tuple, PhysicalSample]:
        """``(self[idx], physical_sample(idx))`` from one read: generation feeds the first to
        the networks and writes the second."""
        sample = self[idx]
        img_clean, img_lr = sample[0], sample[1]
        return sample, PhysicalSample(np.asarray(self.denormalize_output(img_clean)),
                                      np.asarray(self.denormalize_input(img_lr)))

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


class RawSample(NamedTuple):
    """What a `ZScoredDataset` reader reads for one sample, in physical units: ``target``
    (NaN at missing pixels), ``inputs`` exactly as the network takes them before z-scoring
    (missing cells filled, 0/1 validity masks, invariants) and the lead-time label (None
    for datasets without lead times)."""

    target: np.ndarray
    inputs: np.ndarray
    lead_time_label: int | None = None


class ZScoredDataset(DownscalingDataset):
    """A dataset normalised by per-channel z-scores: subclasses set ``input_normalizer`` and
    ``output_normalizer``, implement `read_raw` (physical units), and get ``__getitem__``
    (model units), `physical_sample` (physical units, no round trip) and the four
    (de)normalisation methods.

    ``input_masks`` maps an input channel to the validity-mask channel (1 valid, 0 missing)
    that accompanies it; de-normalized inputs are NaN where their mask says missing."""

    input_normalizer: ChannelNormalizer
    output_normalizer: ChannelNormalizer
    input_masks: dict[int, int] = {}  # noqa: RUF012 - read-only default, subclasses replace it

    @abstractmethod
    def read_raw(self, idx: int) -> RawSample:
        """Sample ``idx`` as read, in physical units (raises IndexError out of range)."""

    def __getitem__(self, idx: int) -> tuple:
        return self._model_units(self.read_raw(idx))

    def physical_sample(self, idx: int) -> PhysicalSample:
        return self._physical_units(self.read_raw(idx))

    def sample_in_both_units(self, idx: int) -> tuple[tuple, PhysicalSample]:
        raw = self.read_raw(idx)
        return self._model_units(raw), self._physical_units(raw)

    def _model_units(self, raw: RawSample) -> tuple:
        img_clean = self.normalize_output(raw.target).astype(np.float32, copy=False)
        img_lr = self.normalize_input(raw.inputs).astype(np.float32, copy=False)
        if raw.lead_time_label is None:
            return img_clean, img_lr
        return img_clean, img_lr, raw.lead_time_label

    def _physical_units(self, raw: RawSample) -> PhysicalSample:
        inputs = np.array(raw.inputs, dtype=np.float32)
        for value, mask in self.input_masks.items():
            inputs[value][inputs[mask] < 0.5] = np.nan
        return PhysicalSample(np.array(raw.target, dtype=np.float32), inputs)

    def normalize_input(self, x: ArrayLike) -> ArrayLike:
        return self.input_normalizer.normalize(x)

    def denormalize_input(self, x: ArrayLike) -> ArrayLike:
        y = self.input_normalizer.denormalize(x)
        for value, mask in self.input_masks.items():
            missing = x[..., mask, :, :] < 0.5
            if isinstance(y, torch.Tensor):
                y[..., value, :, :] = torch.where(missing, torch.nan, y[..., value, :, :])
            else:
                y[..., value, :, :] = np.where(missing, np.nan, y[..., value, :, :])
        return y

    def normalize_output(self, x: ArrayLike) -> ArrayLike:
        return self.output_normalizer.normalize(x)

    def denormalize_output(self, x: ArrayLike) -> ArrayLike:
        return self.output_normalizer.denormalize(x)
