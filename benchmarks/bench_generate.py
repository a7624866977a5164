"""Ensemble generation throughput (members/s), batched members against one member at a time.

On the embedded 64x64 synthetic dataset (8 inputs including 2 invariants, 4 outputs) this
builds untrained, randomly initialised regression and diffusion networks of the CorrDiff-Mini
size (``conf/model/corrdiff_*_mini.yaml``; ``--size cpu`` for the smaller CPU models), saves
them as ``.mdlus`` files in a temp dir and times the whole generation path,
``EnsembleGenerator.run()``: reading the samples, the regression mean, the stochastic EDM
sampler (Heun, 9 steps by default, as generation's default), denormalising and writing the
NetCDF file. Throughput does not depend on the weights, so nothing is trained. Two configs
generate the same times and members and differ only in ``generation.seed_batch_size`` and
``times_per_batch``:

- batched: ``seed_batch_size = members``, ``times_per_batch = times``: all members of all
  times in one sampler call, one regression call for all times;
- one at a time: ``seed_batch_size = 1``, ``times_per_batch = 1``.

Loading the checkpoints and the dataset (building the generators) is done once, before the
timing, and reported apart. The two are timed in alternating order (batched, one at a time,
one at a time, batched, ...) to even out drift on a noisy machine; members/s is all members
over all time of that config, the ratio is the median over rounds of batched/one-at-a-time
members/s from the two adjacent runs. ``--mode predict`` times ``EnsembleGenerator.predict()``
per time instead (no gathering, no writing). Forward hooks count the network calls: the
regression network runs once per time one at a time and once per run batched; the diffusion
network runs 2 x steps - 1 times (Heun) per batch: 17 per run batched, 17 x members x times
one at a time. Model FLOPs per member (``torch.utils.flop_counter`` on one forward of each
network) give the TFLOP/s achieved and, on a GPU whose bf16 peak is known
(``benchmarks/device_info.py``), the model FLOP utilisation; peak memory is
``torch.cuda.max_memory_allocated`` on CUDA and the peak resident memory on CPU.
"other processes" is the share of the machine's CPU other processes used during the timing:
on a 2-core machine a busy neighbour slows everything, most of all with as many threads as
cores (oversubscription), so the numbers mean little unless it stays below the share this
run leaves idle (1 - threads / cores); with a neighbour use ``--threads 1``.

    python benchmarks/bench_generate.py                       # mini, 4 members, 1 time
    python benchmarks/bench_generate.py --members 8 --times 2 --rounds 2
    python benchmarks/bench_generate.py --size cpu --threads 1
    python benchmarks/bench_generate.py --mode predict --json

Defaults are chosen so that a run on a 2-core CPU takes one to two minutes: there a Mini
member (17 diffusion forwards of one 64x64 image) takes about 3 s with 2 threads (measured:
0.345 members/s batched, 0.265 one at a time), so ``--members 4 --times 1 --rounds 3`` (each
config run three times) is about 75 s of timing on an idle machine. On a GPU use more, e.g.
``--members 16 --times 4``. On that CPU what batching gains varies between runs (1.12x and
1.32x for Mini, 4 members x 4 times: one 64x64 member already keeps 2 cores busy); the gain is
expected on a GPU. Run on one process.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import yaml  # noqa: E402

from benchmarks.device_info import bf16_peak_tflops, device_name  # noqa: E402

CONFIGS = ("batched", "one at a time")


class OtherLoad:
    """Share of all CPU time used by other processes since creation (Linux ``/proc``)."""

    def __init__(self):
        self.start = self._sample()

    @staticmethod
    def _sample() -> tuple[int, int] | None:
        try:
            cpu = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:9]]
            mine = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, ValueError, IndexError):
            return None
        busy = sum(cpu) - cpu[3] - cpu[4]  # minus idle and iowait
        return busy - int(mine[11]) - int(mine[12]), sum(cpu)  # minus our utime + stime

    def share(self) -> float:
        end = self._sample()
        if self.start is None or end is None or end[1] <= self.start[1]:
            return float("nan")
        return max(0.0, (end[0] - self.start[0]) / (end[1] - self.start[1]))


class CallCounter:
    """Counts calls of a module through a forward hook."""

    def __init__(self, module: torch.nn.Module):
        self.calls = 0
        self.handle = module.register_forward_hook(self._hook)

    def _hook(self, *_) -> None:
        self.calls += 1


def dataset_config(data_dir: Path) -> dict:
    config = yaml.safe_load((ROOT / "conf" / "dataset" / "synthetic.yaml").read_text())
    config.update(data_path=str(data_dir / "valid.nc"), stats_path=str(data_dir / "stats.json"))
    return config


def find_data(data_dir: Path, n_times: int, tmp: Path) -> Path:
    """``data_dir`` if it holds the dataset, else a small synthetic dataset made in ``tmp``."""
    if all((data_dir / name).is_file() for name in ("train.nc", "valid.nc", "stats.json")):
        return data_dir
    from datasets.synthetic import generate_synthetic_dataset

    out = tmp / "data"
    print(f"{data_dir} has no dataset: generating a small synthetic one into {out}",
          file=sys.stderr)
    generate_synthetic_dataset(out, seed=0, n_train=16, n_valid=max(16, n_times))
    return out


def save_networks(size: str, dataset, out_dir: Path) -> dict[str, str]:
    """Untrained regression and diffusion networks for the dataset, saved as .mdlus."""
    from helpers.models.config import ModelConfig
    from helpers.models.networks import build_network

    shape = tuple(dataset.image_shape())
    n_in, n_out = len(dataset.input_channels()), len(dataset.output_channels())
    paths = {}
    torch.manual_seed(0)
    for kind in ("regression", "diffusion"):
        path = ROOT / "conf" / "model" / f"corrdiff_{kind}_{size}.yaml"
        model = ModelConfig.model_validate(yaml.safe_load(path.read_text()))
        paths[kind] = str(out_dir / f"{kind}_{size}.mdlus")
        build_network(model, shape, n_in, n_out).save(paths[kind])
    return paths


def generation_config(dataset: dict, checkpoints: dict[str, str], times: list[str],
                      args: argparse.Namespace, seed_batch_size: int, output: Path,
                      times_per_batch: int = 1) -> dict:
    return {
        "dataset": dataset,
        "generation": {
            "num_ensembles": args.members,
            "seed_batch_size": seed_batch_size,
            "times_per_batch": times_per_batch,
            "times": times,
            "sampler": {"type": "stochastic", "num_steps": args.steps},
            "perf": {"fp_optimizations": args.precision},
            "io": {"reg_ckpt_filename": checkpoints["regression"],
                   "res_ckpt_filename": checkpoints["diffusion"],
                   "output_filename": str(output)},
        },
    }


def count_flops_per_time(gen, img_lr: torch.Tensor, condition: torch.Tensor,
                         args: argparse.Namespace) -> float:
    """Model FLOPs to generate one time: one regression forward and, per member, the
    sampler's 2 x steps - 1 diffusion forwards (counted on one forward of each network)."""
    from torch.utils.flop_counter import FlopCounterMode

    device = img_lr.device
    with torch.inference_mode(), FlopCounterMode(display=False) as regression:
        gen._regression_mean(img_lr)
    with torch.inference_mode(), FlopCounterMode(display=False) as diffusion:
        gen.diffusion(torch.zeros(1, gen.n_out, *gen.image_shape, device=device), condition,
                      torch.ones(1, device=device))
    return float(regression.get_total_flops()
                 + diffusion.get_total_flops() * (2 * args.steps - 1) * args.members)


def peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=["mini", "cpu"], default="mini",
                        help="network size: conf/model/corrdiff_*_<size>.yaml (default mini)")
    parser.add_argument("--members", type=int, default=4, help="ensemble members per time")
    parser.add_argument("--times", type=int, default=1, help="times generated per run")
    parser.add_argument("--steps", type=int, default=9, help="stochastic sampler steps")
    parser.add_argument("--rounds", type=int, default=3,
                        help="timed runs of each config, in alternating order")
    parser.add_argument("--mode", choices=["run", "predict"], default="run",
                        help="time EnsembleGenerator.run() (default: whole path, writes the "
                             "file) or .predict() per time")
    parser.add_argument("--precision", choices=["fp32", "amp-bf16", "amp-fp16"],
                        default="fp32", help="generation.perf.fp_optimizations")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--data-dir", type=Path, default=ROOT / "data" / "synthetic",
                        help="synthetic dataset directory (generated in a temp dir if absent)")
    parser.add_argument("--peak-tflops", type=float, default=None,
                        help="the device's peak for MFU (default: its bf16 data-sheet peak)")
    parser.add_argument("--json", action="store_true", help="also print the results as JSON")
    args = parser.parse_args(argv)
    for name in ("members", "times", "steps", "rounds"):
        if getattr(args, name) < (2 if name == "steps" else 1):
            parser.error(f"--{name} is too small")
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    from datasets.registry import build_dataset
    from helpers.generation.config import validate_generation_config
    from helpers.generation.ensemble import EnsembleGenerator
    from helpers.infrastructure.distributed import init_distributed

    dist = init_distributed()
    if dist.world_size > 1:
        raise SystemExit("run the benchmark on one process")
    device = dist.device

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    with tempfile.TemporaryDirectory(prefix="bench_generate_") as tmp:
        tmp = Path(tmp)
        dataset = dataset_config(find_data(args.data_dir, args.times, tmp))
        data = build_dataset(dataset)
        available = data.time()
        if args.times > len(available):
            raise SystemExit(f"--times {args.times}: the dataset has {len(available)} times")
        times = [t.isoformat() for t in available[:args.times]]
        checkpoints = save_networks(args.size, data, tmp)
        del data

        generators, setup_s, configs = {}, {}, {}
        for name, batch, per_batch in zip(CONFIGS, (args.members, 1), (args.times, 1),
                                          strict=True):
            configs[name] = validate_generation_config(generation_config(
                dataset, checkpoints, times, args, batch, tmp / f"{batch}.nc", per_batch))
            start = time.perf_counter()
            generators[name] = EnsembleGenerator(configs[name], dist)
            setup_s[name] = time.perf_counter() - start
        gen = generators[CONFIGS[0]]
        params = {kind: sum(p.numel() for p in net.parameters()) / 1e6
                  for kind, net in (("regression", gen.regression), ("diffusion", gen.diffusion))}
        counters = {name: (CallCounter(gen.regression), CallCounter(gen.diffusion))
                    for name, gen in generators.items()}

        def generate(gen: EnsembleGenerator) -> None:
            if args.mode == "run":
                gen.run()
            else:
                per_batch = gen.gen.times_per_batch
                for start in range(0, len(gen.indices), per_batch):
                    group = gen.indices[start:start + per_batch]
                    gen.predict(group, [gen.dataset.sample_in_both_units(i) for i in group])

        # Warm-up: one forward of each network at both batch sizes (allocator, kernels).
        img_lr = torch.as_tensor(gen.dataset[gen.indices[0]][1], device=device)[None]
        condition = torch.cat((gen._regression_mean(img_lr), img_lr), dim=1)
        with torch.inference_mode():
            for batch in (args.members, 1):
                gen.diffusion(torch.zeros(batch, gen.n_out, *gen.image_shape, device=device),
                              condition.expand(batch, -1, -1, -1),
                              torch.ones(batch, device=device))
        flops_per_time = count_flops_per_time(gen, img_lr, condition, args)
        sync()
        for regression, diffusion in counters.values():
            regression.calls = diffusion.calls = 0
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)

        print(f"device: {device_name(device)}, torch {torch.__version__}, "
              f"threads: {torch.get_num_threads()}", flush=True)
        print(f"settings: size={args.size} (regression {params['regression']:.2f} M, diffusion "
              f"{params['diffusion']:.2f} M parameters), 64x64, members={args.members}, "
              f"times={args.times}, sampler=stochastic, steps={args.steps}, "
              f"precision={args.precision}, rounds={args.rounds}, timed={args.mode}()",
              flush=True)

        seconds: dict[str, list[float]] = {name: [] for name in CONFIGS}
        busy: dict[str, list[float]] = {name: [] for name in CONFIGS}
        load = OtherLoad()
        for round_index in range(args.rounds):
            order = CONFIGS if round_index % 2 == 0 else CONFIGS[::-1]
            for name in order:
                if round_index and args.mode == "run":
                    # A finished file has nothing left to generate: a fresh generator (set-up
                    # not timed; the call counters stay on the first round's networks).
                    Path(configs[name].generation.io.output_filename).unlink(missing_ok=True)
                    generators[name] = EnsembleGenerator(configs[name], dist)
                sync()
                run_load = OtherLoad()
                start = time.perf_counter()
                generate(generators[name])
                sync()
                seconds[name].append(time.perf_counter() - start)
                busy[name].append(run_load.share())
                print(f"  round {round_index + 1}: {name:<13} {seconds[name][-1]:8.2f} s "
                      f"(other processes {busy[name][-1]:.0%})", file=sys.stderr, flush=True)
        others = load.share()
        peak_mib = (torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda"
                    else peak_rss_mib())

    members_per_run = args.members * args.times
    runs = args.times if args.mode == "run" else args.rounds * args.times  # calls counted
    results = {
        "device": device_name(device), "threads": torch.get_num_threads(),
        "size": args.size, "members": args.members, "times": args.times, "steps": args.steps,
        "precision": args.precision, "rounds": args.rounds, "mode": args.mode,
        "setup_s": setup_s, "run_s": seconds,
        "members_per_s": {name: members_per_run * args.rounds / sum(seconds[name])
                          for name in CONFIGS},
        "round_ratios": [one / batched for batched, one in zip(
            seconds["batched"], seconds["one at a time"], strict=True)],
        "regression_forwards_per_time": {name: counters[name][0].calls / runs
                                         for name in CONFIGS},
        "diffusion_forwards_per_time": {name: counters[name][1].calls / runs
                                        for name in CONFIGS},
        "other_processes_cpu": others,
        "other_processes_cpu_per_run": busy,
        "gflop_per_member": flops_per_time / args.members / 1e9,
        "peak_mib": peak_mib,
        "memory": "max_memory_allocated" if device.type == "cuda" else "peak RSS",
    }
    results["ratio"] = statistics.median(results["round_ratios"])
    peak = args.peak_tflops or (bf16_peak_tflops(results["device"])
                                if device.type == "cuda" else None)
    results["achieved_tflops"] = {
        name: results["members_per_s"][name] * results["gflop_per_member"] / 1e3
        for name in CONFIGS}
    results["mfu"] = ({name: tflops / peak for name, tflops in
                       results["achieved_tflops"].items()} if peak else None)
    for name in CONFIGS:
        print(f"{name:<13} (seed_batch_size={args.members if name == 'batched' else 1}, "
              f"times_per_batch={args.times if name == 'batched' else 1}): "
              f"{results['members_per_s'][name]:.3f} members/s  "
              f"(runs: {', '.join(f'{s:.1f}' for s in seconds[name])} s; other processes "
              f"{', '.join(f'{b:.0%}' for b in busy[name])}; "
              f"set-up {setup_s[name]:.1f} s); "
              f"{results['achieved_tflops'][name]:.3f} TFLOP/s"
              + (f", MFU {results['mfu'][name]:.1%}" if results["mfu"] else ""))
    print(f"ratio batched / one at a time: {results['ratio']:.2f}x (median over rounds of "
          f"{', '.join(f'{r:.2f}' for r in results['round_ratios'])})")
    regression = set(results["regression_forwards_per_time"].values())
    if len(regression) == 1:
        print(f"regression forwards per time: {regression.pop():g}")
    else:
        print("regression forwards per time: "
              + ", ".join(f"{v:g} ({k})" for k, v in results["regression_forwards_per_time"]
                          .items()))
    print(f"diffusion forwards per time ({args.members} members): "
          + ", ".join(f"{v:g} ({k})" for k, v in results["diffusion_forwards_per_time"]
                      .items()))
    note = ""
    spare = 1 - torch.get_num_threads() / (os.cpu_count() or 1)  # CPU share we leave idle
    if device.type == "cpu" and others > max(spare, 0) + 0.05:
        note = " (timings disturbed: other processes competed for this run's cores"
        note += "; try fewer --threads)" if torch.get_num_threads() > 1 else ")"
    elif others > 0.1:
        note = " (other work on the machine, on cores this run's threads did not need)"
    print(f"other processes: {others:.0%} of the CPU{note}")
    print(f"model FLOPs: {results['gflop_per_member']:.2f} GFLOP per member "
          f"(torch.utils.flop_counter); peak memory ({results['memory']}): {peak_mib:.0f} MiB"
          + ("" if results["mfu"] or device.type != "cuda" else
             "; MFU: unknown bf16 peak for this GPU, give --peak-tflops"))
    if args.json:
        print(json.dumps(results))
    return results


if __name__ == "__main__":
    main()
