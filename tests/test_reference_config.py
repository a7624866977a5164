"""Coming from the reference CorrDiff workflow: its config names resolve to ours, its keys are
translated with one warning each, and keys with no equivalent stop with advice."""

from __future__ import annotations

import logging

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from helpers.generation.config import validate_generation_config
from helpers.infrastructure.errors import ConfigError
from helpers.training.config import validate_training_config
from tests.conftest import ROOT

ALIASES = {
    "config_training_hrrr_mini_regression": "config_training_mini_regression",
    "config_training_hrrr_mini_diffusion": "config_training_mini_diffusion",
    "config_generate_hrrr_mini": "config_generate_mini",
    "config_training_custom": "custom/config_training",
    "config_generate_custom": "custom/config_generate",
}
MANDATORY = ["++dataset.data_path=/d/train.nc", "++dataset.stats_path=/d/stats.json"]


def composed(name: str, overrides=()) -> dict:
    directory, _, file = name.rpartition("/")
    with initialize_config_dir(config_dir=str(ROOT / "conf" / directory), version_base=None):
        cfg = compose(config_name=file, overrides=list(overrides), return_hydra_config=True)
    return OmegaConf.to_container(cfg, resolve=False)


@pytest.mark.parametrize("alias", sorted(ALIASES))
def test_reference_config_names_resolve_to_ours(alias):
    ours = composed(ALIASES[alias])
    theirs = composed(alias)
    for section in ours:
        if section != "hydra":
            assert theirs[section] == ours[section], section
    assert theirs["hydra"]["run"] == ours["hydra"]["run"]
    assert theirs["hydra"]["callbacks"] == ours["hydra"]["callbacks"]


def test_every_alias_file_is_listed():
    shipped = {p.stem for p in (ROOT / "conf").glob("config_*.yaml")}
    assert set(ALIASES) <= shipped
    for path in (ROOT / "conf").glob("config_*.yaml"):
        if "reference CorrDiff workflow's name" in path.read_text():
            assert path.stem in ALIASES


def reference_style_generation(tmp_path) -> dict:
    """A generation config in the reference's style: top-level sampler, perf.use_fp16, ..."""
    return {
        "dataset": {"type": "hrrr_mini", "data_path": "x.nc", "stats_path": "s.json"},
        "sampler": {"type": "stochastic", "num_steps": 12},
        "generation": {
            "num_ensembles": 4, "seed_batch_size": 2, "inference_mode": "all",
            "hr_mean_conditioning": True, "times_range": None, "has_lead_time": False,
            "perf": {"use_fp16": True, "use_torch_compile": False, "num_writer_workers": 1,
                     "use_apex_gn": False, "profile_mode": False, "io_synchronous": True},
            "io": {"res_ckpt_filename": "d.mdlus", "reg_ckpt_filename": "r.mdlus",
                   "output_filename": str(tmp_path / "out.nc")},
        },
    }


def test_reference_generation_keys_are_translated_with_warnings(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="corrdiff"):
        config = validate_generation_config(reference_style_generation(tmp_path))
    generation = config.generation
    assert generation.sampler.num_steps == 12 and generation.sampler.type == "stochastic"
    assert generation.perf.fp_optimizations == "amp-fp16"
    assert generation.perf.torch_compile is False
    assert generation.perf.use_apex_gn is False  # the same key here
    text = caplog.text
    for old, new in (("sampler.num_steps", "generation.sampler.num_steps"),
                     ("generation.perf.use_fp16", "generation.perf.fp_optimizations"),
                     ("generation.perf.use_torch_compile", "generation.perf.torch_compile")):
        assert f"{old} is the reference workflow's key; this project reads it as {new}" in text
    for ignored in ("num_writer_workers", "io_synchronous", "profile_mode"):
        assert f"{ignored} (a reference workflow option)" in text
    assert generation.has_lead_time is False  # the same key here: checked against the models


@pytest.mark.parametrize("change,message", [
    (lambda c: c.update(wandb={"mode": "offline"}), "wandb.* is a key of the reference "
                                                     "workflow with no equivalent here"),
    (lambda c: c["generation"]["perf"].update(profile_mode=True), "profile with nsys"),
])
def test_reference_keys_without_equivalent_stop_with_advice(tmp_path, change, message):
    config = reference_style_generation(tmp_path)
    change(config)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")
                       .replace(".", r"\.").replace("*", r"\*")):
        validate_generation_config(config)


def test_reference_training_keys(caplog):
    with caplog.at_level(logging.WARNING, logger="corrdiff"):
        config = validate_training_config(composed("config_training_hrrr_mini_diffusion", [
            *MANDATORY, "++training.io.regression_checkpoint_path=r.mdlus",
            "++training.hp.P_mean=-1.0", "++training.hp.P_std=1.4",
            "++training.perf.profile_mode=false"]) | {"hydra": None})
    assert (config.model.P_mean, config.model.P_std) == (-1.0, 1.4)
    assert ("training.hp.P_mean is the reference workflow's key; this project reads it as "
            "model.P_mean (replacing model.P_mean=-1.2)") in caplog.text
