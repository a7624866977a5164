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
                    img_lr: torch.Tensor, patching=None, masked: bool = False,
                    mean_hr: torch.Tensor | None = None,
                    lead_time_label: torch.Tensor | None = None) -> torch.Tensor:
    """The loss of each sample (each patch, with patching), averaged over its pixels; with
    ``masked``, NaN targets are missing pixels and only valid pixels count. For diffusion,
    ``mean_hr`` is the frozen regression output when it is already known (cached); else it is
    computed here, once for all patches. ``lead_time_label`` goes to lead-time-aware nets.

    A cross-entropy loss (physicsnemo's ``RegressionLossCE``) returns the squared error of the
    continuous channels and one cross-entropy channel for the categories; a pixel's
    cross-entropy counts where all its category channels are valid."""
    kwargs = {} if patching is None else {"patching": patching}
    if lead_time_label is not None:
        kwargs["lead_time_label"] = lead_time_label
    valid = torch.isfinite(img_clean) if masked else None
    regression = getattr(loss_fn, "regression_net", None)
    if regression is None:
        filled = img_clean if not masked else torch.where(valid, img_clean,
                                                          torch.zeros_like(img_clean))
        per_pixel = loss_fn(net=net, img_clean=filled, img_lr=img_lr, **kwargs)
        categories = getattr(loss_fn, "prob_channels", None)
        if masked and categories:
            continuous = [c for c in range(img_clean.shape[1]) if c not in categories]
            valid = torch.cat([valid[:, continuous],
                               valid[:, categories].all(dim=1, keepdim=True)], dim=1)
    else:
        if mean_hr is None:
            mean_hr = regression_mean(regression, img_lr, img_clean.shape, lead_time_label)
        filled = img_clean if not masked else torch.where(valid, img_clean,
                                                          mean_hr.to(img_clean.dtype))
        loss_fn.y_mean = mean_hr
        try:
            per_pixel = loss_fn(net=net, img_clean=filled, img_lr=img_lr,
                                use_patch_grad_acc=True, **kwargs)
        finally:
            loss_fn.y_mean = None
    if not masked:
        return per_pixel.float().mean(dim=(1, 2, 3))
    if patching is not None:
        valid = patching.apply(input=valid.to(img_clean.dtype)) > 0.5
    return masked_mean(per_pixel.float(), valid)


def regression_mean(regression: torch.nn.Module, img_lr: torch.Tensor,
                    target_shape: torch.Size | tuple[int, ...],
                    lead_time_label: torch.Tensor | None = None) -> torch.Tensor:
    """The frozen regression network's prediction for ``img_lr`` (as physicsnemo's residual
    loss computes it: from a zero state)."""
    extra = {} if lead_time_label is None else {"lead_time_label": lead_time_label}
    with torch.no_grad():
        zeros = torch.zeros((img_lr.shape[0], *target_shape[1:]), device=img_lr.device,
                            dtype=img_lr.dtype)
        return regression(zeros, img_lr, augment_labels=None, **extra)
