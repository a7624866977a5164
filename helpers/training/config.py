"""Typed schema of the training config (``conf/config_training*.yaml``), checked at start-up.

Hydra composes the YAML; these pydantic models then check it, so a typo, a wrong type or an
invalid value fails immediately with the field's dotted name instead of an hour into training.
Dataset options are free-form here: each datapipe's constructor checks its own keywords.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from helpers.infrastructure.config_validation import (
    StrictModel,
    describe_validation_error,
    plain_config,
)
from helpers.infrastructure.errors import ConfigError
from helpers.infrastructure.reference_config import translate_reference_keys
from helpers.models.config import ModelConfig


class HyperParameters(StrictModel):
    """``training.hp``: lengths and learning rates are counted in samples, not steps."""

    training_duration: int = Field(gt=0)
    total_batch_size: int = Field(gt=0)
    batch_size_per_gpu: int | Literal["auto"] = "auto"
    lr: float = Field(2e-4, gt=0)
    lr_rampup: int = Field(0, ge=0)
    lr_decay: float = Field(1.0, gt=0, le=1)
    lr_decay_rate: int = Field(500_000, gt=0)
    grad_clip_threshold: float | None = Field(None, gt=0)
    patch_shape_x: int | None = Field(None, gt=0)
    patch_shape_y: int | None = Field(None, gt=0)
    patch_num: int = Field(1, gt=0)
    # Patches (x images) through the network at once; the rest in further groups, with the
    # same gradients as all at once. null: all patches at once.
    max_patch_per_gpu: int | None = Field(None, gt=0)
    max_consecutive_nonfinite: int = Field(5, gt=0)

    @field_validator("batch_size_per_gpu")
    @classmethod
    def _positive(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value <= 0:
            raise ValueError("must be a positive integer or 'auto'")
        return value


class Performance(StrictModel):
    """``training.perf``: speed/memory switches; all of them work on CPU and GPU."""

    # auto: bf16 autocast on a CUDA device that has bf16, fp32 elsewhere
    fp_optimizations: Literal["auto", "fp32", "amp-bf16", "amp-fp16"] = "auto"
    # null: on where the run has a CUDA device, off elsewhere (compiling costs minutes of
    # start-up and gains little on a CPU).
    torch_compile: bool | None = None
    dataloader_workers: int = Field(2, ge=0)
    channels_last: bool | None = None
    songunet_checkpoint_level: int = Field(0, ge=0)
    # Diffusion: keep each sample's frozen regression output after its first use (see
    # helpers/training/regression_cache.py), unless the cache would exceed this size.
    cache_regression_mean: bool = True
    regression_cache_max_gib: float = Field(32.0, gt=0)
    # GPU paths; null: on where the run has a CUDA device, off elsewhere.
    fused_optimizer: bool | None = None    # Adam's fused kernel (one launch for all weights)
    cudnn_benchmark: bool | None = None    # cuDNN picks the fastest convolution per shape
    ddp_static_graph: bool = False         # DDP: the graph is the same every step
    # Steps between reading the loss to the host. Above 1, non-finite steps are skipped on the
    # device by the fused optimizer, so the GPU never waits for the CPU; null: 8 where the run
    # uses the fused optimizer without fp16, 1 elsewhere.
    host_sync_steps: int | None = Field(None, gt=0)
    # NVIDIA Apex's channels-last GroupNorm in the networks; null: on where the run has a
    # CUDA device and Apex is importable.
    use_apex_gn: bool | None = None


class InputOutput(StrictModel):
    """``training.io``: where results go and how often things happen (in samples)."""

    checkpoint_dir: str
    regression_checkpoint_path: str | None = None
    initial_weights: str | None = None  # fine-tuning: start a new run from these weights
    print_progress_freq: int = Field(1000, gt=0)
    save_checkpoint_freq: int = Field(500_000, gt=0)
    save_n_recent_checkpoints: int = -1
    validation_freq: int = Field(50_000, gt=0)
    validation_steps: int = Field(10, gt=0)
    seed: int = 0

    @field_validator("save_n_recent_checkpoints")
    @classmethod
    def _keep_count(cls, value: int) -> int:
        if value == 0 or value < -1:
            raise ValueError("must be -1 (keep all) or a positive number of checkpoints to keep")
        return value


class TrainingSection(StrictModel):
    hp: HyperParameters
    perf: Performance = Field(default_factory=Performance)
    io: InputOutput


class TrainingConfig(StrictModel):
    """The whole composed training config."""

    dataset: dict[str, Any]
    validation: dict[str, Any] | None = None
    model: ModelConfig
    training: TrainingSection

    @model_validator(mode="after")
    def _consistent(self) -> TrainingConfig:
        hp, name = self.training.hp, self.model.name
        patch = (hp.patch_shape_x, hp.patch_shape_y)
        if self.model.is_patched and None in patch:
            raise ValueError(
                f"model.name={name} needs training.hp.patch_shape_x and "
                "training.hp.patch_shape_y"
            )
        if not self.model.is_patched and (patch != (None, None) or hp.patch_num != 1
                                          or hp.max_patch_per_gpu is not None):
            raise ValueError(
                f"training.hp.patch_shape_x/y, patch_num and max_patch_per_gpu apply to patched "
                "models only, "
                f"but model.name={name}; remove them or use a patched_diffusion model config"
            )
        if not self.model.is_regression and not self.training.io.regression_checkpoint_path:
            raise ValueError(
                f"model.name={name} trains on the residual of a regression model: set "
                "++training.io.regression_checkpoint_path=<path to the regression .mdlus>"
            )
        if "type" not in self.dataset:
            raise ValueError("dataset.type is not set")
        return self


def validate_training_config(config: Any) -> TrainingConfig:
    """Check a composed training config (an OmegaConf ``DictConfig`` or a plain dict)."""
    try:
        return TrainingConfig.model_validate(translate_reference_keys(plain_config(config)))
    except ValidationError as err:
        raise ConfigError(describe_validation_error(err)) from None
