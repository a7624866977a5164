"""Scores of forecast files: per-lead-time means, and Brier scores and reliability counts of
category (probability) channels, checked against straight numpy."""

from __future__ import annotations

import datetime
import json
import subprocess
import sys

import numpy as np
import pytest
import xarray as xr

from datasets.variable_metadata import ChannelMetadata
from inference.generated_file import EnsembleWriter
from inference.score_table import format_table, to_json
from inference.scoring import score_file
from tests.conftest import ROOT

LEADS = [0, 6, 0, 6, 12]
CATEGORIES = ["cat_rain", "cat_none"]


@pytest.fixture(scope="module")
def forecast(tmp_path_factory):
    """Five samples (lead times 0, 6, 0, 6, 12 h), t2m and two category channels."""
    path = tmp_path_factory.mktemp("forecast") / "forecast.nc"
    rng = np.random.default_rng(0)
    times = [datetime.datetime(2022, 1, 1) + datetime.timedelta(hours=3 * k) for k in range(5)]
    shape, members = (6, 8), 4
    lat, lon = np.meshgrid(np.linspace(38, 39, 6), np.linspace(-97, -96, 8), indexing="ij")
    outputs = [ChannelMetadata("t2m")] + [ChannelMetadata(c, units="1") for c in CATEGORIES]
    data = []
    with EnsembleWriter(path, times, members, lat, lon, [ChannelMetadata("t2m")], outputs,
                        attributes={"probability_variables": " ".join(CATEGORIES)},
                        lead_times=LEADS, compression_level=0) as writer:
        for k in range(5):
            rain = (rng.random(shape) < 0.4).astype(np.float32)
            truth = np.stack([280 + rng.normal(size=shape), rain, 1 - rain])
            p_rain = np.clip(rain * 0.6 + rng.random((members, *shape)) * 0.4, 0, 1)
            prediction = np.stack([280 + (1 + k) * rng.normal(size=(members, *shape)), p_rain,
                                   1 - p_rain], axis=1).astype(np.float32)
            writer.write_time(k, truth[:1], truth.astype(np.float32), prediction)
            data.append((truth, prediction))
    return path, data


def test_brier_and_reliability_against_numpy(forecast):
    path, data = forecast
    scores = score_file(path, progress=False)
    metrics = list(scores["metric"].values)
    brier = metrics.index("brier")
    for k, (truth, prediction) in enumerate(data):
        p = prediction[:, 1].astype(np.float64).mean(axis=0)
        expected = np.mean((p - truth[1]) ** 2)
        assert scores["cat_rain"].values[brier, k] == pytest.approx(expected, rel=1e-5)
    assert np.isnan(scores["t2m"].values[brier]).all()  # not a probability channel
    p_all = np.concatenate([pred[:, 1].astype(np.float64).mean(axis=0).ravel()
                            for _, pred in data])
    o_all = np.concatenate([truth[1].ravel() for truth, _ in data])
    bins = np.clip((p_all * 10).astype(int), 0, 9)
    counts = scores["cat_rain_reliability_count"].values
    np.testing.assert_array_equal(counts, np.bincount(bins, minlength=10))
    assert counts.sum() == 5 * 48
    observed = scores["cat_rain_reliability_observed"].values
    for b in np.flatnonzero(counts):
        assert observed[b] == pytest.approx(o_all[bins == b].mean())
    # The forecasts of rain are near 0.6-1 where it rains, 0-0.4 where it does not.
    assert np.nanmax(observed[:4]) == 0 and np.nanmin(observed[6:]) == 1


def test_scores_per_lead_time(forecast):
    path, _ = forecast
    scores = score_file(path, progress=False)
    assert scores["lead_time"].values.tolist() == [0, 6, 12]
    assert scores["sample_lead_time"].values.tolist() == LEADS
    metrics = list(scores["metric"].values)
    crps = metrics.index("crps")
    per_time = scores["t2m"].values[crps]
    per_lead = scores["t2m_lead_time_mean"].values[:, crps]
    np.testing.assert_allclose(per_lead, [per_time[[0, 2]].mean(), per_time[[1, 3]].mean(),
                                          per_time[4]])
    rmse = metrics.index("rmse")
    mse = scores["t2m"].values[rmse] ** 2
    assert scores["t2m_lead_time_mean"].values[1, rmse] == pytest.approx(
        np.sqrt(mse[[1, 3]].mean()))
    assert per_lead[2] > per_lead[0]  # the members spread more at later samples
    table = format_table(scores)
    assert "by lead time:" in table and "0 h" in table and "12 h" in table
    assert "brier" in table.split("by lead time:")[1]
    summary = json.loads(to_json(scores))
    assert set(summary["lead_time_metrics"]["t2m"]) == {"0", "6", "12"}
    assert summary["reliability"]["cat_rain"]["count"] == (
        scores["cat_rain_reliability_count"].values.tolist())


def test_score_samples_cli_writes_the_forecast_scores(forecast, tmp_path):
    path, _ = forecast
    out = tmp_path / "scores.nc"
    result = subprocess.run([sys.executable, "score_samples.py", str(path), str(out)], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "by lead time:" in result.stdout
    with xr.open_dataset(out) as scores:
        assert scores["cat_none_lead_time_mean"].dims == ("lead_time", "metric")
        assert scores["cat_none_reliability_count"].values.sum() == 5 * 48
