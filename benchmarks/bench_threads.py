"""CPU threads per process, side by side: torchrun on this machine with our sizing (the cores
available divided by the processes) against torch's default (every core in every process).

    python benchmarks/bench_threads.py [--processes 2] [--samples 640] [--rounds 2]

Each run is `torchrun --standalone --nproc_per_node=P train.py` on the embedded dataset (the
CPU regression config, one DataLoader worker per process), in alternating rounds; the figure is
the training throughput of the last two progress reports (steady state), read from train.log.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from helpers.infrastructure.cpu_threads import available_cores  # noqa: E402

RATE = re.compile(r"samples \d+/\d+ .* ([\d.]+) samples/s")


def throughput(processes: int, samples: int, threads: int | None, run_dir: Path) -> float:
    """Samples/s of one torchrun training run; ``threads=None`` leaves the sizing to us."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc_per_node={processes}", "train.py",
               f"++training.io.checkpoint_dir={run_dir}",
               f"++training.hp.training_duration={samples}",
               f"++training.io.print_progress_freq={samples // 4}",
               f"++training.io.save_checkpoint_freq={samples}",
               f"++training.io.validation_freq={samples}", "++training.io.validation_steps=1"]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(f"training failed:\n{result.stderr[-3000:]}")
    rates = [float(m[1]) for m in RATE.finditer((run_dir / "train.log").read_text())]
    return sum(rates[-2:]) / len(rates[-2:])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--samples", type=int, default=640)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    cores = available_cores()
    cases = {f"ours: {max(1, cores // args.processes)} thread(s) per process": None,
             f"torch default: {cores} thread(s) per process": cores}
    results: dict[str, list[float]] = {name: [] for name in cases}
    with tempfile.TemporaryDirectory() as tmp:
        for round_index in range(args.rounds):
            for name, threads in cases.items():
                run_dir = Path(tmp) / f"run{round_index}_{threads}"
                results[name].append(throughput(args.processes, args.samples, threads, run_dir))
                shutil.rmtree(run_dir, ignore_errors=True)
                print(f"round {round_index + 1}: {name}: {results[name][-1]:.2f} samples/s",
                      flush=True)
    print(f"\n{args.processes} processes on {cores} available core(s), {args.samples} samples "
          f"per run, {args.rounds} round(s):")
    print("| threads | samples/s |\n| --- | --- |")
    for name, rates in results.items():
        print(f"| {name} | {sum(rates) / len(rates):.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
