"""Every shipped training config composes with Hydra and passes validation; bad values fail
with the field's name."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir

from helpers.infrastructure.errors import ConfigError
from helpers.training.config import validate_training_config
from tests.conftest import ROOT

MANDATORY = [
    "++dataset.data_path=/data/train.nc", "++dataset.stats_path=/data/stats.json",
    "++training.io.regression_checkpoint_path=/ckpt/regression.mdlus",
]
TOP_LEVEL = {
    "config_training": ("synthetic", "regression"),
    "config_training_synthetic_diffusion": ("synthetic", "diffusion"),
    "config_training_mini_regression": ("hrrr_mini", "regression"),
    "config_training_mini_diffusion": ("hrrr_mini", "diffusion"),
    "config_training_taiwan_regression": ("cwb", "regression"),
    "config_training_taiwan_diffusion": ("cwb", "diffusion"),
    # The reference workflow's names (tests/test_reference_config.py compares them with ours).
    "config_training_hrrr_mini_regression": ("hrrr_mini", "regression"),
    "config_training_hrrr_mini_diffusion": ("hrrr_mini", "diffusion"),
    "config_training_custom": ("hrrr_mini", "regression"),
    "config_training_gefs_hrrr_regression": ("gefs_hrrr", "lt_aware_ce_regression"),
    "config_training_gefs_hrrr_diffusion": ("gefs_hrrr", "lt_aware_patched_diffusion"),
}


def _compose(config_dir, name, overrides=()):
    with initialize_config_dir(config_dir=str(config_dir), version_base=None):
        return compose(config_name=name, overrides=list(overrides), return_hydra_config=False)


def test_every_top_level_config_is_covered():
    shipped = {p.stem for p in (ROOT / "conf").glob("config_training*.yaml")}
    assert shipped == set(TOP_LEVEL), "add new training configs to TOP_LEVEL"


@pytest.mark.parametrize("name", sorted(TOP_LEVEL))
def test_shipped_training_config_validates(name):
    cfg = _compose(ROOT / "conf", name, MANDATORY)
    config = validate_training_config(cfg)
    dataset_type, model_name = TOP_LEVEL[name]
    assert config.dataset["type"] == dataset_type
    assert config.model.name == model_name


def test_documented_overrides_apply():
    cfg = _compose(ROOT / "conf", "config_training_mini_regression", MANDATORY + [
        "++training.hp.total_batch_size=64", "++training.hp.batch_size_per_gpu=16",
        "++training.io.checkpoint_dir=/tmp/ckpts", "++training.hp.grad_clip_threshold=1e5",
    ])
    hp = validate_training_config(cfg).training.hp
    assert (hp.total_batch_size, hp.batch_size_per_gpu, hp.grad_clip_threshold) == (64, 16, 1e5)
    assert validate_training_config(cfg).training.io.checkpoint_dir == "/tmp/ckpts"


GROUP_FILES = [
    "corrdiff_regression", "corrdiff_diffusion", "corrdiff_patched_diffusion",
    "corrdiff_regression_mini", "corrdiff_diffusion_mini",
    "corrdiff_regression_cpu", "corrdiff_diffusion_cpu",
    "lt_aware_regression", "lt_aware_ce_regression", "lt_aware_patched_diffusion",
]


@pytest.mark.parametrize("model,training", [(name, name) for name in GROUP_FILES])
def test_every_model_and_training_group_file_validates(model, training):
    cfg = _compose(ROOT / "conf", "config_training_taiwan_diffusion",
                   MANDATORY + [f"model={model}", f"training={training}"])
    config = validate_training_config(cfg)
    assert config.model.name in model


def test_group_files_are_all_exercised():
    models = {p.stem for p in (ROOT / "conf/model").glob("*.yaml")}
    trainings = {p.stem for p in (ROOT / "conf/training").glob("*.yaml")}
    assert models == set(GROUP_FILES) and trainings == set(GROUP_FILES)


def test_custom_config_composes_from_its_own_directory():
    cfg = _compose(ROOT / "conf/custom", "config_training", MANDATORY[:2] + [
        "training.hp.patch_shape_x=64", "training.hp.patch_shape_y=64",
        "model.name=patched_diffusion", MANDATORY[2],
    ])
    config = validate_training_config(cfg)
    assert (config.training.hp.patch_shape_x, config.model.name) == (64, "patched_diffusion")


def test_missing_mandatory_value_is_named():
    cfg = _compose(ROOT / "conf", "config_training_mini_regression")
    with pytest.raises(ConfigError, match=r"\['dataset.data_path', 'dataset.stats_path'\] are not"
                                          r" set.*\+\+dataset.data_path=<value>"):
        validate_training_config(cfg)


@pytest.mark.parametrize("override,message", [
    ("++training.hp.total_batch_sise=8", r"training.hp.total_batch_sise: unknown key"),
    ("++training.hp.lr=fast", r"training.hp.lr: Input should be a valid number"),
    ("++training.perf.fp_optimizations=fp8", r"training.perf.fp_optimizations: Input should be "
                                             r"'auto', 'fp32', 'amp-bf16' or 'amp-fp16'"),
    ("++training.hp.batch_size_per_gpu=0", r"training.hp.batch_size_per_gpu"),
    ("++model.model_args.model_type=ViT", r"model.model_args: .*'ViT' is not one of"),
    ("++training.io.save_n_recent_checkpoints=0", r"save_n_recent_checkpoints: must be -1"),
])
def test_bad_values_fail_naming_the_field(override, message):
    cfg = _compose(ROOT / "conf", "config_training", [override])
    with pytest.raises(ConfigError, match=message):
        validate_training_config(cfg)


def test_diffusion_without_regression_checkpoint():
    cfg = _compose(ROOT / "conf", "config_training", ["model=corrdiff_diffusion_cpu"])
    with pytest.raises(ConfigError, match=r"model.name=diffusion trains on the residual.*"
                                          r"regression_checkpoint_path"):
        validate_training_config(cfg)


def test_patch_options_need_a_patched_model():
    cfg = _compose(ROOT / "conf", "config_training", ["++training.hp.patch_shape_x=32",
                                                      "++training.hp.patch_shape_y=32"])
    with pytest.raises(ConfigError, match="apply to patched models only"):
        validate_training_config(cfg)
