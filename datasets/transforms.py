"""Per-variable value transforms applied before z-scoring, and non-negativity.

Heavy-tailed, non-negative variables (precipitation) are hard for a network trained with a
squared error on z-scores: a few storms dominate the loss and the residual distribution is far
from Gaussian. ``log1p`` or ``sqrt`` compress the tail; the statistics in ``stats.json`` are then
those of the transformed values, and de-normalising applies the inverse. Variables declared
non-negative are clamped at zero after the inverse (in physical units), so no output, member or
ensemble mean is ever negative whatever the network predicts.
"""

from __future__ import annotations

import numpy as np
import torch

from helpers.infrastructure.errors import DataError

TRANSFORMS = ("none", "log1p", "sqrt")
ArrayLike = np.ndarray | torch.Tensor


def check_transform(name: str, where: str = "transform") -> str:
    if name not in TRANSFORMS:
        raise DataError(f"{where}: unknown transform {name!r}; choose one of {list(TRANSFORMS)}")
    return name


def _lib(x: ArrayLike):
    return torch if isinstance(x, torch.Tensor) else np


def forward(name: str, x: ArrayLike) -> ArrayLike:
    """Physical values to transformed ones (negative inputs are treated as 0 for log1p/sqrt)."""
    if name == "none":
        return x
    x = clamp_nonnegative(x)
    lib = _lib(x)
    return lib.log1p(x) if name == "log1p" else lib.sqrt(x)


def inverse(name: str, y: ArrayLike) -> ArrayLike:
    """Transformed values back to physical ones (before any non-negativity clamp)."""
    if name == "none":
        return y
    if name == "log1p":
        return _lib(y).expm1(y)
    positive = clamp_nonnegative(y)
    return positive * positive


def clamp_nonnegative(x: ArrayLike) -> ArrayLike:
    """``max(x, 0)``, keeping NaN (missing) values NaN."""
    return torch.clamp(x, min=0) if isinstance(x, torch.Tensor) else np.clip(x, 0, None)
