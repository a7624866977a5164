"""train.py through its real command line: one process, torchrun with 2 processes, errors."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml

from tests.conftest import ROOT
from tests.training_fixtures import tiny_config

HYDRA = {"job": {"chdir": False}, "run": {"dir": "${training.io.checkpoint_dir}"},
         "output_subdir": "hydra",
         "callbacks": {"output_paths": {
             "_target_": "helpers.infrastructure.output_paths.CheckOutputPaths"}}}


def write_config(tmp_path, config: dict, name: str = "tiny") -> None:
    (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump({"hydra": HYDRA, **config}))


def run(args: list[str], tmp_path, launcher: list[str] | None = None):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    command = (launcher or [sys.executable]) + ["train.py", f"--config-path={tmp_path}",
                                                "--config-name=tiny", *args]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)


def final_weights(directory) -> dict[str, torch.Tensor]:
    import physicsnemo

    latest = sorted(directory.glob("*.mdlus"), key=lambda p: int(p.name.split(".")[-2]))[-1]
    return physicsnemo.Module.from_checkpoint(str(latest)).state_dict()


def step_scalars(run_dir) -> dict[str, list[float]]:
    """Loss and gradient norm of every step, as logged to TensorBoard (one report per step)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    return {tag: [e.value for e in events.Scalars(f"training/{tag}")]
            for tag in ("loss", "grad_norm")}


TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]


def train_one_and_two_processes(tmp_path, config: dict) -> tuple[tuple, tuple]:
    """The same run on 1 process and under torchrun on 2; (steps, weights) of each."""
    write_config(tmp_path, config)
    results = []
    for label, launcher in (("one", None), ("two", TORCHRUN)):
        run_dir = tmp_path / label
        done = run([f"++training.io.checkpoint_dir={run_dir}"], tmp_path, launcher=launcher)
        assert done.returncode == 0, done.stderr[-3000:]
        processes = 2 if launcher else 1
        assert f"{processes} process(es) x {4 // processes} per batch" in (
            run_dir / "train.log").read_text()
        results.append((step_scalars(run_dir),
                        final_weights(run_dir / f"checkpoints_{config['model']['name']}")))
    return results[0], results[1]


def assert_runs_agree(one, two) -> None:
    (steps_one, weights_one), (steps_two, weights_two) = one, two
    assert len(steps_one["loss"]) == 6
    # Per step, not only at the end: Adam would hide a constant gradient-scale error.
    for tag in ("loss", "grad_norm"):
        np.testing.assert_allclose(steps_two[tag], steps_one[tag], rtol=1e-4, err_msg=tag)
    for name in weights_one:
        torch.testing.assert_close(weights_one[name], weights_two[name], atol=2e-5, rtol=1e-4,
                                   msg=name)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("cli_data")


@pytest.fixture(scope="module")
def regression_runs(data_dir, tmp_path_factory):
    """Regression on 1 process and on 2: compared below, and the frozen model of diffusion."""
    directory = tmp_path_factory.mktemp("regression_runs")
    config = tiny_config(data_dir, directory / "unused", training_duration=24)
    config["training"]["io"]["print_progress_freq"] = 4  # a report (TensorBoard) every step
    return directory, train_one_and_two_processes(directory, config)


def test_single_process_and_torchrun_two_processes_agree(regression_runs):
    directory, (one, two) = regression_runs
    assert (directory / "one/train.log").read_text().count("saved checkpoint") == 2
    assert (directory / "one/hydra/config.yaml").is_file()
    assert_runs_agree(one, two)


@pytest.mark.parametrize("name,extra", [
    ("diffusion", {}),
    ("patched_diffusion", {"patch_shape_x": 16, "patch_shape_y": 16, "patch_num": 3}),
])
def test_diffusion_on_two_processes_equals_one(data_dir, regression_runs, tmp_path, name,
                                               extra):
    """Every sample's noise (and every step's patches) come from keys, not from a process's
    generator: 2 processes train exactly what 1 process trains."""
    config = tiny_config(data_dir, tmp_path / "unused", name=name, training_duration=24,
                         **extra)
    config["training"]["io"]["print_progress_freq"] = 4
    config["training"]["io"]["regression_checkpoint_path"] = str(
        regression_runs[0] / "one/checkpoints_regression")
    assert_runs_agree(*train_one_and_two_processes(tmp_path, config))


def test_config_error_is_one_line_and_nonzero(data_dir, tmp_path):
    write_config(tmp_path, tiny_config(data_dir, tmp_path / "run", name="diffusion"))
    result = run([], tmp_path)
    assert result.returncode == 1
    assert "error: invalid training config: model.name=diffusion trains on the residual" in (
        result.stderr + result.stdout)
    assert "Traceback" not in result.stderr + result.stdout


def test_bad_override_type_is_named(data_dir, tmp_path):
    write_config(tmp_path, tiny_config(data_dir, tmp_path / "run"))
    result = run(["++training.hp.total_batch_size=many"], tmp_path)
    assert result.returncode == 1
    assert "training.hp.total_batch_size: Input should be a valid integer" in (
        result.stderr + result.stdout)
