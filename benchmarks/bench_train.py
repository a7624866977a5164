"""Training throughput and peak memory, and the overhead of our loop over a bare PyTorch loop.

For regression and diffusion at the CPU-sized and the CorrDiff-Mini model sizes, on the
embedded 64x64 synthetic dataset and the current device, this measures:

- samples/s of ``Trainer.train_step()`` ("ours": learning-rate schedule, accumulation
  bookkeeping, autocast, gradient-norm check for non-finite steps, loss read-back);
- samples/s of a bare hand-written loop over the same physicsnemo network (a copy with the
  same weights), the same physicsnemo loss and the same batches: ``zero_grad``, loss,
  ``mean()``, ``backward()``, ``Adam.step()``;
- the overhead ours/bare - 1 (target: at most 5%), and ours' peak memory (peak resident memory
  of the process on CPU, ``torch.cuda.max_memory_allocated`` on CUDA).

Both loops are fed from the same few batches, pre-loaded from the training DataLoader, so data
loading is not timed. The loops are timed in alternating blocks (ours, bare, bare, ours, ...)
because machines are noisy: samples/s come from the median step time (on CUDA, from block
means, so no synchronisation is added), the overhead is the median over rounds of the ratio of
the two adjacent blocks. Each case runs in a fresh process, so peaks are clean. The "others"
column is the CPU share other processes used meanwhile: on a 2-core machine a busy neighbour
can slow steps tenfold (thread oversubscription), so trust only rows where it is near 0%.

    python benchmarks/bench_train.py                         # all four cases
    python benchmarks/bench_train.py --cases regression_cpu diffusion_cpu --steps 5 --rounds 5
    python benchmarks/bench_train.py --threads 2 --batch 8   # CPU threads and samples per step

Defaults: on CPU 8 samples per step in fp32; on CUDA the config's batch size and
precision (the Mini configs use bf16 autocast). ``--json`` prints one JSON line per case.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import gc
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.device_info import device_name  # noqa: E402

CASES = ["regression_cpu", "diffusion_cpu", "regression_mini", "diffusion_mini"]
TARGET_OVERHEAD = 0.05
# Defaults on (CPU, CUDA): timed steps per block, and samples per step (None: the config's).
DEFAULT_STEPS = {"cpu": (8, 20), "mini": (4, 20)}
DEFAULT_BATCH = {"cpu": (8, None), "mini": (8, None)}


# ---------------------------------------------------------------------------- one case (child)
def compose_config(kind: str, size: str, data_dir: Path, run_dir: Path, overrides: list[str]):
    """The validated training config of ``conf/{model,training}/corrdiff_<kind>_<size>.yaml``
    on the synthetic dataset, without validation."""
    import hydra

    from helpers.config_schema import validate_training_config

    with hydra.initialize_config_dir(config_dir=str(ROOT / "conf"), version_base=None):
        cfg = hydra.compose("config_training", overrides=[
            "dataset=synthetic",
            f"model=corrdiff_{kind}_{size}",
            f"training=corrdiff_{kind}_{size}",
            f"dataset.data_path={data_dir / 'train.nc'}",
            f"dataset.stats_path={data_dir / 'stats.json'}",
            "validation=null",
            f"training.io.checkpoint_dir={run_dir}",
            "training.hp.batch_size_per_gpu=auto",
            *overrides,
        ])
    return validate_training_config(cfg)


def current_memory_mib(device) -> float:
    import torch

    if device.type == "cuda":
        return torch.cuda.memory_allocated(device) / 2**20
    return _proc_status("VmRSS")


def peak_memory_mib(device) -> float:
    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return _proc_status("VmHWM")


def reset_peak_memory(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return
    with contextlib.suppress(OSError):  # resets VmHWM to the current VmRSS (Linux)
        Path("/proc/self/clear_refs").write_text("5")


def _proc_status(key: str) -> float:
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


class OtherLoad:
    """The share of the machine's CPU time used by other processes while a case runs (from
    ``/proc/stat`` minus this process's own time): a busy machine makes the timings noisy."""

    def __init__(self):
        self.start = self._read()

    @staticmethod
    def _read() -> tuple[float, float] | None:
        try:
            fields = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
            own = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, ValueError, IndexError):
            return None
        total = sum(fields[:8])  # guest time is already counted in user
        busy = total - fields[3] - fields[4]  # all but idle and iowait
        return busy - int(own[11]) - int(own[12]), total  # utime, stime of all our threads

    def share(self) -> float:
        end = self._read()
        if self.start is None or end is None or end[1] == self.start[1]:
            return float("nan")
        return max(0.0, (end[0] - self.start[0]) / (end[1] - self.start[1]))


