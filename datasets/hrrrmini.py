"""HRRR-Mini datapipe (``dataset.type: hrrr_mini``): one NetCDF4 file plus ``stats.json``.

Each sample is a high-res window of the HRRR grid with its coarse input. The coarse input is
bilinearly upsampled to the window (extended linearly at the borders, within the range of
its coarse values), the static invariants
(orography, land-sea mask) are cropped at the window's ``coord`` and appended as auxiliary
channels, and everything is z-scored with ``stats.json``. See ``datasets/hrrrmini_format.py`` for
the layout. The file is read lazily, one sample at a time, through one handle per process, so
memory does not grow with the file.

Missing values, where ``stats.json`` says a variable has them on purpose (``missing_values``):
a missing output pixel stays NaN (training leaves it out of the loss, generation writes NaN
there); a missing input cell is filled with the value that normalizes to 0 and a validity-mask
channel ``<name>_valid`` (1 valid, 0 missing; auxiliary) follows the weather inputs, so the
model knows. Anywhere else a missing value is an error naming the sample.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Sequence
from pathlib import Path

import netCDF4
import numpy as np

from datasets.base import ChannelMetadata, ChannelNormalizer, RawSample, ZScoredDataset
from datasets.hrrrmini_format import file_times
from datasets.interpolation import upsample_bilinear
from datasets.per_process import PerProcess
from datasets.stats_file import ChannelStats, channel_stats, read_stats
from datasets.variable_metadata import CF_KEYS
from helpers.infrastructure.errors import DataError

logger = logging.getLogger(__name__)

COORDINATE_NAMES = ("lat", "lon")
CHUNK_CACHE_BYTES = 1 << 20
MASK_SUFFIX = "_valid"


class HRRRMiniDataset(ZScoredDataset):
    """Reader for the HRRR-Mini layout; ``None`` variable lists mean "all, in file order"."""

    def __init__(
        self,
        data_path: str,
        stats_path: str,
        input_variables: Sequence[str] | None = None,
        output_variables: Sequence[str] | None = None,
        invariant_variables: Sequence[str] | None = None,
    ):
        self.data_path = str(data_path)
        self.stats_path = str(stats_path)
        _require_file(self.data_path, "dataset.data_path")
        _require_file(self.stats_path, "dataset.stats_path")
        self._nc = PerProcess(self._open_file)
        try:
            nc = netCDF4.Dataset(self.data_path, "r")
        except OSError as err:
            raise DataError(
                f"{self.data_path!r} is not a readable NetCDF4 file ({err}); "
                "point dataset.data_path at an HRRR-Mini .nc file"
            ) from err
        with nc:
            self._read_layout(nc, input_variables, output_variables, invariant_variables)
        self._read_stats()

    # ----------------------------------------------------------------------------- set-up
    def _read_layout(self, nc, input_variables, output_variables, invariant_variables) -> None:
        for group in ("input", "output"):
            if group not in nc.groups:
                raise DataError(
                    f"{self.data_path!r} has no group {group!r} (groups: {list(nc.groups)}); "
                    "an HRRR-Mini file needs groups 'input' and 'output' (and 'invariant')"
                )
        for name in ("time", "coord"):
            if name not in nc.variables:
                raise DataError(
                    f"{self.data_path!r} has no root variable {name!r}; an HRRR-Mini file needs "
                    "'time(N)' and 'coord(N, 2)'"
                )
        invariant_group = nc.groups.get("invariant")
        available_invariants = (
            [v for v in invariant_group.variables if v not in COORDINATE_NAMES]
            if invariant_group is not None else []
        )
        self.input_variables = _select(
            self.data_path, "input", list(nc["input"].variables), input_variables
        )
        self.output_variables = _select(
            self.data_path, "output", list(nc["output"].variables), output_variables
        )
        self.invariant_variables = _select(
            self.data_path, "invariant", available_invariants, invariant_variables
        )
        self._stored_attributes = {
            group: {v: {k: str(getattr(holder[v], k)) for k in CF_KEYS if k in holder[v].ncattrs()}
                    for v in names}
            for group, holder, names in (
                ("input", nc["input"], self.input_variables),
                ("output", nc["output"], self.output_variables),
                ("invariant", invariant_group, self.invariant_variables))
        }

        n = len(nc["time"])
        self._lr_shape = _common_shape(nc["input"], self.input_variables, self.data_path, n)
        self._hr_shape = _common_shape(nc["output"], self.output_variables, self.data_path, n)
        (h, w), (H, W) = self._lr_shape, self._hr_shape
        if H % h or W % w or H // h != W // w:
            raise DataError(
                f"{self.data_path!r}: output grid {H}x{W} is not the input grid {h}x{w} times one "
                "integer factor; inputs must be aligned coarse blocks of the output window"
            )
        self.upsample_factor = W // w

        self._times = file_times(nc, self.data_path)
        # Forecast files: each sample's lead time (hours), e.g. the synthetic --lead-hours data.
        self._leads = (np.asarray(nc["lead_time"][:], dtype=np.int64)
                       if "lead_time" in nc.variables else None)
        if self._leads is not None and self._leads.shape != (n,):
            raise DataError(f"{self.data_path!r}: 'lead_time' has shape {self._leads.shape}, "
                            f"expected ({n},)")
        self._lead_list = None if self._leads is None else sorted({int(h) for h in self._leads})
        coords = np.asarray(nc["coord"][:], dtype=np.int64)
        if coords.shape != (n, 2):
            raise DataError(
                f"{self.data_path!r}: 'coord' has shape {coords.shape}, expected ({n}, 2)"
            )
        self._coords = coords

        self._invariants = np.stack(
            [np.asarray(invariant_group[v][:], dtype=np.float32) for v in self.invariant_variables]
        ) if self.invariant_variables else np.zeros((0, H, W), dtype=np.float32)
        grid_shape = self._invariants.shape[1:]
        self._lat = _coordinate(nc, "lat")
        self._lon = _coordinate(nc, "lon")
        if self._lat is not None and self.invariant_variables == []:
            grid_shape = self._lat.shape
        self._grid_shape = tuple(grid_shape)
        if self.invariant_variables or self._lat is not None:
            self._check_coords_in_grid(grid_shape)

    def _check_coords_in_grid(self, grid_shape: tuple[int, int]) -> None:
        (H, W), (Hg, Wg) = self._hr_shape, grid_shape
        bad = np.flatnonzero(
            (self._coords[:, 0] < 0) | (self._coords[:, 1] < 0)
            | (self._coords[:, 0] + H > Hg) | (self._coords[:, 1] + W > Wg)
        )
        if bad.size:
            i = int(bad[0])
            raise DataError(
                f"{self.data_path!r}: coord of sample {i} is {self._coords[i].tolist()}, but a "
                f"{H}x{W} window there does not fit the {Hg}x{Wg} invariant grid "
                f"({bad.size} sample(s) out of bounds); fix 'coord' or the invariant fields"
            )

    def _read_stats(self) -> None:
        stats = read_stats(self.stats_path)

        def entries(group: str, names: list[str]) -> list[ChannelStats]:
            return channel_stats(stats, group, names, self.stats_path,
                                 self._stored_attributes[group])

        self._input_stats = entries("input", self.input_variables)
        self._output_stats = entries("output", self.output_variables)
        self._invariant_stats = entries("invariant", self.invariant_variables)
        self.masked_inputs = [i for i, s in enumerate(self._input_stats) if s.missing_values]
        n_in, n_mask = len(self.input_variables), len(self.masked_inputs)
        self.input_masks = {value: n_in + k for k, value in enumerate(self.masked_inputs)}
        masks = [ChannelStats(0.0, 1.0)] * n_mask  # 0/1 channels, used as they are
        inputs = self._input_stats + masks + self._invariant_stats
        try:
            self.input_normalizer = ChannelNormalizer.from_stats(inputs)
            self.output_normalizer = ChannelNormalizer.from_stats(self._output_stats)
        except ValueError as err:
            raise DataError(f"{self.stats_path!r}: {err}") from err
        self._fill_values = self.input_normalizer.physical_zero()[:n_in]

    # ----------------------------------------------------------------------------- interface
    def input_channels(self) -> list[ChannelMetadata]:
        masks = [ChannelMetadata(self.input_variables[i] + MASK_SUFFIX, auxiliary=True,
                                 units="1", long_name=f"{self.input_variables[i]} is valid (1) "
                                 "or missing (0)") for i in self.masked_inputs]
        return ([_channel(v, s) for v, s in zip(self.input_variables, self._input_stats,
                                                 strict=True)] + masks
                + [_channel(v, s, auxiliary=True) for v, s in zip(
                    self.invariant_variables, self._invariant_stats, strict=True)])

    def output_channels(self) -> list[ChannelMetadata]:
        return [_channel(v, s) for v, s in zip(self.output_variables, self._output_stats,
                                                strict=True)]

    def image_shape(self) -> tuple[int, int]:
        return self._hr_shape

    def has_missing_outputs(self) -> bool:
        return any(s.missing_values for s in self._output_stats)

    def time(self) -> list[datetime.datetime]:
        return list(self._times)

    def lead_time_hours(self) -> list[int] | None:
        return None if self._lead_list is None else list(self._lead_list)

    def lead_time_label(self, idx: int) -> int | None:
        if self._leads is None:
            return None
        return self._lead_list.index(int(self._leads[int(idx) % len(self)]))

    def coords(self) -> np.ndarray:
        """``(N, 2)`` top-left (row, col) of each sample's window in the invariant grid."""
        return self._coords.copy()

    def latitude(self) -> np.ndarray:
        return self._window_coordinate(self._lat, "latitude")

    def longitude(self) -> np.ndarray:
        return self._window_coordinate(self._lon, "longitude")

    def sample_latlon(self, idx: int) -> tuple[np.ndarray, np.ndarray]:
        """The grid of sample ``idx``: the full lat/lon cropped at its window."""
        row, col = self._coords[int(idx) % len(self)]
        return (self._window(self._lat, row, col), self._window(self._lon, row, col))

    def window_latlon(self, row: int, col: int) -> tuple[np.ndarray, np.ndarray] | None:
        """``(lat, lon)`` of the window whose top-left corner is ``(row, col)`` of the full
        grid, or None when the file has no lat/lon."""
        if self._lat is None or self._lon is None:
            return None
        return self._window(self._lat, row, col), self._window(self._lon, row, col)

    def window_invariants(self, row: int, col: int) -> dict[str, np.ndarray]:
        """The static fields of the window at ``(row, col)``, in physical units."""
        (H, W) = self._hr_shape
        return {name: self._invariants[k, row:row + H, col:col + W].copy()
                for k, name in enumerate(self.invariant_variables)}

    def grid_shape(self) -> tuple[int, int]:
        """``(rows, columns)`` of the full grid the windows are cut from."""
        return self._grid_shape

    def statistics(self, group: str) -> list[ChannelStats]:
        """The ``stats.json`` entries of the selected ``input``, ``output`` or ``invariant``
        variables, in channel order."""
        return list({"input": self._input_stats, "output": self._output_stats,
                     "invariant": self._invariant_stats}[group])

    def _window(self, grid: np.ndarray | None, row: int, col: int) -> np.ndarray:
        (H, W) = self._hr_shape
        if grid is None:
            return np.full(self._hr_shape, np.nan, dtype=np.float32)
        if grid.shape == self._hr_shape:
            return grid.copy()
        return grid[row:row + H, col:col + W].copy()

    def _window_coordinate(self, grid: np.ndarray | None, what: str) -> np.ndarray:
        """One grid for every sample; NaN when the windows sit at different places (then each
        sample's grid comes from `sample_latlon`)."""
        if len(self) and not (self._coords == self._coords[0]).all():
            logger.debug("%s: windows sit at different coords, so there is no single %s grid",
                         self.data_path, what)
            return np.full(self._hr_shape, np.nan, dtype=np.float32)
        row, col = self._coords[0] if len(self) else (0, 0)
        return self._window(grid, row, col)

    def __len__(self) -> int:
        return len(self._times)

    def read_raw(self, idx: int) -> RawSample:
        if not -len(self) <= idx < len(self):
            raise IndexError(f"sample {idx} out of range for {len(self)} samples")
        idx = int(idx) % len(self)
        nc = self._handle()
        coarse = self._read(nc["input"], self.input_variables, idx, self._input_stats)
        target = self._read(nc["output"], self.output_variables, idx, self._output_stats)
        n_in, n_mask = len(self.input_variables), len(self.masked_inputs)
        img_lr = np.empty((n_in + n_mask + len(self.invariant_variables), *self._hr_shape),
                          np.float32)
        for k, i in enumerate(self.masked_inputs):
            valid = np.isfinite(coarse[i])
            coarse[i][~valid] = self._fill_values[i]
            img_lr[n_in + k] = np.kron(valid, np.ones((self.upsample_factor,) * 2, np.float32))
        img_lr[:n_in] = upsample_bilinear(coarse, self.upsample_factor)
        if self.invariant_variables:
            (row, col), (H, W) = self._coords[idx], self._hr_shape
            img_lr[n_in + n_mask:] = self._invariants[:, row:row + H, col:col + W]
        return RawSample(target, img_lr, self.lead_time_label(idx))

    # ----------------------------------------------------------------------------- reading
    def _handle(self) -> netCDF4.Dataset:
        """The file, open once per process (`datasets.per_process`)."""
        return self._nc.get()

    def _open_file(self) -> netCDF4.Dataset:
        nc = netCDF4.Dataset(self.data_path, "r")
        # Each sample is read once per epoch in random order, so HDF5's per-variable chunk
        # cache only holds memory; keep it to about one chunk.
        for group, names in (("input", self.input_variables), ("output", self.output_variables)):
            for name in names:
                nc[group][name].set_var_chunk_cache(size=CHUNK_CACHE_BYTES)
        return nc

    def _read(self, group, names: list[str], idx: int, stats: list[ChannelStats]) -> np.ndarray:
        out = np.stack([np.ma.filled(group[v][idx].astype(np.float32), np.nan) for v in names])
        if not np.isfinite(out).all():
            out[~np.isfinite(out)] = np.nan  # Inf counts as missing too
            bad = [v for v, field, s in zip(names, out, stats, strict=True)
                   if not s.missing_values and np.isnan(field).any()]
            if bad:
                raise DataError(
                    f"{self.data_path!r}: {group.name} variable(s) {bad} contain NaN, Inf or "
                    f"missing values at sample {idx} (time {self._times[idx]:%Y-%m-%dT%H:%M}) "
                    f"but {self.stats_path!r} does not mark them as having missing values; if "
                    "they are masked on purpose (land-only, radar coverage), convert with "
                    "python -m datasets.convert --max-missing FRACTION (or set "
                    f"\"missing_values\": true for them in stats.json), else fill or drop "
                    "that time"
                )
        return out


