"""inference/score_metrics.py: each standard metric's finalisation against hand computation,
statistics shared between metrics, and a new metric added in one place (a list passed to
score_file) scored by hand on a tiny synthetic file."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from inference import score_metrics as sm
from inference.generated_file import open_generated
from inference.scoring import score_file
from inference.synthetic import write_synthetic


@pytest.fixture(scope="module")
def ens(tmp_path_factory):
    return write_synthetic(tmp_path_factory.mktemp("metrics") / "ens.nc", n_times=3,
                           n_members=5, shape=(8, 10))


def test_standard_metrics_finalise_as_written():
    """Plain means, roots of mean squares, spread-skill from the finalised spread and RMSE,
    and a baseline's CRPS equal to its MAE, from made-up statistic means."""
    mean = {sm.CRPS(): 1.0, sm.CRPS(fair=True): 0.8, sm.AbsoluteError(): 1.5,
            sm.SquaredError(): 4.0, sm.Error(): -0.5, sm.EnsembleVariance(): 2.25,
            sm.AbsoluteError("input"): 3.0, sm.SquaredError("input"): 16.0,
            sm.Error("input"): 0.25, sm.BrierTerm(): 0.1}
    mean.update({sm.AbsoluteError("regression"): 2.0, sm.SquaredError("regression"): 9.0,
                 sm.Error("regression"): 0.0})
    m = 4
    spread, rmse = np.sqrt(2.25), np.sqrt(4.0)
    expected = {"crps": 1.0, "crps_fair": 0.8, "mae": 1.5, "rmse": 2.0, "bias": -0.5,
                "spread": 1.5, "spread_skill": spread * np.sqrt((m + 1) / m) / rmse,
                "input_mae": 3.0, "input_rmse": 4.0, "input_bias": 0.25, "input_crps": 3.0,
                "regression_mae": 2.0, "regression_rmse": 3.0, "regression_bias": 0.0,
                "regression_crps": 2.0, "brier": 0.1}
    assert [metric.name for metric in sm.STANDARD_METRICS] == list(expected)
    values = sm.finalise(sm.STANDARD_METRICS, mean, m)
    np.testing.assert_allclose(values, list(expected.values()), rtol=1e-15)
    # the same metrics work on per-time arrays
    per_time = sm.finalise(sm.STANDARD_METRICS, {s: np.full(3, v) for s, v in mean.items()}, m)
    np.testing.assert_allclose(per_time, np.repeat(values[:, None], 3, axis=1), rtol=1e-15)


def test_metrics_share_statistics_and_files_choose_what_applies():
    statistics = sm.statistics_of(sm.STANDARD_METRICS)
    assert len(statistics) == len(set(statistics)) == 13  # 16 rows: rmse, spread, *_crps share
    assert statistics.count(sm.SquaredError()) == 1  # rmse and spread_skill
    plain = sm.ScoredFile()
    assert [m.name for m in sm.STANDARD_METRICS if m.applies(plain)] == [
        "crps", "crps_fair", "mae", "rmse", "bias", "spread", "spread_skill"]
    both = sm.ScoredFile(baselines=("regression",), has_probabilities=True)
    assert [m.name for m in sm.STANDARD_METRICS if m.applies(both)][7:] == [
        "regression_mae", "regression_rmse", "regression_bias", "regression_crps", "brier"]


def test_time_means_finalise_each_metric_from_the_mean_statistic(ens):
    """Over times: RMSE and spread are roots of the mean squares, spread-skill is formed from
    those, every other standard metric is the plain mean of its per-time values."""
    scores = score_file(ens, progress=False, chunk_times=2)
    table, mean = scores["2t"].to_pandas(), scores["2t_time_mean"].to_pandas()
    for metric in sm.STANDARD_METRICS:
        if metric.name not in table.index:
            continue
        per_time = table.loc[metric.name].to_numpy()
        if isinstance(metric, sm.RootMean):
            expected = np.sqrt((per_time**2).mean())
        elif isinstance(metric, sm.SpreadSkill):
            expected = mean["spread"] * np.sqrt(6 / 5) / mean["rmse"]
        else:
            expected = per_time.mean()
        assert mean[metric.name] == pytest.approx(expected, rel=1e-12), metric.name


@dataclass(frozen=True)
class WithinOne(sm.Statistic):
    """A new statistic for the test: the fraction of pixels where the ensemble mean is within
    ``tolerance`` of the truth."""

    tolerance: float = 1.0

    def compute(self, chunk):
        error, valid = chunk.error()
        return chunk.spatial_mean((np.abs(error) <= self.tolerance).astype(np.float64), valid)


def test_a_new_metric_is_one_entry_in_the_list(ens):
    hit_rate = sm.Mean("hit_rate", WithinOne())
    scores = score_file(ens, progress=False, metrics=(*sm.STANDARD_METRICS, hit_rate))
    standard = score_file(ens, progress=False)
    assert list(scores["metric"].values) == [*standard["metric"].values, "hit_rate"]
    with open_generated(ens) as ds:
        for var in ("2t", "10u"):
            members = ds[f"prediction_{var}"].values.astype(np.float64)
            truth = ds[f"truth_{var}"].values.astype(np.float64)
            by_hand = (np.abs(members.mean(axis=0) - truth) <= 1.0).mean(axis=(1, 2))
            np.testing.assert_allclose(scores[var].sel(metric="hit_rate"), by_hand, rtol=1e-12)
            assert float(scores[f"{var}_time_mean"].sel(metric="hit_rate")) == pytest.approx(
                by_hand.mean(), rel=1e-12)
            # the other rows are untouched
            np.testing.assert_array_equal(scores[var].values[:-1], standard[var].values)


def test_a_metric_list_of_its_own(ens):
    only = (sm.RMSE, sm.Mean("mse", sm.SquaredError()))
    scores = score_file(ens, progress=False, metrics=only)
    assert list(scores["metric"].values) == ["rmse", "mse"]
    np.testing.assert_allclose(scores["2t"].sel(metric="mse"),
                               scores["2t"].sel(metric="rmse") ** 2, rtol=1e-12)
    assert scores["2t_rank_histogram"].sum() == 3 * 8 * 10  # the rank histogram is still there
    with pytest.raises(ValueError, match=r"\['rmse'\] appear more than once"):
        score_file(ens, progress=False, metrics=(sm.RMSE, sm.RMSE))
