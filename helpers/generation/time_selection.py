"""Which of a dataset's samples to generate for: ``generation.times`` or ``times_range``."""

from __future__ import annotations

import datetime
import re
from collections.abc import Sequence
from typing import Any

import pandas as pd

from helpers.infrastructure.errors import ConfigError

FORECAST_KEY = re.compile(r"^\d{10}f\d{2,3}$")


def parse_time(text: Any, option: str) -> datetime.datetime:
    """An ISO 8601 time ("2021-02-03T06:00", "2021-02-03 06:00", trailing Z allowed), naive."""
    try:
        stamp = pd.Timestamp(str(text))
    except ValueError as err:
        raise ConfigError(f"{option}: {text!r} is not an ISO 8601 time such as "
                          "'2021-02-03T06:00'") from err
    if stamp.tzinfo is not None:
        stamp = stamp.tz_convert("UTC").tz_localize(None)
    return stamp.to_pydatetime()


def parse_step(value: Any) -> datetime.timedelta:
    """A step as hours (a number) or a duration string ("3h", "30min", "1D")."""
    try:
        step = pd.Timedelta(hours=float(value)) if isinstance(value, int | float) else (
            pd.Timedelta(str(value)))
    except ValueError as err:
        raise ConfigError(f"generation.times_range step {value!r} is not a duration such as "
                          "'3h' or 6") from err
    if step <= pd.Timedelta(0):
        raise ConfigError(f"generation.times_range step {value!r} must be positive")
    return step.to_pytimedelta()


def select_time_indices(available: Sequence[datetime.datetime], times: Sequence[str] | None,
                        times_range: Sequence[Any] | None,
                        keys: Sequence[str] | None = None) -> list[int]:
    """Sample indices for the requested times, in request order (all samples if neither).

    A time held by several samples (windows at different places, forecasts of several lead
    times) selects all of them, in dataset order; a time asked for twice is generated once.
    Datasets with sample ``keys`` (GEFS-HRRR's ``YYYYMMDDHHfFF``: init and lead) also take a
    key, which selects that one sample."""
    if times is None and times_range is None:
        return list(range(len(available)))
    for t in times or []:
        if FORECAST_KEY.match(str(t)) and str(t) not in (keys or ()):
            held = (f"its keys run {keys[0]} .. {keys[-1]}" if keys else
                    "it has no such keys (give ISO 8601 times)")
            raise ConfigError(f"generation.times: {t!r} (init and lead, YYYYMMDDHHfFF) is not a "
                              f"sample of the dataset; {held}")
    if times is not None and keys is not None and any(str(t) in keys for t in times):
        position = {k: i for i, k in enumerate(keys)}
        chosen: list[int] = []
        for t in times:
            chosen += [position[str(t)]] if str(t) in position else select_time_indices(
                available, [t], None)
        return list(dict.fromkeys(chosen))
    if times is not None:
        wanted = [parse_time(t, "generation.times") for t in times]
    else:
        start = parse_time(times_range[0], "generation.times_range start")
        end = parse_time(times_range[1], "generation.times_range end")
        step = parse_step(times_range[2])
        if end < start:
            raise ConfigError(f"generation.times_range ends ({end}) before it starts ({start})")
        wanted = [t.to_pydatetime() for t in pd.date_range(start, end, freq=step)]
    by_time: dict[datetime.datetime, list[int]] = {}
    for i, t in enumerate(available):
        by_time.setdefault(t, []).append(i)
    missing = [t for t in wanted if t not in by_time]
    if missing:
        raise ConfigError(_not_available(missing[0], len(missing), sorted(by_time)))
    return [i for t in dict.fromkeys(wanted) for i in by_time[t]]


def _not_available(time: datetime.datetime, count: int,
                   available: list[datetime.datetime]) -> str:
    nearest = sorted(available, key=lambda t: abs(t - time))[:3]
    listed = ", ".join(f"{t:%Y-%m-%dT%H:%M}" for t in sorted(nearest))
    span = (f"{available[0]:%Y-%m-%dT%H:%M} .. {available[-1]:%Y-%m-%dT%H:%M}"
            if available else "none")
    return (f"requested time {time:%Y-%m-%dT%H:%M} is not in the dataset ({count} requested "
            f"time(s) missing); nearest available: {listed}; the dataset spans {span}")
