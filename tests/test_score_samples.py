"""score_samples.py: values against per-time references, calibration behaviour, both CLI
forms, the output layout, and one-line errors."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import netCDF4
import numpy as np
import properscoring
import pytest
import xarray as xr

import score_samples
from helpers.infrastructure.errors import GeneratedFileError
from inference.generated_file import open_generated
from inference.scoring import score_file
from inference.synthetic import write_synthetic
from tests.test_generated_file_reader import write_broken

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("score")
    return {
        "ens": write_synthetic(base / "ens.nc", n_times=3, n_members=6, shape=(12, 16)),
        "reg": write_synthetic(base / "reg.nc", n_times=3, shape=(12, 16), regression=True),
        "calibrated": write_synthetic(base / "cal.nc", n_times=4, n_members=10, shape=(48, 48),
                                      outputs=("2t",), seed=1),
        "narrow": write_synthetic(base / "narrow.nc", n_times=4, n_members=10, shape=(48, 48),
                                  outputs=("2t",), dispersion=0.3, seed=1),
    }


def reference_scores(path: Path, var: str, t: int, n: int | None = None) -> dict[str, float]:
    """Straight per-time numpy/properscoring computation."""
    with open_generated(path) as ds:
        pred = ds[f"prediction_{var}"].values[:n, t].astype(float)
        truth = ds[f"truth_{var}"].values[t].astype(float)
        inputs = ds[f"input_{var}"].values[t].astype(float) if f"input_{var}" in ds else None
    m = pred.shape[0]
    error = pred.mean(axis=0) - truth
    spread = np.sqrt(pred.var(axis=0, ddof=1).mean())
    rmse = np.sqrt((error**2).mean())
    pairs = np.abs(pred[:, None] - pred[None]).sum(axis=(0, 1))
    out = {"crps": properscoring.crps_ensemble(truth, pred, axis=0).mean(),
           "crps_fair": (np.abs(pred - truth).mean(axis=0) - pairs / (2 * m * (m - 1))).mean(),
           "mae": np.abs(error).mean(), "rmse": rmse, "bias": error.mean(), "spread": spread,
           "spread_skill": spread * np.sqrt((m + 1) / m) / rmse}
    if inputs is not None:
        miss = inputs - truth
        out.update(input_mae=np.abs(miss).mean(), input_crps=np.abs(miss).mean(),
                   input_rmse=np.sqrt((miss**2).mean()), input_bias=miss.mean())
    return out


@pytest.mark.parametrize("n", [None, 4])
def test_scores_match_a_per_time_reference(files, n):
    scores = score_file(files["ens"], n_ensemble=n, progress=False, chunk_times=2)
    assert scores.attrs["n_ensemble"] == (n or 6)
    for var in ("2t", "10u"):
        for t in range(3):
            for metric, expected in reference_scores(files["ens"], var, t, n).items():
                got = scores[var].sel(metric=metric).values[t]
                assert got == pytest.approx(expected, abs=1e-6), (var, t, metric)
        assert np.isnan(scores["10u"].sel(metric="input_mae")).all()  # 10u is not an input
        counts = scores[f"{var}_rank_histogram"].values
        assert counts.shape == (3, (n or 6) + 1) and (counts.sum(axis=1) == 12 * 16).all()


def test_chunking_does_not_change_the_result(files):
    one = score_file(files["ens"], progress=False, chunk_times=1)
    auto = score_file(files["ens"], progress=False)
    xr.testing.assert_allclose(one, auto)


def test_threads_do_not_change_the_result(files, tmp_path):
    """Variables are scored in parallel threads; the numbers, the rank histogram's random
    tie-breaking included, are those of one thread."""
    ties = tmp_path / "ties.nc"
    shutil.copyfile(files["ens"], ties)
    with netCDF4.Dataset(ties, "a") as nc:  # dry pixels: truth and members tie at 0
        for group in ("truth", "prediction"):
            values = nc[group]["2t"][:]
            nc[group]["2t"][:] = np.where(values < np.median(values), 0.0, values)
    one = score_file(ties, progress=False, chunk_times=2, workers=1)
    many = score_file(ties, progress=False, chunk_times=2, workers=4)
    xr.testing.assert_identical(one, many)
    assert (one["2t_rank_histogram"].values > 0).all()  # the tied pixels spread over the bins


def test_time_mean_aggregates_squares_before_the_root(files):
    scores = score_file(files["ens"], progress=False)
    table = scores["2t"].to_pandas()
    mean = scores["2t_time_mean"].to_pandas()
    assert mean["crps"] == pytest.approx(table.loc["crps"].mean())
    assert mean["rmse"] == pytest.approx(np.sqrt((table.loc["rmse"] ** 2).mean()))
    assert mean["spread"] == pytest.approx(np.sqrt((table.loc["spread"] ** 2).mean()))
    assert mean["spread_skill"] == pytest.approx(mean["spread"] * np.sqrt(7 / 6) / mean["rmse"])


def test_regression_baseline(files):
    scores = score_file(files["ens"], regression=files["reg"], progress=False)
    with open_generated(files["reg"]) as reg:
        mean = reg["prediction_2t"].values[0].astype(float)
        truth = reg["truth_2t"].values.astype(float)
    per_time = np.abs(mean - truth).mean(axis=(1, 2))
    np.testing.assert_allclose(scores["2t"].sel(metric="regression_mae"), per_time, atol=1e-6)
    np.testing.assert_allclose(scores["2t"].sel(metric="regression_crps"), per_time, atol=1e-6)
    # the regression mean is the best single guess here: better than input and ensemble mean
    mean_table = scores["2t_time_mean"].to_pandas()
    assert mean_table["regression_rmse"] < min(mean_table["input_rmse"], mean_table["rmse"])


def test_calibrated_and_under_dispersed_ensembles(files):
    good = score_file(files["calibrated"], progress=False)
    bad = score_file(files["narrow"], progress=False)
    assert float(good["2t_time_mean"].sel(metric="spread_skill")) == pytest.approx(1.0, abs=0.05)
    assert float(bad["2t_time_mean"].sel(metric="spread_skill")) < 0.5
    flat = good["2t_rank_histogram"].sum("time").values
    u_shape = bad["2t_rank_histogram"].sum("time").values
    assert flat.max() / flat.min() < 1.25
    assert min(u_shape[0], u_shape[-1]) > 4 * u_shape[1:-1].mean()
    for scores in (good, bad):  # fair CRPS removes the finite-ensemble penalty
        mean = scores["2t_time_mean"]
        assert float(mean.sel(metric="crps_fair")) < float(mean.sel(metric="crps"))
    assert float(good["2t_time_mean"].sel(metric="crps")) < float(
        bad["2t_time_mean"].sel(metric="crps"))


def test_nan_pixels_are_left_out(tmp_path, files):
    path = tmp_path / "holes.nc"
    path.write_bytes(files["ens"].read_bytes())
    with netCDF4.Dataset(path, "a") as nc:
        truth = nc["truth"]["2t"][:]
        truth[:, :3, :] = np.nan
        nc["truth"]["2t"][:] = truth
    holes = score_file(path, progress=False)
    assert np.isfinite(holes["2t"].sel(metric="crps")).all()
    assert (holes["2t_rank_histogram"].values.sum(axis=1) == 9 * 16).all()


def test_regression_file_must_cover_the_scored_times(files, tmp_path):
    short = write_synthetic(tmp_path / "short.nc", n_times=2, shape=(12, 16), regression=True)
    with pytest.raises(GeneratedFileError, match="lacks 1 scored time"):
        score_file(files["ens"], regression=short, progress=False)
    other_grid = write_synthetic(tmp_path / "grid.nc", n_times=3, shape=(8, 16), regression=True)
    with pytest.raises(GeneratedFileError, match="grid"):
        score_file(files["ens"], regression=other_grid, progress=False)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "score_samples.py", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_hydra_style_cli_writes_the_documented_layout(files, tmp_path):
    out = tmp_path / "scores.nc"
    done = run_cli(f"path={files['ens']}", f"++output={out}", f"regression={files['reg']}")
    assert done.returncode == 0, done.stderr
    assert "crps_fair" in done.stdout and "regression_crps" in done.stdout
    assert [p.name for p in tmp_path.iterdir()] == ["scores.nc"]  # no temporary left
    with xr.open_dataset(out) as scores:
        assert scores["2t"].dims == ("metric", "time") and scores.sizes["time"] == 3
        assert scores["2t_time_mean"].dims == ("metric",)
        assert scores["10u_rank_histogram"].dims == ("time", "rank")
        assert scores.sizes["rank"] == 7
        assert list(scores["metric"].values[:7]) == ["crps", "crps_fair", "mae", "rmse", "bias",
                                                     "spread", "spread_skill"]
        assert scores["2t"].attrs["units"] == "K"
        expected = score_file(files["ens"], regression=files["reg"], progress=False)
        np.testing.assert_allclose(scores["2t"].values, expected["2t"].values)


def test_positional_cli_with_json_and_n_ensemble(files, tmp_path):
    done = run_cli(str(files["ens"]), str(tmp_path / "s.nc"), "--n-ensemble", "3", "--json",
                   "--regression", str(files["reg"]))
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["n_ensemble"] == 3 and report["n_times"] == 3
    assert set(report["metrics"]) == {"2t", "10u"}
    assert report["metrics"]["10u"]["input_mae"] is None
    expected = score_file(files["ens"], n_ensemble=3, progress=False)["2t_time_mean"]
    assert report["metrics"]["2t"]["crps"] == pytest.approx(float(expected.sel(metric="crps")))
    assert sum(report["rank_histogram"]["2t"]) == 3 * 12 * 16
    assert len(report["rank_histogram"]["2t"]) == 4


def test_parse_args_accepts_both_forms():
    args = score_samples.parse_args(["++path=a.nc", "out.nc", "n_ensemble=2",
                                     "variables=[2t,10u]", "--json"])
    assert (args.path, args.output, args.n_ensemble, args.variables, args.json) == (
        "a.nc", "out.nc", 2, ["2t", "10u"], True)
    args = score_samples.parse_args(["a.nc", "--n-ensemble", "5", "json=false"])
    assert (args.n_ensemble, args.json, args.output) == (5, False, None)


@pytest.mark.parametrize(("make", "extra", "message"), [
    ("absent", [], "no such file"),
    ("directory", [], "is a directory; give the .nc file generate.py wrote"),
    ("missing_group", [], "group(s) ['prediction'] missing"),
    ("mismatched", [], "shapes differ for 2t"),
    ("no_ensemble", [], "no ensemble dimension"),
    ("ens", ["variables=rain"], "unknown variable(s) ['rain']"),
    ("ens", ["--n-ensemble", "7"], "n_ensemble=7 is out of range"),
    ("ens", ["colour=red"], "unknown option 'colour'"),
    ("ens", ["n_ensemble=many"], "n_ensemble must be an integer"),
])
def test_errors_are_one_line(files, tmp_path, capsys, make, extra, message):
    path = files[make] if make in files else tmp_path / f"{make}.nc"
    if make == "directory":
        path.mkdir()
    elif make not in files and make != "absent":
        write_broken(path, make)
    assert score_samples.main([str(path), str(tmp_path / "s.nc"), *extra]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and message in err[-1]
    assert not (tmp_path / "s.nc").exists()


def test_cli_error_has_no_traceback(tmp_path):
    done = run_cli(f"path={tmp_path / 'nothing.nc'}", f"output={tmp_path / 's.nc'}")
    assert done.returncode == 1
    assert done.stderr.strip() == f"error: {tmp_path / 'nothing.nc'}: no such file"


def test_one_member_warns_that_probabilistic_scores_need_two(files, caplog):
    with caplog.at_level(logging.WARNING):
        scores = score_file(files["ens"], n_ensemble=1, progress=False)
    assert "probabilistic scores need at least 2 members" in caplog.text
    crps, mae = (scores["2t"].sel(metric=m).values for m in ("crps", "mae"))
    np.testing.assert_allclose(crps, mae, rtol=1e-6)  # what the warning is about
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        score_file(files["ens"], n_ensemble=2, progress=False)
    assert "at least 2 members" not in caplog.text
