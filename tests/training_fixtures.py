"""Tiny training configs on the tiny synthetic dataset, shared by the training tests."""

from __future__ import annotations

import copy
from pathlib import Path

from datasets.synthetic import generate_synthetic_dataset

# The embedded dataset, tiny: seconds-scale runs for layout and bookkeeping tests.
TINY = dict(
    n_train=8, n_valid=3, domain_size=64, window_size=32, windows_per_time=4,
    spinup_hours=2.0, valid_gap_hours=1.0,
)

TINY_ARCH = {
    "model_type": "SongUNetPosEmbd",
    "model_channels": 8,
    "channel_mult": [1, 2],
    "num_blocks": 1,
    "attn_resolutions": [],
    "dropout": 0.0,
    "N_grid_channels": 4,
    "gridtype": "sinusoidal_octave",
}


def tiny_dataset(directory: Path) -> dict:
    """The dataset section for a 32x32 synthetic dataset (written once per directory)."""
    if not (directory / "stats.json").exists():
        generate_synthetic_dataset(directory, **{**TINY, "n_train": 16, "n_valid": 4})
    return {
        "type": "hrrr_mini",
        "data_path": str(directory / "train.nc"),
        "stats_path": str(directory / "stats.json"),
        "input_variables": None,
        "output_variables": ["10u", "2t"],
        "invariant_variables": None,
    }


def tiny_config(data_dir: Path, run_dir: Path, name: str = "regression", **hp) -> dict:
    """A complete training config (plain dict) for a tiny model; ``hp`` overrides training.hp."""
    dataset = tiny_dataset(data_dir)
    config = {
        "dataset": dataset,
        "validation": {"data_path": str(data_dir / "valid.nc")},
        "model": {"name": name, "hr_mean_conditioning": name != "regression",
                  "model_args": copy.deepcopy(TINY_ARCH)},
        "training": {
            "hp": {"training_duration": 32, "total_batch_size": 4, "lr": 2e-3,
                   "lr_rampup": 0, **hp},
            "perf": {"dataloader_workers": 0},
            "io": {"checkpoint_dir": str(run_dir), "print_progress_freq": 8,
                   "save_checkpoint_freq": 16, "validation_freq": 16, "validation_steps": 1},
        },
    }
    if name == "regression":
        config["model"].pop("hr_mean_conditioning")
    return config
