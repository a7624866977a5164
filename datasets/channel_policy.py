"""Which channels are non-negative and which value transform each one is normalised with.

The converter decides this once, from its options and the variables' CF attributes, and writes
it into ``stats.json`` (see `datasets.stats_file`), so training and generation agree on it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from datasets.transforms import TRANSFORMS
from datasets.variable_metadata import is_precipitation
from helpers.infrastructure.errors import DataError

# The transform a non-negative output gets unless --transform says otherwise (see the README,
# "Positive variables", for the comparison that chose it).
DEFAULT_NONNEGATIVE_TRANSFORM = "log1p"


def parse_nonnegative(spec: str | Sequence[str] | None) -> tuple[bool, list[str]]:
    """``--nonnegative``: channel names, plus ``none`` to switch off recognising precipitation
    from CF attributes. Returns (recognise automatically, names)."""
    items = spec.split(",") if isinstance(spec, str) else list(spec or [])
    names = [str(i).strip() for i in items if str(i).strip()]
    return "none" not in names, [n for n in names if n != "none"]


def parse_transforms(spec: str | Sequence[str] | Mapping[str, str] | None) -> dict[str, str]:
    """``--transform tp=log1p,swe=sqrt`` to ``{"tp": "log1p", "swe": "sqrt"}``."""
    if isinstance(spec, Mapping):
        items = [f"{k}={v}" for k, v in spec.items()]
    else:
        items = spec.split(",") if isinstance(spec, str) else list(spec or [])
    out = {}
    for item in (str(i).strip() for i in items):
        if not item:
            continue
        name, sep, kind = item.partition("=")
        if not sep or kind.strip() not in TRANSFORMS:
            raise DataError(f"--transform: {item!r} is not NAME=KIND with KIND one of "
                            f"{list(TRANSFORMS)} (e.g. --transform tp=log1p)")
        out[name.strip()] = kind.strip()
    return out


def normalization_plan(channels: Mapping[str, Sequence[str]],
                       attributes: Mapping[str, Mapping[str, str]],
                       nonnegative: str | Sequence[str] | None,
                       transform: str | Sequence[str] | Mapping[str, str] | None,
                       ) -> dict[str, dict[str, dict[str, object]]]:
    """``{group: {channel: {"transform": ..., "nonnegative": ...}}}`` for the ``input`` and
    ``output`` channels; ``attributes[channel]`` are its CF attributes."""
    automatic, declared = parse_nonnegative(nonnegative)
    transforms = parse_transforms(transform)
    known = {n for names in channels.values() for n in names}
    for option, names in (("--nonnegative", declared), ("--transform", list(transforms))):
        unknown = sorted(set(names) - known)
        if unknown:
            raise DataError(f"{option}: no channel named {unknown}; the channels are "
                            f"{sorted(known)}")
    plan: dict[str, dict[str, dict[str, object]]] = {}
    for group, names in channels.items():
        plan[group] = {}
        for name in names:
            positive = name in declared or (automatic and is_precipitation(
                dict(attributes.get(name, {}))))
            default = DEFAULT_NONNEGATIVE_TRANSFORM if positive and group == "output" else "none"
            plan[group][name] = {"nonnegative": positive,
                                 "transform": transforms.get(name, default)}
    return plan
