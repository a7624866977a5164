"""The CorrDiff training loop: set up, loop, report, checkpoint.

One `Trainer` trains either the regression UNet (loss: squared error of the predicted mean) or
the residual diffusion model (EDM loss on target minus the frozen regression prediction,
optionally on random patches). Everything is counted in samples: the learning-rate schedule,
reporting, validation and checkpoints, so results do not depend on batch size or world size.
"""

from __future__ import annotations

import contextlib
import logging
import math
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from datasets.registry import build_dataset
from helpers.infrastructure.distributed import (
    all_gather_objects,
    all_reduce_mean,
    batch_layout,
    broadcast_object,
    is_multi_process,
)
from helpers.infrastructure.errors import CheckpointError, ConfigError, TrainingDiverged
from helpers.infrastructure.output_paths import ensure_writable_directory
from helpers.infrastructure.precision import (
    amp_dtype,
    autocast,
    on_cuda_unless_set,
    resolve_precision,
)
from helpers.models.checkpoints import CheckpointStore
from helpers.models.facts import channel_facts, statistics_fingerprint
from helpers.models.initial_weights import transfer_weights
from helpers.models.networks import (
    PatchEmbeddingOrder,
    apex_group_norm,
    build_network,
    check_lead_times,
    check_patch_shape,
    load_regression_network,
    network_lead_time_steps,
    resolve_checkpoint,
)
from helpers.training.config import TrainingConfig
from helpers.training.data_order import GlobalBatchSampler, WithIndex
from helpers.training.keyed_noise import (
    TRAIN_NOISE,
    TRAIN_PATCHES,
    VALID_NOISE,
    VALID_PATCHES,
    KeyedResidualLoss,
    keyed_generator,
)
from helpers.training.lr_schedule import learning_rate
from helpers.training.masked_loss import per_sample_loss, regression_mean
from helpers.training.patch_groups import patch_groups
from helpers.training.regression_cache import RegressionMeanCache, cache_bytes, cache_key, flush
from helpers.training.reporter import TrainingReporter

logger = logging.getLogger("train")


def _crossed(before: int, after: int, every: int) -> bool:
    return before // every != after // every


