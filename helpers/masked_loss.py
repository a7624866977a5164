"""Per-sample losses that leave missing target pixels out (land-only grids, radar coverage).

physicsnemo's ``RegressionLoss`` and ``ResidualLoss`` return a per-pixel loss; a NaN target
would make it NaN everywhere, and through the convolutions, the network's input too. So the
target is filled before the loss sees it, and the per-pixel loss is averaged over the valid
pixels only (a masked mean, not a mean over zero-filled targets):

- regression: missing pixels get the value 0 (the normalised mean); they carry no weight;
- diffusion: missing pixels get the regression mean, so the residual there is exactly 0 (the
  network sees nothing that is not in the data), and they carry no weight. The regression
  mean is computed once and handed to ``ResidualLoss`` through its ``y_mean`` (the hook its
  patch-accumulation mode uses), so the regression network still runs once per batch.

With patches, the validity mask is cut with the same ``RandomPatching2D`` indices as the loss.
"""

from __future__ import annotations

import torch


def masked_mean(per_pixel: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean over (C, H, W) of each sample's valid pixels; 0 for a sample with none."""
    valid = valid.to(per_pixel.dtype)
    count = valid.sum(dim=(1, 2, 3))
    return (per_pixel * valid).sum(dim=(1, 2, 3)) / count.clamp(min=1)


def per_sample_loss(loss_fn, net: torch.nn.Module, img_clean: torch.Tensor,
                    img_lr: torch.Tensor, patching=None, masked: bool = False) -> torch.Tensor:
    """The loss of each sample (each patch, with patching), averaged over its pixels; with
    ``masked``, NaN targets are missing pixels and only valid pixels count."""
    kwargs = {} if patching is None else {"patching": patching}
    if not masked:
        per_pixel = loss_fn(net=net, img_clean=img_clean, img_lr=img_lr, **kwargs)
        return per_pixel.float().mean(dim=(1, 2, 3))
    valid = torch.isfinite(img_clean)
    regression = getattr(loss_fn, "regression_net", None)
    if regression is None:
        filled = torch.where(valid, img_clean, torch.zeros_like(img_clean))
        per_pixel = loss_fn(net=net, img_clean=filled, img_lr=img_lr, **kwargs)
    else:
        with torch.no_grad():
            mean_hr = regression(torch.zeros_like(img_clean), img_lr, augment_labels=None)
        filled = torch.where(valid, img_clean, mean_hr.to(img_clean.dtype))
        loss_fn.y_mean = mean_hr
        try:
            per_pixel = loss_fn(net=net, img_clean=filled, img_lr=img_lr,
                                use_patch_grad_acc=True, **kwargs)
        finally:
            loss_fn.y_mean = None
        if patching is not None:
            valid = patching.apply(input=valid.to(img_clean.dtype)) > 0.5
    return masked_mean(per_pixel.float(), valid)
