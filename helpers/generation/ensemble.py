"""Generating CorrDiff ensembles: regression mean once per time, then diffusion members.

Each member's noise comes from its own generator seeded by (base seed, sample index, member), so
the numbers do not depend on ``seed_batch_size``, on the number of processes or on which other
times are requested. Members of each time are split across ranks; rank 0 gathers them and writes
the file one sample at a time.

A dataset may hold several windows per valid time, at different places (converted files do):
each window is a sample of its own, generated and written with its own lat/lon (the file is
then laid out along ``sample``; see `inference.generated_file`). Where the truth is missing (a
land-only or radar-coverage mask), the members are written as NaN too.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from datasets.base import PhysicalSample
from datasets.registry import build_dataset
from helpers.generation.background_io import BackgroundIO
from helpers.generation.checkpoints import load_diffusion_network, load_regression_checkpoint
from helpers.generation.config import GenerationConfig
from helpers.generation.time_selection import select_time_indices
from helpers.infrastructure.distributed import broadcast_object, gather_to_rank0, is_multi_process
from helpers.infrastructure.errors import CheckpointError, ConfigError
from helpers.infrastructure.output_paths import check_output_file
from helpers.infrastructure.precision import amp_dtype, autocast, on_cuda_unless_set
from helpers.models.networks import (
    apex_group_norm,
    check_lead_times,
    check_patch_shape,
    network_lead_time_steps,
    resolve_checkpoint,
)
from inference.generated_file import EnsembleWriter

logger = logging.getLogger("generate")


def member_seed(base_seed: int, sample_index: int, member: int) -> int:
    """A 32-bit seed unique to one member of one time."""
    return int(np.random.SeedSequence([base_seed, sample_index, member]).generate_state(1)[0])


class EnsembleGenerator:
    """Loads the dataset and checkpoints for a validated config; `run()` writes the file."""

    def __init__(self, config: GenerationConfig, dist_manager: Any,
                 attributes: dict[str, str] | None = None):
        self.config = config
        gen = self.gen = config.generation
        self.device = dist_manager.device
        self.rank, self.world_size = dist_manager.rank, dist_manager.world_size
        if self.rank == 0:  # before any work: the file must be writable where it is asked for
            check_output_file(gen.io.output_filename, "generation.io.output_filename")
        self.num_members = 1 if gen.inference_mode == "regression" else gen.num_ensembles
        self._require_checkpoints()  # before the dataset: it may take minutes to build
        self.dataset = build_dataset(config.dataset)
        keys = self.dataset.sample_keys() if hasattr(self.dataset, "sample_keys") else None
        self.indices = select_time_indices(self.dataset.time(), gen.times, gen.times_range, keys)
        if not self.indices:
            where = config.dataset.get("data_path", "the dataset")
            raise ConfigError(f"nothing to generate: {where} holds no samples")
        self.image_shape = tuple(self.dataset.image_shape())
        self.n_in = len(self.dataset.input_channels())
        self.n_out = len(self.dataset.output_channels())
        self.amp_dtype = amp_dtype(gen.perf.fp_optimizations, self.device)
        self.channels_last = on_cuda_unless_set(gen.perf.channels_last, self.device)
        self.torch_compile = on_cuda_unless_set(gen.perf.torch_compile, self.device)
        apex = apex_group_norm(gen.perf.use_apex_gn, self.device, "generation.perf.use_apex_gn")
        self.regression = self.diffusion = self.patching = None
        self.hr_mean_conditioning = False  # set from the diffusion checkpoint when one loads
        checkpoints = {}
        if gen.inference_mode != "diffusion":
            checkpoints["regression_checkpoint"] = str(resolve_checkpoint(
                gen.io.reg_ckpt_filename, "generation.io.reg_ckpt_filename").resolve())
        if gen.inference_mode != "regression":
            checkpoints["diffusion_checkpoint"] = str(resolve_checkpoint(
                gen.io.res_ckpt_filename, "generation.io.res_ckpt_filename").resolve())
        self.attributes = {**(attributes or {}), **checkpoints,
                           "inference_mode": gen.inference_mode}
        categories = [self.dataset.output_channels()[c].label
                      for c in self.dataset.probability_channels()]
        if categories:  # scoring gives these Brier scores and reliability counts
            self.attributes["probability_variables"] = " ".join(categories)
        # The output layout is checked before any model is loaded.
        self.writer = self._writer() if self.rank == 0 else None
        if gen.inference_mode != "diffusion":
            self.regression = load_regression_checkpoint(gen, self.dataset, apex).to(self.device)
        if gen.inference_mode != "regression":
            self.diffusion, self.hr_mean_conditioning = load_diffusion_network(
                gen, self.dataset, apex)
            self.diffusion = self.diffusion.to(self.device)
            if gen.patching:
                self.patching = self._grid_patching()
        for net in (self.regression, self.diffusion):
            if net is not None:
                net.eval().requires_grad_(False)
                net.amp_mode = self.amp_dtype is not None
                if self.channels_last:
                    net.to(memory_format=torch.channels_last)
        self.lead_time = self._uses_lead_time()
        self.categories = self.dataset.probability_channels()
        if self.torch_compile and self.regression is not None:
            self.regression = torch.compile(self.regression)
        if self.torch_compile and self.diffusion is not None:
            self.diffusion = torch.compile(self.diffusion)

    # ------------------------------------------------------------------------------ set-up
    def _uses_lead_time(self) -> bool:
        """Whether the networks take lead-time labels: where they embed them, which
        ``generation.has_lead_time`` (when set) must agree with."""
        embedded = {name: network_lead_time_steps(net) for name, net in (
            ("regression", self.regression), ("diffusion", self.diffusion)) if net is not None}
        aware = [name for name, steps in embedded.items() if steps is not None]
        wanted = self.gen.has_lead_time
        if wanted is not None and wanted != bool(aware):
            which = (f"the {' and '.join(aware)} checkpoint(s) embed lead time" if aware else
                     "neither checkpoint embeds lead time")
            raise ConfigError(f"generation.has_lead_time={wanted} but {which}; set it to "
                              f"{bool(aware)} or null")
        for name in aware:
            check_lead_times(embedded[name], self.dataset, f"the {name} checkpoint")
        return bool(aware)

    def _writer(self) -> EnsembleWriter:
        """The output file's writer: one lat/lon grid if every selected sample shares it,
        else each sample's own (windows of a larger domain)."""
        times = [self.dataset.time()[i] for i in self.indices]
        grid = shared_grid(self.dataset, self.indices)
        sample_grid = None if grid is not None else (
            lambda k: self.dataset.sample_latlon(self.indices[k]))
        lat, lon = grid if grid is not None else (None, None)
        hours = self.dataset.lead_time_hours()
        leads = None if hours is None else [hours[self.dataset.lead_time_label(i)]
                                            for i in self.indices]
        try:
            return EnsembleWriter(
                self.gen.io.output_filename, times, self.num_members, lat, lon,
                self.dataset.input_channels(), self.dataset.output_channels(),
                attributes=self.attributes, resume=self.gen.resume, sample_grid=sample_grid,
                lead_times=leads)
        except ValueError as err:
            raise ConfigError(f"generation.io.output_filename: {err}") from err

    def _require_checkpoints(self) -> None:
        """A missing checkpoint usually means that model has not been trained yet: say how."""
        diffusion_command = "python train.py --config-name=config_training_synthetic_diffusion"
        wanted = {"regression": ("reg_ckpt_filename", "python train.py"),
                  "diffusion": ("res_ckpt_filename", diffusion_command)}
        for model, (option, command) in wanted.items():
            if {model, self.gen.inference_mode} == {"regression", "diffusion"}:
                continue
            path = Path(getattr(self.gen.io, option))
            if not path.exists() or (path.is_dir() and not any(path.glob("*.mdlus"))):
                raise CheckpointError(
                    f"generation.io.{option}={str(path)!r} has no {model} checkpoint; train the "
                    f"{model} model first (for the embedded dataset: `{command}`) or point "
                    f"++generation.io.{option} at a .mdlus file")

    def _grid_patching(self):
        from physicsnemo.diffusion.multi_diffusion import GridPatching2D

        gen = self.gen
        patch = (gen.patch_shape_y, gen.patch_shape_x)
        # Channel multipliers from the arguments saved with the checkpoint.
        from helpers.models.checkpoint_safety import check_mdlus

        option = "generation.io.res_ckpt_filename"
        saved = check_mdlus(resolve_checkpoint(gen.io.res_ckpt_filename, option), option)
        saved_args = saved.get("__args__") if isinstance(saved.get("__args__"), dict) else {}
        check_patch_shape(patch, self.image_shape,
                          {"channel_mult": saved_args.get("channel_mult", [1])},
                          "generation.patch_shape_y/x")
        if min(patch) <= gen.overlap_pix + 2 * gen.boundary_pix:
            raise ConfigError(f"generation.patch_shape_y/x={patch} must exceed overlap_pix + 2 x "
                              f"boundary_pix = {gen.overlap_pix + 2 * gen.boundary_pix}")
        return GridPatching2D(img_shape=self.image_shape, patch_shape=patch,
                              overlap_pix=gen.overlap_pix,
                              boundary_pix=gen.boundary_pix).to(self.device)

    # ------------------------------------------------------------------------------ sampling
    def _regression_mean(self, img_lr: torch.Tensor,
                         labels: torch.Tensor | None = None) -> torch.Tensor:
        """The regression mean of each image of ``img_lr`` in one network call (as
        physicsnemo's ``regression_step`` computes one: from a float64 zero state)."""
        zeros = torch.zeros((img_lr.shape[0], self.n_out, *self.image_shape),
                            dtype=torch.float64, device=self.device)
        extra = {} if labels is None else {"lead_time_label": labels}
        with torch.inference_mode(), autocast(self.device, self.amp_dtype):
            mean = self.regression(x=zeros, img_lr=img_lr, **extra)
        return mean.float()

    def _residuals(self, img_lr: torch.Tensor, mean_hr: torch.Tensor | None,
                   seeds: list[int], labels: torch.Tensor | None = None) -> torch.Tensor:
        """One network batch of members: row ``i`` has input ``img_lr[i]``, regression mean
        ``mean_hr[i]``, lead-time label ``labels[i]`` and noise seeded by ``seeds[i]``."""
        from physicsnemo.diffusion.samplers import deterministic_sampler, stochastic_sampler
        from physicsnemo.diffusion.utils import StackedRandomGenerator

        sampler = self.gen.sampler
        rnd = StackedRandomGenerator(self.device, seeds)
        latents = rnd.randn([len(seeds), self.n_out, *self.image_shape], device=self.device)
        kwargs = dict(randn_like=rnd.randn_like, patching=self.patching,
                      num_steps=sampler.num_steps, sigma_min=sampler.sigma_min,
                      sigma_max=sampler.sigma_max, rho=sampler.rho, S_churn=sampler.S_churn,
                      S_min=sampler.S_min, S_max=sampler.S_max, S_noise=sampler.S_noise)
        if self.hr_mean_conditioning:
            kwargs["mean_hr"] = mean_hr
        if labels is not None:
            kwargs["lead_time_label"] = labels
        with torch.inference_mode(), autocast(self.device, self.amp_dtype):
            if sampler.type == "stochastic":
                out = stochastic_sampler(self.diffusion, latents, img_lr, **kwargs)
            else:
                out = deterministic_sampler(self.diffusion, latents, img_lr,
                                            solver=sampler.solver, **kwargs)
        return out.float()

    def member_batches(self, group_size: int) -> list[list[tuple[int, int]]]:
        """The network batches of a group of ``group_size`` samples: rows ``(sample in group,
        member)`` in order, ``seed_batch_size`` members per sample in each batch, and this
        rank's share of them. Batches are formed the same way however many processes run, and
        go to ranks whole, so batched kernels give the same numbers on 1 or N processes."""
        rows = [(g, m) for g in range(group_size) for m in range(self.num_members)]
        size = self.gen.seed_batch_size * group_size
        batches = [rows[start:start + size] for start in range(0, len(rows), size)]
        return batches[self.rank::self.world_size]

    def predict(self, sample_indices: list[int], samples: list[tuple[tuple, PhysicalSample]]
                ) -> list[tuple[np.ndarray, np.ndarray, dict[int, np.ndarray]]]:
        """Each sample's input, truth and this rank's members (by member number), in physical
        units; ``samples`` are `DownscalingDataset.sample_in_both_units` pairs. The regression
        runs once for the group and the diffusion batches may hold members of several
        samples."""
        img_lr = torch.as_tensor(np.stack([model[1] for model, _ in samples]),
                                 device=self.device)
        labels = torch.as_tensor([self.dataset.lead_time_label(i) for i in sample_indices],
                                 device=self.device) if self.lead_time else None
        if self.channels_last:
            img_lr = img_lr.contiguous(memory_format=torch.channels_last)
        mean = self._regression_mean(img_lr, labels) if self.regression is not None else None
        members: list[dict[int, np.ndarray]] = [{} for _ in samples]
        for batch in self.member_batches(len(samples)):
            rows = torch.as_tensor([g for g, _ in batch], device=self.device)
            if self.diffusion is None:
                values = mean.index_select(0, rows).cpu().numpy()
            else:
                seeds = [member_seed(self.gen.seed, sample_indices[g], m) for g, m in batch]
                rows_mean = mean.index_select(0, rows) if mean is not None else None
                residual = self._residuals(
                    img_lr.index_select(0, rows), rows_mean, seeds,
                    None if labels is None else labels.index_select(0, rows))
                values = (residual if rows_mean is None else residual + rows_mean).cpu().numpy()
            for (g, m), value in zip(batch, self.dataset.denormalize_output(values),
                                     strict=True):
                members[g][m] = as_probabilities(value, self.categories)
        results = []
        for (_, physical), mine in zip(samples, members, strict=True):
            missing = ~np.isfinite(physical.truth)
            if missing.any():  # no verifiable value there: the members are left out as well
                for member in mine.values():
                    member[missing] = np.nan
            results.append((physical.inputs, physical.truth, mine))
        return results

    # ------------------------------------------------------------------------------ loop
    def run(self) -> Path:
        output = Path(self.gen.io.output_filename)
        times = [self.dataset.time()[i] for i in self.indices]
        # Without generation.perf.torch_compile nothing is compiled, not even what a library
        # marks for torch.compile (minutes of start-up on a CPU for a few calls).
        dynamo = (contextlib.nullcontext() if self.torch_compile
                  else torch.compiler.set_stance("force_eager"))
        writer = self.writer
        with dynamo, writer if writer is not None else contextlib.nullcontext():
            done = broadcast_object(sorted(writer.completed) if writer is not None else None)
            todo = [k for k in range(len(times)) if k not in set(done)]
            if self.rank == 0:
                what = "time(s)" if writer.sample_dim == "time" else (
                    f"sample(s) of {len(set(times))} valid time(s), each with its own window")
                logger.info("generating %d member(s) for %d %s (%d already written) with "
                            "%d process(es) into %s", self.num_members, len(todo), what,
                            len(done), self.world_size, output.resolve())
            bar = tqdm(total=len(todo) * self.num_members, unit="member", desc="generating",
                       disable=self.rank != 0, dynamic_ncols=True)
            groups = [todo[i:i + self.gen.times_per_batch]
                      for i in range(0, len(todo), self.gen.times_per_batch)]
            with BackgroundIO(self.dataset, self.indices) as io:
                io.prefetch(groups[0] if groups else [])
                for number, group in enumerate(groups):
                    samples = io.samples()
                    if number + 1 < len(groups):  # read the next inputs while this one runs
                        io.prefetch(groups[number + 1])
                    results = self.predict([self.indices[k] for k in group], samples)
                    parts = gather_to_rank0([mine for _, _, mine in results])
                    if writer is not None:
                        io.write(writer, group, results, parts, self.num_members)
                    bar.update(self.num_members * len(group))
                    bar.set_postfix(time=f"{times[group[-1]]:%Y-%m-%d %H:%M}", refresh=False)
            bar.close()
        if is_multi_process():
            torch.distributed.barrier()
        if self.rank == 0:
            logger.info("wrote %s", output.resolve())
        return output



