"""Time values of every kind (CF-encoded numbers, numpy datetime64, cftime, pandas) as plain
naive UTC datetimes: the one conversion the readers, the writers and generation share.
Torch-free."""

from __future__ import annotations

import datetime
from typing import Any

import numpy as np

from helpers.infrastructure.errors import DataError


def as_datetime(value: Any) -> datetime.datetime:
    """Naive UTC datetime from datetime (pandas included), numpy datetime64 or cftime."""
    if isinstance(value, np.datetime64):
        value = value.astype("datetime64[us]").item()
    if isinstance(value, datetime.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(datetime.UTC).replace(tzinfo=None)
        return datetime.datetime(value.year, value.month, value.day, value.hour, value.minute,
                                 value.second, value.microsecond)
    return datetime.datetime(value.year, value.month, value.day, value.hour, value.minute,
                             value.second, getattr(value, "microsecond", 0))


def decode_times(values: Any, units: str | None, calendar: str | None = None,
                 where: str = "'time'") -> list[datetime.datetime]:
    """CF-encoded numbers (``units`` like ``hours since 1990-01-01``) as datetimes, with one
    error naming ``where`` when they cannot be decoded."""
    import cftime

    if not units:
        raise DataError(f"{where} has no CF 'units' attribute")
    calendar = calendar or "standard"
    try:
        decoded = cftime.num2date(np.ravel(np.asarray(values)), units, calendar=calendar)
    except (ValueError, TypeError) as err:
        raise DataError(f"cannot decode {where} with units {units!r} and calendar "
                        f"{calendar!r}: {err}") from err
    return [as_datetime(d) for d in np.ravel(decoded)]
