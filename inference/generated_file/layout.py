"""Names, dimensions and encodings of the generated file, shared by its writer and reader.

The layout is the one the CorrDiff reference workflow writes and its tools read (open the root,
open a group, merge, score with xarray/xskillscore), so nothing that is not a field or a
coordinate sits where those tools look:

    /            time(time) CF-encoded, lat(y, x), lon(y, x); global attributes
    /input       <label>(time, y, x)                 fields only
    /truth       <label>(time, y, x)                 fields only, NaN where there is no truth
    /prediction  <label>(ensemble, time, y, x)       fields only; ``ensemble`` is defined here
    /generation_progress  sample_complete(time)      resume bookkeeping (int8 flags)

With several windows per valid time (converted files), ``sample`` takes the place of ``time``
as the first dimension, ``time(sample)`` becomes a coordinate along it (times may repeat) and
``lat``/``lon`` are ``(sample, y, x)`` when the windows sit at different places.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import Any

import numpy as np

GROUPS = ("input", "truth", "prediction")
SAMPLE_DIMS = ("time", "sample")
ENSEMBLE_DIM = "ensemble"
PROGRESS_GROUP = "generation_progress"
PROGRESS_VARIABLE = "sample_complete"
LEGACY_PROGRESS_VARIABLE = "time_complete"  # at the root, in files of earlier versions
TIME_REFERENCE = datetime.datetime(1990, 1, 1)
TIME_CALENDAR = "standard"


def progress_variable(nc: Any) -> Any:
    """The per-sample completion flags of an open ``netCDF4.Dataset`` (files of earlier
    versions keep them at the root), or None for a file without bookkeeping."""
    if PROGRESS_GROUP in nc.groups:
        return nc[PROGRESS_GROUP][PROGRESS_VARIABLE]
    return nc.variables.get(LEGACY_PROGRESS_VARIABLE)


def encode_times(times: Sequence[datetime.datetime]) -> tuple[np.ndarray, str]:
    """Offsets from 1990-01-01 in the coarsest unit that holds every time exactly, so decoding
    gives back the same instants."""
    import cftime

    reference = f"since {TIME_REFERENCE:%Y-%m-%d %H:%M:%S}"
    for unit in ("hours", "minutes", "seconds"):
        units = f"{unit} {reference}"
        values = np.asarray(cftime.date2num(list(times), units, calendar=TIME_CALENDAR),
                            dtype=np.float64).reshape(-1)
        if np.array_equal(values, np.round(values)):
            return values, units
    return values, units


def attribute_value(value: Any) -> Any:
    """NetCDF attributes hold strings and numbers; anything else is stored as its text."""
    if isinstance(value, bool) or not isinstance(value, str | int | float | np.number):
        return str(value)
    return value


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
