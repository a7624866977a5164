"""What a trained model needs at generation, saved next to its checkpoint.

Each ``<ModelClass>.0.<samples>.mdlus`` written by training gets ``<ModelClass>.0.<samples>.json``
beside it: the model config (``hr_mean_conditioning``, EDM constants, architecture), the patch
shape it was trained on, the input and output channels with their units, the image shape and a
fingerprint of the normalisation statistics. `generate.py` takes ``hr_mean_conditioning`` from
there instead of asking again, refuses a value that contradicts it, checks the dataset's
channels against the model's and warns when the statistics differ from training's. Published
checkpoints carry no such file; generation then works from the config and the channel counts.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from helpers.infrastructure.errors import CheckpointError

logger = logging.getLogger(__name__)
FORMAT = "corrdiff-model-facts/1"


def facts_path(checkpoint: str | Path) -> Path:
    """``X.0.123.mdlus`` -> ``X.0.123.json``."""
    return Path(checkpoint).with_suffix(".json")


def channel_facts(channels) -> list[dict[str, str]]:
    return [{"label": c.label, "units": c.attributes.get("units", "")} for c in channels]


def statistics_fingerprint(dataset: Any) -> str | None:
    """A short hash of the normalisation (mean, std, transform per channel), or None for a
    dataset that normalises some other way."""
    parts = []
    for name in ("input_normalizer", "output_normalizer"):
        normalizer = getattr(dataset, name, None)
        if normalizer is None:
            return None
        parts.append([[round(float(m), 6), round(float(s), 6), t] for m, s, t in zip(
            normalizer.mean, normalizer.std, normalizer.transforms, strict=True)])
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]


def write_facts(checkpoint: Path, facts: dict[str, Any]) -> Path:
    """Write the facts of ``checkpoint`` atomically (temporary name, then rename)."""
    from helpers.infrastructure.atomic_write import write_text

    return write_text(facts_path(checkpoint), json.dumps({"format": FORMAT, **facts}, indent=1))


def read_facts(checkpoint: str | Path) -> dict[str, Any] | None:
    """The facts saved with ``checkpoint``, or None when it has none (published checkpoints)."""
    path = facts_path(checkpoint)
    if not path.is_file():
        return None
    try:
        facts = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{str(path)!r}, the facts saved with the checkpoint, cannot be "
                              f"read ({err}); delete it to generate from the config alone") from err
    if not isinstance(facts, dict) or facts.get("format") != FORMAT:
        raise CheckpointError(f"{str(path)!r} is not a facts file written by train.py; delete "
                              "it to generate from the config alone")
    return facts


def check_against_dataset(facts: dict[str, Any], dataset: Any, where: str) -> None:
    """The dataset must give the model's channels in the model's order (an error naming the
    option to set); other normalisation statistics than training's only warn."""
    for group, channels in (("output", dataset.output_channels()),
                            ("input", dataset.input_channels())):
        trained = [c["label"] for c in facts.get(f"{group}_channels", [])]
        labels = [c.label for c in channels]
        if trained and trained != labels:
            raise CheckpointError(
                f"{where} was trained with {group} channels {trained}, the dataset gives "
                f"{labels}; set dataset.{group}_variables to the model's channels in its order")
    if facts.get("statistics") not in (None, statistics_fingerprint(dataset)):
        logger.warning("%s was trained with other normalisation statistics than "
                       "dataset.stats_path gives: use the stats.json of training", where)
