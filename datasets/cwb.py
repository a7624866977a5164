"""Taiwan CWA datapipe (``dataset.type: cwb``): the published 2 km CWA zarr store.

The store is one zarr group: the high-res target ``cwb (T, C, Y, X)``, ERA5 already regridded to
the same grid ``era5 (T, 20, Y, X)``, per-channel statistics (``*_center``, ``*_scale``), channel
names and pressure levels (``*_variable``, ``*_pressure``; NaN = surface), validity flags
(``cwb_valid (T)``, ``era5_valid (T, 20)``), ``time (T)`` with CF ``units``, and ``XLAT``/``XLONG``.
A time is served only if the target and every ERA5 channel are valid there. Samples are the
top-left ``img_shape_y x img_shape_x`` crop, read one time at a time through one store handle per
process, so memory does not grow with the store.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import zarr

from datasets.base import ChannelMetadata, ChannelNormalizer, RawSample, ZScoredDataset
from datasets.per_process import PerProcess
from helpers.infrastructure.cf_time import decode_times
from helpers.infrastructure.errors import DataError

logger = logging.getLogger(__name__)

# ERA5 and CWA channels used by the published CorrDiff-CWA checkpoints.
DEFAULT_IN_CHANNELS = (0, 1, 2, 3, 4, 9, 10, 11, 12, 17, 18, 19)
DEFAULT_OUT_CHANNELS = (0, 1, 2, 3)
VALIDATION_YEAR = 2021  # train=True serves every other year, train=False only this one
REQUIRED_ARRAYS = (
    "cwb", "era5", "cwb_center", "cwb_scale", "era5_center", "era5_scale",
    "cwb_valid", "era5_valid", "time",
)
# "v2" target statistics: reflectivity is mostly zero with a long tail and the 10 m winds are
# centred on calm air, so fixed (center, scale) put them on a better range than the stored ones.
V2_TARGET_STATS = {
    "maximum_radar_reflectivity": (25.0, 25.0),
    "eastward_wind_10m": (0.0, 20.0),
    "northward_wind_10m": (0.0, 20.0),
}
# Fallback when no cwb_variable name matches V2_TARGET_STATS: the published channel order.
V2_TARGET_STATS_BY_INDEX = {0: (25.0, 25.0), 2: (0.0, 20.0), 3: (0.0, 20.0)}
NORMALIZATIONS = ("v1", "v2")


class CWADataset(ZScoredDataset):
    """Reader for the CWA zarr layout; channel options are indices into ``cwb``/``era5``."""

    def __init__(
        self,
        data_path: str,
        in_channels: Sequence[int] = DEFAULT_IN_CHANNELS,
        out_channels: Sequence[int] = DEFAULT_OUT_CHANNELS,
        img_shape_x: int = 448,
        img_shape_y: int = 448,
        train: bool = True,
        all_times: bool = False,
        normalization: str = "v1",
    ):
        self.data_path = str(data_path)
        self.train, self.all_times = bool(train), bool(all_times)
        if normalization not in NORMALIZATIONS:
            raise DataError(
                f"dataset.normalization {normalization!r} is unknown; use one of {NORMALIZATIONS}"
                " (v1: stored cwb_center/cwb_scale; v2: fixed statistics for reflectivity and "
                "10 m winds)"
            )
        self.normalization = normalization
        if "://" not in self.data_path and not Path(self.data_path).exists():
            raise DataError(
                f"dataset.data_path {self.data_path!r} does not exist; set it to the CWA .zarr "
                "directory"
            )
        self._store: PerProcess[zarr.Group] = PerProcess(self._open_store)
        group = self._group()
        present = sorted(group.array_keys())
        missing = [name for name in REQUIRED_ARRAYS if name not in present]
        if missing:
            raise DataError(
                f"{self.data_path!r} has no array(s) {missing}; it holds {present}. A CWA store "
                f"needs {list(REQUIRED_ARRAYS)}"
            )
        self._read_layout(group, present)
        self.in_channels = _channel_indices(in_channels, "in_channels", "era5", self._era5_meta)
        self.out_channels = _channel_indices(out_channels, "out_channels", "cwb", self._cwb_meta)
        self._set_crop(img_shape_x, img_shape_y)
        self._select_times(group)
        self._set_normalizers(group)

    # ----------------------------------------------------------------------------- set-up
    def _read_layout(self, group: zarr.Group, present: list[str]) -> None:
        cwb, era5 = group["cwb"], group["era5"]
        if cwb.ndim != 4 or era5.ndim != 4 or cwb.shape[0] != era5.shape[0] \
                or cwb.shape[2:] != era5.shape[2:]:
            raise DataError(
                f"{self.data_path!r}: 'cwb' {cwb.shape} and 'era5' {era5.shape} must both be "
                "(time, channel, y, x) with the same times and grid"
            )
        n_times, self._grid = cwb.shape[0], tuple(cwb.shape[2:])
        expected = {
            "time": (n_times,), "cwb_valid": (n_times,), "era5_valid": (n_times, era5.shape[1]),
            "cwb_center": (cwb.shape[1],), "cwb_scale": (cwb.shape[1],),
            "era5_center": (era5.shape[1],), "era5_scale": (era5.shape[1],),
        }
        self._coordinates = [name for name in ("XLAT", "XLONG") if name in present]
        expected.update(dict.fromkeys(self._coordinates, self._grid))
        for name, shape in expected.items():
            if tuple(group[name].shape) != shape:
                raise DataError(
                    f"{self.data_path!r}: array {name!r} has shape {group[name].shape}, expected "
                    f"{shape} to match cwb {cwb.shape} and era5 {era5.shape}"
                )
        self._cwb_meta = _channel_metadata(group, present, "cwb", cwb.shape[1])
        self._era5_meta = _channel_metadata(group, present, "era5", era5.shape[1])

    def _set_crop(self, img_shape_x: int, img_shape_y: int) -> None:
        (rows, cols), crop = self._grid, (int(img_shape_y), int(img_shape_x))
        if not (0 < crop[0] <= rows and 0 < crop[1] <= cols):
            raise DataError(
                f"crop img_shape_y x img_shape_x = {crop[0]} x {crop[1]} does not fit the "
                f"{rows} x {cols} grid of {self.data_path!r}; use 1..{rows} and 1..{cols}"
            )
        self._crop = crop

    def _select_times(self, group: zarr.Group) -> None:
        time_array = group["time"]
        self._all_times = decode_times(time_array[:], time_array.attrs.get("units"),
                                       time_array.attrs.get("calendar"),
                                       f"{self.data_path!r}: array 'time'")
        cwb_valid = np.asarray(group["cwb_valid"][:]) != 0
        era5_valid = np.all(np.asarray(group["era5_valid"][:]) != 0, axis=1)
        keep = cwb_valid & era5_valid
        n_valid = int(keep.sum())
        if not self.all_times:
            years = np.array([t.year for t in self._all_times])
            keep &= (years != VALIDATION_YEAR) if self.train else (years == VALIDATION_YEAR)
        self._indices = np.flatnonzero(keep)
        if self._indices.size == 0:
            split = "all times" if self.all_times else (
                f"years other than {VALIDATION_YEAR} (train=True)" if self.train
                else f"year {VALIDATION_YEAR} (train=False)"
            )
            raise DataError(
                f"{self.data_path!r}: no times left: {n_valid} of {len(keep)} times are valid in "
                f"cwb_valid and every era5_valid channel, and none of them is in {split}; "
                "check the store or set dataset.train / dataset.all_times"
            )

    def _set_normalizers(self, group: zarr.Group) -> None:
        def stats(prefix: str, channels: list[int]) -> tuple[np.ndarray, np.ndarray]:
            center = np.asarray(group[f"{prefix}_center"][:], dtype=np.float64)
            scale = np.asarray(group[f"{prefix}_scale"][:], dtype=np.float64)
            return center[channels], scale[channels]

        in_center, in_scale = stats("era5", self.in_channels)
        out_center, out_scale = stats("cwb", self.out_channels)
        if self.normalization == "v2":
            overrides = self._v2_overrides()
            for i, channel in enumerate(self.out_channels):
                if channel in overrides:
                    out_center[i], out_scale[i] = overrides[channel]
        try:
            self.input_normalizer = ChannelNormalizer(in_center, in_scale)
            self.output_normalizer = ChannelNormalizer(out_center, out_scale)
        except ValueError as err:
            raise DataError(f"{self.data_path!r}: era5/cwb statistics: {err}") from err

    def _v2_overrides(self) -> dict[int, tuple[float, float]]:
        """Fixed target statistics by ``cwb`` channel index, found through ``cwb_variable``."""
        by_name = {
            i: V2_TARGET_STATS[meta.name] for i, meta in enumerate(self._cwb_meta)
            if meta.name in V2_TARGET_STATS
        }
        if by_name:
            return by_name
        logger.warning(
            "%s: no cwb_variable name among %s; normalization v2 assumes the published channel "
            "order (0 reflectivity, 2 and 3 the 10 m winds)", self.data_path, list(V2_TARGET_STATS)
        )
        return {i: s for i, s in V2_TARGET_STATS_BY_INDEX.items() if i < len(self._cwb_meta)}

    # ----------------------------------------------------------------------------- interface
    def input_channels(self) -> list[ChannelMetadata]:
        return [self._era5_meta[i] for i in self.in_channels]

    def output_channels(self) -> list[ChannelMetadata]:
        return [self._cwb_meta[i] for i in self.out_channels]

    def image_shape(self) -> tuple[int, int]:
        return self._crop

    def time(self) -> list[datetime.datetime]:
        return [self._all_times[t] for t in self._indices]

    def latitude(self) -> np.ndarray:
        return self._coordinate("XLAT") if "XLAT" in self._coordinates else super().latitude()

    def longitude(self) -> np.ndarray:
        return self._coordinate("XLONG") if "XLONG" in self._coordinates else super().longitude()

    def _coordinate(self, name: str) -> np.ndarray:
        rows, cols = self._crop
        return np.asarray(self._group()[name][:rows, :cols], dtype=np.float32)

    def __len__(self) -> int:
        return int(self._indices.size)

    def read_raw(self, idx: int) -> RawSample:
        if not -len(self) <= idx < len(self):
            raise IndexError(f"sample {idx} out of range for {len(self)} samples")
        t = int(self._indices[int(idx) % len(self)])
        target = self._read("cwb", t, self.out_channels, self._cwb_meta)
        inputs = self._read("era5", t, self.in_channels, self._era5_meta)
        return RawSample(target, inputs)

    # ----------------------------------------------------------------------------- reading
    def _group(self) -> zarr.Group:
        """The store, open once per process (`datasets.per_process`)."""
        return self._store.get()

    def _open_store(self) -> zarr.Group:
        """Consolidated metadata is used when present, the per-array metadata otherwise."""
        try:
            return zarr.open_group(self.data_path, mode="r")
        except (OSError, ValueError) as err:
            raise DataError(
                f"{self.data_path!r} is not a readable zarr group ({err}); point "
                "dataset.data_path at the CWA .zarr directory"
            ) from err

    def _read(self, name: str, t: int, channels: list[int], meta: list) -> np.ndarray:
        rows, cols = self._crop
        field = self._group()[name].oindex[t, channels, :rows, :cols]
        field = np.asarray(field, dtype=np.float32)
        finite = np.isfinite(field).reshape(len(channels), -1).all(axis=1)
        if not finite.all():
            bad = [f"{c} ({meta[c].label})" for c, ok in zip(channels, finite, strict=True)
                   if not ok]
            raise DataError(
                f"{self.data_path!r}: array {name!r} has NaN or Inf at time index {t} "
                f"({self._all_times[t]:%Y-%m-%dT%H:%M}) in channel(s) {bad}; mark that time "
                f"invalid in {name}_valid or fix the data"
            )
        return field



def _channel_metadata(
    group: zarr.Group, present: list[str], prefix: str, count: int
) -> list[ChannelMetadata]:
    """Channel names from ``<prefix>_variable`` and levels from ``<prefix>_pressure`` (NaN is a
    surface field); either may be absent, giving ``<prefix>_<i>`` names or no levels."""
    names = [f"{prefix}_{i}" for i in range(count)]
    levels = [""] * count
    if f"{prefix}_variable" in present and group[f"{prefix}_variable"].shape == (count,):
        raw = np.asarray(group[f"{prefix}_variable"][:]).tolist()
        names = [(v.decode() if isinstance(v, bytes) else str(v)).strip() for v in raw]
    if f"{prefix}_pressure" in present and group[f"{prefix}_pressure"].shape == (count,):
        levels = [_level(p) for p in np.asarray(group[f"{prefix}_pressure"][:], dtype=float)]
    return [ChannelMetadata(n, lv) for n, lv in zip(names, levels, strict=True)]


def _level(pressure: float) -> str:
    """``850.0`` -> ``"850"``, NaN (surface) -> ``""``."""
    if not np.isfinite(pressure):
        return ""
    return str(int(pressure)) if float(pressure).is_integer() else str(pressure)


def _channel_indices(
    wanted: Sequence[int], option: str, array: str, meta: list[ChannelMetadata]
) -> list[int]:
    valid = ", ".join(f"{i}={m.label}" for i, m in enumerate(meta))
    values = [wanted] if isinstance(wanted, int | str) else list(wanted)
    if not values:
        raise DataError(f"dataset.{option} is empty; pick channels of {array!r}: {valid}")
    indices = []
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int | np.integer) \
                or not 0 <= value < len(meta):
            raise DataError(
                f"dataset.{option}: channel {value!r} is not an index of {array!r}, which has "
                f"{len(meta)} channels (valid range 0..{len(meta) - 1}): {valid}"
            )
        indices.append(int(value))
    return indices
