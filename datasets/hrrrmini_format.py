"""Writing the HRRR-Mini layout: one NetCDF4 file plus ``stats.json``.

The embedded dataset, the converter and the tests all produce this layout, so its writer lives
in one place. Layout (what ``datasets.hrrrmini`` reads):

- root ``time(N)`` CF-encoded, ``coord(N, 2)`` = (row, col) of each sample's high-res window
  inside the invariant grid, optional ``lat``/``lon(Hg, Wg)`` in degrees;
- group ``input``: one ``(N, h, w)`` variable per low-res channel;
- group ``output``: one ``(N, H, W)`` variable per high-res channel;
- group ``invariant``: static ``(Hg, Wg)`` fields such as ``elev_mean`` and ``lsm_mean``.

Variables carry their CF ``units``/``long_name``/``standard_name`` when known. Missing values are
stored as NaN. ``stats.json`` holds, per group and variable, ``mean`` and ``std`` of the valid
values (after the variable's ``transform``, if any) and, where they apply, ``transform``,
``nonnegative``, ``missing_values`` (the data have missing values) and the CF attributes.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import netCDF4
import numpy as np

from datasets import transforms
from datasets.stats_file import RunningMoments, field_entry
from helpers.infrastructure.atomic_write import atomic_path
from helpers.infrastructure.cf_time import decode_times

TIME_UNITS = "hours since 1970-01-01 00:00:00"
TIME_CALENDAR = "standard"


def file_times(nc: netCDF4.Dataset, path: str | os.PathLike) -> list[datetime.datetime]:
    """The valid times of an open HRRR-Mini file (its CF-encoded ``time`` variable)."""
    time_var = nc["time"]
    return decode_times(time_var[:], getattr(time_var, "units", None),
                        getattr(time_var, "calendar", None), f"{str(path)!r}: variable 'time'")


def read_times(path: str | os.PathLike) -> list[datetime.datetime]:
    """The valid times of an HRRR-Mini file, without its statistics or any sample."""
    with netCDF4.Dataset(path, "r") as nc:
        return file_times(nc, path)


class HRRRMiniWriter:
    """Write samples to an HRRR-Mini NetCDF file progressively; statistics accumulate as samples
    are appended. The file is written under a temporary name and only renamed into place when
    the ``with`` block ends without error, so an interrupted write never leaves a file that
    looks complete."""

    def __init__(
        self,
        path: str | os.PathLike,
        input_shape: tuple[int, int],
        output_shape: tuple[int, int],
        input_variables: Sequence[str],
        output_variables: Sequence[str],
        invariants: Mapping[str, np.ndarray],
        lat: np.ndarray | None = None,
        lon: np.ndarray | None = None,
        attributes: Mapping[str, str] | None = None,
        compression_level: int = 1,
        variable_attributes: Mapping[str, Mapping[str, Mapping[str, str]]] | None = None,
        normalization: Mapping[str, Mapping[str, Mapping[str, object]]] | None = None,
        lead_time: bool = False,
    ):
        """``variable_attributes[group][name]``: CF attributes written to the variable and to
        the statistics; ``normalization[group][name]``: ``transform`` (statistics are of the
        transformed values) and ``nonnegative``, recorded in the statistics; ``lead_time``:
        the inputs are forecasts, each sample's lead time (hours) goes to ``lead_time(time)``."""
        self.path = Path(path)
        self._atomic = atomic_path(self.path, ".partial")
        self.input_shape = tuple(input_shape)
        self.output_shape = tuple(output_shape)
        self.input_variables = list(input_variables)
        self.output_variables = list(output_variables)
        self.invariants = {k: np.asarray(v, dtype=np.float32) for k, v in invariants.items()}
        self.lat, self.lon = lat, lon
        self.attributes = dict(attributes or {})
        self.compression_level = compression_level
        self.lead_time = bool(lead_time)
        self.variable_attributes = {g: dict(v) for g, v in (variable_attributes or {}).items()}
        self.normalization = {g: dict(v) for g, v in (normalization or {}).items()}
        self.count = 0
        self.moments = {
            group: {v: RunningMoments() for v in names}
            for group, names in (("input", self.input_variables), ("output", self.output_variables))
        }
        self._nc: netCDF4.Dataset | None = None

    def __enter__(self) -> HRRRMiniWriter:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp_path = self._atomic.__enter__()
        if self.invariants:
            grid = next(iter(self.invariants.values())).shape
        elif self.lat is not None:
            grid = np.shape(self.lat)
        else:
            grid = self.output_shape
        nc = netCDF4.Dataset(self.tmp_path, "w", format="NETCDF4")
        nc.setncatts(self.attributes)
        nc.createDimension("time", None)
        nc.createDimension("coord_dim", 2)
        nc.createDimension("y_grid", grid[0])
        nc.createDimension("x_grid", grid[1])
        # Per-sample metadata is chunked in blocks: one chunk per sample costs HDF5 index memory
        # on every read of the whole variable.
        time = nc.createVariable("time", "f8", ("time",), chunksizes=(4096,))
        time.units, time.calendar = TIME_UNITS, TIME_CALENDAR
        coord = nc.createVariable("coord", "i4", ("time", "coord_dim"), chunksizes=(4096, 2))
        coord.long_name = "(row, col) of the high-res window's top-left corner in the grid"
        if self.lead_time:
            lead = nc.createVariable("lead_time", "i4", ("time",), chunksizes=(4096,))
            lead.setncatts({"units": "hours", "standard_name": "forecast_period",
                            "long_name": "lead time of the forecast the inputs come from"})
        for name, values in (("lat", self.lat), ("lon", self.lon)):
            if values is not None:
                var = nc.createVariable(name, "f4", ("y_grid", "x_grid"))
                var.units = "degrees_north" if name == "lat" else "degrees_east"
                var[:] = values
        zlib = dict(zlib=self.compression_level > 0, complevel=max(self.compression_level, 1))
        for group_name, shape, names in (
            ("input", self.input_shape, self.input_variables),
            ("output", self.output_shape, self.output_variables),
        ):
            group = nc.createGroup(group_name)
            ydim, xdim = f"y_{group_name}", f"x_{group_name}"
            group.createDimension(ydim, shape[0])
            group.createDimension(xdim, shape[1])
            for name in names:
                var = group.createVariable(
                    name, "f4", ("time", ydim, xdim), chunksizes=(1, *shape), **zlib
                )
                var.setncatts(self._attrs(group_name, name))
        invariant = nc.createGroup("invariant")
        for name, values in self.invariants.items():
            var = invariant.createVariable(name, "f4", ("y_grid", "x_grid"), **zlib)
            var.setncatts(self._attrs("invariant", name))
            var[:] = values
        self._nc = nc
        return self

    def append(
        self,
        times: Sequence[datetime.datetime],
        coords: np.ndarray,
        inputs: Mapping[str, np.ndarray],
        outputs: Mapping[str, np.ndarray],
        lead_hours: Sequence[int] | None = None,
    ) -> None:
        """Append ``n`` samples: ``coords (n, 2)``, ``inputs[var] (n, h, w)``,
        ``outputs[var] (n, H, W)``, and for forecast files ``lead_hours (n)``."""
        assert self._nc is not None, "use HRRRMiniWriter inside a `with` block"
        n = len(times)
        start, stop = self.count, self.count + n
        if self.lead_time != (lead_hours is not None):
            raise ValueError("lead_hours must be given exactly when the writer has lead_time")
        if lead_hours is not None:
            self._nc["lead_time"][start:stop] = np.asarray(lead_hours, dtype=np.int32)
        self._nc["time"][start:stop] = netCDF4.date2num(
            list(times), TIME_UNITS, calendar=TIME_CALENDAR
        )
        self._nc["coord"][start:stop] = np.asarray(coords, dtype=np.int32).reshape(n, 2)
        for group_name, data, shape in (
            ("input", inputs, self.input_shape),
            ("output", outputs, self.output_shape),
        ):
            for name, moments in self.moments[group_name].items():
                values = np.asarray(data[name], dtype=np.float32)
                if values.shape != (n, *shape):
                    raise ValueError(
                        f"{group_name} variable {name!r}: expected shape {(n, *shape)}, "
                        f"got {values.shape}"
                    )
                self._nc[group_name][name][start:stop] = values
                transform = str(self._normalization(group_name, name).get("transform", "none"))
                moments.update(transforms.forward(transform, values.astype(np.float64)))
        self.count = stop

    def _attrs(self, group: str, name: str) -> dict[str, str]:
        return dict(self.variable_attributes.get(group, {}).get(name, {}))

    def _normalization(self, group: str, name: str) -> dict[str, object]:
        return dict(self.normalization.get(group, {}).get(name, {}))

    def stats(self) -> dict:
        """Statistics in the ``stats.json`` format of the samples written so far."""
        out: dict = {}
        for group, moments in self.moments.items():
            out[group] = {}
            for name, m in moments.items():
                entry = m.entry()
                extra = self._normalization(group, name)
                if extra.get("transform", "none") != "none":
                    entry["transform"] = extra["transform"]
                if "nonnegative" in extra:
                    entry["nonnegative"] = bool(extra["nonnegative"])
                out[group][name] = {**entry, **self._attrs(group, name)}
        out["invariant"] = {name: {**field_entry(values), **self._attrs("invariant", name)}
                            for name, values in self.invariants.items()}
        return out

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._nc is not None:
            self._nc.close()
            self._nc = None
        # renamed into place on success, removed after an error (the exception propagates)
        self._atomic.__exit__(exc_type, exc, tb)
