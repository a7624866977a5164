"""``stats.json``: reading per-variable normalisation statistics and what they imply, computing
them while data stream by (`RunningMoments`), and writing the file.

Format (the HRRR-Mini one, extended)::

    {"input":     {"2t": {"mean": 281.2, "std": 6.1, "units": "K"}, ...},
     "output":    {"tp": {"mean": 0.08, "std": 0.21, "transform": "log1p", "nonnegative": true,
                          "missing_values": true, "units": "mm h-1"}, ...},
     "invariant": {"elev_mean": {"mean": 512.0, "std": 620.0}, ...}}

Only ``mean`` and ``std`` are required. ``transform`` (``none``, ``log1p``, ``sqrt``) says the
statistics are of transformed values; ``nonnegative`` clamps de-normalized values at 0 (when
absent, precipitation is recognised from the CF attributes); ``missing_values`` says the data
have missing (NaN) pixels on purpose, e.g. outside a land or radar mask.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from datasets.transforms import TRANSFORMS
from datasets.variable_metadata import CF_KEYS, channel_attributes, is_precipitation
from helpers.infrastructure.atomic_write import write_text
from helpers.infrastructure.errors import DataError


@dataclass(frozen=True)
class ChannelStats:
    """Normalisation of one channel, with the attributes that describe it."""

    mean: float
    std: float
    transform: str = "none"
    nonnegative: bool = False
    missing_values: bool = False
    attributes: dict[str, str] = field(default_factory=dict)


def read_stats(path: str | Path, option: str = "dataset.stats_path",
               if_missing: str | None = None) -> dict:
    """The parsed file, with a one-line error naming the problem for a missing or bad file
    (``if_missing``: the advice when it does not exist)."""
    path = Path(path)
    if not path.is_file():
        advice = if_missing or f"set {option}=<path to the file>"
        raise DataError(f"{option} {str(path)!r} does not exist; {advice}")
    try:
        stats = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise DataError(f"{str(path)!r} is not valid JSON: {err.msg} at line {err.lineno}, "
                        f"column {err.colno}; fix that line (or rebuild the file with "
                        "python -m datasets.convert)") from err
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{str(path)!r} cannot be read: {err}") from err
    if not isinstance(stats, dict):
        raise DataError(f"{str(path)!r}: the top level must be an object with 'input', 'output' "
                        f"and 'invariant' sections, not a {type(stats).__name__}")
    return stats


def channel_stats(stats: Mapping, group: str, names: Sequence[str], path: object,
                  stored_attributes: Mapping[str, Mapping[str, str]] | None = None
                  ) -> list[ChannelStats]:
    """The statistics of ``names`` in ``group``; ``stored_attributes`` are the CF attributes
    the data file carries (they win over those in the statistics and the built-in table)."""
    table = stats.get(group, {})
    if not isinstance(table, Mapping):
        raise DataError(f"{path!r}: section {group!r} must be an object of variables")
    missing = [v for v in names if v not in table]
    if missing:
        raise DataError(
            f"{path!r} has no statistics for {group} variable(s) {missing}; add "
            f"{{\"mean\": ..., \"std\": ...}} entries under \"{group}\" (or rebuild it with "
            "python -m datasets.convert)"
        )
    out = []
    for name in names:
        entry = table[name]
        where = f"{path!r}: {group}.{name}"
        if not isinstance(entry, Mapping):
            raise DataError(f"{where} must be an object with numeric 'mean' and 'std'")
        mean, std = _number(entry, "mean", where), _number(entry, "std", where)
        transform = str(entry.get("transform", "none"))
        if transform not in TRANSFORMS:
            raise DataError(f"{where}: unknown transform {transform!r}; use one of "
                            f"{list(TRANSFORMS)}")
        stored = {k: str(entry[k]) for k in CF_KEYS if k in entry}
        stored.update((stored_attributes or {}).get(name, {}))
        attrs = channel_attributes(name, stored=stored)
        nonnegative = entry.get("nonnegative")
        if nonnegative is None:
            nonnegative = is_precipitation(attrs)
        out.append(ChannelStats(mean, std, transform, bool(nonnegative),
                                bool(entry.get("missing_values", False)), attrs))
    return out


def _number(entry: Mapping, key: str, where: str) -> float:
    value = entry.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise DataError(f"{where}: {key!r} must be a finite number, got {value!r}")
    return float(value)


class RunningMoments:
    """Streaming mean and standard deviation (Chan et al. parallel update) so statistics of a
    file larger than memory can be computed while it is written."""

    def __init__(self) -> None:
        self.count = 0
        self.missing = 0
        self.mean = 0.0
        self.m2 = 0.0

    def update(self, values: np.ndarray) -> None:
        """Add the finite values of ``values``; NaN/Inf are counted as missing, not averaged."""
        values = np.asarray(values, dtype=np.float64).ravel()
        finite = np.isfinite(values)
        if not finite.all():
            self.missing += int(values.size - finite.sum())
            values = values[finite]
        n = values.size
        if n == 0:
            return
        batch_mean = float(values.mean())
        batch_m2 = float(((values - batch_mean) ** 2).sum())
        delta = batch_mean - self.mean
        total = self.count + n
        self.mean += delta * n / total
        self.m2 += batch_m2 + delta**2 * self.count * n / total
        self.count = total

    @property
    def std(self) -> float:
        return float(np.sqrt(self.m2 / self.count)) if self.count else float("nan")

    def entry(self) -> dict:
        """The ``stats.json`` entry: mean, std, and ``missing_values`` when some were."""
        entry: dict = {"mean": self.mean, "std": self.std}
        if self.missing:
            entry["missing_values"] = True
        return entry


def write_stats(path: str | os.PathLike, stats: Mapping) -> None:
    """Write ``stats.json`` atomically (temporary name, then rename)."""
    write_text(path, json.dumps(stats, indent=2) + "\n")


def field_entry(values: np.ndarray) -> dict[str, float]:
    """``{"mean", "std"}`` of the finite values of one whole field (a static invariant)."""
    valid = np.asarray(values, dtype=np.float64)
    valid = valid[np.isfinite(valid)]
    return {"mean": float(valid.mean()), "std": float(valid.std())}
