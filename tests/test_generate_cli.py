"""generate.py through its real command line, its shipped configs, and 2 processes."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import xarray as xr
from hydra import compose, initialize_config_dir

from helpers.generation.config import validate_generation_config
from helpers.infrastructure.errors import ConfigError
from tests.conftest import ROOT
from tests.generation_fixtures import train_tiny_models
from tests.training_fixtures import tiny_dataset

SHIPPED = {"config_generate": "synthetic", "config_generate_mini": "hrrr_mini",
           "config_generate_taiwan": "cwb",
           # The reference workflow's names (compared with ours in test_reference_config.py).
           "config_generate_hrrr_mini": "hrrr_mini", "config_generate_custom": "hrrr_mini",
           "config_generate_gefs_hrrr": "gefs_hrrr"}
CKPTS = ["++generation.io.reg_ckpt_filename=r.mdlus", "++generation.io.res_ckpt_filename=d.mdlus"]


def test_every_generation_config_is_covered():
    assert {p.stem for p in (ROOT / "conf").glob("config_generate*.yaml")} == set(SHIPPED)


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_generation_config_validates(name):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base=None):
        cfg = compose(config_name=name, overrides=[*CKPTS, "++dataset.data_path=x",
                                                   "++dataset.stats_path=y"])
    config = validate_generation_config(cfg)
    assert config.dataset["type"] == SHIPPED[name]
    assert (config.generation.sampler.num_steps, config.generation.sampler.sigma_max) == (9, 10)


def test_regression_only_needs_no_diffusion_checkpoint():
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base=None):
        cfg = compose(config_name="config_generate_mini", overrides=[
            "++generation.inference_mode=regression", "++generation.io.reg_ckpt_filename=r.mdlus"])
    config = validate_generation_config(cfg)  # res_ckpt_filename is ??? in the config file
    assert config.generation.io.res_ckpt_filename is None
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base=None):
        cfg = compose(config_name="config_generate_mini",
                      overrides=["++generation.io.reg_ckpt_filename=r.mdlus"])
    with pytest.raises(ConfigError, match=r"generation.io.res_ckpt_filename"):
        validate_generation_config(cfg)  # CorrDiff does need it


def test_custom_generation_config_validates():
    with initialize_config_dir(config_dir=str(ROOT / "conf/custom"), version_base=None):
        cfg = compose(config_name="config_generate",
                      overrides=["++dataset.data_path=x", "++dataset.stats_path=y"])
    assert validate_generation_config(cfg).generation.num_ensembles == 16


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("cli_gen_data")
    tiny_dataset(data_dir)
    return data_dir, train_tiny_models(data_dir, tmp_path_factory.mktemp("cli_gen_models"))


def run(args: list[str], launcher: list[str] | None = None):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run((launcher or [sys.executable]) + ["generate.py", *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=600)


def documented_command(data_dir, checkpoints, output) -> list[str]:
    """The reference documentation's mini command, plus our tiny dataset and model."""
    return ['--config-name=config_generate_mini.yaml',
            f"++generation.io.res_ckpt_filename={checkpoints['diffusion']}",
            f"++generation.io.reg_ckpt_filename={checkpoints['regression']}",
            f"++generation.io.output_filename={output}",
            f"++dataset.data_path={data_dir / 'valid.nc'}",
            f"++dataset.stats_path={data_dir / 'stats.json'}",
            "++dataset.output_variables=[10u,2t]", "++generation.num_ensembles=5",
            "++generation.seed_batch_size=2", "++generation.sampler.num_steps=3"]


def test_documented_command_and_two_processes_agree(setup, tmp_path):
    data_dir, checkpoints = setup
    one = run([*documented_command(data_dir, checkpoints, tmp_path / "one.nc"),
               "++generation.times_per_batch=2"])
    assert one.returncode == 0, one.stderr[-3000:]
    two = run([*documented_command(data_dir, checkpoints, tmp_path / "two.nc"),
               "++generation.times_per_batch=2"],
              launcher=[sys.executable, "-m", "torch.distributed.run", "--standalone",
                        "--nproc_per_node=2"])
    assert two.returncode == 0, two.stderr[-3000:]
    # Two times per batch: network batches of 4 rows (time, member) [(0,0) .. (0,3)],
    # [(0,4), (1,0), (1,1), (1,2)], [(1,3), (1,4)]; with two processes the middle one (both
    # times) is rank 1's, so a member rank 1 got wrong or never sent, or a row of the wrong
    # time, shows up below. Batches go to ranks whole: even the rounding is the same.
    with xr.open_dataset(tmp_path / "one.nc", group="prediction") as a, xr.open_dataset(
            tmp_path / "two.nc", group="prediction") as b:
        assert a.sizes["ensemble"] == 5
        values = a["2t"].values
        assert np.isfinite(values).all()
        assert len({member.tobytes() for member in values}) == 5  # five different members
        np.testing.assert_array_equal(values, b["2t"].values)


def test_missing_checkpoints_one_line_error(tmp_path):
    result = run(["++generation.io.reg_ckpt_filename=" + str(tmp_path / "none"),
                  "++generation.io.output_filename=" + str(tmp_path / "o.nc")])
    assert result.returncode == 1
    output = result.stderr + result.stdout
    assert "has no regression checkpoint; train the regression model first" in output
    assert "python train.py" in output and "Traceback" not in output
