"""Picking one 2-D field per channel out of variables with extra axes.

Real files carry levels, members or heights, and some flatten a (valid time x level) product
into one record axis whose ``time`` coordinate repeats. A channel is therefore a variable plus
a selection:

- ``--select level=850,member=0`` applies to every variable that has that dimension or
  coordinate (in either file);
- ``theta@level=10`` selects for one channel only (it overrides ``--select`` for that name),
  so several levels of one variable become separate channels:
  ``--output-variables theta@level=1,theta@level=10`` (channels ``theta_level1`` and
  ``theta_level10``; ``th1=theta@level=1`` names the channel ``th1``).

A selection key is a dimension of the variable (matched against its coordinate values, or an
integer position when the dimension has no coordinate) or a 1-D coordinate along one of its
dimensions. A coordinate along the record (time) axis, such as ``level(record)`` in a flattened
file, keeps the records whose value matches; any other dimension must end up with exactly one
position. The record axis is the dimension of the ``time`` (or ``valid_time``) coordinate.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import xarray as xr

from helpers.infrastructure.errors import DataError

TIME_NAMES = ("time", "valid_time")


@dataclass(frozen=True)
class FieldSpec:
    """One channel: its name in the converted data, the file variable, and its own selection."""

    name: str
    source: str
    selection: tuple[tuple[str, str], ...] = ()

    @property
    def text(self) -> str:
        """How the channel is written on the command line (for messages and file attributes)."""
        picks = "".join(f"@{k}={v}" for k, v in self.selection)
        return f"{self.source}{picks}"


def parse_selection(text: str | Mapping[str, object] | None, option: str = "--select"
                    ) -> dict[str, str]:
    """``"level=850,member=0"`` (or a mapping) to ``{"level": "850", "member": "0"}``."""
    if not text:
        return {}
    if isinstance(text, Mapping):
        return {str(k): str(v) for k, v in text.items()}
    out: dict[str, str] = {}
    for item in (i.strip() for i in str(text).split(",")):
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise DataError(f"{option}: {item!r} is not DIM=VALUE (e.g. {option} level=850)")
        out[key.strip()] = value.strip()
    return out


def parse_fields(spec: str | Sequence[str] | None, option: str = "variables") -> list[FieldSpec]:
    """``"2t=t2m,theta@level=1,th10=theta@level=10"`` (or a list of such items) to specs.

    Without a rename, a channel with a selection is named ``<source>_<dim><value>...``."""
    if spec is None:
        return []
    items = spec.split(",") if isinstance(spec, str) else [str(i) for i in spec]
    fields = []
    for item in (i.strip() for i in items):
        if not item:
            continue
        head, *picks = item.split("@")
        name, _, source = head.partition("=")
        name, source = name.strip(), (source or name).strip()
        selection = tuple(parse_selection(p, f"{option} {item!r}").popitem() for p in picks
                          if p.strip())
        if not source:
            raise DataError(f"{option}: {item!r} names no variable")
        if not _renamed(head) and selection:
            name = source + "_" + "_".join(f"{k}{v}" for k, v in selection)
        fields.append(FieldSpec(name, source, selection))
    names = [f.name for f in fields]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise DataError(f"{option}: channel name(s) {duplicated} appear more than once; rename "
                        "with name=variable, e.g. th1=theta@level=1")
    bad = [n for n in names if "/" in n]
    if bad:
        raise DataError(f"{option}: channel names may not contain '/': {bad}; rename them with "
                        "name=variable")
    return fields


def _renamed(head: str) -> bool:
    return "=" in head


def time_coordinate(ds: xr.Dataset, path: object) -> xr.DataArray:
    """The 1-D time coordinate of a dataset; its dimension is the record axis."""
    for name in TIME_NAMES:
        if name in ds.variables:
            time = ds[name]
            if time.ndim != 1:
                raise DataError(f"{path}: '{name}' has dimensions {time.dims}; expected one "
                                "record dimension")
            return time
    raise DataError(f"{path}: no 'time' coordinate; name the time variable 'time' (e.g. "
                    "ds.rename({'t': 'time'}) in xarray) and save the file again")


@dataclass
class ResolvedField:
    """Where one channel's fields sit in a file: fixed positions on extra dimensions and, for
    time-dependent variables, one record position per (unique) time."""

    spec: FieldSpec
    isel: dict[str, int] = field(default_factory=dict)
    record_dim: str | None = None
    positions: np.ndarray | None = None
    times: pd.Index | None = None


def resolve_field(ds: xr.Dataset, spec: FieldSpec, selection: Mapping[str, str],
                  path: object) -> ResolvedField:
    """Apply ``spec``'s own selection and the entries of the global ``selection`` that apply to
    this variable (a global key the variable lacks is skipped; an own key must apply)."""
    if spec.source not in ds.variables:
        raise DataError(f"{path}: variable {spec.source!r} not found; it has: "
                        f"{sorted(map(str, ds.data_vars))}")
    da = ds[spec.source]
    time = _optional_time(ds)
    record_dim = time.dims[0] if time is not None and time.dims[0] in da.dims else None
    keep = np.ones(da.sizes[record_dim], bool) if record_dim else None
    own = dict(spec.selection)
    picks = {**{k: v for k, v in selection.items() if k not in own}, **own}
    resolved = ResolvedField(spec, record_dim=record_dim)
    for key, value in picks.items():
        target = _selection_dim(ds, da, key)
        if target is None:
            if key in own:
                raise DataError(
                    f"{path}: {spec.text}: variable {spec.source!r} has no dimension or "
                    f"coordinate {key!r} (dimensions {dict(da.sizes)})")
            continue
        where = f"{path}: {spec.text}" if key in own else f"{path}: --select {key}={value}"
        values = _coordinate_values(ds, key, target)
        if values is None:
            mask = np.zeros(da.sizes[target], bool)
            mask[_position(value, da.sizes[target], key, where)] = True
        else:
            mask = _matches(values, value, key, where)
        if target == record_dim:
            keep &= mask
            continue
        if mask.sum() != 1:
            raise DataError(f"{where}: {int(mask.sum())} positions of {target!r} match; give a "
                            "value that picks exactly one")
        resolved.isel[target] = int(np.flatnonzero(mask)[0])
    if record_dim is not None:
        resolved.positions = np.flatnonzero(keep)
        if resolved.positions.size == 0:
            raise DataError(f"{path}: {spec.text}: the selection leaves no record")
        times = pd.Index(time.values[resolved.positions])
        if not times.is_unique:
            raise DataError(_repeated_time_message(ds, da, time, resolved.positions, spec, path))
        resolved.times = times
    return resolved


def leftover_dims(da: xr.DataArray, resolved: ResolvedField, spatial: Sequence[str]) -> dict:
    """Dimensions besides record, selection and space, with their sizes."""
    skip = {*resolved.isel, *spatial, resolved.record_dim}
    return {d: da.sizes[d] for d in da.dims if d not in skip}


def extra_dimension_hint(ds: xr.Dataset, dims: Mapping[str, int]) -> str:
    """``--select level=<v>`` advice with a few values of each extra dimension."""
    hints = []
    for dim in dims:
        values = ds[dim].values if dim in ds.variables else np.arange(dims[dim])
        shown = ", ".join(str(v) for v in values[:5]) + (", ..." if len(values) > 5 else "")
        hints.append(f"--select {dim}=<value> ({dim}: {shown})")
    return " or ".join(hints)


def _optional_time(ds: xr.Dataset) -> xr.DataArray | None:
    for name in TIME_NAMES:
        if name in ds.variables and ds[name].ndim == 1:
            return ds[name]
    return None


def _selection_dim(ds: xr.Dataset, da: xr.DataArray, key: str) -> str | None:
    """The dimension of ``da`` that ``key`` selects on, or None if it does not apply."""
    if key in da.dims:
        return key
    if key in ds.variables and ds[key].ndim == 1 and ds[key].dims[0] in da.dims:
        return ds[key].dims[0]
    return None


def _coordinate_values(ds: xr.Dataset, key: str, dim: str) -> np.ndarray | None:
    """Values to match ``key``'s selection against; None means plain integer positions."""
    if key in ds.variables and ds[key].dims == (dim,):
        return np.asarray(ds[key].values)
    return None


