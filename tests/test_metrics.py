"""Ensemble metrics against references: properscoring, direct O(M^2) sums, closed forms, and
the behaviour of calibrated versus under-dispersed ensembles."""

from __future__ import annotations

import numpy as np
import properscoring
import pytest
import xarray as xr
from scipy import stats

from inference import metrics


def direct_crps(forecasts: np.ndarray, obs: np.ndarray, fair: bool) -> np.ndarray:
    """The textbook double sum, members on axis 0."""
    m = forecasts.shape[0]
    skill = np.abs(forecasts - obs).mean(axis=0)
    pairs = np.abs(forecasts[:, None] - forecasts[None, :]).sum(axis=(0, 1))
    return skill - pairs / (2 * m * (m - 1) if fair else 2 * m * m)


@pytest.mark.parametrize("m", [2, 5, 16])
def test_standard_crps_matches_properscoring(m):
    rng = np.random.default_rng(m)
    forecasts, obs = rng.normal(size=(m, 6, 7)), rng.normal(size=(6, 7))
    ours = metrics.crps_ensemble(forecasts, obs)
    reference = properscoring.crps_ensemble(obs, forecasts, axis=0)
    np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-6)
    moved = metrics.crps_ensemble(np.moveaxis(forecasts, 0, -1), obs, axis=-1)
    np.testing.assert_allclose(moved, reference, rtol=0, atol=1e-6)


@pytest.mark.parametrize("fair", [False, True])
def test_crps_matches_the_direct_double_sum(fair):
    rng = np.random.default_rng(1)
    forecasts, obs = rng.gamma(0.5, 2.0, size=(9, 50)), rng.gamma(0.5, 2.0, size=50)
    forecasts[:4, :10] = 0.0  # ties, like dry pixels
    np.testing.assert_allclose(metrics.crps_ensemble(forecasts, obs, fair=fair),
                               direct_crps(forecasts, obs, fair), atol=1e-12)


def test_sorted_pairwise_sum():
    x = np.sort(np.random.default_rng(2).normal(size=(3, 11)), axis=-1)
    direct = np.abs(x[:, :, None] - x[:, None, :]).sum(axis=(1, 2)) / 2
    np.testing.assert_allclose(metrics._pairwise_sum(x), direct, atol=1e-12)


def test_large_gaussian_ensemble_matches_the_closed_form():
    rng = np.random.default_rng(3)
    mu, sigma, m = 1.5, 2.0, 4000
    obs = np.array([-3.0, 0.0, 1.5, 2.5, 7.0])
    forecasts = rng.normal(mu, sigma, size=(m, obs.size))
    z = (obs - mu) / sigma
    exact = sigma * (z * (2 * stats.norm.cdf(z) - 1) + 2 * stats.norm.pdf(z) - 1 / np.sqrt(np.pi))
    for fair in (False, True):
        np.testing.assert_allclose(metrics.crps_ensemble(forecasts, obs, fair=fair), exact,
                                   atol=0.05 * sigma)
    np.testing.assert_allclose(exact, properscoring.crps_gaussian(obs, mu, sigma), atol=1e-12)


def test_one_member_crps_is_the_absolute_error():
    rng = np.random.default_rng(4)
    forecasts, obs = rng.normal(size=(1, 20)), rng.normal(size=20)
    for fair in (False, True):
        np.testing.assert_allclose(metrics.crps_ensemble(forecasts, obs, fair=fair),
                                   np.abs(forecasts[0] - obs))


def test_xarray_wrappers_use_dim_names():
    rng = np.random.default_rng(5)
    pred = xr.DataArray(rng.normal(size=(3, 4, 5)), dims=("y", "x", "ensemble"))
    truth = xr.DataArray(rng.normal(size=(4, 3)), dims=("x", "y"))
    out = metrics.crps(pred, truth)
    assert set(out.dims) == {"x", "y"}
    expected = properscoring.crps_ensemble(truth.transpose("y", "x").values, pred.values)
    np.testing.assert_allclose(out.transpose("y", "x").values, expected, atol=1e-12)
    spread = metrics.spread(pred)
    np.testing.assert_allclose(spread, np.sqrt(pred.values.var(axis=-1, ddof=1).mean()))
    np.testing.assert_allclose(metrics.rmse(pred.isel(ensemble=0), truth),
                               np.sqrt(((pred.values[..., 0] - truth.values.T) ** 2).mean()))


def ensemble(dispersion: float, m: int = 10, n: int = 40000, seed: int = 6):
    """Members and truth around a common mean; dispersion 1 is calibrated."""
    rng = np.random.default_rng(seed)
    mu = rng.normal(size=n)
    return mu + dispersion * rng.normal(size=(m, n)), mu + rng.normal(size=n)


def spread_skill(forecasts, obs):
    m = forecasts.shape[0]
    spread = np.sqrt(metrics.ensemble_variance(forecasts).mean())
    rmse = np.sqrt(((forecasts.mean(axis=0) - obs) ** 2).mean())
    return float(metrics.spread_skill_ratio(spread, rmse, m))


def test_spread_skill_separates_calibrated_from_under_dispersed():
    assert spread_skill(*ensemble(1.0)) == pytest.approx(1.0, abs=0.03)
    assert spread_skill(*ensemble(0.3)) < 0.5


def test_rank_histogram_is_flat_when_calibrated_and_u_shaped_when_not():
    m = 10
    flat = metrics.rank_histogram(metrics.rank_of_truth(*ensemble(1.0, m))[None], m)[0]
    assert flat.sum() == 40000 and flat.size == m + 1
    assert flat.max() / flat.min() < 1.2
    u_shape = metrics.rank_histogram(metrics.rank_of_truth(*ensemble(0.3, m))[None], m)[0]
    middle = u_shape[1:-1].mean()
    assert u_shape[0] > 4 * middle and u_shape[-1] > 4 * middle


def test_ties_are_spread_uniformly_and_reproducibly():
    forecasts, obs = np.zeros((4, 50000)), np.zeros(50000)  # all dry: every rank equally likely
    ranks = metrics.rank_of_truth(forecasts, obs)
    counts = metrics.rank_histogram(ranks[None], 4)[0]
    assert counts.min() > 0.95 * 10000 and counts.max() < 1.05 * 10000
    np.testing.assert_array_equal(ranks, metrics.rank_of_truth(forecasts, obs))


def test_rank_histogram_per_row_and_masked():
    ranks = np.array([[0, 1, 1, 2], [2, 2, 0, 0]])
    valid = np.array([[True, True, False, True], [True, True, True, True]])
    np.testing.assert_array_equal(metrics.rank_histogram(ranks, 2, valid), [[1, 1, 1], [2, 0, 2]])


def test_masked_mean_and_single_member_variance():
    values = np.array([[1.0, np.nan], [3.0, 5.0]])
    valid = np.isfinite(values)
    np.testing.assert_allclose(metrics.masked_mean(values, valid, (1,)), [1.0, 4.0])
    assert np.isnan(metrics.masked_mean(values, np.zeros_like(valid), (1,))).all()
    assert np.isnan(metrics.ensemble_variance(np.ones((1, 3)))).all()