def make_bare_step(trainer, batches, regression_path: Path | None):
    """A hand-written training step over a copy of ``trainer.net`` (same class, arguments and
    weights), a plain Adam, physicsnemo's loss and the same batches."""
    import physicsnemo
    import torch
    from physicsnemo.diffusion.metrics import RegressionLoss, ResidualLoss

    config, device = trainer.config, trainer.device
    hp, perf, model = config.training.hp, config.training.perf, config.model
    net = copy.deepcopy(trainer.net).train()
    optimizer = torch.optim.Adam(net.parameters(), lr=hp.lr, betas=(0.9, 0.999), eps=1e-8)
    if model.name == "regression":
        loss_fn = RegressionLoss()
    else:
        regression = physicsnemo.Module.from_checkpoint(str(regression_path))
        regression = regression.to(device).eval().requires_grad_(False)
        regression.amp_mode = trainer.amp_dtype is not None
        loss_fn = ResidualLoss(regression_net=regression, P_mean=model.P_mean,
                               P_std=model.P_std, sigma_data=model.sigma_data,
                               hr_mean_conditioning=model.hr_mean_conditioning)
    amp_dtype = trainer.amp_dtype
    scaler = torch.amp.GradScaler(device.type) if amp_dtype is torch.float16 else None
    memory_format = torch.channels_last if perf.channels_last else torch.contiguous_format
    feed = itertools.cycle(batches)

    def step() -> None:
        img_clean, img_lr = (t.to(device, non_blocking=True).contiguous(
            memory_format=memory_format) for t in next(feed)[:2])  # batches end with indices
        optimizer.zero_grad(set_to_none=True)
        autocast = (torch.autocast(device.type, dtype=amp_dtype) if amp_dtype is not None
                    else contextlib.nullcontext())
        with autocast:
            loss = loss_fn(net=net, img_clean=img_clean, img_lr=img_lr)
        loss = loss.float().mean()
        if scaler is None:
            loss.backward()
            optimizer.step()
        else:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()

    return step


