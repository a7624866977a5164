"""Bad input through the real command lines: one ``error:`` line naming problem and fix, exit
status 1, no traceback, nothing written, nothing lost, no code run from a file."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import netCDF4
import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

from tests.conftest import ROOT, one_error_line, read_only_directory
from tests.generation_fixtures import train_tiny_models
from tests.test_checkpoint_safety import RunsCode
from tests.training_fixtures import tiny_dataset

TINY_MODEL = ["++model.model_args.model_channels=8", "++model.model_args.channel_mult=[1,2]",
              "++model.model_args.num_blocks=1", "++model.model_args.attn_resolutions=[]",
              "++model.model_args.dropout=0.0"]


def fails(*args: str) -> str:
    """Run a command that must fail cleanly; returns its one error line."""
    result = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=600)
    return one_error_line(result)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("bad_input_data")
    tiny_dataset(directory)
    return directory


def training(data_dir: Path, run_dir: Path, *extra: str, stats: Path | None = None) -> list[str]:
    """The documented mini regression command on the tiny dataset."""
    return ["train.py", "--config-name=config_training_mini_regression",
            f"++dataset.data_path={data_dir / 'train.nc'}",
            f"++dataset.stats_path={stats or data_dir / 'stats.json'}",
            "++dataset.output_variables=[10u,2t]", "++validation=null",
            f"++training.io.checkpoint_dir={run_dir}", *TINY_MODEL,
            "++training.hp.training_duration=8", "++training.hp.total_batch_size=4",
            "++training.perf.dataloader_workers=0", *extra]


# ------------------------------------------------------------------------------ output paths
@pytest.mark.parametrize("where", ["under_a_file", "read_only"])
def test_training_run_directory_is_checked_before_hydra_creates_it(data_dir, tmp_path, where):
    if where == "under_a_file":
        (tmp_path / "file").write_text("x")
        run_dir, message = tmp_path / "file/run", r"'.*/file' is a file, not a directory"
    else:
        run_dir, message = read_only_directory(tmp_path) / "run", "is not writable"
    line = fails(*training(data_dir, run_dir))
    assert f"error: training.io.checkpoint_dir='{run_dir}'" in line
    assert re.search(message, line), line
    assert "++training.io.checkpoint_dir=<path>" in line


@pytest.mark.parametrize("where", ["directory", "under_a_file", "read_only"])
def test_generation_output_is_checked_before_any_work(tmp_path, where):
    if where == "directory":
        output = tmp_path / "existing_dir"
        output.mkdir()
        message = "is an existing directory; give a file name"
    elif where == "under_a_file":
        (tmp_path / "file").write_text("x")
        output, message = tmp_path / "file/out.nc", "is a file, not a directory"
    else:
        output, message = read_only_directory(tmp_path) / "out.nc", "is not writable"
    # The checkpoints do not exist: the output is checked first.
    line = fails("generate.py", "--config-name=config_generate_mini.yaml",
                 f"++generation.io.output_filename={output}",
                 "++generation.io.reg_ckpt_filename=missing.mdlus",
                 "++generation.io.res_ckpt_filename=missing.mdlus",
                 "++dataset.data_path=missing.nc", "++dataset.stats_path=missing.json")
    assert "error: generation.io.output_filename=" in line and message in line
    assert not list(tmp_path.glob("**/*.partial"))


# ------------------------------------------------------------------------------ bad files
def wide_std(stats: dict) -> str:
    stats["output"]["10u"]["std"] = "wide"
    return json.dumps(stats)


@pytest.mark.parametrize("content,message", [
    (wide_std, r"output.10u: 'std' must be a finite number, got 'wide'"),
    (lambda stats: "[1, 2]", "the top level must be an object with 'input', 'output' and "
                             "'invariant' sections, not a list"),
    (lambda stats: '{"input": {},\n "output": {"10u": {"mean": 0 "std": 1}}}',
     "is not valid JSON: Expecting ',' delimiter at line 2, column 31; fix that line"),
])
def test_bad_stats_file(data_dir, tmp_path, content, message):
    stats = tmp_path / "stats.json"
    stats.write_text(content(json.loads((data_dir / "stats.json").read_text())))
    line = fails(*training(data_dir, tmp_path / "run", stats=stats))
    assert message in line, line
    assert not list((tmp_path / "run").glob("checkpoints_*"))


def test_nan_found_by_a_dataloader_worker_is_one_line(data_dir, tmp_path):
    broken = tmp_path / "data"
    shutil.copytree(data_dir, broken)
    with netCDF4.Dataset(broken / "train.nc", "a") as nc:
        name = next(iter(nc["input"].variables))
        nc["input"][name][0, 0, 0] = np.nan
    line = fails(*training(broken, tmp_path / "run", "++training.perf.dataloader_workers=1",
                           "++training.hp.training_duration=64"))
    assert "Caught" not in line and "DataLoader worker" not in line
    assert f"input variable(s) ['{name}'] contain NaN" in line, line


def test_crafted_training_state_is_refused_and_runs_nothing(data_dir, tmp_path):
    run_dir = tmp_path / "run"
    command = training(data_dir, run_dir)
    # The same run in-process (quicker than a second command), then a crafted state file.
    from helpers.infrastructure.distributed import init_distributed
    from helpers.training.config import validate_training_config
    from helpers.training.loop import Trainer

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base=None):
        cfg = compose(config_name=command[1].split("=")[1], overrides=command[2:])
    Trainer(validate_training_config(cfg), init_distributed()).run()
    state = run_dir / "checkpoints_regression/training_state.0.8.pt"
    saved = torch.load(state, weights_only=True)
    marker = tmp_path / "code_ran"
    torch.save({**saved, "rng": RunsCode(marker)}, state)
    line = fails(*training(data_dir, run_dir, "++training.hp.training_duration=16"))
    assert "refusing to load training state" in line and "crafted to run code" in line
    assert not marker.exists()


def test_too_many_unet_levels_for_the_image(data_dir, tmp_path):
    line = fails(*training(data_dir, tmp_path / "run",
                           "++model.model_args.channel_mult=[1,1,1,1,1,1,1]"))
    assert ("the dataset's image shape (32, 32) is not supported by a UNet with 7 levels "
            "(channel_mult): each side must be a multiple of 64; e.g. 64, or fewer levels") in line


# ------------------------------------------------------------------------------ generation
@pytest.fixture(scope="module")
def checkpoints(data_dir, tmp_path_factory):
    return train_tiny_models(data_dir, tmp_path_factory.mktemp("bad_input_models"))


def generation(data_dir, checkpoints, output, *extra: str) -> list[str]:
    return ["generate.py", "--config-name=config_generate_mini.yaml",
            f"++generation.io.res_ckpt_filename={checkpoints['diffusion']}",
            f"++generation.io.reg_ckpt_filename={checkpoints['regression']}",
            f"++generation.io.output_filename={output}",
            f"++dataset.data_path={data_dir / 'valid.nc'}",
            f"++dataset.stats_path={data_dir / 'stats.json'}",
            "++dataset.output_variables=[10u,2t]", "++generation.sampler.num_steps=2", *extra]


def test_resuming_a_partial_file_of_another_ensemble_size(data_dir, checkpoints, tmp_path):
    output = tmp_path / "out.nc"
    done = subprocess.run([sys.executable, *generation(data_dir, checkpoints, output,
                                                       "++generation.num_ensembles=2")],
                          cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    partial = Path(f"{output}.partial")
    output.rename(partial)  # stands in for a run killed after some times
    with netCDF4.Dataset(partial, "a") as nc:
        nc["generation_progress"]["sample_complete"][2:] = 0
    before = partial.read_bytes()
    line = fails(*generation(data_dir, checkpoints, output, "++generation.num_ensembles=3",
                             "++generation.resume=true"))
    assert "cannot resume from" in line and "ensemble size: file 2, this run 3" in line
    assert "delete it or set resume=false" in line
    assert partial.read_bytes() == before and not output.exists()


def test_regression_checkpoint_that_is_a_diffusion_model(data_dir, checkpoints, tmp_path):
    swapped = {"regression": checkpoints["diffusion"], "diffusion": checkpoints["diffusion"]}
    line = fails(*generation(data_dir, swapped, tmp_path / "out.nc"))
    assert "holds a diffusion model (EDMPrecondSuperResolution), not the regression UNet" in line


def test_diffusion_checkpoint_that_is_a_regression_model(data_dir, checkpoints, tmp_path):
    swapped = {"regression": checkpoints["regression"], "diffusion": checkpoints["regression"]}
    line = fails(*generation(data_dir, swapped, tmp_path / "out.nc"))
    assert "holds the regression UNet (CorrDiffRegressionUNet), not an EDM diffusion model" in line


# ------------------------------------------------------------------------------ other tools
@pytest.mark.parametrize("args,message", [
    (["--n-train", "0"], "--n-train=0: the dataset needs at least 1 sample per split"),
    (["--out", "{file}"], "is a file, not a directory; give a directory"),
])
def test_synthetic_dataset_options(tmp_path, args, message):
    blocker = tmp_path / "a_file"
    blocker.write_text("keep me")
    args = [a.format(file=blocker) for a in args]
    out = [] if "--out" in args else ["--out", str(tmp_path / "data")]
    line = fails("-m", "datasets.synthetic", *args, *out)
    assert message in line
    assert blocker.read_text() == "keep me" and not (tmp_path / "data").exists()


def test_malformed_checkpoint_args_through_generate(data_dir, checkpoints, tmp_path):
    import zipfile

    crafted = tmp_path / "crafted.mdlus"
    with zipfile.ZipFile(checkpoints["regression"]) as old, zipfile.ZipFile(crafted, "w") as new:
        for name in old.namelist():
            data = old.read(name)
            if name == "args.json":
                args = json.loads(data)
                args["__module__"], args["__name__"] = "subprocess", "Popen"
                data = json.dumps(args).encode()
            new.writestr(name, data)
    line = fails(*generation(data_dir, {**checkpoints, "regression": str(crafted)},
                             tmp_path / "out.nc"))
    assert "refusing to load class subprocess.Popen" in line


def test_apex_group_norm_without_a_gpu(data_dir, checkpoints, tmp_path):
    line = fails(*generation(data_dir, checkpoints, tmp_path / "out.nc",
                             "++generation.perf.use_apex_gn=true"))
    assert ("generation.perf.use_apex_gn=true needs NVIDIA Apex on a CUDA GPU and this run has "
            "no CUDA device; set generation.perf.use_apex_gn=null") in line
    assert not (tmp_path / "out.nc").exists()