def as_probabilities(fields: np.ndarray, categories: list[int]) -> np.ndarray:
    """``fields (C, H, W)`` with its category channels made probabilities: clipped to
    [0, 1] and divided by their sum (a regression mean plus a diffusion residual is not one
    by itself); equal shares where every category is 0. Changed in place."""
    if not categories:
        return fields
    shares = np.clip(fields[categories], 0.0, None)
    total = shares.sum(axis=0, keepdims=True)
    fields[categories] = np.where(total > 0, shares / np.where(total > 0, total, 1.0),
                                  1.0 / len(categories))
    return fields


def shared_grid(dataset, indices: list[int]) -> tuple[np.ndarray, np.ndarray] | None:
    """The ``(lat, lon)`` all the samples share (NaN counts as equal), or None if they differ."""
    first = dataset.sample_latlon(indices[0])
    for index in indices[1:]:
        lat, lon = dataset.sample_latlon(index)
        if not (np.array_equal(lat, first[0], equal_nan=True)
                and np.array_equal(lon, first[1], equal_nan=True)):
            return None
    return first


def run_attributes(config_yaml: str) -> dict[str, str]:
    """Provenance recorded in the output file."""
    import physicsnemo

    from helpers import __version__

    return {"config": config_yaml, "software": f"corrdiff {__version__}, physicsnemo "
            f"{physicsnemo.__version__}, torch {torch.__version__}",
            "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")}