def run_case(case: str, args: argparse.Namespace) -> dict:
    import torch

    from helpers.distributed import init_distributed
    from helpers.training_loop import Trainer

    if args.threads:
        torch.set_num_threads(args.threads)
    kind, size = case.split("_")
    dist = init_distributed()
    device = dist.device
    on_cuda = device.type == "cuda"
    steps = args.steps or DEFAULT_STEPS[size][on_cuda]

    def sync() -> None:
        if on_cuda:
            torch.cuda.synchronize(device)

    overrides = [f"training.perf.dataloader_workers={args.workers}"]
    batch = args.batch or DEFAULT_BATCH[size][on_cuda]
    if batch:
        overrides.append(f"training.hp.total_batch_size={batch}")
    precision = args.precision or ("config" if on_cuda else "fp32")
    if precision != "config":
        overrides.append(f"training.perf.fp_optimizations={precision}")

    with tempfile.TemporaryDirectory(prefix="bench_train_") as tmp:
        tmp = Path(tmp)
        regression_path = None
        if kind == "diffusion":  # an untrained regression network is enough for throughput
            reg_config = compose_config("regression", size, args.data_dir, tmp / "regression",
                                        overrides)
            regression_path = tmp / "regression.mdlus"
            Trainer(reg_config, dist).net.save(str(regression_path))
            overrides.append(f"++training.io.regression_checkpoint_path={regression_path}")
        gc.collect()
        config = compose_config(kind, size, args.data_dir, tmp / kind, overrides)
        trainer = Trainer(config, dist)
        trainer.net.train()
        assert trainer.rounds == 1 and trainer.world_size == 1, "run the benchmark on 1 process"
        batch = config.training.hp.total_batch_size
        batches = [next(trainer.batches) for _ in range(args.distinct_batches)]
        trainer.batches = itertools.cycle(batches)  # ours reads the same pre-loaded batches
        gc.collect()
        sync()

        reset_peak_memory(device)
        before_mib = current_memory_mib(device)
        other_load = OtherLoad()

        def timed(step, n: int) -> list[float]:
            """Per-step times; on CUDA one mean over the block, so that no synchronisation
            is added to the steps."""
            times = []
            sync()
            start = time.perf_counter()
            for _ in range(n):
                step()
                if not on_cuda:
                    times.append(time.perf_counter() - start)
                    start = time.perf_counter()
            sync()
            return times or [(time.perf_counter() - start) / n]

        ours_step = trainer.train_step
        timed(ours_step, args.warmup)
        ours_times, bare_times = [timed(ours_step, steps)], []
        peak_mib = peak_memory_mib(device)  # before the bare loop exists

        bare_step = make_bare_step(trainer, batches, regression_path)
        timed(bare_step, args.warmup)
        bare_times.append(timed(bare_step, steps))
        for round_index in range(1, args.rounds):
            order = [(bare_step, bare_times), (ours_step, ours_times)]
            for step, times in order if round_index % 2 else order[::-1]:
                times.append(timed(step, steps))

        others = other_load.share()

    median = statistics.median
    ratios = [median(o) / median(b) for o, b in zip(ours_times, bare_times, strict=True)]
    ours_s, bare_s = (median([t for block in times for t in block])
                      for times in (ours_times, bare_times))
    return {
        "case": case,
        "device": device_name(device),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "params_m": sum(p.numel() for p in trainer.net.parameters()) / 1e6,
        "batch": batch,
        "precision": config.training.perf.fp_optimizations,
        "workers": config.training.perf.dataloader_workers,
        "steps_per_block": steps,
        "rounds": args.rounds,
        "ours_step_s": ours_s,
        "bare_step_s": bare_s,
        "ours_samples_per_s": batch / ours_s,
        "bare_samples_per_s": batch / bare_s,
        "overhead": statistics.median(ratios) - 1,
        "overhead_min": min(ratios) - 1,
        "overhead_max": max(ratios) - 1,
        "peak_mib": peak_mib,
        "before_first_step_mib": before_mib,
        "memory": "max_memory_allocated" if on_cuda else "peak RSS",
        "other_processes_cpu": others,
    }


# ---------------------------------------------------------------------------- driver (parent)
def dataset_dir(stack: contextlib.ExitStack) -> Path:
    """The embedded dataset in the repository, or a freshly generated one in a temp dir."""
    default = ROOT / "data" / "synthetic"
    if all((default / name).is_file() for name in ("train.nc", "valid.nc", "stats.json")):
        return default
    from datasets.synthetic import generate_synthetic_dataset

    tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench_train_data_")))
    print(f"data/synthetic not found: generating the synthetic dataset into {tmp}",
          file=sys.stderr)
    generate_synthetic_dataset(tmp, seed=0)
    return tmp


def child_command(case: str, args: argparse.Namespace, data_dir: Path) -> list[str]:
    command = [sys.executable, str(Path(__file__).resolve()), "--case", case, "--json",
               "--data-dir", str(data_dir), "--rounds", str(args.rounds),
               "--warmup", str(args.warmup), "--workers", str(args.workers),
               "--distinct-batches", str(args.distinct_batches)]
    for option in ("steps", "batch", "threads", "precision"):
        value = getattr(args, option)
        if value:
            command += [f"--{option}", str(value)]
    return command


