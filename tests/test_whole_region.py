"""A region larger than a training patch, downscaled whole: the converter writes one
whole-domain sample per time (``--window full``), the patch-based diffusion model trains on
random patches of it, and generation writes maps of the whole region on one lat/lon grid."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import xarray as xr

from datasets.convert import convert
from helpers.generation.config import validate_generation_config
from helpers.generation.ensemble import EnsembleGenerator
from helpers.infrastructure.distributed import init_distributed
from helpers.infrastructure.errors import ConfigError
from helpers.models.config import ModelConfig
from helpers.models.networks import build_network
from helpers.training.config import validate_training_config
from helpers.training.loop import Trainer
from tests.real_like_fixtures import national_land_grid
from tests.training_fixtures import TINY_ARCH


@pytest.fixture(scope="module")
def region(tmp_path_factory):
    root = tmp_path_factory.mktemp("region")
    # 98 x 130 at factor 8 (12 x 16 coarse cells after cropping): a 96 x 128 region.
    source = national_land_grid(root / "source", n_times=6, shape=(98, 130), factor=8)
    summary = convert(source["coarse"], source["fine"], "t2m,tp,msl", "t2m,tp", root / "data",
                      window="full", invariant_variables="orog", max_missing=0.6,
                      valid_fraction=0.3, progress=False)
    return root, source, summary


def config(root, name: str, **hp) -> dict:
    data = root / "data"
    return {
        "dataset": {"type": "hrrr_mini", "data_path": str(data / "train.nc"),
                    "stats_path": str(data / "stats.json")},
        "validation": None,
        "model": {"name": name, "model_args": copy.deepcopy(TINY_ARCH),
                  **({"hr_mean_conditioning": True} if name != "regression" else {})},
        "training": {"hp": {"training_duration": 8, "total_batch_size": 2, "lr": 2e-3, **hp},
                     "perf": {"dataloader_workers": 0},
                     "io": {"checkpoint_dir": str(root / "run"), "print_progress_freq": 4,
                            "save_checkpoint_freq": 8,
                            "regression_checkpoint_path": str(root / "run" /
                                                              "checkpoints_regression")}},
    }


def test_patch_trained_model_downscales_the_whole_region(region):
    root, source, summary = region
    assert summary["fine_shape"] == (96, 128) and summary["windows_per_time"] == 1
    Trainer(validate_training_config(config(root, "regression")), init_distributed()).run()
    patched = Trainer(validate_training_config(config(
        root, "patched_diffusion", patch_shape_x=32, patch_shape_y=32, patch_num=3)),
        init_distributed())
    assert patched.image_shape == (96, 128) and patched.masked_targets
    patched.run()
    output = root / "region.nc"
    generation = {
        "dataset": config(root, "regression")["dataset"] | {
            "data_path": str(root / "data" / "valid.nc")},
        "generation": {"num_ensembles": 2, "seed_batch_size": 2, "sampler": {"num_steps": 3},
                       "patching": True, "patch_shape_x": 32, "patch_shape_y": 32,
                       "overlap_pix": 4, "boundary_pix": 2,
                       "io": {"reg_ckpt_filename": str(root / "run/checkpoints_regression"),
                              "res_ckpt_filename": str(root / "run/checkpoints_patched_diffusion"),
                              "output_filename": str(output)}},
    }
    EnsembleGenerator(validate_generation_config(generation), init_distributed()).run()
    with xr.open_dataset(output) as root_group:
        assert root_group["lat"].dims == ("y", "x")  # one grid for the whole region
        np.testing.assert_allclose(root_group["lat"].values,
                                   source["fine_ds"]["lat"].values[:96, :128], rtol=1e-6)
        assert root_group.sizes["time"] == 2
    with xr.open_dataset(output, group="prediction") as prediction:
        assert dict(prediction.sizes) == {"ensemble": 2, "time": 2, "y": 96, "x": 128}
        land = source["land"][:96, :128]
        values = prediction["t2m"].values
        assert np.isnan(values[..., ~land]).all() and np.isfinite(values[..., land]).all()
        assert np.nanmin(prediction["tp"].values) >= 0


def test_a_domain_the_unet_cannot_take_says_how_to_convert_it():
    model = ModelConfig(name="regression", model_args={"channel_mult": [1, 2, 2, 2, 2]})
    with pytest.raises(ConfigError, match=r"image shape \(52, 76\) .* multiple of 16.*"
                                          r"--window full --crop 16"):
        build_network(model, (52, 76), 3, 2)