def _position(text: str, size: int, key: str, where: str) -> int:
    """An integer position on a dimension that has no coordinate values."""
    try:
        index = int(text)
    except ValueError:
        raise DataError(f"{where}: dimension {key!r} has no coordinate values, so give an "
                        f"integer position 0..{size - 1}, not {text!r}") from None
    if not 0 <= index < size:
        raise DataError(f"{where}: position {index} is outside 0..{size - 1}")
    return index


def _matches(values: np.ndarray, text: str, key: str, where: str) -> np.ndarray:
    """Boolean mask of the positions whose coordinate equals ``text``."""
    try:
        if np.issubdtype(values.dtype, np.number):
            mask = np.isclose(values.astype(np.float64), float(text), rtol=1e-9, atol=1e-12)
        elif np.issubdtype(values.dtype, np.datetime64):
            mask = values == np.datetime64(pd.Timestamp(text))
        else:
            mask = values.astype(str) == text
    except ValueError:
        raise DataError(f"{where}: {text!r} is not a valid {key} value; {key} has "
                        f"{_listing(values)}") from None
    if not mask.any():
        raise DataError(f"{where}: no {key} equals {text}; {key} has {_listing(values)}")
    return mask


def _listing(values: np.ndarray) -> str:
    unique = pd.unique(np.asarray(values).ravel())
    shown = ", ".join(str(v) for v in unique[:8])
    return f"{len(unique)} value(s): {shown}" + (", ..." if len(unique) > 8 else "")


def _repeated_time_message(ds: xr.Dataset, da: xr.DataArray, time: xr.DataArray,
                           positions: np.ndarray, spec: FieldSpec, path: object) -> str:
    record_dim = time.dims[0]
    stamps = pd.Index(time.values[positions])
    counts = stamps.value_counts()
    first = counts.index[0]
    candidates = []
    for name, var in ds.variables.items():
        if name in TIME_NAMES or var.dims != (record_dim,):
            continue
        values = np.asarray(var.values)[positions]
        frame = pd.DataFrame({"t": stamps, "v": values.astype(str)})
        if (frame.groupby("t")["v"].nunique() > 1).any():
            candidates.append((str(name), values))
    head = (f"{path}: variable {spec.source!r} has repeated time stamps along {record_dim!r} "
            f"({len(positions)} records for {stamps.nunique()} distinct times; "
            f"{pd.Timestamp(first):%Y-%m-%d %H:%M} appears {counts.iloc[0]} times)")
    if not candidates:
        return (head + "; nothing in the file tells the repeated records apart: drop the "
                "duplicates (e.g. ds.drop_duplicates('time') in xarray) and save the file")
    name, values = candidates[0]
    others = ", ".join(n for n, _ in candidates[1:])
    return (head + f"; the records differ in {name!r} ({_listing(values)})"
            + (f" (also {others})" if others else "")
            + f": pick one for every variable with --select {name}=<value>, or one channel per "
            f"value with e.g. {spec.source}@{name}={pd.unique(values)[0]}")
