"""The frozen regression network's output per training sample, computed once and reused.

Diffusion training learns the residual ``target - regression(input)``. The regression network
is frozen, so its output for a sample never changes, yet a plain loop runs it again every time
the sample comes round (and for every patch group). Here each sample's output is computed the
first time the sample is drawn and kept in a memory-mapped file beside the run; later epochs,
accumulation rounds and resumed runs read it instead. Each process keeps its own file (samples
move between ranks from one epoch to the next, and no process ever waits on another's writes).

The files sit in ``<checkpoint_dir>/regression_cache/<key>/``, the key a hash of the regression
checkpoint's bytes, the dataset (file identity, channels, statistics, image shape) and the
precision the regression runs in; a run with another key deletes the old caches, so a changed
checkpoint or dataset is never served stale means.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

logger = logging.getLogger(__name__)
CACHE_DIR = "regression_cache"


def cache_key(regression_checkpoint: Path, dataset: Any, precision: str) -> str:
    """A short hash that changes with the checkpoint, the data or the precision."""
    from helpers.models.facts import statistics_fingerprint

    digest = hashlib.sha256()
    with open(regression_checkpoint, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    data_path = getattr(dataset, "data_path", None)
    identity = None
    if data_path is not None and Path(data_path).exists():
        stat = Path(data_path).stat()
        identity = [str(Path(data_path).resolve()), stat.st_size, stat.st_mtime_ns]
    description = {
        "data": identity, "samples": len(dataset), "dataset": type(dataset).__name__,
        "inputs": [c.label for c in dataset.input_channels()],
        "outputs": [c.label for c in dataset.output_channels()],
        "shape": list(dataset.image_shape()), "statistics": statistics_fingerprint(dataset),
        "precision": precision,
    }
    digest.update(json.dumps(description, sort_keys=True).encode())
    return digest.hexdigest()[:16]


class RegressionMeanCache:
    """Per-sample regression output of one process, filled on first use."""

    def __init__(self, run_dir: Path, key: str, num_samples: int, shape: Sequence[int],
                 rank: int):
        self.directory = Path(run_dir) / CACHE_DIR / key
        if rank == 0:
            _remove_stale(self.directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        values_path = self.directory / f"rank{rank}.means.npy"
        done_path = self.directory / f"rank{rank}.done.npy"
        full_shape = (num_samples, *[int(s) for s in shape])
        reuse = values_path.exists() and done_path.exists()
        if reuse:
            try:
                self.values = np.load(values_path, mmap_mode="r+")
                self.done = np.load(done_path, mmap_mode="r+")
                reuse = self.values.shape == full_shape and self.done.shape == (num_samples,)
            except (OSError, ValueError):
                reuse = False
        if not reuse:
            self.values = np.lib.format.open_memmap(values_path, mode="w+", dtype=np.float32,
                                                    shape=full_shape)
            self.done = np.lib.format.open_memmap(done_path, mode="w+", dtype=np.bool_,
                                                  shape=(num_samples,))
        self.computed = 0
        self.reused = 0
        logger.info("regression means cached in %s (%d of %d samples already there)",
                    self.directory, int(self.done.sum()), num_samples)

    def means(self, indices: Sequence[int], img_lr: torch.Tensor,
              compute: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """The regression output for the samples ``indices`` (whose inputs are ``img_lr``),
        computing only those not cached yet: ``compute(rows)`` gives the output of the batch
        rows ``rows``."""
        indices = np.asarray(indices, dtype=np.int64)
        missing = np.flatnonzero(~self.done[indices])
        if missing.size:
            rows = torch.as_tensor(missing, device=img_lr.device)
            fresh = compute(rows).float().cpu().numpy()
            self.values[indices[missing]] = fresh
            self.done[indices[missing]] = True  # after the values: a flag never precedes them
        self.computed += int(missing.size)
        self.reused += int(indices.size - missing.size)
        means = torch.from_numpy(np.ascontiguousarray(self.values[indices]))
        if img_lr.device.type == "cuda":  # from pageable memory the copy would wait for the GPU
            means = means.pin_memory()
        return means.to(img_lr.device, non_blocking=True)


def _remove_stale(keep: Path) -> None:
    """Caches of other keys (another checkpoint or dataset) are deleted."""
    parent = keep.parent
    if not parent.is_dir():
        return
    for entry in parent.iterdir():
        if entry != keep and entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
            logger.info("removed the stale regression cache %s", entry)


def cache_bytes(num_samples: int, shape: Sequence[int]) -> int:
    return int(num_samples) * int(np.prod([int(s) for s in shape])) * 4


def flush(cache: RegressionMeanCache | None) -> None:
    """Write the cache's pages to disk (with a checkpoint, so a resumed run finds them)."""
    if cache is not None:
        cache.values.flush()
        cache.done.flush()
