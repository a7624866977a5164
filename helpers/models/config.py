"""Typed schema of the ``model`` config section (``conf/model/*.yaml``): which network is
built, and the EDM preconditioning numbers it is trained with."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from helpers.infrastructure.config_validation import StrictModel

REGRESSION_MODELS = ("regression", "lt_aware_regression", "lt_aware_ce_regression")
PATCHED_MODELS = ("patched_diffusion", "lt_aware_patched_diffusion")
LEAD_TIME_UNET = "SongUNetPosLtEmbd"


class ModelConfig(StrictModel):
    """Which network is trained and how it is built (``conf/model/*.yaml``).

    The reference's names: ``lt_aware_*`` are lead-time-aware (a `SongUNetPosLtEmbd`
    conditioned on the sample's lead-time label), ``lt_aware_ce_regression`` also trains the
    dataset's category channels with cross-entropy (probabilities at inference)."""

    name: Literal["regression", "lt_aware_regression", "lt_aware_ce_regression", "diffusion",
                  "patched_diffusion", "lt_aware_patched_diffusion"]
    hr_mean_conditioning: bool = False
    P_mean: float = -1.2
    P_std: float = Field(1.2, gt=0)
    sigma_data: float = Field(0.5, gt=0)
    model_args: dict[str, Any] = Field(default_factory=dict)

    @field_validator("model_args")
    @classmethod
    def _known_architecture(cls, args: dict[str, Any]) -> dict[str, Any]:
        allowed = {"SongUNetPosEmbd", "SongUNetPosLtEmbd", "SongUNet", "DhariwalUNet"}
        model_type = args.get("model_type", "SongUNetPosEmbd")
        if model_type not in allowed:
            raise ValueError(f"model_type {model_type!r} is not one of {sorted(allowed)}")
        return args

    @model_validator(mode="after")
    def _lead_time_family(self) -> ModelConfig:
        lt_name = self.name.startswith("lt_aware")
        if lt_name and not self.lead_time_aware:
            raise ValueError(f"model.name={self.name} is lead-time-aware: set "
                             f"model.model_args.model_type={LEAD_TIME_UNET}")
        if self.lead_time_aware and not lt_name:
            raise ValueError(f"model.model_args.model_type={LEAD_TIME_UNET} needs a "
                             "lead-time-aware model.name (lt_aware_regression, "
                             f"lt_aware_ce_regression or lt_aware_patched_diffusion), not "
                             f"{self.name}")
        if self.lead_time_aware and not self.model_args.get("lead_time_channels"):
            raise ValueError(f"model.model_args.lead_time_channels must be set (e.g. 4) for "
                             f"model_type={LEAD_TIME_UNET}")
        return self

    @property
    def is_regression(self) -> bool:
        return self.name in REGRESSION_MODELS

    @property
    def is_patched(self) -> bool:
        return self.name in PATCHED_MODELS

    @property
    def lead_time_aware(self) -> bool:
        return self.model_args.get("model_type") == LEAD_TIME_UNET

    @property
    def cross_entropy(self) -> bool:
        """Category channels trained with cross-entropy (``lt_aware_ce_regression``)."""
        return self.name == "lt_aware_ce_regression"
