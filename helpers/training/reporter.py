"""What a training run reports: TensorBoard scalars, log lines and a progress bar (rank 0)."""

from __future__ import annotations

import datetime
import logging
import time
from pathlib import Path

from tqdm import tqdm

logger = logging.getLogger("train")


class TrainingReporter:
    """Collects step losses and turns them into periodic reports; silent on ranks other than 0."""

    def __init__(self, run_dir: Path, total_samples: int, start_samples: int, enabled: bool):
        self.enabled = enabled
        self.total = total_samples
        self.writer = None
        self.bar = None
        if enabled:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"))
            self.bar = tqdm(total=total_samples, initial=start_samples, unit="sample",
                            dynamic_ncols=True, desc="training")
        self._reset(start_samples)

    def _reset(self, samples: int) -> None:
        self._since_samples = samples
        self._since_time = time.perf_counter()
        self._losses: list[float] = []
        self._grad_norms: list[float] = []

    def advance(self, samples: int) -> None:
        """Move the progress bar after a step (its loss may still be on the device)."""
        if self.bar is not None:
            self.bar.update(samples - self.bar.n)

    def record(self, steps: list[tuple[float, float]], lr: float) -> None:
        """The (loss, gradient norm) of the steps read back from the device since the last
        call."""
        for loss, grad_norm in steps:
            self._losses.append(loss)
            self._grad_norms.append(grad_norm)
        if self.bar is not None and steps:
            self.bar.set_postfix(loss=f"{steps[-1][0]:.4f}", lr=f"{lr:.2e}", refresh=False)

    def report(self, samples: int, lr: float) -> None:
        """Mean loss, gradient norm (before clipping) and throughput since the last report."""
        if not self._losses:
            return
        elapsed = max(time.perf_counter() - self._since_time, 1e-9)
        rate = (samples - self._since_samples) / elapsed
        loss = sum(self._losses) / len(self._losses)
        grad_norm = sum(self._grad_norms) / len(self._grad_norms)
        if self.enabled:
            eta = datetime.timedelta(seconds=round((self.total - samples) / max(rate, 1e-9)))
            logger.info("samples %d/%d  loss %.5f  grad norm %.3g  lr %.3g  %.1f samples/s  "
                        "ETA %s", samples, self.total, loss, grad_norm, lr, rate, eta)
            self.writer.add_scalar("training/loss", loss, samples)
            self.writer.add_scalar("training/grad_norm", grad_norm, samples)
            self.writer.add_scalar("training/learning_rate", lr, samples)
            self.writer.add_scalar("training/samples_per_second", rate, samples)
            self.writer.flush()
        self._reset(samples)

    def validation(self, samples: int, loss: float) -> None:
        if self.enabled:
            logger.info("samples %d/%d  validation loss %.5f", samples, self.total, loss)
            self.writer.add_scalar("validation/loss", loss, samples)
            self.writer.flush()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.writer is not None:
            self.writer.close()
