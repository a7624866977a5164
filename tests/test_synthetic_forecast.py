"""The embedded dataset's forecast-like option (--lead-hours): lead times in the file, input
error growing with lead time, and the lead-time walkthrough of the README on it (lead-time-aware
regression -> generation with lead_time -> scores per lead time)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import xarray as xr

from datasets.hrrrmini import HRRRMiniDataset
from datasets.synthetic import block_mean, generate_synthetic_dataset, main
from helpers.generation.config import validate_generation_config
from helpers.generation.ensemble import EnsembleGenerator
from helpers.infrastructure.distributed import init_distributed
from helpers.infrastructure.errors import CheckpointError
from helpers.training.config import validate_training_config
from helpers.training.loop import Trainer
from inference.scoring import score_file
from tests.gefs_hrrr_fixtures import TINY_LT_ARCH
from tests.training_fixtures import TINY, tiny_config

LEADS = [0, 12, 24]


@pytest.fixture(scope="module")
def forecast_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("synthetic_forecast")
    generate_synthetic_dataset(path, **{**TINY, "n_train": 24, "n_valid": 6}, lead_hours=LEADS)
    return path


def test_inputs_are_forecasts_whose_error_grows_with_lead_time(forecast_dir):
    ds = HRRRMiniDataset(str(forecast_dir / "train.nc"), str(forecast_dir / "stats.json"))
    assert ds.lead_time_hours() == LEADS
    assert [ds.lead_time_label(i) for i in range(5)] == [0, 1, 2, 0, 1]
    errors = {h: [] for h in LEADS}
    names = [c.name for c in ds.input_channels()]
    for i in range(len(ds)):
        clean, lr, label = ds[i]
        truth = ds.denormalize_output(clean)[[c.name for c in ds.output_channels()].index("2t")]
        coarse = ds.denormalize_input(lr)[names.index("2t")]
        factor = ds.upsample_factor
        errors[LEADS[label]].append(np.sqrt(np.mean(
            (block_mean(coarse, factor) - block_mean(truth, factor)) ** 2)))
    rmse = [np.mean(errors[h]) for h in LEADS]
    # (lead 0 keeps only the interpolation error of the block means)
    assert rmse[2] > 2.5 * rmse[0] and rmse[0] < rmse[1] < rmse[2], rmse
    plain = HRRRMiniDataset(str(forecast_dir / "valid.nc"), str(forecast_dir / "stats.json"))
    assert len(plain[0]) == 3  # forecast files give the label with every sample


def test_bad_lead_hours_are_one_line_errors(tmp_path, capsys):
    assert main(["--out", str(tmp_path / "x"), "--lead-hours", "0,six"]) != 0
    assert "--lead-hours '0,six': give whole hours" in capsys.readouterr().err
    assert main(["--out", str(tmp_path / "y"), "--lead-hours", "6,6"]) != 0
    assert "--lead-hours must be distinct" in capsys.readouterr().err


def test_lead_time_walkthrough_on_the_embedded_data(forecast_dir, tmp_path):
    config = tiny_config(forecast_dir, tmp_path / "run", training_duration=16)
    config["model"] = {"name": "lt_aware_regression",
                       "model_args": {**TINY_LT_ARCH, "embedding_type": "zero"}}
    trainer = Trainer(validate_training_config(copy.deepcopy(config)), init_distributed())
    trainer.run()
    assert trainer.lead_time
    output = tmp_path / "regression.nc"
    dataset = {**config["dataset"], "data_path": str(forecast_dir / "valid.nc")}
    generation = validate_generation_config({"dataset": dataset, "generation": {
        "inference_mode": "regression", "io": {
            "reg_ckpt_filename": str(trainer.store.directory),
            "output_filename": str(output)}}})
    EnsembleGenerator(generation, init_distributed()).run()
    scores = score_file(output, progress=False)
    assert scores["lead_time"].values.tolist() == LEADS
    rmse = scores["2t_lead_time_mean"].sel(metric="input_rmse").values
    assert rmse[0] < rmse[1] < rmse[2]  # the input's own error grows with lead time

    # A lead-free diffusion model on the lead-time-aware regression: the frozen regression
    # still gets each sample's label, in training and in generation.
    diffusion = tiny_config(forecast_dir, tmp_path / "run", name="diffusion",
                            training_duration=8)
    diffusion["training"]["io"]["regression_checkpoint_path"] = str(trainer.store.directory)
    diffusion_run = Trainer(validate_training_config(diffusion), init_distributed())
    assert diffusion_run.lead_time
    diffusion_run.run()
    both = {"reg_ckpt_filename": str(trainer.store.directory),
            "res_ckpt_filename": str(diffusion_run.store.directory),
            "output_filename": str(tmp_path / "corrdiff.nc")}
    generation = validate_generation_config({"dataset": dataset, "generation": {
        "num_ensembles": 2, "sampler": {"num_steps": 3}, "io": both}})
    EnsembleGenerator(generation, init_distributed()).run()
    with xr.open_dataset(tmp_path / "corrdiff.nc", group="prediction") as pred:
        assert pred["2t"].shape[:2] == (2, 6) and np.isfinite(pred["2t"].values).all()

    # Earth2Studio's CorrDiff passes no lead time: such a package is refused.
    from helpers.models.export_earth2studio import ExportSection, export_package

    with pytest.raises(CheckpointError, match=r"the regression checkpoint\(s\) are "
                                              r"lead-time-aware"):
        export_package(generation, ExportSection(
            output_dir=str(tmp_path / "package"), variable_map={
                "10u": "u10m", "10v": "v10m", "2t": "t2m", "tp": {"name": "tp", "scale": 1000},
                "tcwv": "tcwv", "msl": "msl"}))
    assert not (tmp_path / "package").exists()
