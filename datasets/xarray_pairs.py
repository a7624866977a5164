"""Pairing a coarse and a fine xarray dataset: variables, common times and the grid relation.

Both the converter (`datasets.convert`) and the no-conversion template datapipe
(`datasets.custom_template`) need the same checks, so they live here once:

- files are NetCDF (``xr.open_dataset``) or zarr (directories / ``*.zarr``), opened lazily;
  fields are read one time step at a time, never whole variables;
- times are the exact intersection of the two ``time`` coordinates;
- the fine grid must be an integer multiple ``factor`` of the coarse grid in both directions, with
  aligned blocks: coarse cell ``(i, j)`` covers fine pixels ``[i*f:(i+1)*f, j*f:(j+1)*f]``;
- or, with ``regrid=True`` and a given ``factor``, coarse data on a regular 1-D lat/lon grid are
  bilinearly interpolated to the centre (mean lat/lon) of every ``factor x factor`` fine block,
  which produces exactly such an aligned coarse grid.

Variable lists accept ``name=source`` entries to rename a file variable (``2t=t2m``).
"""

from __future__ import annotations

import datetime
import logging
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import xarray as xr

from datasets.base import DataError

DIM_PAIRS = (("y", "x"), ("lat", "lon"), ("latitude", "longitude"), ("south_north", "west_east"))
log = logging.getLogger(__name__)
LAT_NAMES = ("lat", "latitude", "XLAT")
LON_NAMES = ("lon", "longitude", "XLONG")


def parse_variables(spec: str | Sequence[str] | None) -> list[tuple[str, str]]:
    """``"a,b=src"`` or ``["a", "b=src"]`` to ``[(name, source), ...]``."""
    if spec is None:
        return []
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    pairs = []
    for item in (str(i).strip() for i in items):
        if not item:
            continue
        name, _, source = item.partition("=")
        pairs.append((name.strip(), (source or name).strip()))
    names = [n for n, _ in pairs]
    if len(set(names)) != len(names):
        raise DataError(f"variable names must be unique within a list, got {names}")
    return pairs


def open_xarray(path: str | os.PathLike) -> xr.Dataset:
    """Open NetCDF or zarr lazily (no dask): nothing is read until a slice is asked for."""
    path = Path(path).expanduser()
    if not path.exists():
        raise DataError(f"data file {str(path)!r} does not exist")
    try:
        if path.is_dir() or path.suffix == ".zarr":
            with warnings.catch_warnings():  # unconsolidated stores are fine here
                warnings.filterwarnings("ignore", "Failed to open Zarr store with consolidated")
                return xr.open_dataset(path, engine="zarr", chunks=None, cache=False)
        return xr.open_dataset(path, cache=False)
    except Exception as err:  # xarray raises many types for unreadable files
        raise DataError(f"cannot open {str(path)!r} as NetCDF or zarr: {err}") from err


def check_variables(ds: xr.Dataset, sources: Sequence[str], what: str) -> None:
    missing = [s for s in sources if s not in ds.variables]
    if missing:
        raise DataError(
            f"{what}: variable(s) {missing} not found; it has: {sorted(map(str, ds.data_vars))}"
        )


def spatial_dims(da: xr.DataArray, dims: Sequence[str] | None = None) -> tuple[str, str]:
    """The (y, x) dimension names of ``da``: the given pair, a known pair, else the last two."""
    if dims:
        dims = tuple(dims)
        if len(dims) != 2 or not set(dims) <= set(da.dims):
            raise DataError(f"variable {da.name!r} has dims {da.dims}, not the given {dims}")
        return dims
    for pair in DIM_PAIRS:
        if set(pair) <= set(da.dims):
            return pair
    rest = [d for d in da.dims if d != "time"]
    if len(rest) < 2:
        raise DataError(f"variable {da.name!r} with dims {da.dims} is not a 2-D field")
    return rest[-2], rest[-1]


