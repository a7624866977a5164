"""Random patches taken a group at a time (``training.hp.max_patch_per_gpu``).

At full HRRR size the ``patch_num`` patches of an image may not fit through the network at
once. The patch positions of a step are still drawn all together, from the step's key, and the
patches then go through the network and backward in groups of at most ``max_patch_per_gpu``
rows (patches x images), so the gradients, and the noise of every patch (keyed by its number
within the image, see `helpers.training.keyed_noise`), are those of all patches at once.
"""

from __future__ import annotations

import torch
from physicsnemo.diffusion.multi_diffusion import RandomPatching2D


def patch_groups(patch_num: int, batch_size_per_gpu: int,
                 max_patch_per_gpu: int | None) -> list[tuple[int, int]]:
    """``[(first patch, end)]`` of each group: as many patches per group as
    ``max_patch_per_gpu // batch_size_per_gpu`` allows (the reference's rule), all in one
    group without a limit."""
    if max_patch_per_gpu is None:
        return [(0, patch_num)]
    size = max(1, min(patch_num, max_patch_per_gpu // batch_size_per_gpu))
    return [(start, min(start + size, patch_num)) for start in range(0, patch_num, size)]


class GroupedRandomPatching(RandomPatching2D):
    """physicsnemo's random patching, whose drawn positions can be used one group at a time."""

    def __init__(self, img_shape, patch_shape, patch_num: int):
        super().__init__(img_shape=img_shape, patch_shape=patch_shape, patch_num=patch_num)
        self.total = patch_num
        self.drawn = self.patch_indices.clone()

    def draw(self, generator: torch.Generator | None = None) -> None:
        """New positions for all ``total`` patches, every patch in use."""
        self._patch_num = self.total
        self.reset_patch_indices(generator=generator)
        self.drawn = self.patch_indices.clone()

    def use(self, first: int, end: int) -> None:
        """Take patches ``first:end`` of the drawn positions from now on."""
        self._patch_num = end - first
        self.register_buffer("patch_indices", self.drawn[first:end].clone(), persistent=False)
        self._global_index_needs_update = True  # the parent recomputes its index lazily
