"""Pairing a coarse and a fine xarray dataset: channels, common times and the grid relation.

Both the converter (`datasets.convert`) and the no-conversion template datapipe
(`datasets.custom_template`) need the same checks, so they live here once:

- files are NetCDF (``xr.open_dataset``) or zarr (directories / ``*.zarr``), opened lazily;
  fields are read one time step at a time, never whole variables;
- a channel is a file variable plus an optional selection of levels/members
  (`datasets.field_selection`); each channel has its own record positions, so a flattened
  (time x level) axis works;
- times are the exact intersection of the channels' times;
- the fine grid relates to the coarse grid by an integer ``factor`` with aligned blocks: coarse
  cell ``(i, j)`` covers fine pixels ``[i*f:(i+1)*f, j*f:(j+1)*f]``; both are cropped at their
  far edges to whole coarse cells (`datasets.grid_alignment`, ``crop``);
- or, with ``regrid=True`` and a given ``factor``, coarse data on a regular 1-D lat/lon grid are
  bilinearly interpolated to the centre (mean lat/lon) of every ``factor x factor`` fine block,
  which produces exactly such an aligned coarse grid.

Variable lists accept ``name=source`` entries to rename a file variable (``2t=t2m``) and
``source@dim=value`` selections (``theta@level=10``). Missing values (NaN, or the file's fill
value) are returned as NaN; what to do with them is the caller's decision.
"""

from __future__ import annotations

import datetime
import logging
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from datasets.field_selection import (
    FieldSpec,
    ResolvedField,
    extra_dimension_hint,
    leftover_dims,
    parse_fields,
    parse_selection,
    resolve_field,
    time_coordinate,
)
from datasets.grid_alignment import BilinearRegridder, aligned_shape, infer_factor, parse_crop
from datasets.variable_metadata import CF_KEYS
from helpers.infrastructure.cf_time import as_datetime
from helpers.infrastructure.errors import DataError

DIM_PAIRS = (("y", "x"), ("lat", "lon"), ("latitude", "longitude"), ("south_north", "west_east"),
             ("rlat", "rlon"))
log = logging.getLogger(__name__)
LAT_NAMES = ("lat", "latitude", "XLAT")
LON_NAMES = ("lon", "longitude", "XLONG")


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


def spatial_dims(da: xr.DataArray, dims: Sequence[str] | None = None,
                 exclude: Sequence[str] = ()) -> tuple[str, str]:
    """The (y, x) dimension names of ``da``: the given pair, a known pair, else the last two
    dimensions that are not in ``exclude`` (the record axis and selected dimensions)."""
    if dims:
        dims = tuple(dims)
        if len(dims) != 2 or not set(dims) <= set(da.dims):
            raise DataError(f"variable {da.name!r} has dims {da.dims}, not the given {dims}")
        return dims
    for pair in DIM_PAIRS:
        if set(pair) <= set(da.dims):
            return pair
    rest = [d for d in da.dims if d not in exclude and d != "time"]
    if len(rest) < 2:
        raise DataError(f"variable {da.name!r} with dims {da.dims} is not a 2-D field; name its "
                        "grid dimensions with --coarse-dims/--fine-dims y,x")
    return rest[-2], rest[-1]


def to_datetimes(index) -> list[datetime.datetime]:
    """pandas or cftime time index to plain datetimes (what the writers and datapipes use)."""
    return [as_datetime(t) for t in index]


def cf_attributes(da: xr.DataArray) -> dict[str, str]:
    """The ``units``, ``long_name`` and ``standard_name`` a variable carries (as strings)."""
    return {k: str(da.attrs[k]) for k in CF_KEYS if str(da.attrs.get(k, "")).strip()}


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
    return (_static_values(lat, dims).astype(np.float64),
            _static_values(lon, dims).astype(np.float64))


