"""Coarse-to-fine interpolation shared by the datapipes and the data converter."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def upsample_bilinear(coarse: np.ndarray | torch.Tensor, factor: int) -> np.ndarray | torch.Tensor:
    """Bilinearly upsample ``[..., h, w]`` by an integer ``factor`` to ``[..., h*f, w*f]``.

    Coarse values sit at cell centres (each covers ``factor x factor`` fine pixels). Fine pixels
    near the border lie outside the outermost coarse centres; there the field is extended
    linearly from the edge gradient, limited to the range of the coarse values of that field:
    a ramp keeps its slope up to the border unless that would leave the coarse range, and a
    non-negative field (precipitation) never gets negative values from extrapolation. Works on
    numpy or torch input and returns the same type.
    """
    if int(factor) != factor or factor < 1:
        raise ValueError(f"upsampling factor must be a positive integer, got {factor!r}")
    factor = int(factor)
    is_numpy = isinstance(coarse, np.ndarray)
    x = torch.from_numpy(np.ascontiguousarray(coarse)) if is_numpy else coarse
    if x.ndim < 2:
        raise ValueError(f"expected an array shaped [..., h, w], got {tuple(x.shape)}")
    lead = x.shape[:-2]
    h, w = x.shape[-2:]
    if factor == 1:
        return coarse
    x = x.reshape(-1, 1, h, w)
    if not torch.is_floating_point(x):
        x = x.float()
    x = _pad_linear(x)
    fine = F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)
    fine = fine[..., factor:-factor, factor:-factor].reshape(*lead, h * factor, w * factor)
    return fine.numpy() if is_numpy else fine


def pad_within_range(coarse: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """``[..., h, w]`` padded by one cell per side exactly as `upsample_bilinear` extends a
    field before interpolating (what an Earth2Studio export needs around a window)."""
    is_numpy = isinstance(coarse, np.ndarray)
    x = torch.from_numpy(np.ascontiguousarray(coarse)) if is_numpy else coarse
    lead, (h, w) = x.shape[:-2], x.shape[-2:]
    padded = _pad_linear(x.reshape(-1, 1, h, w)).reshape(*lead, h + 2, w + 2)
    return padded.numpy() if is_numpy else padded


def _pad_linear(x: torch.Tensor) -> torch.Tensor:
    """Pad the last two axes by one cell with linear extrapolation (``2*x[0] - x[1]``), clipped
    to each field's own range (min..max over the last two axes)."""
    low = x.amin(dim=(-2, -1), keepdim=True)
    high = x.amax(dim=(-2, -1), keepdim=True)
    if x.shape[-1] > 1:
        left = 2 * x[..., :, :1] - x[..., :, 1:2]
        right = 2 * x[..., :, -1:] - x[..., :, -2:-1]
    else:
        left = right = x
    x = torch.cat([left, x, right], dim=-1)
    if x.shape[-2] > 1:
        top = 2 * x[..., :1, :] - x[..., 1:2, :]
        bottom = 2 * x[..., -1:, :] - x[..., -2:-1, :]
    else:
        top = bottom = x
    return torch.minimum(torch.maximum(torch.cat([top, x, bottom], dim=-2), low), high)
