"""Missing target pixels (NaN) are left out of the regression and diffusion losses."""

from __future__ import annotations

import numpy as np
import torch
from physicsnemo.diffusion.metrics import RegressionLoss, ResidualLoss
from physicsnemo.diffusion.multi_diffusion import RandomPatching2D

from helpers.models.config import ModelConfig
from helpers.models.networks import PatchEmbeddingOrder, build_network
from helpers.training.masked_loss import masked_mean, per_sample_loss
from tests.training_fixtures import TINY_ARCH

SHAPE, N_IN, N_OUT = (16, 16), 3, 2


def networks(name: str):
    torch.manual_seed(0)
    model = ModelConfig(name=name, hr_mean_conditioning=name != "regression",
                        model_args=dict(TINY_ARCH))
    net = build_network(model, SHAPE, N_IN, N_OUT)
    regression = build_network(ModelConfig(name="regression", model_args=dict(TINY_ARCH)),
                               SHAPE, N_IN, N_OUT).eval().requires_grad_(False)
    return net, regression


def batch(missing: bool):
    generator = torch.Generator().manual_seed(1)
    img_clean = torch.randn(2, N_OUT, *SHAPE, generator=generator)
    img_lr = torch.randn(2, N_IN, *SHAPE, generator=generator)
    valid = torch.ones_like(img_clean, dtype=torch.bool)
    if missing:
        valid[0, :, :, :7] = False  # sample 0: a sea strip in every channel
        valid[1, 1, 10:, :] = False  # sample 1: one channel outside the radar
        img_clean = torch.where(valid, img_clean, torch.nan)
    return img_clean, img_lr, valid


def by_hand(loss_fn, net, regression, img_clean, img_lr, valid, seed, patching=None):
    """Missing pixels set to the regression mean, the plain per-pixel loss, then each sample's
    (patch's) mean over its valid pixels."""
    filled = torch.where(valid, img_clean, regression(torch.zeros_like(img_clean), img_lr))
    torch.manual_seed(seed)
    kwargs = {}
    if patching is not None:
        patching.reset_patch_indices()
        kwargs["patching"] = patching
        valid = patching.apply(input=valid.float()) > 0.5
    per_pixel = loss_fn(net=net, img_clean=filled, img_lr=img_lr, **kwargs)
    return [per_pixel[i][valid[i]].mean().item() if valid[i].any() else 0.0
            for i in range(per_pixel.shape[0])]


def test_masked_mean():
    values = torch.arange(8.0).reshape(2, 1, 2, 2)
    valid = torch.tensor([[[[1, 0], [0, 1]]], [[[0, 0], [0, 0]]]], dtype=torch.bool)
    np.testing.assert_allclose(masked_mean(values, valid).numpy(), [1.5, 0.0])


def test_regression_loss_is_the_mean_over_valid_pixels():
    net, _ = networks("regression")
    img_clean, img_lr, valid = batch(missing=True)
    loss = per_sample_loss(RegressionLoss(), net, img_clean, img_lr, masked=True)
    prediction = net(torch.zeros_like(img_clean), img_lr)
    squared = (prediction - torch.nan_to_num(img_clean)) ** 2
    expected = [squared[i][valid[i]].mean().item() for i in range(2)]
    np.testing.assert_allclose(loss.detach().numpy(), expected, rtol=1e-5)
    loss.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None)


def test_complete_targets_give_the_plain_loss():
    net, regression = networks("diffusion")
    img_clean, img_lr, _ = batch(missing=False)
    loss_fn = ResidualLoss(regression, hr_mean_conditioning=True)
    torch.manual_seed(3)
    plain = per_sample_loss(loss_fn, net, img_clean, img_lr, masked=False)
    torch.manual_seed(3)
    masked = per_sample_loss(loss_fn, net, img_clean, img_lr, masked=True)
    np.testing.assert_allclose(masked.detach().numpy(), plain.detach().numpy(), rtol=1e-5)


def test_diffusion_residual_is_zero_at_missing_pixels_and_they_carry_no_weight():
    net, regression = networks("diffusion")
    img_clean, img_lr, valid = batch(missing=True)
    loss_fn = ResidualLoss(regression, hr_mean_conditioning=True)
    torch.manual_seed(5)
    masked = per_sample_loss(loss_fn, net, img_clean, img_lr, masked=True)
    assert loss_fn.y_mean is None  # the hook is cleared after each call
    expected = by_hand(loss_fn, net, regression, img_clean, img_lr, valid, seed=5)
    np.testing.assert_allclose(masked.detach().numpy(), expected, rtol=1e-5)
    masked.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None)


def test_patches_take_their_part_of_the_mask():
    net, regression = networks("patched_diffusion")
    img_clean, img_lr, valid = batch(missing=True)
    loss_fn = ResidualLoss(regression, hr_mean_conditioning=True)
    patching = RandomPatching2D(img_shape=SHAPE, patch_shape=(8, 8), patch_num=3)
    wrapped = PatchEmbeddingOrder(net)
    torch.manual_seed(7)
    patching.reset_patch_indices()
    masked = per_sample_loss(loss_fn, wrapped, img_clean, img_lr, patching, masked=True)
    assert masked.shape == (6,) and torch.isfinite(masked).all()
    expected = by_hand(loss_fn, wrapped, regression, img_clean, img_lr, valid, seed=7,
                       patching=patching)
    np.testing.assert_allclose(masked.detach().numpy(), expected, rtol=1e-5)
