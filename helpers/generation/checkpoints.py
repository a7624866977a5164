"""Loading the networks a generation run needs, each checked against the dataset, the
generation options and the facts saved beside it, so a mismatch fails before any sampling."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from helpers.infrastructure.errors import CheckpointError
from helpers.models.facts import check_against_dataset, facts_path, read_facts
from helpers.models.networks import (
    load_module,
    load_regression_network,
    network_embedding_channels,
    resolve_checkpoint,
)


def load_regression_checkpoint(gen: Any, dataset: Any,
                               use_apex_gn: bool = False) -> torch.nn.Module:
    """The frozen regression UNet of ``gen.io.reg_ckpt_filename``, checked against the dataset
    (and against the facts saved with it, when there are any)."""
    option = "generation.io.reg_ckpt_filename"
    net = load_regression_network(gen.io.reg_ckpt_filename, tuple(dataset.image_shape()),
                                  len(dataset.input_channels()), len(dataset.output_channels()),
                                  option=option, use_apex_gn=use_apex_gn)
    path = resolve_checkpoint(gen.io.reg_ckpt_filename, option)
    facts = read_facts(path)
    if facts is not None:
        check_against_dataset(facts, dataset, f"regression checkpoint {str(path)!r}")
    return net


def conditioning_channels(n_in: int, n_out: int, hr_mean: bool, patched: bool,
                          n_embedding: int) -> int:
    """``img_in_channels`` of a diffusion network for this channel bookkeeping."""
    return n_in + n_embedding + (n_out if hr_mean else 0) + (n_in if patched else 0)


def load_diffusion_network(gen: Any, dataset: Any,
                           use_apex_gn: bool = False) -> tuple[torch.nn.Module, bool]:
    """The diffusion checkpoint of ``gen.io.res_ckpt_filename`` after checking it fits the
    dataset and ``gen.patching``, with whether it is conditioned on the regression mean."""
    option = "generation.io.res_ckpt_filename"
    net = load_module(gen.io.res_ckpt_filename, option, use_apex_gn)
    path = resolve_checkpoint(gen.io.res_ckpt_filename, option)
    where = f"diffusion checkpoint {str(path)!r}"
    image_shape = tuple(dataset.image_shape())
    n_in, n_out = len(dataset.input_channels()), len(dataset.output_channels())
    if not hasattr(net, "sigma_data") or not hasattr(net, "img_in_channels"):
        kind = "the regression UNet" if hasattr(net, "img_out_channels") else "a model"
        raise CheckpointError(
            f"{where} holds {kind} ({type(net).__name__}), not an EDM diffusion model; "
            "point generation.io.res_ckpt_filename at the diffusion run's checkpoints "
            "(checkpoints_diffusion or checkpoints_patched_diffusion)")
    resolution = net.img_resolution
    shape = (resolution, resolution) if isinstance(resolution, int) else tuple(resolution)
    if shape != image_shape:
        raise CheckpointError(f"{where} was trained on {shape} images, the dataset has "
                              f"{image_shape}")
    if net.img_out_channels != n_out:
        raise CheckpointError(f"{where} predicts {net.img_out_channels} channels, the "
                              f"dataset has {n_out} output channels")
    n_embedding = network_embedding_channels(net)
    hr_mean = _hr_mean_conditioning(gen, dataset, path, net, n_embedding, where)
    expected = conditioning_channels(n_in, n_out, hr_mean, gen.patching, n_embedding)
    if net.img_in_channels != expected:
        fits = [(hr, p) for hr in (True, False) for p in (False, True)
                if conditioning_channels(n_in, n_out, hr, p, n_embedding)
                == net.img_in_channels]
        hint = (f"it fits generation.hr_mean_conditioning={fits[0][0]} and "
                f"generation.patching={fits[0][1]}" if fits
                else "it was trained on a different dataset")
        raise CheckpointError(
            f"{where} expects {net.img_in_channels} conditioning channels but this dataset "
            f"and generation.hr_mean_conditioning={hr_mean}, "
            f"generation.patching={gen.patching} give {expected}; {hint}")
    return net, hr_mean


def _hr_mean_conditioning(gen: Any, dataset: Any, path: Path, net: torch.nn.Module,
                          n_embedding: int, where: str) -> bool:
    """From the facts saved with the checkpoint; a configured value must agree. Without
    facts (published checkpoints): the configured value, else what the channels fit."""
    configured = gen.hr_mean_conditioning
    facts = read_facts(path)
    if facts is not None:
        check_against_dataset(facts, dataset, where)
        trained = bool(facts["model"].get("hr_mean_conditioning", False))
        if trained and gen.inference_mode == "diffusion":
            raise CheckpointError(
                f"{where} was trained conditioned on the regression mean, which "
                "generation.inference_mode=diffusion does not compute; use "
                "inference_mode=all with the regression checkpoint")
        if configured is not None and configured != trained:
            raise CheckpointError(
                f"generation.hr_mean_conditioning={configured} contradicts {where}, which "
                f"was trained with hr_mean_conditioning={trained} (saved with it in "
                f"{facts_path(path).name}); remove the option or set it to {trained}")
        return trained
    if configured is not None:
        return configured
    n_in, n_out = len(dataset.input_channels()), len(dataset.output_channels())
    return conditioning_channels(n_in, n_out, True, gen.patching, n_embedding) == \
        net.img_in_channels
