"""HRRR-Mini datapipe throughput and memory for two file sizes.

Writes two HRRR-Mini files that differ only in their number of samples, then, in a fresh
process per file, reads random samples and reports samples/s and the peak resident memory.
Memory should stay flat as the file grows, since samples are read lazily.

    python benchmarks/bench_datapipe.py [--small 200] [--large 2000] [--reads 500]
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from datasets.hrrrmini_format import HRRRMiniWriter  # noqa: E402
from datasets.stats_file import write_stats  # noqa: E402

WINDOW, FACTOR, GRID = 64, 8, (256, 256)
INPUTS = ["10u", "10v", "2t", "tp", "tcwv"]
OUTPUTS = ["10u", "10v", "2t", "tp"]


def write_file(path: Path, n_samples: int, chunk: int = 100) -> None:
    rng = np.random.default_rng(0)
    invariants = {"elev_mean": rng.uniform(0, 3000, GRID), "lsm_mean": rng.uniform(0, 1, GRID)}
    start = datetime.datetime(2020, 1, 1)
    with HRRRMiniWriter(path, (WINDOW // FACTOR,) * 2, (WINDOW,) * 2, INPUTS, OUTPUTS,
                        invariants, compression_level=0) as writer:
        for first in range(0, n_samples, chunk):
            n = min(chunk, n_samples - first)
            times = [start + datetime.timedelta(hours=first + i) for i in range(n)]
            coords = rng.integers(0, GRID[0] - WINDOW, (n, 2))
            lr = {v: rng.normal(size=(n, WINDOW // FACTOR, WINDOW // FACTOR)) for v in INPUTS}
            hr = {v: rng.normal(size=(n, WINDOW, WINDOW)) for v in OUTPUTS}
            writer.append(times, coords, lr, hr)
        write_stats(path.with_suffix(".json"), writer.stats())


MEASURE = """
import json, sys, time, numpy as np
sys.path.insert(0, {root!r})
from datasets.hrrrmini import HRRRMiniDataset

def peak_mib():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM"):
            return int(line.split()[1]) / 1024

base = peak_mib()
ds = HRRRMiniDataset({path!r}, {stats!r})
order = np.random.default_rng(1).integers(0, len(ds), {reads})
ds[0]
start = time.perf_counter()
for i in order:
    ds[int(i)]
elapsed = time.perf_counter() - start
print(json.dumps({{"samples_per_s": {reads} / elapsed, "peak_mib": peak_mib(),
                   "peak_after_imports_mib": base}}))
"""


def measure(path: Path, reads: int) -> dict:
    code = MEASURE.format(root=str(ROOT), path=str(path), stats=str(path.with_suffix(".json")),
                          reads=reads)
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=200, help="samples in the small file")
    parser.add_argument("--large", type=int, default=2000, help="samples in the large file")
    parser.add_argument("--reads", type=int, default=500, help="random samples read per file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = []
        for n in (args.small, args.large):
            path = Path(tmp) / f"hrrr_mini_{n}.nc"
            t0 = time.perf_counter()
            write_file(path, n)
            size_mib = path.stat().st_size / 2**20
            result = measure(path, args.reads)
            rows.append((n, size_mib, result, time.perf_counter() - t0))
        print(f"HRRR-Mini datapipe, {WINDOW}x{WINDOW} windows, {len(INPUTS)} inputs + 2 "
              f"invariants, {len(OUTPUTS)} outputs, {args.reads} random reads per file")
        print(f"{'samples':>8} {'file MiB':>9} {'samples/s':>10} {'peak RSS MiB':>13} "
              f"{'of which imports':>17}")
        for n, size_mib, r, _ in rows:
            print(f"{n:>8} {size_mib:>9.1f} {r['samples_per_s']:>10.0f} {r['peak_mib']:>13.0f} "
                  f"{r['peak_after_imports_mib']:>17.0f}")
        growth = rows[1][2]["peak_mib"] - rows[0][2]["peak_mib"]
        file_growth = rows[1][1] - rows[0][1]
        print(f"peak memory grew {growth:+.1f} MiB while the file grew {file_growth:+.1f} MiB")


if __name__ == "__main__":
    main()
