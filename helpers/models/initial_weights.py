"""Starting a new training run from existing weights (fine-tuning), not resuming one.

``training.io.initial_weights=<.mdlus>`` copies every tensor of the checkpoint whose name and
shape match the new network; the others (e.g. layers whose size depends on the number of
channels) keep their fresh initialisation. Optimizer, sample counter and learning-rate schedule
start from zero. The checkpoint may be ours or a published CorrDiff one in the legacy classes
(``UNet``, ``EDMPrecondSR``), whose tensor names are the same; it is checked like every
checkpoint before it loads (`helpers.models.checkpoint_safety`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch

from helpers.infrastructure.errors import CheckpointError
from helpers.models.networks import load_module, resolve_checkpoint

logger = logging.getLogger("train")
OPTION = "training.io.initial_weights"


@dataclass
class Transfer:
    """What a weight transfer did, tensor by tensor."""

    source: Path
    copied: list[str] = field(default_factory=list)
    reshaped: list[str] = field(default_factory=list)  # present in both, shapes differ
    missing: list[str] = field(default_factory=list)  # in the new network only
    unused: list[str] = field(default_factory=list)  # in the checkpoint only
    copied_values: int = 0

    def summary(self) -> str:
        total = len(self.copied) + len(self.reshaped) + len(self.missing)
        text = (f"initial weights from {self.source}: {len(self.copied)} of {total} tensors "
                f"({self.copied_values:,} values) copied")
        if self.reshaped:
            text += f"; re-initialised (shape differs): {', '.join(self.reshaped)}"
        if self.missing:
            text += f"; re-initialised (not in the checkpoint): {', '.join(self.missing)}"
        if self.unused:
            text += f"; unused from the checkpoint: {', '.join(self.unused)}"
        return text


def transfer_weights(net: torch.nn.Module, path: str | Path) -> Transfer:
    """Copy the matching tensors of the checkpoint at ``path`` into ``net``."""
    source_path = resolve_checkpoint(path, OPTION)
    source = load_module(source_path, OPTION).state_dict()
    report = Transfer(source_path)
    target = net.state_dict()  # shares storage with the parameters: copies land in them
    with torch.no_grad():
        for name, tensor in target.items():
            if name not in source:
                report.missing.append(name)
            elif source[name].shape != tensor.shape:
                report.reshaped.append(name)
            else:
                tensor.copy_(source[name].to(tensor.dtype))
                report.copied.append(name)
                report.copied_values += tensor.numel()
    report.unused = [name for name in source if name not in target]
    if not report.copied:
        raise CheckpointError(
            f"{OPTION}={str(source_path)!r}: no tensor matches this run's "
            f"{type(net).__name__} by name and shape; is it a checkpoint of the same kind of "
            "model (regression or diffusion)?")
    return report
