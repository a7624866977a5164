"""A user's own masked, uneven, projected fields through the documented commands, end to end:
``python -m datasets.convert`` -> ``train.py`` (regression, then diffusion) -> ``generate.py``
(CorrDiff, and regression-only without a diffusion checkpoint) -> ``score_samples.py`` ->
spectra and maps."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import netCDF4
import numpy as np
import pytest
import xarray as xr

from inference.plot_multiple_samples import plot_multiple_samples
from tests.conftest import ROOT
from tests.real_like_fixtures import national_land_grid

TINY_MODEL = ["++model.model_args.model_channels=8", "++model.model_args.channel_mult=[1,2]",
              "++model.model_args.num_blocks=1", "++model.model_args.attn_resolutions=[]"]


def run(*args: str) -> str:
    """Run a command from the repository root; its whole output (Hydra logs to stdout)."""
    result = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=600)
    assert result.returncode == 0, f"{args[:2]} failed:\n{result.stderr[-4000:]}"
    assert "Traceback" not in result.stderr
    return result.stdout + result.stderr


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """Run every command once; the tests below check what each one left."""
    root = tmp_path_factory.mktemp("real_cli")
    source = national_land_grid(root / "source")
    data, run_dir = root / "data", root / "run"
    logs = {"convert": run(
        "-m", "datasets.convert", "--coarse", str(source["coarse"]), "--fine",
        str(source["fine"]), "--input-variables", "t2m,tp,msl", "--output-variables",
        "t2m,u10,tp", "--invariant-variables", "orog", "--window", "16", "--stride", "8",
        "--max-missing", "0.6", "--valid-fraction", "0.25", "--out", str(data),
        "--no-progress")}
    training = ["train.py", "--config-path=conf/custom", "--config-name=config_training",
                f"++dataset.data_path={data}/train.nc", f"++dataset.stats_path={data}/stats.json",
                f"++validation={{data_path: {data}/valid.nc}}",
                f"++training.io.checkpoint_dir={run_dir}", *TINY_MODEL,
                "++training.hp.training_duration=16", "++training.hp.total_batch_size=8",
                "++training.perf.fp_optimizations=fp32", "++training.perf.dataloader_workers=0",
                "++training.io.validation_steps=1", "++training.io.print_progress_freq=8"]
    logs["regression"] = run(*training)
    logs["diffusion"] = run(*training, "++model.name=diffusion",
                            f"++training.io.regression_checkpoint_path={run_dir}/"
                            "checkpoints_regression")
    with netCDF4.Dataset(data / "valid.nc") as nc:
        first = netCDF4.num2date(nc["time"][0], nc["time"].units).strftime("%Y-%m-%dT%H:%M")
    corrdiff, regression = root / "corrdiff.nc", root / "regression.nc"
    logs["generate"] = run(
        "generate.py", "--config-path=conf/custom", "--config-name=config_generate",
        f"++dataset.data_path={data}/valid.nc", f"++dataset.stats_path={data}/stats.json",
        f"++generation.io.reg_ckpt_filename={run_dir}/checkpoints_regression",
        f"++generation.io.res_ckpt_filename={run_dir}/checkpoints_diffusion",
        f"++generation.io.output_filename={corrdiff}", "++generation.num_ensembles=3",
        "++generation.seed_batch_size=3", "++generation.sampler.num_steps=4",
        f"++generation.times=[{first}]")
    # The reference's mini config leaves the diffusion checkpoint as ???: regression-only
    # generation must not need it.
    logs["regression_only"] = run(
        "generate.py", "--config-name=config_generate_mini.yaml",
        f"++dataset.data_path={data}/valid.nc", f"++dataset.stats_path={data}/stats.json",
        "++generation.inference_mode=regression",
        f"++generation.io.reg_ckpt_filename={run_dir}/checkpoints_regression",
        f"++generation.io.output_filename={regression}", f"++generation.times=[{first}]")
    scores = root / "scores.nc"
    logs["score"] = run("score_samples.py", str(corrdiff), str(scores), "--regression",
                        str(regression))
    logs["spectra"] = run("-m", "inference.power_spectra", str(corrdiff), "--out-dir",
                          str(root / "spectra"), "--grid-spacing-km", "5")
    run("-m", "inference.plot_single_sample", str(corrdiff), "--out", str(root / "maps"))
    return dict(source=source, data=data, run=run_dir, corrdiff=corrdiff, regression=regression,
                scores=scores, logs=logs, first=first, root=root)


def test_convert_crops_and_reports_kept_and_skipped_windows(pipeline):
    log = pipeline["logs"]["convert"]
    assert "fine grid 53x77 -> 52x76" in log and "--crop none" in log
    land = pipeline["source"]["land"][:52, :76]
    rows, cols = range(0, 52 - 16 + 1, 8), range(0, 76 - 16 + 1, 8)
    sea = np.array([1 - land[r:r + 16, c:c + 16].mean() for r in rows for c in cols])
    kept_per_time = int((sea <= 0.6).sum())  # the mask is fixed, so every time keeps these
    assert 0 < kept_per_time < len(sea)
    assert f"train: kept {6 * kept_per_time} window(s), skipped {6 * (len(sea) - kept_per_time)}" \
        in log
    assert f"valid: kept {2 * kept_per_time} window(s)" in log
    stats = json.loads((pipeline["data"] / "stats.json").read_text())
    assert stats["output"]["tp"]["missing_values"] and stats["output"]["tp"]["nonnegative"]
    assert stats["output"]["t2m"]["units"] == "K" and not stats["output"]["t2m"]["nonnegative"]
    assert stats["input"]["tp"]["missing_values"] and "missing_values" not in stats["input"]["msl"]


def test_training_leaves_missing_targets_out(pipeline):
    for stage in ("regression", "diffusion"):
        log = pipeline["logs"][stage]
        assert "missing target pixels are left out of the loss" in log
        assert "non-finite" not in log  # no step was skipped for NaN
        assert "CPU: 1 torch thread(s) per process (OMP_NUM_THREADS)" in log
    assert list((pipeline["run"] / "checkpoints_diffusion").glob("*.mdlus"))


def test_generation_keeps_every_window_with_its_own_grid(pipeline):
    with netCDF4.Dataset(pipeline["data"] / "valid.nc") as nc:
        times = netCDF4.num2date(nc["time"][:], nc["time"].units)
        coords = np.asarray(nc["coord"][:])
    first = [i for i, t in enumerate(times) if t.strftime("%Y-%m-%dT%H:%M") == pipeline["first"]]
    assert len(first) > 1  # several windows at the requested time, all generated
    root = xr.open_dataset(pipeline["corrdiff"])
    truth = xr.open_dataset(pipeline["corrdiff"], group="truth")
    prediction = xr.open_dataset(pipeline["corrdiff"], group="prediction")
    inputs = xr.open_dataset(pipeline["corrdiff"], group="input")
    assert dict(prediction.sizes) == {"ensemble": 3, "sample": len(first), "y": 16, "x": 16}
    lat = pipeline["source"]["fine_ds"]["lat"].values
    for k, i in enumerate(first):
        r, c = coords[i]
        np.testing.assert_allclose(root["lat"].values[k], lat[r:r + 16, c:c + 16], rtol=1e-6)
    assert len(set(root["time"].values)) == 1
    land = pipeline["source"]["land"]
    for k, i in enumerate(first):
        r, c = coords[i]
        sea = ~land[r:r + 16, c:c + 16]
        for var in ("t2m", "u10", "tp"):
            np.testing.assert_array_equal(np.isnan(truth[var].values[k]), sea)
            assert np.isnan(prediction[var].values[:, k][:, sea]).all()
            assert np.isfinite(prediction[var].values[:, k][:, ~sea]).all()
    assert (prediction["tp"].values[np.isfinite(prediction["tp"].values)] >= 0).all()
    assert prediction["tp"].attrs["units"] == "mm h-1" and truth["t2m"].attrs["units"] == "K"
    assert inputs["tp_valid"].attrs["auxiliary"] == 1
    # Missing coarse cells are missing in the written input, not the neutral fill value.
    assert np.isnan(inputs["tp"].values).any() and np.isfinite(inputs["msl"].values).all()
    regression = xr.open_dataset(pipeline["regression"], group="prediction")
    assert regression.sizes["ensemble"] == 1 and regression.sizes["sample"] == len(first)


def test_scores_leave_masked_pixels_out_and_carry_units(pipeline):
    scores = xr.open_dataset(pipeline["scores"])
    assert scores["tp"].dims == ("metric", "sample") and scores["tp"].attrs["units"] == "mm h-1"
    truth = xr.open_dataset(pipeline["corrdiff"], group="truth")["t2m"].values
    members = xr.open_dataset(pipeline["corrdiff"], group="prediction")["t2m"].values
    error = np.abs(members.mean(axis=0) - truth)
    expected = np.nanmean(error.reshape(error.shape[0], -1), axis=1)
    np.testing.assert_allclose(scores["t2m"].sel(metric="mae").values, expected, rtol=1e-5)
    regression_mae = scores["t2m"].sel(metric="regression_mae").values
    assert np.isfinite(regression_mae).all()
    assert "t2m [K]" in pipeline["logs"]["score"]


def test_spectra_and_maps_of_masked_fields(pipeline):
    assert "decorrelation distance" in pipeline["logs"]["spectra"]
    assert len(list((pipeline["root"] / "spectra").glob("*.png"))) == 3
    assert len(list((pipeline["root"] / "maps").glob("*.png"))) == 3
    # Several windows side by side, each on its own lat/lon grid.
    written = plot_multiple_samples(pipeline["corrdiff"], pipeline["root"] / "rows",
                                    variables=["tp"])
    assert [p.name for p in written] == ["samples_tp.png"] and written[0].stat().st_size > 0
