"""What the typed config schemas share: strict pydantic models, turning a composed Hydra
config into a plain dict, and one readable line for a validation error."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from helpers.infrastructure.errors import ConfigError


class StrictModel(BaseModel):
    """A config section that rejects unknown keys, so a misspelt option fails at start-up."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())


def plain_config(config: Any) -> dict[str, Any]:
    """A composed config (OmegaConf ``DictConfig`` or dict) as a plain dict without Hydra's own
    section; values left as ``???`` are named in one error."""
    from omegaconf import DictConfig, OmegaConf

    if isinstance(config, DictConfig):
        missing = sorted(OmegaConf.missing_keys(config))
        if missing:
            raise ConfigError(
                f"config value(s) {missing} are not set; give them on the command line, e.g. "
                f"++{missing[0]}=<value>"
            )
        config = OmegaConf.to_container(config, resolve=True)
    return {k: v for k, v in config.items() if k != "hydra"}


def describe_validation_error(err: ValidationError, what: str = "training") -> str:
    problems = []
    for item in err.errors():
        field = ".".join(str(p) for p in item["loc"]) or "config"
        if item["type"] == "extra_forbidden":
            problems.append(f"{field}: unknown key (check its spelling)")
        else:
            message = item["msg"].removeprefix("Value error, ")
            problems.append(f"{field}: {message} (got {item.get('input')!r})"
                            if item["type"] != "value_error" or item["loc"] else message)
    return f"invalid {what} config: " + "; ".join(problems)
