"""Ensemble verification metrics: per point on numpy arrays, thin xarray wrappers by dim name.

All numpy functions take the member axis explicitly (``axis``, default 0) and compute in
float64. The CRPS pairwise term uses sorting, O(M log M) per point instead of O(M^2):
for sorted members x_(0) <= ... <= x_(M-1), sum_{i<j} |x_i - x_j| = sum_i (2i - M + 1) x_(i).
"""

from __future__ import annotations

import numpy as np
import xarray as xr


def _pairwise_sum(sorted_members: np.ndarray) -> np.ndarray:
    """sum_{i<j} |x_i - x_j| over the last axis, members already sorted along it."""
    m = sorted_members.shape[-1]
    return sorted_members @ (2.0 * np.arange(m) - m + 1)


def _crps_terms(forecasts: np.ndarray, observations: np.ndarray, axis: int
                ) -> tuple[np.ndarray, np.ndarray, int]:
    """E|X - y| and sum_{i<j} |X_i - X_j| per point, and M. Members go last: numpy sorts a
    strided view along the last axis several times faster than along a leading one."""
    x = np.moveaxis(np.asarray(forecasts, dtype=np.float64), axis, -1)
    y = np.asarray(observations, dtype=np.float64)[..., None]
    skill = np.abs(x - y).mean(axis=-1)
    pairs = _pairwise_sum(np.sort(x, axis=-1)) if x.shape[-1] > 1 else np.zeros_like(skill)
    return skill, pairs, x.shape[-1]


def crps_ensemble(
    forecasts: np.ndarray, observations: np.ndarray, axis: int = 0, fair: bool = False
) -> np.ndarray:
    """CRPS of an M-member ensemble at each point.

    Standard (the CRPS of the empirical distribution, as ``properscoring.crps_ensemble``):
    E|X - y| - 1/(2 M^2) sum_{i,j} |X_i - X_j|. Fair (unbiased for the CRPS of the distribution
    the members are drawn from, so ensembles of different sizes compare): the pairwise term is
    divided by 2 M (M - 1) instead. With M = 1 both reduce to |x - y| (the fair pairwise term is
    undefined and taken as 0).
    """
    standard, fair_crps = crps_ensemble_pair(forecasts, observations, axis)
    return fair_crps if fair else standard


def crps_ensemble_pair(forecasts: np.ndarray, observations: np.ndarray, axis: int = 0
                       ) -> tuple[np.ndarray, np.ndarray]:
    """(standard, fair) CRPS per point from one sort (see :func:`crps_ensemble`)."""
    skill, pairs, m = _crps_terms(forecasts, observations, axis)
    if m == 1:
        return skill, skill
    return skill - pairs / (m * m), skill - pairs / (m * (m - 1))


def ensemble_variance(forecasts: np.ndarray, axis: int = 0) -> np.ndarray:
    """Unbiased (ddof=1) member variance; NaN for a single member."""
    x = np.asarray(forecasts, dtype=np.float64)
    if x.shape[axis] < 2:
        return np.full(np.delete(x.shape, axis), np.nan)
    return x.var(axis=axis, ddof=1)


def spread_skill_ratio(spread: np.ndarray, rmse: np.ndarray, n_members: int) -> np.ndarray:
    """spread * sqrt((M+1)/M) / RMSE of the ensemble mean: 1 for a calibrated ensemble, because
    the ensemble mean of M members misses the truth by the spread times sqrt((M+1)/M)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(spread) * np.sqrt((n_members + 1) / n_members) / np.asarray(rmse)


def rank_of_truth(
    forecasts: np.ndarray, observations: np.ndarray, axis: int = 0,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Rank (0..M) of the observation among the members at each point.

    Ties (e.g. zero precipitation in truth and several members) are broken at random, uniformly
    among the tied positions, with ``rng`` (default seed 0, so results are reproducible);
    always counting ties as "below" would pile dry pixels into the top bin.
    """
    x = np.moveaxis(np.asarray(forecasts), axis, 0)
    y = np.asarray(observations)
    below = (x < y).sum(axis=0)
    ties = (x == y).sum(axis=0)
    if not ties.any():
        return below
    rng = rng if rng is not None else np.random.default_rng(0)
    return below + rng.integers(0, ties + 1)


def rank_histogram(
    ranks: np.ndarray, n_members: int, valid: np.ndarray | None = None
) -> np.ndarray:
    """Counts of each rank (M+1 bins) per leading index: ``ranks (T, ...)`` -> ``(T, M+1)``;
    points where ``valid`` is False are left out."""
    ranks = np.asarray(ranks).reshape(ranks.shape[0], -1)
    bins = n_members + 1
    keep = np.ones(ranks.shape, bool) if valid is None else np.asarray(valid).reshape(ranks.shape)
    offsets = np.arange(ranks.shape[0])[:, None] * bins + ranks  # one bincount for all rows
    counts = np.bincount(offsets[keep], minlength=ranks.shape[0] * bins)
    return counts.reshape(ranks.shape[0], bins)


RELIABILITY_BINS = 10


def brier_terms(probability: np.ndarray, outcome: np.ndarray) -> np.ndarray:
    """Per-pixel Brier score terms ``(p - o)**2`` of a forecast probability ``p`` of a binary
    (or fractional) outcome ``o``."""
    return (probability - outcome) ** 2


def reliability_counts(probability: np.ndarray, outcome: np.ndarray, valid: np.ndarray,
                       bins: int = RELIABILITY_BINS) -> tuple[np.ndarray, np.ndarray]:
    """Per forecast-probability bin (``bins`` equal bins of [0, 1], 1 in the last): how many
    valid pixels forecast that probability, and the sum of their outcomes (observed
    frequency = sum / count), for a reliability diagram."""
    which = np.clip((probability[valid] * bins).astype(np.int64), 0, bins - 1)
    counts = np.bincount(which, minlength=bins)
    hits = np.bincount(which, weights=outcome[valid].astype(np.float64), minlength=bins)
    return counts, hits


def masked_mean(values: np.ndarray, valid: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    """Mean over ``axes`` of the points where ``valid``; NaN where no point is valid."""
    count = valid.sum(axis=axes)
    total = np.where(valid, values, 0.0).sum(axis=axes)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


# -- xarray wrappers: dims by name ----------------------------------------------------------

def crps(forecast: xr.DataArray, truth: xr.DataArray, dim: str = "ensemble",
         fair: bool = False) -> xr.DataArray:
    """Per-point CRPS of ``forecast`` (members along ``dim``) against ``truth``."""
    return xr.apply_ufunc(lambda f, o: crps_ensemble(f, o, axis=-1, fair=fair), forecast, truth,
                          input_core_dims=[[dim], []], dask="forbidden")


def spread(forecast: xr.DataArray, dim: str = "ensemble",
           over: tuple[str, ...] = ("y", "x")) -> xr.DataArray:
    """sqrt of the mean over ``over`` of the unbiased member variance."""
    return np.sqrt(forecast.var(dim, ddof=1).mean(over))


def rmse(forecast: xr.DataArray, truth: xr.DataArray,
         over: tuple[str, ...] = ("y", "x")) -> xr.DataArray:
    """Root mean squared error over ``over``."""
    return np.sqrt(((forecast - truth) ** 2).mean(over))
