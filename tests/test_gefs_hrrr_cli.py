"""GEFS-HRRR through the documented commands on the layout fixture, end to end: train.py with
the GEFS-HRRR presets (CE regression, then lead-time-aware patched diffusion) -> generate.py
with init+lead keys -> score_samples.py per lead time, with Brier scores."""

from __future__ import annotations

import os
import subprocess
import sys

import netCDF4
import numpy as np
import pytest
import xarray as xr

from tests.conftest import ROOT
from tests.gefs_hrrr_fixtures import write_gefs_hrrr_fixture

TINY_MODEL = ["++model.model_args.model_channels=8", "++model.model_args.channel_mult=[1,2]",
              "++model.model_args.num_blocks=1", "++model.model_args.attn_resolutions=[]",
              "++model.model_args.lead_time_steps=3"]
KEYS = ["2022010100f00", "2022010100f03", "2022010100f06", "2022070106f03"]


def run(*args: str, fail: bool = False) -> str:
    """Run a command from the repository root; its whole output (Hydra logs to stdout)."""
    result = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=600)
    assert (result.returncode != 0) == fail, f"{args[:2]}:\n{result.stderr[-4000:]}"
    assert "Traceback" not in result.stderr, result.stderr[-4000:]
    return result.stdout + result.stderr


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    root = tmp_path_factory.mktemp("gefs_hrrr_cli")
    data, run_dir = root / "data", root / "run"
    write_gefs_hrrr_fixture(data, years=(2021, 2022), inits_per_store=2, lead_hours=(0, 3, 6),
                            hrrr_shape=(20, 36))
    dataset = [f"++dataset.data_path={data}", f"++dataset.stats_path={data}/stats.json",
               "++dataset.train_years=[2021]", "++dataset.valid_years=[2022]",
               "++dataset.lead_hours=[0,3,6]", "++dataset.hrrr_window=[[2,18],[2,34]]"]
    common = [*dataset, *TINY_MODEL, f"++training.io.checkpoint_dir={run_dir}",
              "++training.hp.training_duration=8", "++training.hp.total_batch_size=4",
              "++training.hp.batch_size_per_gpu=4", "++training.perf.fp_optimizations=fp32",
              "++training.perf.dataloader_workers=0", "++training.perf.songunet_checkpoint_level=0",
              "++training.io.validation_steps=1", "++training.io.print_progress_freq=4",
              "++training.io.save_checkpoint_freq=8", "++training.io.validation_freq=8"]
    logs = {"regression": run("train.py", "--config-name=config_training_gefs_hrrr_regression",
                              *common)}
    logs["diffusion"] = run(
        "train.py", "--config-name=config_training_gefs_hrrr_diffusion", *common,
        "++training.hp.patch_shape_x=16", "++training.hp.patch_shape_y=8",
        "++training.hp.patch_num=3", "++training.hp.lr_rampup=0",
        f"++training.io.regression_checkpoint_path={run_dir}/checkpoints_lt_aware_ce_regression")
    output = root / "gefs_hrrr.nc"
    generation = ["generate.py", "--config-name=config_generate_gefs_hrrr", *dataset,
                  f"++generation.times=[{','.join(KEYS)}]", "++generation.num_ensembles=3",
                  "++generation.seed_batch_size=3", "++generation.patch_shape_x=16",
                  "++generation.patch_shape_y=8", "++generation.sampler.num_steps=4",
                  f"++generation.io.reg_ckpt_filename={run_dir}/"
                  "checkpoints_lt_aware_ce_regression",
                  f"++generation.io.res_ckpt_filename={run_dir}/"
                  "checkpoints_lt_aware_patched_diffusion",
                  f"++generation.io.output_filename={output}"]
    logs["generate"] = run(*generation)
    scores = root / "scores.nc"
    logs["score"] = run("score_samples.py", f"path={output}", f"output={scores}")
    return {"root": root, "run": run_dir, "output": output, "scores": scores, "logs": logs,
            "generation": generation}


def test_training_writes_lead_time_aware_checkpoints(pipeline):
    run_dir = pipeline["run"]
    for name, network in (("lt_aware_ce_regression", "CorrDiffRegressionUNet"),
                          ("lt_aware_patched_diffusion", "EDMPrecondSuperResolution")):
        saved = [p.name for p in (run_dir / f"checkpoints_{name}").glob("*.mdlus")]
        assert saved == [f"{network}.0.8.mdlus"], saved
        assert f"training {name} (" in pipeline["logs"][name.split("_")[-1]]


def test_generated_file_has_lead_times_and_probabilities(pipeline):
    with netCDF4.Dataset(pipeline["output"]) as nc:
        lead = nc["lead_time"]
        assert lead.units == "hours" and lead.standard_name == "forecast_period"
        assert lead[:].tolist() == [0, 3, 6, 3]
        times = netCDF4.num2date(nc["time"][:], nc["time"].units)
        assert [t.strftime("%Y%m%d%H") for t in times] == ["2022010100", "2022010103",
                                                           "2022010106", "2022070109"]
        assert "lead_time" in nc["prediction"]["t2m"].coordinates
    pred = xr.open_dataset(pipeline["output"], group="prediction")
    categories = np.stack([pred[c].values for c in ("cat_snow", "cat_ice", "cat_freez",
                                                    "cat_rain", "cat_none")])
    assert pred["t2m"].shape == (3, 4, 16, 32)
    assert categories.min() >= 0 and categories.max() <= 1
    np.testing.assert_allclose(categories.sum(axis=0), 1.0, atol=1e-5)
    assert np.isfinite(pred["t2m"].values).all() and pred["t2m"].values.std() > 0


def test_lead_time_switch_must_match_the_checkpoints(pipeline):
    """In-process (the command's own errors are the same ConfigError, printed in one line)."""
    from hydra import compose, initialize_config_dir

    from helpers.generation.config import validate_generation_config
    from helpers.generation.ensemble import EnsembleGenerator
    from helpers.infrastructure.distributed import init_distributed
    from helpers.infrastructure.errors import ConfigError

    def generator(*overrides: str) -> EnsembleGenerator:
        with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base=None):
            cfg = compose(config_name="config_generate_gefs_hrrr",
                          overrides=[*pipeline["generation"][2:], *overrides])
        return EnsembleGenerator(validate_generation_config(cfg), init_distributed())

    refused = pipeline["root"] / "refused.nc"
    with pytest.raises(ConfigError, match=r"generation.has_lead_time=False but the regression "
                                          r"and diffusion checkpoint\(s\) embed lead time"):
        generator("++generation.has_lead_time=false",
                  f"++generation.io.output_filename={refused}")
    assert not refused.exists()
    with pytest.raises(ConfigError, match=r"'2022010112f00' \(init and lead, YYYYMMDDHHfFF\) "
                                          r"is not a sample"):
        generator("++generation.times=[2022010112f00]")
    assert generator("++generation.has_lead_time=null").lead_time


def test_scores_per_lead_time_with_brier_scores(pipeline):
    with xr.open_dataset(pipeline["scores"]) as scores:
        assert scores["lead_time"].values.tolist() == [0, 3, 6]
        assert scores["sample_lead_time"].values.tolist() == [0, 3, 6, 3]
        metrics = list(scores["metric"].values)
        brier = scores["cat_rain_lead_time_mean"].sel(metric="brier").values
        assert np.isfinite(brier).all() and (brier >= 0).all() and (brier <= 1).all()
        assert np.isnan(scores["t2m_time_mean"].values[metrics.index("brier")])
        assert scores["cat_none_reliability_count"].values.sum() == 4 * 16 * 32
    assert "by lead time:" in pipeline["logs"]["score"]
