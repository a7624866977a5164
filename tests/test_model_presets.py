"""The model presets are the published CorrDiff architectures: a checkpoint saved with the
legacy classes the published models use (UNet, EDMPrecondSR), built the way the reference
workflow builds them, loads into a network built from our preset with strict=True."""

from __future__ import annotations

import warnings

import pytest
import torch
import yaml

from helpers.models.config import ModelConfig
from helpers.models.networks import build_network, load_module
from tests.conftest import ROOT

N_IN, N_OUT, SHAPE = 12, 4, (64, 64)
# The reference's model_args: model (regression/diffusion) + model_size (normal/mini); every
# other argument is the class default, as in its train.py.
REFERENCE = {
    "normal": {"model_channels": 128, "channel_mult": [1, 2, 2, 2, 2], "attn_resolutions": [28]},
    "mini": {"model_channels": 64, "channel_mult": [1, 2, 2], "attn_resolutions": [16]},
}
KIND = {"regression": {"N_grid_channels": 4, "embedding_type": "zero"},
        "diffusion": {"gridtype": "sinusoidal", "N_grid_channels": 4, "embedding_type": "zero"}}
PRESETS = {  # preset file: (reference model, reference size, hr_mean_conditioning)
    "corrdiff_regression": ("regression", "normal", False),
    "corrdiff_diffusion": ("diffusion", "normal", False),  # the Taiwan recipe
    "corrdiff_regression_mini": ("regression", "mini", False),
    "corrdiff_diffusion_mini": ("diffusion", "mini", True),
}


def legacy_network(kind: str, size: str, hr_mean: bool) -> torch.nn.Module:
    from physicsnemo.diffusion.preconditioners import EDMPrecondSR
    from physicsnemo.models.diffusion_unets import UNet

    args = {**KIND[kind], **REFERENCE[size]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if kind == "regression":
            return UNet(img_resolution=list(SHAPE), img_in_channels=N_IN + 4,
                        img_out_channels=N_OUT, **args)
        return EDMPrecondSR(img_resolution=list(SHAPE), img_channels=N_OUT,
                            img_in_channels=N_IN + 4 + (N_OUT if hr_mean else 0),
                            img_out_channels=N_OUT, scale_cond_input=False, **args)


def count(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_published_checkpoint_loads_strictly_into_the_preset(preset, tmp_path):
    kind, size, hr_mean = PRESETS[preset]
    model = ModelConfig(**yaml.safe_load((ROOT / "conf/model" / f"{preset}.yaml").read_text()))
    assert model.hr_mean_conditioning == hr_mean
    ours = build_network(model, SHAPE, N_IN, N_OUT)
    published = legacy_network(kind, size, hr_mean)
    assert count(ours) == count(published)
    if size == "mini":  # through a .mdlus file; the full-size ones (300 MB) in memory
        path = tmp_path / f"{type(published).__name__}.0.2000000.mdlus"
        published.save(str(path))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            published = load_module(path, "test")
    ours.load_state_dict(published.state_dict(), strict=True)
    for name, tensor in published.state_dict().items():
        torch.testing.assert_close(ours.state_dict()[name], tensor, rtol=0, atol=0)
