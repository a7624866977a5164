"""Training checkpoints: the model as a physicsnemo ``.mdlus`` plus the state needed to resume.

Layout under ``<checkpoint_dir>/checkpoints_<model name>/``::

    <ModelClass>.0.<samples seen>.mdlus     # loadable with physicsnemo.Module.from_checkpoint
    <ModelClass>.0.<samples seen>.json      # what generation needs to know (helpers.models.facts)
    training_state.0.<samples seen>.pt      # optimizer, schedule position, RNG states, ...

Each is written to a temporary name and renamed, the state file last, so the newest set whose
state file exists is always complete: a kill mid-write never leaves a corrupt latest checkpoint.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from helpers.infrastructure.atomic_write import atomic_path
from helpers.infrastructure.errors import CheckpointError
from helpers.models.checkpoint_safety import check_mdlus, load_plain_state
from helpers.models.facts import facts_path, write_facts

logger = logging.getLogger(__name__)
STATE_PREFIX = "training_state"
_NAME = re.compile(r"^(?P<stem>.+)\.0\.(?P<samples>\d+)\.(?P<ext>mdlus|pt)$")


@dataclass(frozen=True)
class Checkpoint:
    samples: int
    model_path: Path
    state_path: Path


class CheckpointStore:
    """Saving, finding, loading and pruning the checkpoints of one model in one directory."""

    def __init__(self, directory: str | Path, model_class: str, keep: int = -1):
        self.directory = Path(directory)
        self.model_class = model_class
        self.keep = keep

    def paths(self, samples: int) -> Checkpoint:
        return Checkpoint(
            samples,
            self.directory / f"{self.model_class}.0.{samples}.mdlus",
            self.directory / f"{STATE_PREFIX}.0.{samples}.pt",
        )

    def complete(self) -> list[Checkpoint]:
        """Checkpoints with both files present, oldest first."""
        if not self.directory.is_dir():
            return []
        found = []
        for path in self.directory.glob(f"{STATE_PREFIX}.0.*.pt"):
            match = _NAME.match(path.name)
            if match:
                checkpoint = self.paths(int(match["samples"]))
                if checkpoint.model_path.is_file():
                    found.append(checkpoint)
        return sorted(found, key=lambda c: c.samples)

    def latest(self) -> Checkpoint | None:
        found = self.complete()
        return found[-1] if found else None

    def save(self, model: torch.nn.Module, state: dict[str, Any], samples: int,
             facts: dict[str, Any] | None = None) -> Checkpoint:
        """Write the model, its facts, then the state, each atomically; then prune."""
        for name, tensor in model.state_dict().items():
            if torch.is_floating_point(tensor) and not torch.isfinite(tensor).all():
                raise CheckpointError(
                    f"refusing to save a checkpoint at {samples} samples: parameter {name!r} "
                    "is not finite"
                )
        self.directory.mkdir(parents=True, exist_ok=True)
        checkpoint = self.paths(samples)
        with atomic_path(checkpoint.model_path, ".tmp.mdlus") as temporary:
            model.save(str(temporary))  # physicsnemo wants the .mdlus extension
        if facts is not None:
            write_facts(checkpoint.model_path, {**facts, "samples": samples})
        with atomic_path(checkpoint.state_path) as temporary:
            torch.save(state, temporary)
        self.prune()
        return checkpoint

    def prune(self) -> None:
        if self.keep < 0:
            return
        for old in self.complete()[:-self.keep]:
            old.state_path.unlink(missing_ok=True)
            facts_path(old.model_path).unlink(missing_ok=True)
            old.model_path.unlink(missing_ok=True)
            logger.info("removed old checkpoint %s", old.model_path.name)

    def load_state(self, checkpoint: Checkpoint) -> dict[str, Any]:
        """The saved training state (optimizer, samples seen, RNG states, ...): plain data and
        tensors only, loaded without running any code from the file."""
        state = load_plain_state(checkpoint.state_path, "training state")
        if not isinstance(state, dict) or "samples" not in state:
            raise CheckpointError(
                f"training state {str(checkpoint.state_path)!r} is not one written by train.py; "
                "delete it and its .mdlus to resume from the previous checkpoint")
        return state

    def load_weights(self, checkpoint: Checkpoint, model: torch.nn.Module) -> None:
        check_mdlus(checkpoint.model_path, "model checkpoint")
        try:
            model.load(str(checkpoint.model_path), map_location="cpu")
        except Exception as err:
            reason = str(err).strip().splitlines()[0][:300]
            raise CheckpointError(
                f"model checkpoint {str(checkpoint.model_path)!r} cannot be loaded into this "
                f"run's {type(model).__name__} ({type(err).__name__}: {reason}); delete it and "
                "its training_state file, or use another training.io.checkpoint_dir"
            ) from err