def print_table(results: list[dict]) -> None:
    first = results[0]
    print(f"device: {first['device']}; torch {first['torch']}, {first['threads']} thread(s); "
          f"data loader workers {first['workers']} (batches pre-loaded, loading not timed)")
    steps = "/".join(sorted({str(r["steps_per_block"]) for r in results}))
    print(f"each case: ours and bare timed in alternating blocks ({first['rounds']} rounds of "
          f"{steps} step(s) after {first['warmup']} warm-up steps each); overhead = median of "
          "the per-round ratios ours/bare - 1 [min, max]")
    header = (f"{'case':<16} {'params M':>8} {'batch':>5} {'precision':>9} {'ours sa/s':>10} "
              f"{'bare sa/s':>10} {'overhead':>9} {'[min, max]':>17} {'peak MiB':>9} {'others':>7}")
    print(header)
    print("-" * len(header))
    for r in results:
        spread = f"[{100 * r['overhead_min']:+.1f}, {100 * r['overhead_max']:+.1f}]"
        print(f"{r['case']:<16} {r['params_m']:>8.2f} {r['batch']:>5} {r['precision']:>9} "
              f"{r['ours_samples_per_s']:>10.2f} {r['bare_samples_per_s']:>10.2f} "
              f"{100 * r['overhead']:>8.1f}% {spread:>17} {r['peak_mib']:>9.0f} "
              f"{100 * r['other_processes_cpu']:>6.0f}%")
    print(f"peak memory: {first['memory']} of ours (the bare loop is built afterwards)"
          + ("; on CPU it includes the Python/torch process (~"
             f"{min(r['before_first_step_mib'] for r in results):.0f} MiB before the first step)"
             if first["memory"] == "peak RSS" else ""))
    print("others: share of the machine's CPU time used by other processes during the case")
    busy = [r["case"] for r in results if r["other_processes_cpu"] > 0.1]
    if busy:
        print(f"warning: other processes used over 10% of the CPUs during {', '.join(busy)}: "
              "their timings are unreliable; rerun on a quiet machine")
    worst = max(results, key=lambda r: r["overhead"])
    verdict = "met" if worst["overhead"] <= TARGET_OVERHEAD else "NOT met"
    print(f"target overhead <= {100 * TARGET_OVERHEAD:.0f}%: {verdict} "
          f"(largest: {100 * worst['overhead']:+.1f}% for {worst['case']})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", choices=CASES, default=CASES,
                        help="cases to run, each in its own process (default: all)")
    parser.add_argument("--steps", type=int, default=None,
                        help="timed steps per block (default: 8 CPU-sized / 4 Mini on CPU, "
                        "20 on CUDA)")
    parser.add_argument("--rounds", type=int, default=6,
                        help="timed blocks per loop, alternating ours and bare (default 6)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per loop first")
    parser.add_argument("--batch", type=int, default=None,
                        help="samples per step (default: 8 on CPU, the config's on CUDA)")
    parser.add_argument("--precision", choices=["config", "fp32", "amp-bf16", "amp-fp16"],
                        default=None, help="default: fp32 on CPU, the config's on CUDA")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch.set_num_threads (default: torch's default)")
    parser.add_argument("--workers", type=int, default=0,
                        help="training.perf.dataloader_workers (batches are pre-loaded anyway)")
    parser.add_argument("--distinct-batches", type=int, default=4,
                        help="batches pre-loaded from the DataLoader and cycled by both loops")
    parser.add_argument("--case", choices=CASES, help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true",
                        help="print one JSON line per case instead of the table")
    args = parser.parse_args()
    if args.rounds < 1 or args.warmup < 0 or (args.steps is not None and args.steps < 1):
        parser.error("--rounds and --steps must be positive and --warmup non-negative")

    with contextlib.ExitStack() as stack:
        if args.data_dir is None:
            args.data_dir = dataset_dir(stack)
        if args.case:  # child: one case in this process
            os.chdir(ROOT)
            import logging

            logging.basicConfig(level=logging.WARNING)
            result = run_case(args.case, args)
            result["warmup"] = args.warmup
            print(json.dumps(result))
            return
        results = []
        for case in args.cases:
            start = time.perf_counter()
            out = subprocess.run(child_command(case, args, args.data_dir), capture_output=True,
                                 text=True, cwd=ROOT)
            if out.returncode:
                sys.stderr.write(out.stdout + out.stderr)
                sys.exit(f"bench_train: case {case} failed (exit status {out.returncode})")
            result = json.loads(out.stdout.strip().splitlines()[-1])
            results.append(result)
            print(f"{case}: done in {time.perf_counter() - start:.0f} s", file=sys.stderr)
            if args.json:
                print(json.dumps(result), flush=True)
        if not args.json:
            print_table(results)


if __name__ == "__main__":
    main()
