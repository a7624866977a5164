"""train.py through its real command line: one process, torchrun with 2 processes, errors."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
import yaml

from tests.conftest import ROOT
from tests.training_fixtures import tiny_config

HYDRA = {"job": {"chdir": False}, "run": {"dir": "${training.io.checkpoint_dir}"},
         "output_subdir": "hydra"}


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


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("cli_data")


def test_single_process_and_torchrun_two_processes_agree(data_dir, tmp_path):
    write_config(tmp_path, tiny_config(data_dir, tmp_path / "unused", training_duration=24))
    single = run([f"++training.io.checkpoint_dir={tmp_path / 'one'}"], tmp_path)
    assert single.returncode == 0, single.stderr[-3000:]
    assert (tmp_path / "one/train.log").read_text().count("saved checkpoint") == 2
    assert (tmp_path / "one/hydra/config.yaml").is_file()
    pair = run([f"++training.io.checkpoint_dir={tmp_path / 'two'}"], tmp_path,
               launcher=[sys.executable, "-m", "torch.distributed.run", "--standalone",
                         "--nproc_per_node=2"])
    assert pair.returncode == 0, pair.stderr[-3000:]
    assert "2 process(es) x 2 per batch" in (tmp_path / "two/train.log").read_text()
    one, two = final_weights(tmp_path / "one/checkpoints_regression"), final_weights(
        tmp_path / "two/checkpoints_regression")
    for name in one:
        torch.testing.assert_close(one[name], two[name], atol=2e-5, rtol=1e-4, msg=name)


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
