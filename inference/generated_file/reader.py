"""Open a file written by ``generate.py`` as one lazily loaded :class:`xarray.Dataset`.

The file keeps input, truth and prediction in NetCDF groups (see `layout`). Every reader here
(scoring, spectra, plots) wants them side by side, so the groups are merged into one dataset
and each variable is renamed ``<group>_<channel>``::

    input_2t       (time, y, x)             interpolated coarse input (auxiliary=1 for statics)
    truth_2t       (time, y, x)
    prediction_2t  (ensemble, time, y, x)
    coords         time (decoded), lat(y, x), lon(y, x), lead_time(time) for forecasts

Which samples are complete (a partial file of an interrupted run) comes from the progress
group, read separately by `complete_times`.

Files with several windows per time use ``sample`` where this shows ``time`` (``time(sample)``
is then a coordinate along it, and ``lat``/``lon`` may be ``(sample, y, x)``); `sample_dim`
says which, and every reader here indexes along it.

A prefix rather than a ``source`` dimension because input and truth need not share channels and
prediction alone has ``ensemble``. Each variable keeps its attributes plus ``group`` and
``channel``, so ``channels(ds, "truth")`` recovers the labels even when a label contains ``_``.
Nothing is read until values are asked for, so slicing a few times keeps memory small.
"""

from __future__ import annotations

import os
from pathlib import Path

import netCDF4
import numpy as np
import xarray as xr

from helpers.infrastructure.errors import GeneratedFileError
from inference.generated_file.layout import (
    ENSEMBLE_DIM,
    GROUPS,
    LEGACY_PROGRESS_VARIABLE,
    SAMPLE_DIMS,
    progress_variable,
)


def open_generated(
    path: str | os.PathLike, require: tuple[str, ...] = ("truth", "prediction")
) -> xr.Dataset:
    """Check the layout, then merge root and groups lazily (layout in the module docstring).

    ``require`` lists the groups that must exist; ``input`` is optional by default because
    only the baselines and plots use it.
    """
    path = Path(path)
    if path.is_dir():
        raise GeneratedFileError(f"{path} is a directory; give the .nc file generate.py wrote "
                                 "(generation.io.output_filename)")
    if not path.is_file():
        raise GeneratedFileError(f"{path}: no such file")
    groups = _check_layout(path, require)
    try:
        root = xr.open_dataset(path, engine="netcdf4")
        # Files of earlier versions keep bookkeeping at the root: leave it out of the fields.
        root = root.drop_vars([v for v in (LEGACY_PROGRESS_VARIABLE, ENSEMBLE_DIM)
                               if v in root.variables])
        parts = [root.set_coords([c for c in ("lat", "lon", "lead_time")
                                  if c in root.variables])]
        for group in groups:
            part = xr.open_dataset(path, engine="netcdf4", group=group)
            renamed = {}
            for name, var in part.data_vars.items():
                var.attrs.update(group=group, channel=name)
                renamed[name] = f"{group}_{name}"
            parts.append(part.rename_vars(renamed))
        merged = xr.merge(parts, compat="override", join="exact", combine_attrs="override")
    except (OSError, ValueError, KeyError) as err:
        raise GeneratedFileError(f"{path}: cannot read it as a generation output ({err})") from err
    merged.attrs["source_file"] = str(path)

    def close() -> None:
        for part in parts:
            part.close()

    merged.set_close(close)
    return merged


def _check_layout(path: Path, require: tuple[str, ...]) -> list[str]:
    """Validate with netCDF4 first, so every problem gets a one-line message naming it."""
    try:
        nc = netCDF4.Dataset(path, "r")
    except OSError as err:
        raise GeneratedFileError(f"{path}: not a readable NetCDF file ({err})") from err
    with nc:
        present = [g for g in GROUPS if g in nc.groups]
        missing = [g for g in require if g not in present]
        if missing:
            raise GeneratedFileError(
                f"{path}: group(s) {missing} missing (found {sorted(nc.groups)}); expected the "
                f"groups {list(GROUPS)} written by generate.py")
        shapes: dict[str, dict[str, tuple[tuple[str, ...], tuple[int, ...]]]] = {}
        for group in present:
            shapes[group] = {n: (v.dimensions, v.shape) for n, v in nc[group].variables.items()}
        if "time" not in nc.variables:
            raise GeneratedFileError(f"{path}: no root 'time' variable; not a generation output")
        dim = nc["time"].dimensions[0] if nc["time"].dimensions else "time"
    if dim not in SAMPLE_DIMS:
        raise GeneratedFileError(f"{path}: 'time' runs along {dim!r}, expected one of "
                                 f"{list(SAMPLE_DIMS)}")
    field_dims = (dim, "y", "x")
    for group in ("input", "truth"):
        for name, (dims, _) in shapes.get(group, {}).items():
            if dims != field_dims:
                raise GeneratedFileError(f"{path}: {group}/{name} has dimensions {dims}, "
                                         f"expected {field_dims}")
    if "truth" in shapes and "prediction" in shapes:
        _check_pairs(path, shapes["truth"], shapes["prediction"], field_dims)
    return present