class Trainer:
    """Holds everything one training run needs; `run()` trains until the configured length."""

    def __init__(self, config: TrainingConfig, dist_manager: Any):
        self.config = config
        hp, perf, io = config.training.hp, config.training.perf, config.training.io
        self.hp, self.perf, self.io = hp, perf, io
        self.device = dist_manager.device
        self.rank, self.world_size = dist_manager.rank, dist_manager.world_size
        self.batch_size_per_gpu, self.rounds = batch_layout(
            hp.total_batch_size, hp.batch_size_per_gpu, self.world_size
        )
        self.patched = config.model.is_patched
        self.patch_num = hp.patch_num if self.patched else 1
        if hp.max_patch_per_gpu is not None and hp.max_patch_per_gpu < self.batch_size_per_gpu:
            raise ConfigError(
                f"training.hp.max_patch_per_gpu={hp.max_patch_per_gpu} is below "
                f"batch_size_per_gpu={self.batch_size_per_gpu}: each group holds at least one "
                "patch of every image; raise it or lower batch_size_per_gpu")
        self.patch_groups = patch_groups(self.patch_num, self.batch_size_per_gpu,
                                         hp.max_patch_per_gpu)
        self.run_dir = Path(io.checkpoint_dir)
        self._check_writable()
        torch.manual_seed(io.seed + self.rank)

        self.dataset = build_dataset(config.dataset)
        self.valid_dataset = (
            build_dataset({**config.dataset, **config.validation}) if config.validation else None
        )
        self.image_shape = tuple(self.dataset.image_shape())
        # Targets with missing pixels (NaN) are trained with a masked mean of the loss.
        self.masked_targets = any(d.has_missing_outputs() for d in (
            self.dataset, self.valid_dataset) if d is not None)
        if self.masked_targets:
            logger.info("the dataset marks missing target values: missing target pixels are "
                        "left out of the loss (a mean over valid pixels)")
        n_in, n_out = len(self.dataset.input_channels()), len(self.dataset.output_channels())
        self.channels_last = on_cuda_unless_set(perf.channels_last, self.device)
        self.torch_compile = on_cuda_unless_set(perf.torch_compile, self.device)
        self.use_apex_gn = apex_group_norm(perf.use_apex_gn, self.device,
                                           "training.perf.use_apex_gn")
        if config.model.lead_time_aware:
            check_lead_times(int(config.model.model_args.get("lead_time_steps", 9)),
                             self.dataset, f"model {config.model.name}")
        self.net = build_network(config.model, self.image_shape, n_in, n_out,
                                 perf.songunet_checkpoint_level, self.use_apex_gn,
                                 self.dataset.probability_channels()).to(self.device)
        if self.channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        self.precision = resolve_precision(perf.fp_optimizations, self.device)
        self.amp_dtype = amp_dtype(self.precision)
        self.net.amp_mode = self.amp_dtype is not None
        self.loss_fn, self.patching = self._build_loss(n_in, n_out)
        # Lead-time labels go to the networks whenever one of them embeds them.
        frozen = getattr(self.loss_fn, "regression_net", None)
        self.lead_time = config.model.lead_time_aware or (
            frozen is not None and network_lead_time_steps(frozen) is not None)
        if self.dataset.lead_time_hours() is not None and not self.lead_time:
            logger.warning("the dataset has lead times %s h but model %s does not embed them "
                           "(use an lt_aware_* model to condition on lead time)",
                           self.dataset.lead_time_hours(), config.model.name)
        self.regression_cache = self._regression_cache(n_out)
        fused = on_cuda_unless_set(perf.fused_optimizer, self.device)
        if on_cuda_unless_set(perf.cudnn_benchmark, self.device) and self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=hp.lr, betas=(0.9, 0.999),
                                          eps=1e-8, fused=fused or None)
        self.scaler = torch.amp.GradScaler(self.device.type,
                                           enabled=self.amp_dtype is torch.float16)
        self.host_sync_steps = self._host_sync_steps(bool(fused))
        self._pending: list[tuple[int, torch.Tensor]] = []  # (samples, [loss, grad norm])
        self.store = CheckpointStore(self.run_dir / f"checkpoints_{config.model.name}",
                                     type(self.net).__name__, io.save_n_recent_checkpoints)
        self.fingerprint = {
            "model": config.model.name,
            "model_args": config.model.model_args,
            "hr_mean_conditioning": config.model.hr_mean_conditioning,
            "inputs": [c.label for c in self.dataset.input_channels()],
            "outputs": [c.label for c in self.dataset.output_channels()],
            "image_shape": list(self.image_shape),
        }
        self.samples = 0
        self.nonfinite_streak = 0
        self._resume()
        if io.initial_weights and self.samples == 0:
            logger.info(transfer_weights(self.net, io.initial_weights).summary())
        elif io.initial_weights:
            logger.info("resuming: training.io.initial_weights (%s) applied when the run began",
                        io.initial_weights)

        self.ddp = None
        net = self.net
        if is_multi_process():
            self.ddp = net = torch.nn.parallel.DistributedDataParallel(
                net, device_ids=[self.device] if self.device.type == "cuda" else None,
                broadcast_buffers=False, gradient_as_bucket_view=True,
                static_graph=perf.ddp_static_graph,
            )
        if self.torch_compile:
            net = torch.compile(net)
            if isinstance(self.loss_fn, KeyedResidualLoss):
                self.loss_fn.regression_net = torch.compile(self.loss_fn.regression_net)
        self.loss_net = PatchEmbeddingOrder(net) if self.patched else net
        self.batches = iter(self._train_loader())

    # ------------------------------------------------------------------------------ set-up
    def _check_writable(self) -> None:
        if self.rank == 0:
            ensure_writable_directory(self.run_dir, "training.io.checkpoint_dir")

    def _host_sync_steps(self, fused: bool) -> int:
        """Steps between host reads of the loss: several only where the fused optimizer can
        skip a non-finite step on the device (and no fp16 loss scaling needs the host)."""
        deferrable = fused and not self.scaler.is_enabled()
        steps = self.perf.host_sync_steps
        if steps is None:
            return 8 if deferrable else 1
        if steps > 1 and not deferrable:
            raise ConfigError(
                f"training.perf.host_sync_steps={steps} needs the fused optimizer "
                "(training.perf.fused_optimizer=true) and no fp16 (bf16 or fp32), which skip "
                "non-finite steps on the device; set it to 1 or null")
        return steps

    def _build_loss(self, n_in: int, n_out: int):
        from physicsnemo.diffusion.metrics import RegressionLoss, RegressionLossCE

        model = self.config.model
        if model.cross_entropy:
            return RegressionLossCE(prob_channels=self.dataset.probability_channels()), None
        if model.is_regression:
            return RegressionLoss(), None
        regression = load_regression_network(
            self.io.regression_checkpoint_path, self.image_shape, n_in, n_out,
            use_apex_gn=self.use_apex_gn,
        ).to(self.device)
        steps = network_lead_time_steps(regression)
        if steps is not None:
            check_lead_times(steps, self.dataset, "the regression checkpoint")
        regression.amp_mode = self.amp_dtype is not None
        if self.channels_last:
            regression = regression.to(memory_format=torch.channels_last)
        patching = None
        if self.patched:
            from helpers.training.patch_groups import GroupedRandomPatching

            patch_shape = (self.hp.patch_shape_y, self.hp.patch_shape_x)
            check_patch_shape(patch_shape, self.image_shape, model.model_args,
                              "training.hp.patch_shape_y/x")
            patching = GroupedRandomPatching(self.image_shape, patch_shape,
                                             self.patch_num).to(self.device)
        loss = KeyedResidualLoss(regression_net=regression, P_mean=model.P_mean,
                                 P_std=model.P_std, sigma_data=model.sigma_data,
                                 hr_mean_conditioning=model.hr_mean_conditioning,
                                 seed=self.io.seed)
        return loss, patching

    def _regression_cache(self, n_out: int) -> RegressionMeanCache | None:
        """Diffusion: the frozen regression output of each sample, kept after its first use."""
        if self.config.model.is_regression or not self.perf.cache_regression_mean:
            return None
        shape = (n_out, *self.image_shape)
        size = cache_bytes(len(self.dataset), shape)
        if size > self.perf.regression_cache_max_gib * 2**30:
            logger.info("not caching regression means: %.1f GiB would exceed "
                        "training.perf.regression_cache_max_gib=%g", size / 2**30,
                        self.perf.regression_cache_max_gib)
            return None
        checkpoint = resolve_checkpoint(self.io.regression_checkpoint_path,
                                        "training.io.regression_checkpoint_path")
        key = cache_key(checkpoint, self.dataset, self.precision)
        return RegressionMeanCache(self.run_dir, key, len(self.dataset), shape, self.rank)

    def _train_loader(self) -> DataLoader:
        self.sampler = sampler = GlobalBatchSampler(
            len(self.dataset), self.hp.total_batch_size, self.batch_size_per_gpu,
            self.world_size, self.rank, self.io.seed, start_sample=self.samples,
        )
        workers = self.perf.dataloader_workers
        return DataLoader(
            WithIndex(self.dataset), batch_size=self.batch_size_per_gpu, sampler=sampler,
            num_workers=workers, pin_memory=self.device.type == "cuda",
            persistent_workers=workers > 0, prefetch_factor=2 if workers else None,
            # Its own generator: seeding workers must not draw from the global RNG, which
            # drives the diffusion noise and is restored exactly on resume.
            generator=torch.Generator().manual_seed(self.io.seed),
        )

    # ------------------------------------------------------------------------------ resume
    def _resume(self) -> None:
        latest = broadcast_object(self.store.latest() if self.rank == 0 else None)
        if latest is None:
            return
        state = self.store.load_state(latest)
        if state.get("fingerprint") != self.fingerprint:
            raise CheckpointError(
                f"checkpoint {str(latest.state_path)!r} was written by a run with a different "
                f"model or dataset ({state.get('fingerprint')} vs {self.fingerprint}); use a new "
                "++training.io.checkpoint_dir or delete that directory's checkpoints"
            )
        self.store.load_weights(latest, self.net)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        self.samples = int(state["samples"])
        self.nonfinite_streak = int(state.get("nonfinite_streak", 0))
        rng_states = state["rng"]
        if len(rng_states) == self.world_size:
            torch.set_rng_state(rng_states[self.rank]["cpu"])
            if self.device.type == "cuda" and rng_states[self.rank]["cuda"] is not None:
                torch.cuda.set_rng_state(rng_states[self.rank]["cuda"], self.device)
        else:
            logger.warning("resuming with %d processes instead of %d: random streams restart",
                           self.world_size, len(rng_states))
        logger.info("resumed from %s at %d samples", latest.model_path, self.samples)

    def _rng_state(self) -> dict[str, Any]:
        cuda = torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None
        return {"cpu": torch.get_rng_state(), "cuda": cuda}

    def _model_facts(self) -> dict[str, Any]:
        """What generation needs to know about this model (see `helpers.models.facts`)."""
        model = self.config.model
        return {
            "model": model.model_dump(mode="json"),
            "patch_shape": ([self.hp.patch_shape_y, self.hp.patch_shape_x] if self.patched
                            else None),
            "image_shape": list(self.image_shape),
            "input_channels": channel_facts(self.dataset.input_channels()),
            "output_channels": channel_facts(self.dataset.output_channels()),
            "statistics": statistics_fingerprint(self.dataset),
            "lead_time_hours": self.dataset.lead_time_hours() if self.lead_time else None,
            "probability_channels": (self.dataset.probability_channels()
                                     if model.cross_entropy else []),
        }

    def save(self) -> None:
        flush(self.regression_cache)
        rng = all_gather_objects(self._rng_state())
        if self.rank == 0:
            state = {
                "samples": self.samples,
                "optimizer": self.optimizer.state_dict(),
                "scaler": self.scaler.state_dict(),
                "rng": rng,
                "nonfinite_streak": self.nonfinite_streak,
                "fingerprint": self.fingerprint,
                "config": self.config.model_dump(mode="json"),
            }
            checkpoint = self.store.save(self.net, state, self.samples, self._model_facts())
            logger.info("saved checkpoint %s", checkpoint.model_path)
        if is_multi_process():
            torch.distributed.barrier()

    # ------------------------------------------------------------------------------ loop
    def _autocast(self):
        return autocast(self.device, self.amp_dtype)

    def _to_device(self, tensor: torch.Tensor) -> torch.Tensor:
        tensor = tensor.to(self.device, non_blocking=True)
        if self.channels_last:
            tensor = tensor.contiguous(memory_format=torch.channels_last)
        return tensor

    def _labels(self, extra: list) -> torch.Tensor | None:
        """The batch's lead-time labels on the device, where a network embeds them."""
        if not self.lead_time:
            return None
        if not extra:
            raise ConfigError("the model is lead-time-aware but the dataset's samples carry no "
                              "lead-time label (img_clean, img_lr, label)")
        return torch.as_tensor(extra[0], device=self.device).long()

    def _per_sample_loss(self, img_clean: torch.Tensor, img_lr: torch.Tensor,
                         sample_keys: list[int], patch_key: tuple[int, int],
                         indices: list[int] | None = None,
                         lead_time_label: torch.Tensor | None = None,
                         backward_weight: float | None = None,
                         sync_last: bool = True) -> torch.Tensor:
        """Per-sample losses; the noise of each sample comes from ``sample_keys`` and the patch
        positions from ``patch_key`` (see `helpers.training.keyed_noise`). ``indices`` (dataset
        indices of the batch) let diffusion read the regression output from the cache.

        With ``backward_weight`` the summed loss times it is also back-propagated, a patch
        group at a time (`helpers.training.patch_groups`); DDP reduces gradients at the last group
        only if ``sync_last``. The losses returned are then detached."""
        if self.patching is not None:
            self.patching.draw(generator=keyed_generator(self.device, self.io.seed, *patch_key))
        if isinstance(self.loss_fn, KeyedResidualLoss):
            self.loss_fn.sample_keys = sample_keys
        groups = self.patch_groups if self.patching is not None else [None]
        regression = getattr(self.loss_fn, "regression_net", None)
        with self._autocast():
            mean_hr = None
            if indices is not None and self.regression_cache is not None:
                mean_hr = self.regression_cache.means(
                    indices, img_lr, lambda rows: regression_mean(
                        regression, img_lr.index_select(0, rows), img_clean.shape,
                        None if lead_time_label is None else lead_time_label.index_select(
                            0, rows)))
            elif regression is not None and len(groups) > 1:  # once for every group
                mean_hr = regression_mean(regression, img_lr, img_clean.shape, lead_time_label)
        losses = []
        for number, group in enumerate(groups):
            if group is not None:
                self.patching.use(*group)
                if isinstance(self.loss_fn, KeyedResidualLoss):
                    self.loss_fn.patch_offset = group[0]
            with self._autocast():
                loss = per_sample_loss(self.loss_fn, self.loss_net, img_clean, img_lr,
                                       self.patching, self.masked_targets, mean_hr,
                                       lead_time_label)
            if backward_weight is not None:
                reduce = sync_last and number == len(groups) - 1
                with (self.ddp.no_sync() if self.ddp is not None and not reduce
                      else contextlib.nullcontext()):
                    self.scaler.scale(loss.sum() * backward_weight).backward()
                loss = loss.detach()
            losses.append(loss)
        return torch.cat(losses) if len(losses) > 1 else losses[0]

    def train_step(self) -> float:
        """One optimizer step over ``total_batch_size`` samples; returns the mean loss (read
        from the device at once: the loop itself reads every ``host_sync_steps`` steps)."""
        self.step()
        return self.sync()[-1][0]

    def step(self) -> None:
        """One optimizer step, leaving its loss and gradient norm on the device."""
        lr = learning_rate(self.samples + self.hp.total_batch_size, self.hp.lr,
                           self.hp.lr_rampup, self.hp.lr_decay, self.hp.lr_decay_rate)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.zero_grad(set_to_none=True)
        # Each sample contributes 1 / (total_batch_size * patches); DDP averages over ranks.
        weight = self.world_size / (self.hp.total_batch_size * self.patch_num)
        local_loss = torch.zeros((), device=self.device)
        for round_index in range(self.rounds):
            img_clean, img_lr, *extra, indices = next(self.batches)
            img_clean, img_lr = self._to_device(img_clean), self._to_device(img_lr)
            per_sample = self._per_sample_loss(
                img_clean, img_lr, self.sampler.positions(self.samples, round_index),
                (TRAIN_PATCHES, self.samples), indices.tolist(), self._labels(extra),
                backward_weight=weight, sync_last=round_index == self.rounds - 1)
            local_loss += per_sample.sum() * weight
        self.scaler.unscale_(self.optimizer)
        if self.hp.grad_clip_threshold:
            norm = torch.nn.utils.clip_grad_norm_(self.net.parameters(),
                                                  self.hp.grad_clip_threshold)
        else:  # the norm alone, for the non-finite check: no pass rescaling the gradients
            norm = torch.nn.utils.get_total_norm(
                [p.grad for p in self.net.parameters() if p.grad is not None])
        stats = torch.stack([all_reduce_mean(local_loss), norm.to(local_loss.device).float()])
        if self.host_sync_steps > 1:
            # The fused kernel leaves weights, moments and step count alone when found_inf
            # is set, exactly as a skipped step would: no host read needed.
            self.optimizer.found_inf = (~torch.isfinite(stats).all()).float()
            self.optimizer.step()
        elif self._nonfinite(*stats.tolist()):  # one device-to-host read for both numbers
            self.optimizer.zero_grad(set_to_none=True)
        else:
            self.scaler.step(self.optimizer)
        self.scaler.update()
        self.samples += self.hp.total_batch_size
        self.lr = lr
        self._pending.append((self.samples, stats))

    def _nonfinite(self, loss_value: float, grad_norm: float) -> bool:
        # With fp16 loss scaling, an infinite gradient only lowers the scale (the scaler skips).
        return not math.isfinite(loss_value) or (
            not self.scaler.is_enabled() and not math.isfinite(grad_norm))

    def sync(self) -> list[tuple[float, float]]:
        """Read the steps' losses and gradient norms since the last read, in order, counting
        non-finite (skipped) steps; raises once too many came in a row."""
        if not self._pending:
            return []
        values = torch.stack([stats for _, stats in self._pending]).tolist()
        samples = [at for at, _ in self._pending]
        self._pending.clear()
        for at, (loss_value, grad_norm) in zip(samples, values, strict=True):
            if self._nonfinite(loss_value, grad_norm):
                self._skipped(loss_value, grad_norm, at)
            else:
                self.nonfinite_streak = 0
        self.grad_norm = values[-1][1]
        return values

    def _skipped(self, loss_value: float, grad_norm: float, samples: int) -> None:
        self.nonfinite_streak += 1
        logger.warning("non-finite loss %s or gradient norm %s at %d samples: step skipped "
                       "(%d in a row)", loss_value, grad_norm, samples - self.hp.total_batch_size,
                       self.nonfinite_streak)
        if self.nonfinite_streak >= self.hp.max_consecutive_nonfinite:
            raise TrainingDiverged(
                f"the loss or gradients were non-finite for {self.nonfinite_streak} steps in a "
                f"row (at {samples - self.hp.total_batch_size} samples); lower training.hp.lr, "
                "set training.hp.grad_clip_threshold, use fp32, or check the data for NaN"
            )

    def validate(self) -> float:
        """Mean loss over a fixed subset of the validation set, with a fixed noise seed."""
        per_rank = self.batch_size_per_gpu
        count = min(len(self.valid_dataset), self.io.validation_steps * per_rank * self.world_size)
        indices = torch.linspace(0, len(self.valid_dataset) - 1, count).round().long().tolist()
        mine = indices[self.rank::self.world_size]
        loader = DataLoader(torch.utils.data.Subset(self.valid_dataset, mine),
                            batch_size=per_rank, num_workers=0)
        totals = torch.zeros(2, device=self.device)
        self.net.eval()
        devices = [self.device] if self.device.type == "cuda" else []
        keyed = isinstance(self.loss_fn, KeyedResidualLoss)
        with torch.no_grad(), torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.io.seed)
            if keyed:
                self.loss_fn.key_space = VALID_NOISE
            try:
                for first, (img_clean, img_lr, *extra) in zip(range(0, len(mine), per_rank),
                                                              loader, strict=True):
                    keys = mine[first:first + per_rank]
                    per_sample = self._per_sample_loss(self._to_device(img_clean),
                                                       self._to_device(img_lr), keys,
                                                       (VALID_PATCHES, keys[0]),
                                                       lead_time_label=self._labels(extra))
                    totals += torch.stack([per_sample.sum(), torch.tensor(
                        float(per_sample.numel()), device=self.device)])
            finally:
                if keyed:
                    self.loss_fn.key_space = TRAIN_NOISE
        self.net.train()
        totals = all_reduce_mean(totals)
        return float(totals[0] / totals[1].clamp(min=1))

    def run(self) -> Path:
        """Train until ``training_duration`` samples, then return the checkpoint directory."""
        duration, io = self.hp.training_duration, self.io
        if self.samples >= duration:
            logger.info("training already complete (%d samples) in %s", self.samples,
                        self.store.directory)
            return self.store.directory
        logger.info(
            "training %s (%s) on %d samples of %s, %d process(es) x %d per batch x %d "
            "accumulation round(s); outputs in %s", self.config.model.name,
            type(self.net).__name__, len(self.dataset), tuple(self.image_shape),
            self.world_size, self.batch_size_per_gpu, self.rounds, self.run_dir.resolve(),
        )
        reporter = TrainingReporter(self.run_dir, duration, self.samples, self.rank == 0)
        self.net.train()
        try:
            while self.samples < duration:
                before = self.samples
                self.step()
                reporter.advance(self.samples)
                done = self.samples >= duration
                report = _crossed(before, self.samples, io.print_progress_freq) or done
                validate = self.valid_dataset is not None and (
                    _crossed(before, self.samples, io.validation_freq) or done)
                save = _crossed(before, self.samples, io.save_checkpoint_freq) or done
                if report or validate or save or len(self._pending) >= self.host_sync_steps:
                    reporter.record(self.sync(), self.lr)
                if report:
                    reporter.report(self.samples, self.lr)
                if validate:
                    reporter.validation(self.samples, self.validate())
                if save:
                    self.save()
        finally:
            reporter.close()
        logger.info("finished: %d samples; checkpoints in %s", self.samples,
                    self.store.directory.resolve())
        if self.regression_cache is not None:
            logger.info("regression outputs: %d computed, %d read from the cache %s",
                        self.regression_cache.computed, self.regression_cache.reused,
                        self.regression_cache.directory)
        return self.store.directory


def train(config: TrainingConfig, dist_manager: Any) -> Path:
    """Build a `Trainer` for a validated config and run it."""
    return Trainer(config, dist_manager).run()
