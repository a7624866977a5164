"""Scoring speed: score_samples' vectorised chunks against a plain per-time reference loop
(properscoring.crps_ensemble plus numpy, one time and variable at a time) on the same
synthetic generated file; prints both times, their ratio and the largest difference.

    python benchmarks/bench_score.py [--times 24] [--members 16] [--size 128] [--vars 4]

``--versus "COMMAND {file} {out}"`` also times whole processes side by side, in alternating
rounds: ``python score_samples.py {file} {out}`` (start-up, imports, reading, scoring, writing)
against another scorer's command line, e.g. the reference CorrDiff example's
``score_samples.py`` in an environment that has its dependencies (xskillscore, dask):

    python benchmarks/bench_score.py --times 48 --members 16 --size 256 \
        --versus "/path/to/venv/bin/python /path/to/corrdiff/score_samples.py {file} {out}"
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import netCDF4
import numpy as np
import xarray as xr

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from inference.scoring import score_file  # noqa: E402
from inference.synthetic import write_synthetic  # noqa: E402

VARIABLES = ["10u", "10v", "2t", "tp", "msl", "tcwv"]
COMPARED = ("crps", "mae", "rmse", "bias", "spread", "spread_skill")


def reference(path: Path) -> dict[str, dict[str, np.ndarray]]:
    """Per time and variable: read, score with properscoring, reduce; no vectorisation."""
    import properscoring

    out = {}
    with netCDF4.Dataset(path) as nc:
        for var in nc["truth"].variables:
            rows: dict[str, list] = {k: [] for k in (*COMPARED, "ranks")}
            for t in range(len(nc.dimensions["time"])):
                truth = np.asarray(nc["truth"][var][t], dtype=np.float64)
                pred = np.asarray(nc["prediction"][var][:, t], dtype=np.float64)
                m = pred.shape[0]
                mean = pred.mean(axis=0)
                rmse = np.sqrt(((mean - truth) ** 2).mean())
                spread = np.sqrt(pred.var(axis=0, ddof=1).mean())
                rows["crps"].append(properscoring.crps_ensemble(truth, pred, axis=0).mean())
                rows["mae"].append(np.abs(mean - truth).mean())
                rows["rmse"].append(rmse)
                rows["bias"].append((mean - truth).mean())
                rows["spread"].append(spread)
                rows["spread_skill"].append(spread * np.sqrt((m + 1) / m) / rmse)
                ranks = (pred < truth).sum(axis=0)  # continuous data: no ties
                rows["ranks"].append(np.bincount(ranks.ravel(), minlength=m + 1))
            out[var] = {k: np.array(v) for k, v in rows.items()}
    return out


def whole_process_seconds(command: list[str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode:
        sys.exit(f"bench_score: {shlex.join(command)} failed:\n{done.stderr[-3000:]}")
    return seconds


def versus(path: Path, template: str, rounds: int) -> None:
    """Whole-process times of ours and of another scorer on the same file, alternating."""
    out_dir = path.parent
    ours_command = [sys.executable, str(ROOT / "score_samples.py"), str(path),
                    str(out_dir / "ours.nc"), "--no-progress"]
    other_command = shlex.split(template.format(file=path, out=out_dir / "other.nc"))
    ours, other = [], []
    for round_index in range(rounds):
        pair = [(ours_command, ours), (other_command, other)]
        for command, times in pair if round_index % 2 == 0 else pair[::-1]:
            times.append(whole_process_seconds(command))
    median = statistics.median
    print(f"whole process, median of {rounds} alternating rounds: ours {median(ours):.2f} s "
          f"({', '.join(f'{t:.2f}' for t in ours)}), other {median(other):.2f} s "
          f"({', '.join(f'{t:.2f}' for t in other)}): ours is {median(other) / median(ours):.2f}x "
          "faster")
    print(f"other: {shlex.join(other_command)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--times", type=int, default=24)
    parser.add_argument("--members", type=int, default=16)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--vars", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2, help="timed runs of ours (best)")
    parser.add_argument("--versus", help="another scorer's command line with {file} and {out}, "
                        "timed as a whole process against ours")
    parser.add_argument("--process-rounds", type=int, default=3,
                        help="alternating whole-process runs of each with --versus")
    args = parser.parse_args()
    variables = VARIABLES[: args.vars]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "generated.nc"
        start = time.perf_counter()
        write_synthetic(path, n_times=args.times, n_members=args.members,
                        shape=(args.size, args.size), outputs=variables, inputs=variables[:2])
        print(f"file: {args.times} times x {args.members} members x {args.size}x{args.size} x "
              f"{len(variables)} variables, {path.stat().st_size / 2**20:.0f} MiB "
              f"(written in {time.perf_counter() - start:.1f} s)")
        reference(path)  # warm the page cache so both runs read from memory
        start = time.perf_counter()
        expected = reference(path)
        t_ref = time.perf_counter() - start
        t_ours, t_one = [], []
        for _ in range(args.rounds):  # threaded and one-thread runs alternate (noisy machines)
            start = time.perf_counter()
            scores = score_file(path, progress=False)
            t_ours.append(time.perf_counter() - start)
            start = time.perf_counter()
            single = score_file(path, progress=False, workers=1)
            t_one.append(time.perf_counter() - start)
        t_ours, t_one = min(t_ours), min(t_one)
        xr.testing.assert_identical(scores, single)
        if args.versus:
            versus(path, args.versus, args.process_rounds)
    worst = max(float(np.max(np.abs(scores[v].sel(metric=k).values - expected[v][k])))
                for v in variables for k in COMPARED)
    ranks_equal = all(np.array_equal(scores[f"{v}_rank_histogram"].values, expected[v]["ranks"])
                      for v in variables)
    print(f"reference per-time loop (properscoring): {t_ref:7.2f} s")
    print(f"score_samples, one thread:               {t_one:7.2f} s (computes also fair CRPS "
          "and the input baseline)")
    print(f"score_samples, threads (default):        {t_ours:7.2f} s (identical scores); "
          f"{os.cpu_count()} cores")
    print(f"speed-up over the reference: {t_ref / t_ours:.1f}x; threads over one thread: "
          f"{t_one / t_ours:.2f}x")
    print(f"max |difference| over {', '.join(COMPARED)}: {worst:.2e}; "
          f"rank histograms identical: {ranks_equal}")


if __name__ == "__main__":
    main()
