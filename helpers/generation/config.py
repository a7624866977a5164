"""Typed validation of the generation config (``conf/config_generate*.yaml``), run at start-up."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, ValidationError, model_validator

from helpers.infrastructure.config_validation import (
    StrictModel,
    describe_validation_error,
    plain_config,
)
from helpers.infrastructure.errors import ConfigError
from helpers.infrastructure.reference_config import translate_reference_keys


class SamplerConfig(StrictModel):
    """EDM sampling of the residual. ``stochastic`` is EDM's Heun sampler with churn;
    ``deterministic`` is the general EDM sampler with a choice of solver (churn optional)."""

    type: Literal["stochastic", "deterministic"] = "stochastic"
    num_steps: int = Field(9, gt=1)
    solver: Literal["heun", "euler"] = "heun"
    sigma_min: float = Field(0.002, gt=0)
    sigma_max: float = Field(10.0, gt=0)
    rho: float = Field(7.0, gt=0)
    S_churn: float = Field(0.0, ge=0)
    S_min: float = Field(0.0, ge=0)
    S_max: float = Field(float("inf"), ge=0)
    S_noise: float = Field(1.0, ge=0)

    @model_validator(mode="after")
    def _consistent(self) -> SamplerConfig:
        if self.sigma_min >= self.sigma_max:
            raise ValueError(f"sampler.sigma_min={self.sigma_min} must be below "
                             f"sampler.sigma_max={self.sigma_max}")
        if self.type == "stochastic" and self.solver != "heun":
            raise ValueError("the stochastic sampler always uses Heun's solver; for Euler use "
                             "sampler.type=deterministic (set S_churn > 0 to inject noise)")
        return self


class GenerationPerformance(StrictModel):
    """``auto`` / ``null``: on where generation runs on a CUDA device, off elsewhere."""

    fp_optimizations: Literal["auto", "fp32", "amp-bf16", "amp-fp16"] = "auto"
    torch_compile: bool | None = None
    channels_last: bool | None = None
    use_apex_gn: bool | None = None  # NVIDIA Apex's GroupNorm; null: where Apex is importable


class GenerationIO(StrictModel):
    res_ckpt_filename: str | None = None
    reg_ckpt_filename: str | None = None
    output_filename: str


class GenerationSection(StrictModel):
    num_ensembles: int = Field(8, gt=0)
    seed_batch_size: int = Field(4, gt=0)
    times_per_batch: int = Field(1, gt=0)
    seed: int = 0
    inference_mode: Literal["regression", "diffusion", "all"] = "all"
    hr_mean_conditioning: bool | None = None  # None: as the diffusion model was trained
    # Condition on the samples' lead times; None: where the checkpoints embed lead time.
    has_lead_time: bool | None = None
    times: list[str] | None = None
    times_range: list[Any] | None = None
    patching: bool = False
    patch_shape_x: int | None = Field(None, gt=0)
    patch_shape_y: int | None = Field(None, gt=0)
    overlap_pix: int = Field(0, ge=0)
    boundary_pix: int = Field(0, ge=0)
    resume: bool = False
    sampler: SamplerConfig = Field(default_factory=SamplerConfig)
    perf: GenerationPerformance = Field(default_factory=GenerationPerformance)
    io: GenerationIO

    @model_validator(mode="after")
    def _consistent(self) -> GenerationSection:
        if self.times is not None and self.times_range is not None:
            raise ValueError("generation.times and generation.times_range are mutually "
                             "exclusive; set one of them to null")
        if self.times_range is not None and len(self.times_range) != 3:
            raise ValueError("generation.times_range must be [start, end, step], e.g. "
                             "['2021-02-01T00:00', '2021-02-02T00:00', '3h']")
        if self.inference_mode != "regression" and not self.io.res_ckpt_filename:
            raise ValueError(f"generation.inference_mode={self.inference_mode} needs the "
                             "diffusion checkpoint: set ++generation.io.res_ckpt_filename=<.mdlus>")
        if self.inference_mode != "diffusion" and not self.io.reg_ckpt_filename:
            raise ValueError(f"generation.inference_mode={self.inference_mode} needs the "
                             "regression checkpoint: set "
                             "++generation.io.reg_ckpt_filename=<.mdlus>")
        if self.inference_mode == "diffusion" and self.hr_mean_conditioning:
            raise ValueError("inference_mode=diffusion runs without a regression mean; set "
                             "generation.hr_mean_conditioning=false")
        if self.patching and None in (self.patch_shape_x, self.patch_shape_y):
            raise ValueError("generation.patching=true needs generation.patch_shape_x and "
                             "generation.patch_shape_y")
        return self


def _without_unused_checkpoint(config: Any) -> Any:
    """A config whose checkpoint for the model the inference mode does not use is left as
    ``???`` (e.g. the diffusion one of ``config_generate_mini.yaml`` in regression-only mode)
    gets ``null`` there, so it need not be given."""
    from omegaconf import DictConfig, OmegaConf

    if not isinstance(config, DictConfig):
        return config
    mode = OmegaConf.select(config, "generation.inference_mode", default="all",
                            throw_on_missing=False)
    unused = {"regression": "res_ckpt_filename", "diffusion": "reg_ckpt_filename"}.get(mode)
    io = OmegaConf.select(config, "generation.io", default=None)
    if unused is None or io is None or not OmegaConf.is_missing(io, unused):
        return config
    config = config.copy()
    OmegaConf.update(config, f"generation.io.{unused}", None, force_add=True)
    return config


class GenerationConfig(StrictModel):
    dataset: dict[str, Any]
    generation: GenerationSection


def validate_generation_config(config: Any) -> GenerationConfig:
    """Check a composed generation config (an OmegaConf ``DictConfig`` or a plain dict)."""
    try:
        plain = translate_reference_keys(plain_config(_without_unused_checkpoint(config)))
        return GenerationConfig.model_validate(plain)
    except ValidationError as err:
        raise ConfigError(describe_validation_error(err, "generation")) from None