def _static_values(da: xr.DataArray, dims: tuple[str, str]) -> np.ndarray:
    """A 2-D field stored with or without leading singleton (or time) dimensions."""
    extra = [d for d in da.dims if d not in dims]
    return np.asarray(da.isel({d: 0 for d in extra}).transpose(*dims).values, dtype=np.float32)


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
        select: str | Mapping[str, object] | None = None,
        crop: str | int = "auto",
    ):
        self.inputs = parse_fields(input_variables, "input variables")
        self.outputs = parse_fields(output_variables, "output variables")
        if not self.inputs or not self.outputs:
            raise DataError("give at least one input and one output variable")
        self.selection = parse_selection(select)
        self.crop = parse_crop(crop)
        self.coarse = open_xarray(coarse_path)
        try:
            self.fine = open_xarray(fine_path)
        except DataError:
            self.coarse.close()
            raise
        self.paths = (f"coarse data {coarse_path}", f"fine data {fine_path}")
        try:
            self._check(regrid, factor, coarse_dims, fine_dims)
        except Exception:
            self.close()
            raise

    @property
    def input_names(self) -> list[str]:
        return [f.name for f in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [f.name for f in self.outputs]

    def _check(self, regrid, factor, coarse_dims, fine_dims) -> None:
        unknown = [k for k in self.selection
                   if not any(k in ds.dims or k in ds.variables for ds in (self.coarse, self.fine))]
        if unknown:
            raise DataError(
                f"--select {unknown[0]}=...: neither file has a dimension or coordinate "
                f"{unknown[0]!r} (coarse dims {dict(self.coarse.sizes)}, fine dims "
                f"{dict(self.fine.sizes)})")
        self.coarse_fields = self._resolve(self.coarse, self.inputs, self.paths[0])
        self.fine_fields = self._resolve(self.fine, self.outputs, self.paths[1])
        self.coarse_dims = self._spatial(self.coarse, self.coarse_fields, coarse_dims,
                                         self.paths[0])
        self.fine_dims = self._spatial(self.fine, self.fine_fields, fine_dims, self.paths[1])
        self._match_times()
        fine_full = tuple(self.fine.sizes[d] for d in self.fine_dims)
        coarse_full = tuple(self.coarse.sizes[d] for d in self.coarse_dims)
        self.full_fine_shape = fine_full
        self.regridder = None
        if regrid:
            if not factor or int(factor) != factor or factor < 1:
                raise DataError("--regrid needs --factor: fine pixels per coarse block side")
            self.factor = int(factor)
            self.fine_shape = aligned_shape(fine_full, None, self.factor, self.crop)
        else:
            self.factor = infer_factor(coarse_full, fine_full, factor)
            self.fine_shape = aligned_shape(fine_full, coarse_full, self.factor, self.crop)
        self.coarse_shape = (self.fine_shape[0] // self.factor, self.fine_shape[1] // self.factor)
        if regrid:
            self._setup_regrid()
        if self.fine_shape != fine_full or (not regrid and self.coarse_shape != coarse_full):
            log.info(
                "cropping to whole %dx%d coarse cells: fine grid %dx%d -> %dx%d (dropping the "
                "last %d row(s) and %d column(s))%s; --crop none refuses instead",
                self.factor, self.factor, *fine_full, *self.fine_shape,
                fine_full[0] - self.fine_shape[0], fine_full[1] - self.fine_shape[1],
                "" if regrid else ", coarse grid {}x{} -> {}x{}".format(*coarse_full,
                                                                         *self.coarse_shape))
        if not regrid:
            self._warn_if_misaligned()

    def _resolve(self, ds: xr.Dataset, specs: list[FieldSpec], where: str
                 ) -> dict[str, ResolvedField]:
        time_coordinate(ds, where)  # a clear error if the file has no time coordinate
        return {spec.name: resolve_field(ds, spec, self.selection, where) for spec in specs}

    def _spatial(self, ds: xr.Dataset, fields: dict[str, ResolvedField],
                 given: Sequence[str] | None, where: str) -> tuple[str, str]:
        """Spatial dims from the first channel; every channel must then be 2-D on them."""
        first = next(iter(fields.values()))
        exclude = [*first.isel, first.record_dim]
        dims = spatial_dims(ds[first.spec.source], given, [d for d in exclude if d])
        for resolved in fields.values():
            da = ds[resolved.spec.source]
            if not set(dims) <= set(da.dims):
                raise DataError(f"{where}: variable {resolved.spec.source!r} has dims {da.dims}, "
                                f"not the grid {dims} of {first.spec.source!r}")
            extra = {d: n for d, n in leftover_dims(da, resolved, dims).items() if n != 1}
            if extra:
                raise DataError(
                    f"{where}: {resolved.spec.text} has extra dimension(s) {extra}; pick one "
                    f"value with {extra_dimension_hint(ds, extra)}, or one channel per value "
                    f"with {resolved.spec.source}@<dim>=<value>")
        return dims

    def _warn_if_misaligned(self) -> None:
        """Integer size ratios can be a coincidence: compare coordinates where both have them."""
        blocks = self._block_latlon()
        coarse_ll = latlon(self.coarse, self.coarse_dims)
        if blocks is None or coarse_ll is None:
            return
        h, w = self.coarse_shape
        coarse_ll = [v[:h, :w] for v in coarse_ll]
        if blocks[0].shape != coarse_ll[0].shape:
            return
        lat_gap = np.nanmax(np.abs(blocks[0] - coarse_ll[0]))
        lon_gap = np.nanmax(np.abs((blocks[1] - coarse_ll[1] + 180) % 360 - 180))
        cell = max(np.nanmax(np.abs(np.diff(coarse_ll[0], axis=0)), initial=0),
                   np.nanmax(np.abs(np.diff(coarse_ll[1], axis=1)), initial=0))
        if max(lat_gap, lon_gap) > cell > 0:
            log.warning(
                "coarse cell centres are up to %.3f deg lat / %.3f deg lon away from the fine "
                "blocks they are paired with (coarse spacing %.3f deg): the grids may not be "
                "aligned; check the data or use --regrid", lat_gap, lon_gap, cell)

    def _block_latlon(self) -> list[np.ndarray] | None:
        """Mean lat/lon of every ``factor x factor`` block of the (cropped) fine grid."""
        fine_ll = self.latlon()
        if fine_ll is None:
            return None
        f, (h, w) = self.factor, self.coarse_shape
        return [v.reshape(h, f, w, f).mean(axis=(1, 3)) for v in fine_ll]

    def _match_times(self) -> None:
        timed = {**{("coarse", n): r for n, r in self.coarse_fields.items()},
                 **{("fine", n): r for n, r in self.fine_fields.items()}}
        missing = [key for key, r in timed.items() if r.times is None]
        if missing:
            side, name = missing[0]
            path = self.paths[0] if side == "coarse" else self.paths[1]
            raise DataError(f"{path}: {name!r} has no time axis; a channel needs one field per "
                            "time (static fields go to --invariant-variables)")
        coarse_times = _intersect([r.times for r in self.coarse_fields.values()])
        fine_times = _intersect([r.times for r in self.fine_fields.values()])
        try:
            common = fine_times.intersection(coarse_times).sort_values()
        except TypeError as err:
            raise DataError(f"coarse and fine time coordinates are not comparable: {err}") from err
        if len(common) == 0:
            raise DataError(
                f"no common times: {self.paths[0]} has {len(coarse_times)} times "
                f"({_span(coarse_times)}), {self.paths[1]} has {len(fine_times)} "
                f"({_span(fine_times)}); times must match exactly: check that both use the same "
                "time zone and the same convention for accumulations (start or end of period), "
                "and shift one with ds.assign_coords(time=ds.time + offset) if needed"
            )
        self.positions = {key: r.positions[r.times.get_indexer(common)]
                          for key, r in timed.items()}
        self.times = to_datetimes(common)
        self.dropped = (len(coarse_times) - len(common), len(fine_times) - len(common))

    def _setup_regrid(self) -> None:
        blocks = self._block_latlon()
        src = [self.coarse[d].values for d in self.coarse_dims if d in self.coarse.coords]
        if blocks is None or len(src) != 2 or any(s.ndim != 1 for s in src):
            raise DataError(
                "--regrid needs 1-D lat/lon coordinates on the coarse grid's dimensions "
                f"{self.coarse_dims} and lat/lon (1-D or 2-D) in the fine file"
            )
        self.regridder = BilinearRegridder(src[0], src[1], *blocks)

    def describe(self) -> str:
        return (f"{len(self.times)} common times (dropped {self.dropped[0]} coarse-only, "
                f"{self.dropped[1]} fine-only); fine grid {self.fine_shape}, factor {self.factor}"
                + (" (regridded)" if self.regridder else ""))

    def _read(self, ds: xr.Dataset, resolved: ResolvedField, dims: tuple[str, str],
              position: int | None, box: tuple[slice, slice]) -> np.ndarray:
        sel = dict(resolved.isel)
        if resolved.record_dim is not None:
            sel[resolved.record_dim] = position if position is not None else 0
        sel.update(zip(dims, box, strict=True))
        da = ds[resolved.spec.source].isel(sel)
        extra = [d for d in da.dims if d not in dims]
        return np.asarray(da.isel({d: 0 for d in extra}).transpose(*dims).values,
                          dtype=np.float32)

    def read_coarse(self, k: int, name: str) -> np.ndarray:
        """Coarse channel ``name`` at matched time ``k`` on the aligned block grid
        ``(H/f, W/f)``; missing values are NaN."""
        resolved, position = self.coarse_fields[name], int(self.positions["coarse", name][k])
        if self.regridder is not None:
            return self.regridder(self._read(self.coarse, resolved, self.coarse_dims, position,
                                             self.regridder.box))
        box = (slice(0, self.coarse_shape[0]), slice(0, self.coarse_shape[1]))
        return self._read(self.coarse, resolved, self.coarse_dims, position, box)

    def read_fine(self, k: int, name: str) -> np.ndarray:
        """Fine channel ``name`` at matched time ``k`` on the cropped grid; missing = NaN."""
        box = (slice(0, self.fine_shape[0]), slice(0, self.fine_shape[1]))
        return self._read(self.fine, self.fine_fields[name], self.fine_dims,
                          int(self.positions["fine", name][k]), box)

    def attributes(self, name: str) -> dict[str, str]:
        """CF attributes (units, long_name, standard_name) of an input or output channel."""
        if name in self.fine_fields:
            return cf_attributes(self.fine[self.fine_fields[name].spec.source])
        return cf_attributes(self.coarse[self.coarse_fields[name].spec.source])

    def read_static(self, variables: str | Sequence[str] | None,
                    path: str | os.PathLike | None = None
                    ) -> tuple[dict[str, np.ndarray], dict[str, dict[str, str]]]:
        """Static fields ``{name: (H, W)}`` on the cropped fine grid, from ``path`` (same grid
        as the fine data) or the fine file, and their CF attributes. NaN where missing."""
        specs = parse_fields(variables, "invariant variables")
        ds = open_xarray(path) if path else self.fine
        where = f"invariant data {path or 'in the fine file'}"
        fields, attrs = {}, {}
        try:
            for spec in specs:
                resolved = resolve_field(ds, spec, self.selection, where)
                da = ds[spec.source]
                dims = (self.fine_dims if set(self.fine_dims) <= set(da.dims)
                        else spatial_dims(da, None, [*resolved.isel, resolved.record_dim or ""]))
                shape = tuple(da.sizes[d] for d in dims)
                if shape != self.full_fine_shape:
                    raise DataError(f"invariant {spec.source!r} has shape {shape}, the fine grid "
                                    f"is {self.full_fine_shape}; give a file on the fine grid "
                                    "with --invariant-file")
                box = (slice(0, self.fine_shape[0]), slice(0, self.fine_shape[1]))
                fields[spec.name] = self._read(ds, resolved, dims, None, box)
                attrs[spec.name] = cf_attributes(da)
        finally:
            if path:
                ds.close()
        return fields, attrs

    def latlon(self) -> tuple[np.ndarray, np.ndarray] | None:
        """Fine-grid (lat, lon) on the cropped grid, or None if the fine file has none."""
        ll = latlon(self.fine, self.fine_dims)
        if ll is None:
            return None
        h, w = self.fine_shape
        return ll[0][:h, :w], ll[1][:h, :w]

    def close(self) -> None:
        self.coarse.close()
        self.fine.close()


def _intersect(indexes: list[pd.Index]) -> pd.Index:
    common = indexes[0]
    for index in indexes[1:]:
        common = common.intersection(index)
    return common


def _span(times: pd.Index) -> str:
    return f"{times.min()} .. {times.max()}" if len(times) else "none"


def check_finite(values: np.ndarray, name: str, time: datetime.datetime, what: str,
                 advice: str) -> None:
    """Refuse NaN/Inf in a field, naming the variable, the time and ``advice`` (the fix)."""
    if not np.isfinite(values).all():
        raise DataError(
            f"{what} variable {name!r} has {int((~np.isfinite(values)).sum())} missing (NaN or "
            f"infinite) values at {time:%Y-%m-%d %H:%M}; {advice}"
        )
