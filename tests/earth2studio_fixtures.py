"""A tiny trained CorrDiff pair on an HRRR-Mini-layout fixture, for the export tests.

The fixture's grid is curvilinear (rotated) and affine with power-of-two steps, so Earth2Studio's
index-space interpolation reproduces our upsampling to float rounding. Training windows sit
anywhere in the grid; the validation file's samples share one window, the one exported.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from helpers.infrastructure.distributed import init_distributed
from helpers.training.config import validate_training_config
from helpers.training.loop import Trainer
from tests.conftest import ROOT, write_hrrr_mini
from tests.training_fixtures import TINY_ARCH

VARIABLE_MAP = "{10u:u10m,2t:t2m,tcwv:tcwv}"
E2S_PYTHON = ROOT / ".venv-e2s" / "bin" / "python"


def write_fixture(directory: Path) -> dict[str, Path]:
    """Training and validation files (one stats.json, of the training file)."""
    train, stats, _ = write_hrrr_mini(directory, n=8, window=16, factor=4, grid=(24, 32))
    valid_dir = directory / "valid"
    valid_dir.mkdir(exist_ok=True)
    valid, _, _ = write_hrrr_mini(valid_dir, n=2, window=16, factor=4, grid=(24, 32), seed=1,
                                  same_coord=True)
    return {"train": train, "valid": valid, "stats": stats}


def dataset_section(files: dict[str, Path], split: str = "valid") -> dict:
    return {"type": "hrrr_mini", "data_path": str(files[split]),
            "stats_path": str(files["stats"]), "input_variables": None,
            "output_variables": None, "invariant_variables": None}


def train_pair(files: dict[str, Path], run_dir: Path) -> dict[str, str]:
    """A few steps of regression, then diffusion conditioned on its mean."""
    paths: dict[str, str] = {}
    for name in ("regression", "diffusion"):
        model = {"name": name, "model_args": dict(TINY_ARCH)}
        if name == "diffusion":
            model["hr_mean_conditioning"] = True
        config = {
            "dataset": dataset_section(files, "train"),
            "validation": None,
            "model": model,
            "training": {
                "hp": {"training_duration": 16, "total_batch_size": 4, "lr": 2e-3,
                       "lr_rampup": 0},
                "perf": {"dataloader_workers": 0},
                "io": {"checkpoint_dir": str(run_dir), "print_progress_freq": 8,
                       "save_checkpoint_freq": 16, "validation_freq": 16,
                       "regression_checkpoint_path": paths.get("regression")},
            },
        }
        trainer = Trainer(validate_training_config(config), init_distributed())
        trainer.run()
        paths[name] = str(trainer.store.latest().model_path)
    return paths


def export_command(files: dict[str, Path], checkpoints: dict[str, str], output_dir: Path,
                   *extra: str) -> list[str]:
    """The documented export command line for the fixture."""
    return [sys.executable, "-m", "helpers.models.export_earth2studio",
            "--config-name=config_generate_mini.yaml",
            f"++dataset.data_path={files['valid']}", f"++dataset.stats_path={files['stats']}",
            f"++generation.io.reg_ckpt_filename={checkpoints['regression']}",
            f"++generation.io.res_ckpt_filename={checkpoints['diffusion']}",
            f"++export.output_dir={output_dir}", f"++export.variable_map={VARIABLE_MAP}",
            "++generation.num_ensembles=3", "++generation.sampler.num_steps=4", *extra]


def run(command: list[str], cwd: Path = ROOT, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "0"}
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env=env)
