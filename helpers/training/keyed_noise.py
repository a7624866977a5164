"""Diffusion-training randomness keyed by sample, not by process.

EDM training draws, for every sample, a noise level sigma and a noise field (and, with
patching, the patch positions). Drawn from each process's own generator, they would depend on
how samples are split over processes and accumulation rounds, and on where a run was resumed.
Here each sample's draws come from a generator seeded by ``(seed, sample key)``, the key being
the sample's position in the global training stream (see `helpers.training.data_order`), and the
patch positions of a step from ``(seed, step)``. So a run gives the same losses and weights on 1 or
N processes, with any ``batch_size_per_gpu``, resumed or not (up to float reduction order).
Dropout, where a model uses it, still draws from each process's generator.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from physicsnemo.diffusion.metrics import ResidualLoss

# Separate key spaces, so no two kinds of draw ever share a stream.
TRAIN_NOISE, TRAIN_PATCHES, VALID_NOISE, VALID_PATCHES = range(4)


def keyed_generator(device: torch.device, *key: int) -> torch.Generator:
    """A generator on ``device`` whose stream depends only on ``key`` (non-negative ints)."""
    words = np.random.SeedSequence([int(k) for k in key]).generate_state(2, dtype=np.uint32)
    seed = (int(words[0]) << 31) ^ int(words[1])  # 63 bits: any device's manual_seed takes it
    return torch.Generator(device=device).manual_seed(seed)


class KeyedResidualLoss(ResidualLoss):
    """physicsnemo's residual EDM loss, each sample's sigma and noise drawn from its own key.

    Set ``sample_keys`` (one int per image of the batch) before each call; with patching the
    batch is patch-major (entry ``p * B + b`` is patch ``p`` of image ``b``) and each patch gets
    its own stream. With ``sample_keys`` unset it draws like the parent class.
    """

    def __init__(self, *args, seed: int, key_space: int = TRAIN_NOISE, **kwargs):
        super().__init__(*args, **kwargs)
        self.seed = seed
        self.key_space = key_space
        self.sample_keys: Sequence[int] | None = None
        self.patch_offset = 0  # number of this call's first patch (patch groups)

    def get_noise_params(self, y: torch.Tensor):
        if self.sample_keys is None:
            return super().get_noise_params(y)
        images = len(self.sample_keys)
        if y.shape[0] % images:
            raise RuntimeError(f"{y.shape[0]} noise draws for {images} sample keys")
        rnd_normal, noise = [], []
        for row in range(y.shape[0]):
            patch, image = divmod(row, images)
            patch += self.patch_offset
            generator = keyed_generator(y.device, self.seed, self.key_space,
                                        self.sample_keys[image], patch)
            rnd_normal.append(torch.randn((1, 1, 1), generator=generator, device=y.device))
            noise.append(torch.randn(y.shape[1:], generator=generator, device=y.device,
                                     dtype=y.dtype))
        sigma = (torch.stack(rnd_normal) * self.P_std + self.P_mean).exp()
        weight = (sigma**2 + self.sigma_data**2) / (sigma * self.sigma_data) ** 2
        return torch.stack(noise) * sigma, sigma, weight