def read_field(da: xr.DataArray, dims: tuple[str, str], time_index: int | None) -> np.ndarray:
    """One (y, x) float32 field; singleton extra dims (e.g. one level) are dropped."""
    if time_index is not None and "time" in da.dims:
        da = da.isel(time=time_index)
    elif "time" in da.dims:
        da = da.isel(time=0)  # a static field stored with a time axis
    extra = [d for d in da.dims if d not in dims]
    if any(da.sizes[d] != 1 for d in extra):
        raise DataError(
            f"variable {da.name!r} has extra dimension(s) { {d: da.sizes[d] for d in extra} }; "
            "select one level first (e.g. ds.sel(level=850) in xarray) and save the result"
        )
    return np.asarray(da.isel({d: 0 for d in extra}).transpose(*dims).values, dtype=np.float32)


def to_datetimes(index) -> list[datetime.datetime]:
    """pandas or cftime time index to plain datetimes (what the writers and datapipes use)."""
    return [
        datetime.datetime(t.year, t.month, t.day, t.hour, t.minute, t.second) for t in index
    ]


def latlon(ds: xr.Dataset, dims: tuple[str, str]) -> tuple[np.ndarray, np.ndarray] | None:
    """2-D (lat, lon) of a dataset's grid from 1-D or 2-D coordinates, or None if absent."""
    lat_name = next((n for n in LAT_NAMES if n in ds.variables), None)
    lon_name = next((n for n in LON_NAMES if n in ds.variables), None)
    if lat_name is None or lon_name is None:
        return None
    lat, lon = ds[lat_name], ds[lon_name]
    if lat.ndim == 1 and lon.ndim == 1:
        lon2, lat2 = np.meshgrid(lon.values, lat.values)
        return lat2.astype(np.float64), lon2.astype(np.float64)
    return (read_field(lat, dims, None).astype(np.float64),
            read_field(lon, dims, None).astype(np.float64))


class BilinearRegridder:
    """Precomputed bilinear weights from a regular 1-D lat/lon grid to arbitrary points, reading
    only the coarse sub-box that the points need."""

    def __init__(self, src_lat: np.ndarray, src_lon: np.ndarray, lat: np.ndarray, lon: np.ndarray):
        src_lat, src_lon = np.asarray(src_lat, float), np.asarray(src_lon, float)
        lon = lon % 360 if src_lon.max() > 180 else (lon + 180) % 360 - 180
        self.rows = self._weights(src_lat, lat, "latitude")
        self.cols = self._weights(src_lon, lon, "longitude")
        lo_r, lo_c = self.rows[0].min(), self.cols[0].min()
        self.box = (slice(lo_r, self.rows[0].max() + 2), slice(lo_c, self.cols[0].max() + 2))
        self.rows = (self.rows[0] - lo_r, self.rows[1])
        self.cols = (self.cols[0] - lo_c, self.cols[1])

    @staticmethod
    def _weights(axis: np.ndarray, points: np.ndarray, name: str):
        flip = axis.size > 1 and axis[0] > axis[-1]
        asc = axis[::-1] if flip else axis
        if asc.size < 2 or points.min() < asc[0] or points.max() > asc[-1]:
            raise DataError(
                f"--regrid: fine {name}s span {points.min():.3f}..{points.max():.3f} but the "
                f"coarse grid covers {asc[0]:.3f}..{asc[-1]:.3f}; it must cover the fine domain"
            )
        i = np.clip(np.searchsorted(asc, points, side="right") - 1, 0, asc.size - 2)
        w = (points - asc[i]) / (asc[i + 1] - asc[i])
        if flip:  # index into the original (descending) order
            i, w = axis.size - 2 - i, 1 - w
        return i, w

    def __call__(self, field: np.ndarray) -> np.ndarray:
        (i, wy), (j, wx) = self.rows, self.cols
        out = ((1 - wy) * (1 - wx) * field[i, j] + (1 - wy) * wx * field[i, j + 1]
               + wy * (1 - wx) * field[i + 1, j] + wy * wx * field[i + 1, j + 1])
        return out.astype(np.float32)


