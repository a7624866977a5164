"""Training throughput, peak memory and FLOP utilisation, ours against a bare PyTorch loop.

Cases: regression and diffusion at the CPU-sized and the CorrDiff-Mini model sizes on the
embedded 64x64 synthetic dataset, and regression, diffusion and patched diffusion at the
Taiwan size (the published CorrDiff networks, 448x448, on a synthetic dataset of that size
made for the run). For each, on the current device, this measures:

- samples/s of our training step as ``train.py`` runs it (``Trainer.step()``, reading the loss
  back every ``training.perf.host_sync_steps`` steps; learning-rate schedule, accumulation
  bookkeeping, autocast, the regression cache, the device-side non-finite check);
- samples/s of a bare hand-written loop over the same physicsnemo network (a copy with the
  same weights), the same physicsnemo loss and the same batches: ``zero_grad``, loss,
  ``mean()``, ``backward()``, ``Adam.step()``;
- ours/bare and the overhead ours/bare - 1 of step time, and ours' peak memory (peak resident
  memory of the process on CPU, ``torch.cuda.max_memory_allocated`` on CUDA);
- the model FLOPs of one of our steps (counted by ``torch.utils.flop_counter`` on the
  uncompiled network, once the regression cache holds every batch), the TFLOP/s achieved and,
  on a GPU whose bf16 peak is known (``benchmarks/device_info.py``, or ``--peak-tflops``), the
  model FLOP utilisation (MFU) against that peak.

Both loops are fed from the same few batches, pre-loaded from the training DataLoader, so data
loading is not timed. The loops are timed in alternating blocks (ours, bare, bare, ours, ...)
because machines are noisy: samples/s come from the median step time (on CUDA, from block
means, so no synchronisation is added), the overhead is the median over rounds of the ratio of
the two adjacent blocks. Each case runs in a fresh process, so peaks are clean. The "others"
column is the CPU share other processes used meanwhile: on a 2-core machine a busy neighbour
can slow steps tenfold (thread oversubscription), so trust only rows where it is near 0%.

    python benchmarks/bench_train.py                         # the 64x64 cases (CPU); all on CUDA
    python benchmarks/bench_train.py --cases regression_cpu diffusion_cpu --steps 5 --rounds 5
    python benchmarks/bench_train.py --threads 2 --batch 8   # CPU threads and samples per step
    python benchmarks/bench_train.py --cases diffusion_taiwan --compile   # torch.compile on

Defaults: on CPU 8 samples per step (1 at the Taiwan size) in fp32; on CUDA 8 per step
(patched: 4 images x the config's 16 patches) in the configs' precision (bf16 autocast).
``--json`` prints one JSON line per case.
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

from benchmarks.device_info import bf16_peak_tflops, device_name  # noqa: E402

# case -> (model and training config group, size class)
CASES = {
    "regression_cpu": ("corrdiff_regression_cpu", "cpu"),
    "diffusion_cpu": ("corrdiff_diffusion_cpu", "cpu"),
    "regression_mini": ("corrdiff_regression_mini", "mini"),
    "diffusion_mini": ("corrdiff_diffusion_mini", "mini"),
    "regression_taiwan": ("corrdiff_regression", "taiwan"),
    "diffusion_taiwan": ("corrdiff_diffusion", "taiwan"),
    "patched_taiwan": ("corrdiff_patched_diffusion", "taiwan"),
}
# The regression network a diffusion case's loss needs (same size class).
REGRESSION_OF = {"cpu": "corrdiff_regression_cpu", "mini": "corrdiff_regression_mini",
                 "taiwan": "corrdiff_regression"}
CPU_DEFAULT_CASES = [c for c, (_, size) in CASES.items() if size != "taiwan"]
TAIWAN_SIZE = 448
TARGET_OVERHEAD = 0.05
# Defaults on (CPU, CUDA): timed steps per block, and samples per step (None: the config's).
DEFAULT_STEPS = {"cpu": (8, 20), "mini": (4, 20), "taiwan": (1, 10)}
DEFAULT_BATCH = {"cpu": (8, 8), "mini": (8, 8), "taiwan": (1, 8)}
PATCHED_BATCH = (1, 4)  # images per step; each gives patch_num patches


# ---------------------------------------------------------------------------- one case (child)
def compose_config(group: str, data_dir: Path, run_dir: Path, overrides: list[str]):
    """The validated training config of ``conf/{model,training}/<group>.yaml`` on the
    synthetic dataset, without validation."""
    import hydra

    from helpers.training.config import validate_training_config

    with hydra.initialize_config_dir(config_dir=str(ROOT / "conf"), version_base=None):
        cfg = hydra.compose("config_training", overrides=[
            "dataset=synthetic",
            f"model={group}",
            f"training={group}",
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
    patching = trainer.patching
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
            if patching is None:
                loss = loss_fn(net=net, img_clean=img_clean, img_lr=img_lr)
            else:  # physicsnemo's patched loss, random patches as the reference draws them
                patching.reset_patch_indices()
                loss = loss_fn(net=net, img_clean=img_clean, img_lr=img_lr, patching=patching)
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

    from helpers.infrastructure.distributed import init_distributed
    from helpers.training.loop import Trainer

    if args.threads:
        torch.set_num_threads(args.threads)
    group, size = CASES[case]
    kind = "regression" if group == REGRESSION_OF[size] else "diffusion"
    data_dir = args.data_dir
    dist = init_distributed()
    device = dist.device
    on_cuda = device.type == "cuda"
    steps = args.steps or DEFAULT_STEPS[size][on_cuda]

    def sync() -> None:
        if on_cuda:
            torch.cuda.synchronize(device)

    overrides = [f"training.perf.dataloader_workers={args.workers}",
                 f"training.perf.torch_compile={args.compile}"]
    batch = args.batch or (PATCHED_BATCH if case.startswith("patched") else
                           DEFAULT_BATCH[size])[on_cuda]
    overrides.append(f"training.hp.total_batch_size={batch}")
    precision = args.precision or ("config" if on_cuda else "fp32")
    if precision != "config":
        overrides.append(f"training.perf.fp_optimizations={precision}")

    with tempfile.TemporaryDirectory(prefix="bench_train_") as tmp:
        tmp = Path(tmp)
        regression_path = None
        if kind == "diffusion":  # an untrained regression network is enough for throughput
            reg_config = compose_config(REGRESSION_OF[size], data_dir, tmp / "regression",
                                        [*overrides, "training.perf.torch_compile=false"])
            regression_path = tmp / "regression.mdlus"
            Trainer(reg_config, dist).net.save(str(regression_path))
            overrides.append(f"++training.io.regression_checkpoint_path={regression_path}")
        gc.collect()
        config = compose_config(group, data_dir, tmp / kind, overrides)
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

        def ours_step() -> None:  # as Trainer.run() steps, without the reports
            trainer.step()
            if len(trainer._pending) >= trainer.host_sync_steps:
                trainer.sync()

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
        flops = count_step_flops(trainer)

    median = statistics.median
    ratios = [median(o) / median(b) for o, b in zip(ours_times, bare_times, strict=True)]
    ours_s, bare_s = (median([t for block in times for t in block])
                      for times in (ours_times, bare_times))
    name = device_name(device)
    peak = args.peak_tflops or (bf16_peak_tflops(name) if on_cuda else None)
    return {
        "case": case,
        "device": name,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "params_m": sum(p.numel() for p in trainer.net.parameters()) / 1e6,
        "batch": batch,
        "precision": trainer.precision,
        "compile": args.compile,
        "image": list(trainer.image_shape),
        "patches": trainer.patch_num,
        "host_sync_steps": trainer.host_sync_steps,
        "workers": config.training.perf.dataloader_workers,
        "steps_per_block": steps,
        "rounds": args.rounds,
        "ours_step_s": ours_s,
        "bare_step_s": bare_s,
        "ours_samples_per_s": batch / ours_s,
        "bare_samples_per_s": batch / bare_s,
        "overhead": statistics.median(ratios) - 1,
        "ours_over_bare": bare_s / ours_s,
        "tflop_per_step": flops / 1e12,
        "achieved_tflops": flops / ours_s / 1e12,
        "peak_tflops": peak,
        "mfu": flops / ours_s / 1e12 / peak if peak else None,
        "overhead_min": min(ratios) - 1,
        "overhead_max": max(ratios) - 1,
        "peak_mib": peak_mib,
        "before_first_step_mib": before_mib,
        "memory": "max_memory_allocated" if on_cuda else "peak RSS",
        "other_processes_cpu": others,
    }


def count_step_flops(trainer) -> float:
    """Model FLOPs of one of our steps (forward and backward of the trained network; in the
    steady state, diffusion reads the regression output from its cache), counted on the
    uncompiled network: compiled kernels bypass the counter."""
    from torch.utils.flop_counter import FlopCounterMode

    from helpers.models.networks import PatchEmbeddingOrder

    compiled, trainer.loss_net = trainer.loss_net, (
        PatchEmbeddingOrder(trainer.net) if trainer.patched else trainer.net)
    try:
        with FlopCounterMode(display=False) as counter:
            trainer.step()
            trainer.sync()
    finally:
        trainer.loss_net = compiled
    return float(counter.get_total_flops())


# ---------------------------------------------------------------------------- driver (parent)
def dataset_dir(stack: contextlib.ExitStack, size: str, side: int = TAIWAN_SIZE) -> Path:
    """The embedded dataset in the repository (64x64), or a freshly generated one in a temp
    dir; at the Taiwan size, a few 448x448 samples simulated for the run."""
    from datasets.synthetic import generate_synthetic_dataset

    default = ROOT / "data" / "synthetic"
    if size != "taiwan" and all((default / name).is_file()
                                for name in ("train.nc", "valid.nc", "stats.json")):
        return default
    tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench_train_data_")))
    if size == "taiwan":
        print(f"simulating 8 synthetic samples of {side}x{side} into {tmp}", file=sys.stderr)
        generate_synthetic_dataset(tmp, seed=0, n_train=8, n_valid=1, domain_size=side,
                                   window_size=side, windows_per_time=1)
        return tmp
    print(f"data/synthetic not found: generating the synthetic dataset into {tmp}",
          file=sys.stderr)
    generate_synthetic_dataset(tmp, seed=0)
    return tmp


def child_command(case: str, args: argparse.Namespace, data_dir: Path) -> list[str]:
    command = [sys.executable, str(Path(__file__).resolve()), "--case", case, "--json",
               "--data-dir", str(data_dir), "--rounds", str(args.rounds),
               "--warmup", str(args.warmup), "--workers", str(args.workers),
               "--distinct-batches", str(args.distinct_batches)]
    for option in ("steps", "batch", "threads", "precision", "peak_tflops"):
        value = getattr(args, option)
        if value:
            command += [f"--{option.replace('_', '-')}", str(value)]
    return command + (["--compile"] if args.compile else [])


def print_table(results: list[dict]) -> None:
    first = results[0]
    print(f"device: {first['device']}; torch {first['torch']}, {first['threads']} thread(s); "
          f"data loader workers {first['workers']} (batches pre-loaded, loading not timed); "
          f"torch.compile {'on' if first['compile'] else 'off'}")
    steps = "/".join(sorted({str(r["steps_per_block"]) for r in results}))
    print(f"each case: ours and bare timed in alternating blocks ({first['rounds']} rounds of "
          f"{steps} step(s) after {first['warmup']} warm-up steps each); ours/bare = ratio of "
          "median step times (>1: ours faster); overhead = median of the per-round ratios "
          "ours/bare - 1 [min, max]")
    header = (f"{'case':<18} {'params M':>8} {'image':>7} {'batch':>7} {'precision':>9} "
              f"{'ours sa/s':>10} {'bare sa/s':>10} {'ours/bare':>9} {'overhead':>9} "
              f"{'[min, max]':>17} {'TFLOP/s':>8} {'MFU':>6} {'peak MiB':>9} {'others':>7}")
    print(header)
    print("-" * len(header))
    for r in results:
        spread = f"[{100 * r['overhead_min']:+.1f}, {100 * r['overhead_max']:+.1f}]"
        batch = f"{r['batch']}x{r['patches']}" if r["patches"] > 1 else str(r["batch"])
        mfu = f"{100 * r['mfu']:.1f}%" if r["mfu"] is not None else "-"
        print(f"{r['case']:<18} {r['params_m']:>8.2f} {r['image'][0]:>7} {batch:>7} "
              f"{r['precision']:>9} {r['ours_samples_per_s']:>10.2f} "
              f"{r['bare_samples_per_s']:>10.2f} {r['ours_over_bare']:>8.2f}x "
              f"{100 * r['overhead']:>8.1f}% {spread:>17} {r['achieved_tflops']:>8.3f} "
              f"{mfu:>6} {r['peak_mib']:>9.0f} {100 * r['other_processes_cpu']:>6.0f}%")
    print(f"peak memory: {first['memory']} of ours (the bare loop is built afterwards)"
          + ("; on CPU it includes the Python/torch process (~"
             f"{min(r['before_first_step_mib'] for r in results):.0f} MiB before the first step)"
             if first["memory"] == "peak RSS" else ""))
    print("TFLOP/s: model FLOPs of our step (torch.utils.flop_counter) / its time; MFU: "
          "against the device's bf16 peak"
          + (f" ({first['peak_tflops']:g} TFLOP/s)" if first["peak_tflops"] else
             " (unknown here: give --peak-tflops)"))
    print("diffusion: ours reads the frozen regression output from its cache once a sample has "
          "been seen (the batches repeat); the bare loop runs the regression every step")
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
    parser.add_argument("--cases", nargs="+", choices=list(CASES), default=None,
                        help="cases to run, each in its own process (default: the 64x64 ones "
                        "on CPU, all on CUDA)")
    parser.add_argument("--steps", type=int, default=None,
                        help="timed steps per block (default: 8 CPU-sized / 4 Mini / 1 Taiwan "
                        "on CPU, 20 / 20 / 10 on CUDA)")
    parser.add_argument("--rounds", type=int, default=6,
                        help="timed blocks per loop, alternating ours and bare (default 6)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per loop first")
    parser.add_argument("--batch", type=int, default=None,
                        help="samples (images) per step (default: 8, Taiwan size 1 on CPU, "
                        "patched 4 images on CUDA)")
    parser.add_argument("--precision", choices=["config", "fp32", "amp-bf16", "amp-fp16"],
                        default=None, help="default: fp32 on CPU, the config's on CUDA")
    parser.add_argument("--compile", action="store_true",
                        help="training.perf.torch_compile=true (the trained and the frozen "
                        "regression network; the bare loop stays eager)")
    parser.add_argument("--peak-tflops", type=float, default=None,
                        help="the device's peak for MFU (default: its bf16 data-sheet peak)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch.set_num_threads (default: torch's default)")
    parser.add_argument("--workers", type=int, default=0,
                        help="training.perf.dataloader_workers (batches are pre-loaded anyway)")
    parser.add_argument("--distinct-batches", type=int, default=4,
                        help="batches pre-loaded from the DataLoader and cycled by both loops")
    parser.add_argument("--taiwan-size", type=int, default=TAIWAN_SIZE,
                        help="image side of the Taiwan-size cases (default 448; smaller, a "
                        "multiple of 112, for a quick check on a CPU: 448 needs ~20 GiB there)")
    parser.add_argument("--case", choices=list(CASES), help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true",
                        help="print one JSON line per case instead of the table")
    args = parser.parse_args()
    if args.rounds < 1 or args.warmup < 0 or (args.steps is not None and args.steps < 1):
        parser.error("--rounds and --steps must be positive and --warmup non-negative")

    if args.case:  # child: one case in this process
        os.chdir(ROOT)
        import logging

        logging.basicConfig(level=logging.WARNING)
        result = run_case(args.case, args)
        result["warmup"] = args.warmup
        print(json.dumps(result))
        return
    if args.cases is None:
        import torch

        args.cases = list(CASES) if torch.cuda.is_available() else CPU_DEFAULT_CASES
    with contextlib.ExitStack() as stack:
        data_dirs: dict[str, Path] = {}
        results = []
        for case in args.cases:
            size = CASES[case][1]
            if size not in data_dirs:
                data_dirs[size] = args.data_dir or dataset_dir(stack, size, args.taiwan_size)
            start = time.perf_counter()
            out = subprocess.run(child_command(case, args, data_dirs[size]),
                                 capture_output=True, text=True, cwd=ROOT)
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
