"""The order in which training samples are visited, reproducible from a sample count.

All ranks walk one seeded, endless stream of shuffled indices (a fresh permutation per pass over
the data). Each global batch of ``total_batch_size`` consecutive stream entries is cut into
``rounds x world_size`` slices of ``batch_size_per_gpu``: slice ``round * world_size + rank``
belongs to that rank and accumulation round. So every rank reads a disjoint share, 1 process
with accumulation sees the same samples as N processes, and a resumed run restarts the stream
exactly where it stopped.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from torch.utils.data import Dataset, Sampler


class GlobalBatchSampler(Sampler[int]):
    """Endless sampler yielding this rank's indices, ``batch_size_per_gpu`` at a time."""

    def __init__(self, num_samples: int, total_batch_size: int, batch_size_per_gpu: int,
                 world_size: int, rank: int, seed: int, start_sample: int = 0):
        if num_samples <= 0:
            raise ValueError("the training dataset is empty")
        self.num_samples = num_samples
        self.total_batch_size = total_batch_size
        self.batch_size_per_gpu = batch_size_per_gpu
        self.world_size = world_size
        self.rank = rank
        self.seed = seed
        self.start_sample = start_sample
        self.rounds = total_batch_size // (batch_size_per_gpu * world_size)

    def _permutation(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(self.num_samples)

    def stream(self, start: int, count: int) -> np.ndarray:
        """Entries ``start .. start + count`` of the shuffled stream."""
        positions = np.arange(start, start + count)
        epochs = positions // self.num_samples
        out = np.empty(count, dtype=np.int64)
        for epoch in np.unique(epochs):
            mask = epochs == epoch
            out[mask] = self._permutation(int(epoch))[positions[mask] % self.num_samples]
        return out

    def positions(self, step_start: int, round_index: int) -> list[int]:
        """Stream positions of the samples this rank reads in ``round_index`` of the step that
        starts at stream position ``step_start``: a key that names a sample globally."""
        first = step_start + (round_index * self.world_size + self.rank) * self.batch_size_per_gpu
        return list(range(first, first + self.batch_size_per_gpu))

    def __iter__(self) -> Iterator[int]:
        position = self.start_sample
        b = self.batch_size_per_gpu
        while True:
            batch = self.stream(position, self.total_batch_size)
            for round_index in range(self.rounds):
                first = (round_index * self.world_size + self.rank) * b
                yield from (int(i) for i in batch[first:first + b])
            position += self.total_batch_size


class WithIndex(Dataset):
    """A dataset whose items also carry their index, so a batch says which samples it holds."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        return (*self.dataset[index], index)