def _channel(name: str, stats: ChannelStats, auxiliary: bool = False) -> ChannelMetadata:
    return ChannelMetadata(name, auxiliary=auxiliary, **stats.attributes)


def _require_file(path: str, option: str) -> None:
    if not Path(path).is_file():
        raise DataError(f"{option} {path!r} does not exist; set {option}=<path to the file>")


def _select(path: str, group: str, available: list[str], wanted: Sequence[str] | None) -> list[str]:
    if wanted is None:
        return list(available)
    wanted = [str(v) for v in wanted]
    missing = [v for v in wanted if v not in available]
    if missing:
        raise DataError(
            f"{path!r}: {group} variable(s) {missing} not found; the {group} group has "
            f"{available}; fix dataset.{group}_variables"
        )
    return wanted


def _common_shape(group, names: list[str], path: str, n: int) -> tuple[int, int]:
    if not names:
        raise DataError(f"{path!r}: no {group.name} variables selected")
    shapes = {v: tuple(group[v].shape) for v in names}
    distinct = set(shapes.values())
    if len(distinct) != 1 or len(next(iter(distinct))) != 3:
        raise DataError(
            f"{path!r}: {group.name} variables must all be shaped (N, H, W); got {shapes}"
        )
    shape = next(iter(distinct))
    if shape[0] != n:
        raise DataError(
            f"{path!r}: {group.name} variables have {shape[0]} samples but 'time' has {n}"
        )
    return shape[1], shape[2]


def _coordinate(nc, name: str) -> np.ndarray | None:
    for holder in (nc, nc.groups.get("invariant")):
        if holder is not None and name in holder.variables and holder[name].ndim == 2:
            return np.asarray(holder[name][:], dtype=np.float32)
    return None
