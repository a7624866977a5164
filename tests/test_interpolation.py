import numpy as np
import pytest
import torch
from scipy.interpolate import RegularGridInterpolator

from datasets.interpolation import upsample_bilinear


def _reference(coarse: np.ndarray, factor: int) -> tuple[np.ndarray, np.ndarray]:
    """Independent bilinear reference at fine-pixel centres, plus a mask of interior points
    (those inside the hull of coarse cell centres, where no extrapolation happens)."""
    h, w = coarse.shape
    centres_y, centres_x = np.arange(h), np.arange(w)
    fine = (np.arange(h * factor) + 0.5) / factor - 0.5
    fine_x = (np.arange(w * factor) + 0.5) / factor - 0.5
    yy, xx = np.meshgrid(fine, fine_x, indexing="ij")
    interior = (yy >= 0) & (yy <= h - 1) & (xx >= 0) & (xx <= w - 1)
    interp = RegularGridInterpolator((centres_y, centres_x), coarse, bounds_error=False)
    return interp(np.stack([yy, xx], -1)), interior


@pytest.mark.parametrize("factor", [2, 4, 8])
def test_matches_independent_bilinear_on_interior(factor):
    coarse = np.random.default_rng(factor).normal(size=(5, 7))
    fine = upsample_bilinear(coarse, factor)
    reference, interior = _reference(coarse, factor)
    assert fine.shape == (5 * factor, 7 * factor)
    assert interior.sum() > 0.5 * interior.size
    np.testing.assert_allclose(fine[interior], reference[interior], atol=1e-5)


def test_linear_ramp_reproduced_exactly_including_edges():
    factor = 8
    yy, xx = np.meshgrid(np.arange(4.0), np.arange(6.0), indexing="ij")
    coarse = 3.0 * yy - 2.0 * xx + 1.0  # values at coarse cell centres
    fine = upsample_bilinear(coarse, factor)
    fy = (np.arange(4 * factor) + 0.5) / factor - 0.5
    fx = (np.arange(6 * factor) + 0.5) / factor - 0.5
    fyy, fxx = np.meshgrid(fy, fx, indexing="ij")
    np.testing.assert_allclose(fine, 3.0 * fyy - 2.0 * fxx + 1.0, atol=1e-5)


def test_block_mean_preserved_for_linear_fields_and_batches():
    coarse = np.random.default_rng(0).normal(size=(2, 3, 4, 4)).astype(np.float32)
    fine = upsample_bilinear(coarse, 4)
    assert fine.shape == (2, 3, 16, 16) and fine.dtype == np.float32
    torch_fine = upsample_bilinear(torch.from_numpy(coarse), 4)
    assert isinstance(torch_fine, torch.Tensor)
    np.testing.assert_allclose(torch_fine.numpy(), fine, atol=1e-6)


def test_rejects_bad_factor():
    with pytest.raises(ValueError, match="positive integer"):
        upsample_bilinear(np.zeros((2, 2)), 2.5)