def _check_pairs(path: Path, truth: dict, prediction: dict, field_dims: tuple[str, ...]) -> None:
    if sorted(truth) != sorted(prediction):
        raise GeneratedFileError(f"{path}: truth channels {sorted(truth)} differ from prediction "
                                 f"channels {sorted(prediction)}")
    expected = (ENSEMBLE_DIM, *field_dims)
    for name, (dims, shape) in prediction.items():
        if ENSEMBLE_DIM not in dims:
            raise GeneratedFileError(f"{path}: prediction/{name} has no ensemble dimension "
                                     f"(dimensions {dims}); expected {expected}")
        if shape[1:] != truth[name][1]:
            raise GeneratedFileError(
                f"{path}: shapes differ for {name}: truth {truth[name][1]} (time, y, x) vs "
                f"prediction {shape} (ensemble, time, y, x)")
        if dims != expected:
            raise GeneratedFileError(f"{path}: prediction/{name} has dimensions {dims}, "
                                     f"expected {expected}")


def channels(ds: xr.Dataset, group: str) -> list[str]:
    """Channel labels of ``group`` in file order (``[]`` when the group is absent)."""
    return [str(v.attrs["channel"]) for v in ds.data_vars.values()
            if v.attrs.get("group") == group]


def weather_channels(ds: xr.Dataset, group: str = "input") -> list[str]:
    """Channels of ``group`` that are not auxiliary statics (orography, land-sea mask)."""
    return [c for c in channels(ds, group)
            if not int(ds[f"{group}_{c}"].attrs.get("auxiliary", 0))]


def field(ds: xr.Dataset, group: str, channel: str) -> xr.DataArray:
    """The lazily loaded ``<group>_<channel>`` variable, with a clear error if absent."""
    name = f"{group}_{channel}"
    if name not in ds:
        raise GeneratedFileError(f"{ds.attrs.get('source_file', 'file')}: no variable "
                                 f"{channel!r} in group {group!r} (has {channels(ds, group)})")
    return ds[name]


def sample_dim(ds: xr.Dataset) -> str:
    """``time`` (one sample per valid time) or ``sample`` (several windows per time)."""
    return "sample" if "sample" in ds.dims else "time"


def grid_of(ds: xr.Dataset, index: int) -> tuple[np.ndarray, np.ndarray] | None:
    """``(lat, lon)`` of sample ``index`` (the file's one grid, or that sample's own), or None
    when the file has no finite grid there."""
    if "lat" not in ds.coords or "lon" not in ds.coords:
        return None
    dim = sample_dim(ds)
    lat, lon = ds["lat"], ds["lon"]
    if dim in lat.dims:
        lat, lon = lat.isel({dim: index}), lon.isel({dim: index})
    lat, lon = lat.values, lon.values
    if not (np.isfinite(lat).all() and np.isfinite(lon).all()):
        return None
    return lat, lon


def sample_keys(ds: xr.Dataset) -> list[tuple]:
    """One key per sample that another file of the same samples shares: the valid time, and
    for per-sample grids the window's first lat/lon, plus a count for repeats."""
    dim = sample_dim(ds)
    times = [str(t) for t in ds["time"].values]
    if "lat" in ds.coords and dim in ds["lat"].dims:
        corner = zip(np.round(ds["lat"].isel(y=0, x=0).values, 5).tolist(),
                     np.round(ds["lon"].isel(y=0, x=0).values, 5).tolist(), strict=True)
        base = list(zip(times, corner, strict=True))
    else:
        base = [(t,) for t in times]
    seen: dict[tuple, int] = {}
    keys = []
    for key in base:
        seen[key] = seen.get(key, -1) + 1
        keys.append((*key, seen[key]))
    return keys


def _complete_flags(path: Path, count: int) -> np.ndarray:
    """Per-sample completion flags (all 1 for a file without bookkeeping)."""
    with netCDF4.Dataset(path, "r") as nc:
        flags = progress_variable(nc)
        return np.ones(count, np.int8) if flags is None else np.asarray(flags[:], np.int8)


def complete_times(ds: xr.Dataset) -> np.ndarray:
    """Indices of samples whose fields are all on disk (all of them for a finished file)."""
    count = ds.sizes[sample_dim(ds)]
    if "source_file" not in ds.attrs:
        return np.arange(count)
    return np.flatnonzero(_complete_flags(Path(ds.attrs["source_file"]), count) == 1)


def select_variables(ds: xr.Dataset, variables: list[str] | None) -> list[str]:
    """The requested output variables (default: all truth channels); unknown ones are an
    error naming what the file has."""
    available = channels(ds, "truth")
    unknown = [v for v in variables or [] if v not in available]
    if unknown:
        raise GeneratedFileError(f"unknown variable(s) {unknown}: "
                                 f"{ds.attrs.get('source_file', 'the file')} has {available}")
    return list(variables) if variables else available