class PairedData:
    """A coarse and a fine dataset checked against each other; read fields by matched time."""

    def __init__(
        self,
        coarse_path: str | os.PathLike,
        fine_path: str | os.PathLike,
        input_variables: str | Sequence[str],
        output_variables: str | Sequence[str],
        regrid: bool = False,
        factor: int | None = None,
        coarse_dims: Sequence[str] | None = None,
        fine_dims: Sequence[str] | None = None,
    ):
        self.inputs = parse_variables(input_variables)
        self.outputs = parse_variables(output_variables)
        if not self.inputs or not self.outputs:
            raise DataError("give at least one input and one output variable")
        self.coarse = open_xarray(coarse_path)
        try:
            self.fine = open_xarray(fine_path)
        except DataError:
            self.coarse.close()
            raise
        try:
            self._check(coarse_path, fine_path, regrid, factor, coarse_dims, fine_dims)
        except Exception:
            self.close()
            raise

    def _check(self, coarse_path, fine_path, regrid, factor, coarse_dims, fine_dims) -> None:
        check_variables(self.coarse, [s for _, s in self.inputs], f"coarse data {coarse_path}")
        check_variables(self.fine, [s for _, s in self.outputs], f"fine data {fine_path}")
        self.coarse_dims = spatial_dims(self.coarse[self.inputs[0][1]], coarse_dims)
        self.fine_dims = spatial_dims(self.fine[self.outputs[0][1]], fine_dims)
        self._match_times(coarse_path, fine_path)
        self.fine_shape = tuple(self.fine.sizes[d] for d in self.fine_dims)
        coarse_shape = tuple(self.coarse.sizes[d] for d in self.coarse_dims)
        self.regridder = None
        if regrid:
            self.factor = self._setup_regrid(factor, self.fine_shape)
        else:
            self.factor = _grid_factor(coarse_shape, self.fine_shape, factor)
            self._warn_if_misaligned()
        self.coarse_shape = (self.fine_shape[0] // self.factor, self.fine_shape[1] // self.factor)

    def _block_latlon(self, factor: int) -> list[np.ndarray] | None:
        """Mean lat/lon of every ``factor x factor`` fine block, or None without fine lat/lon."""
        fine_ll = latlon(self.fine, self.fine_dims)
        if fine_ll is None:
            return None
        h, w = self.fine_shape[0] // factor, self.fine_shape[1] // factor
        return [v.reshape(h, factor, w, factor).mean(axis=(1, 3)) for v in fine_ll]

    def _warn_if_misaligned(self) -> None:
        """Integer size ratios can be a coincidence: compare coordinates where both have them."""
        blocks = self._block_latlon(self.factor)
        coarse_ll = latlon(self.coarse, self.coarse_dims)
        if blocks is None or coarse_ll is None or blocks[0].shape != coarse_ll[0].shape:
            return
        lat_gap = np.abs(blocks[0] - coarse_ll[0]).max()
        lon_gap = np.abs((blocks[1] - coarse_ll[1] + 180) % 360 - 180).max()
        cell = max(np.abs(np.diff(coarse_ll[0], axis=0)).max(initial=0),
                   np.abs(np.diff(coarse_ll[1], axis=1)).max(initial=0))
        if max(lat_gap, lon_gap) > cell > 0:
            log.warning(
                "coarse cell centres are up to %.3f deg lat / %.3f deg lon away from the fine "
                "blocks they are paired with (coarse spacing %.3f deg): the grids may not be "
                "aligned; check the data or use --regrid", lat_gap, lon_gap, cell)

    def _match_times(self, coarse_path, fine_path) -> None:
        for ds, path in ((self.coarse, coarse_path), (self.fine, fine_path)):
            if "time" not in ds.indexes:
                raise DataError(f"{path}: no 'time' coordinate; name the time dimension 'time'")
            if not ds.indexes["time"].is_unique:
                raise DataError(f"{path}: the 'time' coordinate has duplicate values")
        ic, fi = self.coarse.indexes["time"], self.fine.indexes["time"]
        try:
            common = fi.intersection(ic).sort_values()
        except TypeError as err:
            raise DataError(f"coarse and fine time coordinates are not comparable: {err}") from err
        if len(common) == 0:
            raise DataError(
                f"no common times: coarse {coarse_path} has {len(ic)} times "
                f"({ic[0]} .. {ic[-1]}), fine {fine_path} has {len(fi)} ({fi[0]} .. {fi[-1]}); "
                "times must match exactly"
            )
        self.coarse_index = ic.get_indexer(common)
        self.fine_index = fi.get_indexer(common)
        self.times = to_datetimes(common)
        self.dropped = (len(ic) - len(common), len(fi) - len(common))

    def _setup_regrid(self, factor: int | None, fine_shape: tuple[int, int]) -> int:
        if not factor or int(factor) != factor or factor < 1:
            raise DataError("--regrid needs --factor: fine pixels per coarse block side")
        factor = int(factor)
        if fine_shape[0] % factor or fine_shape[1] % factor:
            raise DataError(f"fine grid {fine_shape} is not divisible by factor {factor}")
        blocks = self._block_latlon(factor)
        src = [self.coarse[d].values for d in self.coarse_dims if d in self.coarse.coords]
        if blocks is None or len(src) != 2 or any(s.ndim != 1 for s in src):
            raise DataError(
                "--regrid needs 1-D lat/lon coordinates on the coarse grid's dimensions "
                f"{self.coarse_dims} and lat/lon (1-D or 2-D) in the fine file"
            )
        self.regridder = BilinearRegridder(src[0], src[1], *blocks)
        return factor

    def describe(self) -> str:
        return (f"{len(self.times)} common times (dropped {self.dropped[0]} coarse-only, "
                f"{self.dropped[1]} fine-only); fine grid {self.fine_shape}, factor {self.factor}"
                + (" (regridded)" if self.regridder else ""))

    def read_coarse(self, k: int, source: str) -> np.ndarray:
        """Coarse field at matched time ``k`` on the aligned block grid ``(H/f, W/f)``."""
        da = self.coarse[source]
        if self.regridder is not None:
            da = da.isel(dict(zip(self.coarse_dims, self.regridder.box, strict=True)))
            return self.regridder(read_field(da, self.coarse_dims, int(self.coarse_index[k])))
        return read_field(da, self.coarse_dims, int(self.coarse_index[k]))

    def read_fine(self, k: int, source: str) -> np.ndarray:
        return read_field(self.fine[source], self.fine_dims, int(self.fine_index[k]))

    def read_static(self, sources: Sequence[str], path: str | os.PathLike | None = None):
        """Static full-grid fields from ``path`` (same grid as the fine data) or the fine file."""
        ds = open_xarray(path) if path else self.fine
        try:
            check_variables(ds, sources, f"invariant data {path or 'in the fine file'}")
            out = {s: read_field(ds[s], self._static_dims(ds[s]), None) for s in sources}
        finally:
            if path:
                ds.close()
        for s, v in out.items():
            if v.shape != self.fine_shape:
                raise DataError(
                    f"invariant {s!r} has shape {v.shape}, the fine grid is {self.fine_shape}"
                )
            if not np.isfinite(v).all():
                raise DataError(f"invariant {s!r} contains NaN or infinite values")
        return out

    def _static_dims(self, da: xr.DataArray) -> tuple[str, str]:
        return self.fine_dims if set(self.fine_dims) <= set(da.dims) else spatial_dims(da)

    def latlon(self) -> tuple[np.ndarray, np.ndarray] | None:
        return latlon(self.fine, self.fine_dims)

    def close(self) -> None:
        self.coarse.close()
        self.fine.close()


def _grid_factor(coarse: tuple[int, int], fine: tuple[int, int], factor: int | None) -> int:
    ry, rx = fine[0] / coarse[0], fine[1] / coarse[1]
    if ry != rx or ry != int(ry) or (factor and factor != ry):
        want = f" (expected factor {factor})" if factor else ""
        raise DataError(
            f"fine grid {fine} is not the same integer multiple of coarse grid {coarse} in both "
            f"directions{want}; regrid the coarse data to an aligned grid first (each coarse cell "
            "covering factor x factor fine pixels), or use --regrid --factor F"
        )
    return int(ry)


def check_finite(values: np.ndarray, name: str, time: datetime.datetime, what: str) -> None:
    if not np.isfinite(values).all():
        raise DataError(
            f"{what} variable {name!r} has {int((~np.isfinite(values)).sum())} NaN/infinite "
            f"values at {time:%Y-%m-%d %H:%M}; fill or drop that time before converting"
        )
