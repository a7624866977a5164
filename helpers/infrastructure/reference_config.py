"""Configs written for the reference CorrDiff example: its keys, translated or refused.

Users arrive with the reference workflow's configs and habits. A key of the reference that has
an equivalent here is moved to our key with one warning naming it (it wins over our key's value,
since the user wrote it); a key with no equivalent
either has no effect at its default (dropped with a warning) or stops with a message saying
what to use instead. Runs on the plain config dict before validation.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from helpers.infrastructure.errors import ConfigError

logger = logging.getLogger("corrdiff")
_DROP = object()

# reference key -> (our key, how the value translates; _DROP: nothing to set)
RENAMED: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "generation.perf.use_fp16": ("generation.perf.fp_optimizations",
                                 lambda on: "amp-fp16" if on else _DROP),
    "generation.perf.use_torch_compile": ("generation.perf.torch_compile", bool),
    "training.hp.P_mean": ("model.P_mean", float),
    "training.hp.P_std": ("model.P_std", float),
    "training.hp.sigma_data": ("model.sigma_data", float),
}
PREFIX_MOVED = {"sampler": "generation.sampler"}  # the reference's top-level sampler section
# reference key -> (the value at which it changes nothing here, what to do otherwise)
NO_EFFECT: dict[str, tuple[Any, str]] = {
    "generation.perf.num_writer_workers": (None, ""),
    "generation.perf.io_synchronous": (None, ""),
    "generation.perf.profile_mode": (False, "profile with nsys or torch.profiler around "
                                            "generate.py instead"),
    "training.perf.profile_mode": (False, "profile with nsys or torch.profiler around train.py "
                                          "instead"),
}


def _pop(config: dict, dotted: str) -> tuple[bool, Any]:
    *parents, leaf = dotted.split(".")
    node = config
    for key in parents:
        node = node.get(key) if isinstance(node, dict) else None
        if node is None:
            return False, None
    if not isinstance(node, dict) or leaf not in node:
        return False, None
    return True, node.pop(leaf)


def _set(config: dict, dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = config
    for key in parents:
        node = node.setdefault(key, {})
    node[leaf] = value


def _get(config: dict, dotted: str) -> tuple[bool, Any]:
    node: Any = config
    for key in dotted.split("."):
        if not isinstance(node, dict) or key not in node:
            return False, None
        node = node[key]
    return True, node


def translate_reference_keys(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` with the reference workflow's keys moved to ours (changed in place)."""
    if "wandb" in config:
        raise ConfigError(
            "wandb.* is a key of the reference workflow with no equivalent here: runs log to "
            "TensorBoard under the run directory (tensorboard --logdir <checkpoint_dir>); remove "
            "the wandb section (or ~wandb on the command line)")
    for old, new in PREFIX_MOVED.items():
        if isinstance(config.get(old), dict):
            section = config.pop(old)
            for key, value in section.items():
                _warn_renamed(f"{old}.{key}", f"{new}.{key}")
                _set(config, f"{new}.{key}", value)
    for old, (new, translate) in RENAMED.items():
        found, value = _pop(config, old)
        if not found:
            continue
        translated = translate(value)
        already, current = _get(config, new)
        replaced = already and translated is not _DROP and current != translated
        _warn_renamed(old, new, f" (replacing {new}={current!r})" if replaced else "")
        if translated is not _DROP:
            _set(config, new, translated)
    for key, (harmless, advice) in NO_EFFECT.items():
        found, value = _pop(config, key)
        if not found:
            continue
        if harmless is not None and value != harmless:
            raise ConfigError(f"{key}={value!r} is a reference workflow option with no "
                              f"equivalent here: {advice}; remove it")
        logger.warning("%s (a reference workflow option) has no effect here; ignored", key)
    return config


def _warn_renamed(old: str, new: str, note: str = "") -> None:
    logger.warning("%s is the reference workflow's key; this project reads it as %s%s (use "
                   "that name to silence this warning)", old, new, note)
