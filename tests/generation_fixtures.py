"""Tiny trained checkpoints and generation configs shared by the generation tests."""

from __future__ import annotations

import copy
from pathlib import Path

from helpers.infrastructure.distributed import init_distributed
from helpers.training.config import validate_training_config
from helpers.training.loop import Trainer
from tests.training_fixtures import tiny_config


def train_tiny_models(data_dir: Path, run_dir: Path, patched: bool = False) -> dict[str, str]:
    """A few steps of regression then diffusion training; returns both checkpoint paths."""
    paths = {}
    for name in ("regression", "patched_diffusion" if patched else "diffusion"):
        extra = {"patch_shape_x": 16, "patch_shape_y": 16, "patch_num": 2} if patched and (
            name != "regression") else {}
        config = tiny_config(data_dir, run_dir, name=name, training_duration=16, **extra)
        if name != "regression":
            config["training"]["io"]["regression_checkpoint_path"] = paths["regression"]
        config["validation"] = None
        trainer = Trainer(validate_training_config(config), init_distributed())
        trainer.run()
        paths[name] = str(trainer.store.latest().model_path)
    return paths


def generation_config(data_dir: Path, checkpoints: dict[str, str], output: Path,
                      **generation) -> dict:
    """A complete generation config (plain dict) on the tiny dataset's valid split."""
    dataset = tiny_config(data_dir, output.parent)["dataset"]
    dataset["data_path"] = str(data_dir / "valid.nc")
    diffusion = checkpoints.get("diffusion") or checkpoints.get("patched_diffusion")
    return copy.deepcopy({
        "dataset": dataset,
        "generation": {
            "num_ensembles": 3, "seed_batch_size": 2,
            "sampler": {"num_steps": 4},
            "io": {"reg_ckpt_filename": checkpoints["regression"],
                   "res_ckpt_filename": diffusion, "output_filename": str(output)},
            **generation,
        },
    })
