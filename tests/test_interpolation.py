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


def test_linear_ramp_reproduced_inside_and_clipped_to_its_range_at_the_edges():
    factor = 8
    yy, xx = np.meshgrid(np.arange(4.0), np.arange(6.0), indexing="ij")
    coarse = 3.0 * yy - 2.0 * xx + 1.0  # values at coarse cell centres
    fine = upsample_bilinear(coarse, factor)
    fy = (np.arange(4 * factor) + 0.5) / factor - 0.5
    fx = (np.arange(6 * factor) + 0.5) / factor - 0.5
    fyy, fxx = np.meshgrid(fy, fx, indexing="ij")
    ramp = 3.0 * fyy - 2.0 * fxx + 1.0
    inside = (fyy >= 0) & (fyy <= 3) & (fxx >= 0) & (fxx <= 5)
    np.testing.assert_allclose(fine[inside], ramp[inside], atol=1e-5)
    assert fine.min() >= coarse.min() - 1e-6 and fine.max() <= coarse.max() + 1e-6
    # Plain linear extrapolation would have left the coarse range at the corners.
    assert ramp.min() < coarse.min() - 1 and ramp.max() > coarse.max() + 1
    # West of the first centres, rows 0-2 extrapolate to 3, 6 and 9, inside the range -9..10:
    # there the slope continues to the border.
    west = (fxx < 0) & (fyy >= 0) & (fyy <= 2)
    assert west.sum() == (factor // 2) * (2 * factor)  # 4 border columns x 16 rows
    np.testing.assert_allclose(fine[west], ramp[west], atol=1e-5)


def test_extrapolation_never_leaves_the_coarse_range():
    rng = np.random.default_rng(3)
    rain = rng.gamma(0.3, 2.0, size=(20, 6, 7))  # non-negative, mostly near zero
    rain[:, :, 0] = 0.0  # dry along the western edge, wet next to it
    rain[:, :, 1] += 5.0
    fine = upsample_bilinear(rain, 8)
    assert fine.min() >= 0.0
    low = rain.min(axis=(1, 2))[:, None, None]
    high = rain.max(axis=(1, 2))[:, None, None]
    assert (fine >= low - 1e-5).all() and (fine <= high + 1e-5).all()


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


@pytest.mark.parametrize("descending_lat, lon_0_360", [(True, True), (False, False)])
def test_bilinear_regridder_equals_xarray_interp(descending_lat, lon_0_360):
    """The precomputed weights give what xarray's linear interp gives on a curvilinear grid,
    whichever way the coarse latitudes run and however the longitudes are written."""
    import xarray as xr

    from datasets.grid_alignment import BilinearRegridder

    rng = np.random.default_rng(3)
    src_lat = np.arange(30.0, 45.0, 0.25)[::-1 if descending_lat else 1]
    src_lon = np.arange(250.0, 270.0, 0.25) - (0 if lon_0_360 else 360)
    yy, xx = np.meshgrid(np.arange(40), np.arange(48), indexing="ij")
    lat = 35 + 0.027 * yy + 0.003 * xx
    lon = -100 + 0.03 * xx - 0.004 * yy  # written -180..180 whatever the coarse grid uses
    field = rng.normal(size=(3, src_lat.size, src_lon.size))
    regridder = BilinearRegridder(src_lat, src_lon, lat, lon)
    ours = regridder(field[:, regridder.box[0], regridder.box[1]])
    coarse = xr.DataArray(field, dims=("c", "lat", "lon"), coords={"lat": src_lat, "lon": src_lon})
    wanted_lon = lon % 360 if lon_0_360 else lon
    reference = coarse.interp(lat=xr.DataArray(lat, dims=("y", "x")),
                              lon=xr.DataArray(wanted_lon, dims=("y", "x")),
                              method="linear").values
    assert ours.shape == (3, 40, 48)
    np.testing.assert_allclose(ours, reference, rtol=1e-5, atol=1e-5)
