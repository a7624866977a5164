"""Writing the generated file progressively and atomically (layout in `layout`).

The file is written one sample at a time to ``<path>.partial`` and renamed to ``<path>`` only
once every planned sample is complete, so a file at ``<path>`` is always whole; the flags in the
``generation_progress`` group let an interrupted run be resumed. Torch-free: channels are any
objects with ``label``, ``name``, ``level``, ``attributes`` and ``auxiliary``
(`datasets.base.ChannelMetadata`).
"""

from __future__ import annotations

import datetime
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import netCDF4
import numpy as np

from datasets.variable_metadata import channel_attributes
from helpers.infrastructure.cf_time import as_datetime, decode_times
from inference.generated_file.layout import (
    ENSEMBLE_DIM,
    GROUPS,
    PROGRESS_GROUP,
    PROGRESS_VARIABLE,
    TIME_CALENDAR,
    attribute_value,
    encode_times,
    now,
    progress_variable,
)

logger = logging.getLogger(__name__)


SampleGrid = Callable[[int], tuple[np.ndarray, np.ndarray]]


class EnsembleWriter:
    """Write generation output progressively and atomically (see the module docstring).

    ``latitude``/``longitude`` give the one grid of every sample; for windows at different
    places pass ``sample_grid`` instead, a function from sample index to its ``(lat, lon)``.

    ``resume=True`` continues ``<path>.partial`` if it has the same layout (times, ensemble size,
    channels, grid); ``completed`` then lists the time indices to skip. If only a finished
    ``<path>`` exists and it matches, every time counts as completed and nothing is rewritten.
    ``resume=False`` starts a new partial file; an existing ``<path>`` stays untouched until the
    new one is complete and replaces it.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        times: Sequence[datetime.datetime],
        num_ensembles: int,
        latitude: np.ndarray,
        longitude: np.ndarray,
        input_channels: Sequence[Any],
        output_channels: Sequence[Any],
        attributes: Mapping[str, Any] | None = None,
        resume: bool = False,
        compression_level: int = 4,
        sample_grid: SampleGrid | None = None,
        lead_times: Sequence[int] | None = None,
    ):
        self.path = Path(path)
        self.partial_path = self.path.with_name(self.path.name + ".partial")
        self.times = [as_datetime(t) for t in times]
        self.num_ensembles = int(num_ensembles)
        self.lead_times = None if lead_times is None else [int(h) for h in lead_times]
        if self.lead_times is not None and len(self.lead_times) != len(self.times):
            raise ValueError(f"{len(self.lead_times)} lead times for {len(self.times)} times")
        self.sample_grid = sample_grid
        if sample_grid is not None and len(self.times):
            latitude, longitude = sample_grid(0)
        self.latitude = np.asarray(latitude, dtype=np.float64)
        self.longitude = np.asarray(longitude, dtype=np.float64)
        distinct = len(set(self.times)) == len(self.times)
        self.sample_dim = "time" if distinct and sample_grid is None else "sample"
        self.channels = {"input": list(input_channels), "truth": list(output_channels)}
        self.channels["prediction"] = self.channels["truth"]
        self.attributes = dict(attributes or {})
        self.compression_level = int(compression_level)
        self._validate()
        self.shape: tuple[int, int] = self.latitude.shape  # type: ignore[assignment]
        self._completed: set[int] = set()
        self._append = False  # continue the existing partial file
        self._finished = False  # resume found a complete final file: nothing to write
        self._nc: netCDF4.Dataset | None = None
        if resume:
            self._inspect_existing()

    def _validate(self) -> None:
        if not self.times:
            raise ValueError("times is empty: there is nothing to write")
        if self.num_ensembles < 1:
            raise ValueError(f"num_ensembles must be >= 1, got {self.num_ensembles}")
        if self.latitude.ndim != 2 or self.latitude.shape != self.longitude.shape:
            raise ValueError(
                f"latitude and longitude must be 2-D (H, W) arrays of one shape, got "
                f"{self.latitude.shape} and {self.longitude.shape}"
            )
        for group in ("input", "truth"):
            labels = [c.label for c in self.channels[group]]
            bad = [lb for lb in labels if not lb or "/" in lb or labels.count(lb) > 1]
            if bad or not labels:
                raise ValueError(f"{group} channel labels must be unique, non-empty and without "
                                 f"'/'; got {labels} (invalid or duplicated: {sorted(set(bad))})")

    @property
    def completed(self) -> set[int]:
        """Indices into ``times`` on disk: left by an earlier run (resume) or written since."""
        return set(self._completed)

    @property
    def is_complete(self) -> bool:
        return len(self._completed) == len(self.times)

    # -- resume ------------------------------------------------------------------------------

    def _inspect_existing(self) -> None:
        """Find what an earlier run left: the partial file takes precedence (it is the newest
        attempt); a finished file that matches means there is nothing left to do."""
        for candidate, final in ((self.partial_path, False), (self.path, True)):
            if not candidate.exists():
                continue
            try:
                with netCDF4.Dataset(candidate, "r") as nc:
                    differences = self._differences(nc)
                    done = np.flatnonzero(_progress_flags(nc) == 1)
            except (OSError, KeyError, IndexError, AttributeError, RuntimeError) as err:
                raise ValueError(
                    f"cannot resume from {candidate}: it is not a readable output file ({err}); "
                    "delete it or set resume=false"
                ) from err
            self._completed = {int(i) for i in done}
            if final and not self.is_complete:
                differences.append("the final file is marked incomplete")
            if differences:
                raise ValueError(f"cannot resume from {candidate}: it was written for a different "
                                 f"run ({'; '.join(differences)}); delete it or set resume=false "
                                 "to start over")
            self._finished, self._append = final, not final
            logger.info("resuming %s: %d of %d times already written", candidate,
                        len(self._completed), len(self.times))
            return

    def _differences(self, nc: netCDF4.Dataset) -> list[str]:
        """What about the file at hand does not match this writer's planned layout."""
        out = []
        time_var = nc["time"]
        stored = decode_times(time_var[:], time_var.units,
                              getattr(time_var, "calendar", TIME_CALENDAR))
        if list(stored) != self.times:
            out.append(f"times: file has {len(stored)} from {stored[0]:%Y-%m-%dT%H:%M}, "
                       f"this run {len(self.times)} from {self.times[0]:%Y-%m-%dT%H:%M}")
        stored_leads = (nc["lead_time"][:].tolist() if "lead_time" in nc.variables else None)
        if stored_leads != self.lead_times:
            out.append(f"lead times: file {stored_leads}, this run {self.lead_times}")
        if self.sample_dim not in nc.dimensions:
            out.append(f"layout: file is not laid out along {self.sample_dim!r}")
            return out
        stored_members = _ensemble_size(nc)
        if stored_members != self.num_ensembles:
            out.append(f"ensemble size: file {stored_members}, this run {self.num_ensembles}")
        grid = (len(nc.dimensions["y"]), len(nc.dimensions["x"]))
        if grid != self.shape:
            out.append(f"grid shape: file {grid}, this run {self.shape}")
        elif not self._same_grids(nc):
            out.append("grid: lat/lon differ")
        for group in ("input", "truth"):
            stored_labels = list(nc[group].variables)
            labels = [c.label for c in self.channels[group]]
            if stored_labels != labels:
                out.append(f"{group} channels: file {stored_labels}, this run {labels}")
        return out

    def _same_grids(self, nc: netCDF4.Dataset) -> bool:
        per_sample = nc["lat"].ndim == 3
        if per_sample != (self.sample_grid is not None):
            return False
        # Per-sample grids are written with their sample: compare those already on disk.
        done = np.flatnonzero(_progress_flags(nc) == 1)
        samples = [int(i) for i in done if i < len(self.times)] if per_sample else [None]
        for i in samples:
            lat, lon = (self.latitude, self.longitude) if i is None else self.sample_grid(i)
            stored = [np.ma.filled(nc[v][:] if i is None else nc[v][i], np.nan)
                      for v in ("lat", "lon")]
            if not (np.array_equal(stored[0], lat, True) and np.array_equal(stored[1], lon,
                                                                             True)):
                return False
        return True

    # -- writing -----------------------------------------------------------------------------

    def __enter__(self) -> EnsembleWriter:
        if self._finished:
            logger.info("%s is already complete; nothing to write", self.path)
        elif self._append:
            self._nc = netCDF4.Dataset(self.partial_path, "a")
            _no_chunk_cache(self._nc)
            self._nc.history = f"{now()}: resumed\n{getattr(self._nc, 'history', '')}"
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._nc = self._create()
        return self

    def _create(self) -> netCDF4.Dataset:
        nc = netCDF4.Dataset(self.partial_path, "w", format="NETCDF4")
        attrs = {k: attribute_value(v) for k, v in self.attributes.items()}
        created = now()
        history = f"{created}: written by inference.generated_file"
        if "history" in attrs:
            history += f"\n{attrs.pop('history')}"
        nc.setncatts({"title": "CorrDiff generation output", **attrs, "Conventions": "CF-1.8",
                      "history": history, "created": created})
        n_time, (height, width), dim = len(self.times), self.shape, self.sample_dim
        for name, size in ((dim, n_time), ("y", height), ("x", width)):
            nc.createDimension(name, size)
        values, units = encode_times(self.times)
        time_var = nc.createVariable("time", "f8", (dim,))
        time_var.setncatts({"units": units, "calendar": TIME_CALENDAR, "standard_name": "time"})
        time_var[:] = values
        if self.lead_times is not None:  # forecasts: time is the valid time, init = time - lead
            lead = nc.createVariable("lead_time", "i4", (dim,))
            lead.setncatts({"units": "hours", "standard_name": "forecast_period",
                            "long_name": "lead time of the forecast the input comes from"})
            lead[:] = np.asarray(self.lead_times, dtype=np.int32)
        grid_dims = (dim, "y", "x") if self.sample_grid is not None else ("y", "x")
        chunks = (1, height, width) if self.sample_grid is not None else (height, width)
        for name, data, units, standard in (("lat", self.latitude, "degrees_north", "latitude"),
                                            ("lon", self.longitude, "degrees_east", "longitude")):
            var = nc.createVariable(name, "f8", grid_dims, fill_value=np.nan, chunksizes=chunks,
                                    **self._zlib())
            var.setncatts({"units": units, "standard_name": standard})
            if self.sample_grid is None:
                var[:] = data
        for group_name in GROUPS:
            group = nc.createGroup(group_name)
            dims = (dim, "y", "x")
            chunks = (1, height, width)
            if group_name == "prediction":
                group.createDimension(ENSEMBLE_DIM, self.num_ensembles)
                dims, chunks = (ENSEMBLE_DIM, *dims), (1, *chunks)
            for channel in self.channels[group_name]:
                var = group.createVariable(channel.label, "f4", dims, chunksizes=chunks,
                                           fill_value=np.nan, **self._zlib())
                var.setncatts(channel_attributes(channel.name, channel.level,
                                                 channel.attributes))
                # CF-1.8 resolves these in the parent group.
                var.coordinates = " ".join(
                    (["time"] if dim != "time" else []) + (
                        ["lead_time"] if self.lead_times is not None else []) + ["lat", "lon"])
                if channel.auxiliary:
                    var.auxiliary = np.int8(1)
        # Where the field's tools never look (they open the root and the field groups).
        done = nc.createGroup(PROGRESS_GROUP).createVariable(PROGRESS_VARIABLE, "i1", (dim,))
        done.setncatts({"long_name": "all fields of this sample are written (for resume)",
                        "flag_values": np.array([0, 1], dtype=np.int8),
                        "flag_meanings": "incomplete complete"})
        done[:] = np.zeros(n_time, dtype=np.int8)
        nc.sync()
        _no_chunk_cache(nc)
        return nc

    def _zlib(self) -> dict:
        if self.compression_level <= 0:
            return {}
        return {"compression": "zlib", "complevel": min(self.compression_level, 9),
                "shuffle": True}

    def write_time(
        self,
        index: int,
        inputs: np.ndarray,
        truth: np.ndarray | None,
        prediction: np.ndarray,
    ) -> None:
        """Write time ``index``: ``inputs (C_in, H, W)``, ``truth (C_out, H, W)`` or None (NaN),
        ``prediction (M, C_out, H, W)``, all in physical units. Rewriting a time is allowed; it
        is marked incomplete while it is being rewritten."""
        if self._finished:
            raise RuntimeError(f"{self.path} is already complete; use resume=false to rewrite it")
        if self._nc is None:
            raise RuntimeError("use EnsembleWriter inside a `with` block")
        if not 0 <= index < len(self.times):
            raise ValueError(f"time index {index} is out of range 0..{len(self.times) - 1}")
        n_in, n_out = len(self.channels["input"]), len(self.channels["truth"])
        inputs = _checked("inputs", inputs, (n_in, *self.shape))
        prediction = _checked("prediction", prediction, (self.num_ensembles, n_out, *self.shape))
        if truth is not None:
            truth = _checked("truth", truth, (n_out, *self.shape))
        nc = self._nc
        flags = progress_variable(nc)
        if flags[index] == 1:
            flags[index] = 0
            nc.sync()
        self._completed.discard(index)
        if self.sample_grid is not None:
            lat, lon = self.sample_grid(index)
            nc["lat"][index], nc["lon"][index] = lat, lon
        missing = np.full(self.shape, np.nan, dtype=np.float32)
        for c, channel in enumerate(self.channels["input"]):
            nc["input"][channel.label][index] = inputs[c]
        for c, channel in enumerate(self.channels["truth"]):
            nc["truth"][channel.label][index] = missing if truth is None else truth[c]
            nc["prediction"][channel.label][:, index] = prediction[:, c]
        nc.sync()  # data on disk before the flag says so
        flags[index] = 1
        nc.sync()
        self._completed.add(index)

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._nc is not None:
            self._nc.close()
            self._nc = None
        if self._finished or exc_type is not None:
            return  # on error the partial file stays, for resume=true
        if self.is_complete:
            os.replace(self.partial_path, self.path)
        else:
            missing = sorted(set(range(len(self.times))) - self._completed)
            logger.warning("%s left incomplete: %d time(s) not written (first: %s); rerun with "
                           "resume=true to finish it", self.partial_path, len(missing),
                           missing[:5])


def _no_chunk_cache(nc: netCDF4.Dataset) -> None:
    """Whole chunks are written once each, so HDF5's per-variable cache (64 MiB by default)
    would only hold finished fields in memory, growing with the number of channels."""
    for group in GROUPS:
        for var in nc[group].variables.values():
            var.set_var_chunk_cache(size=0, nelems=0, preemption=1.0)


def _checked(name: str, values: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    values = np.asarray(values, dtype=np.float32)
    if values.shape != shape:
        raise ValueError(f"{name}: expected shape {shape}, got {values.shape}")
    return values


def _progress_flags(nc: netCDF4.Dataset) -> np.ndarray:
    return np.asarray(progress_variable(nc)[:])


def _ensemble_size(nc: netCDF4.Dataset) -> int:
    """Members in the file: the dimension lives in ``prediction`` (at the root in earlier
    versions)."""
    for where in (nc["prediction"], nc):
        if ENSEMBLE_DIM in where.dimensions:
            return len(where.dimensions[ENSEMBLE_DIM])
    return 0
