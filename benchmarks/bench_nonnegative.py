"""What keeping precipitation non-negative does to skill and spectra, side by side.

    python benchmarks/bench_nonnegative.py [--data data/synthetic] [--out outputs/bench_nonnegative]
                                           [--tiny]

Three ways to treat the embedded dataset's ``tp`` (a heavy-tailed rate, zero over much of the
domain), each through the demo's documented commands and schedule (`demo`):

- ``signed``: z-scores of the raw values, nothing clamped (how CorrDiff treats every variable);
- ``clamp``: the same trained models, members clamped at 0 in physical units;
- ``log1p``: models trained on z-scores of ``log1p(tp)``, members clamped after ``expm1``.

Only ``stats.json`` differs between them (``nonnegative``, ``transform``; see
`datasets.stats_file`), so the comparison is of the treatment alone. For each: the share of
negative member values (all pixels and dry ones), CorrDiff fair CRPS, MAE of the ensemble mean,
the regression mean's MAE, spread-skill, and the mean power in the two highest wavenumber
octaves (truth and CorrDiff). Prints a table and writes ``summary.md`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import netCDF4
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from demo import (  # noqa: E402
    N_TIMES,
    dataset_command,
    evaluation_times,
    high_wavenumber_power,
    stage_commands,
)
from helpers.infrastructure.atomic_write import write_text  # noqa: E402

VARIANTS = {"signed": ("none", False), "clamp": ("none", True), "log1p": ("log1p", True)}
STAGES = ("train regression", "train diffusion", "generate CorrDiff", "generate regression",
          "score")


def variant_stats(data: Path, out: Path) -> dict[str, Path]:
    """One ``stats.json`` per variant: the dataset's own, with ``tp``'s treatment replaced
    (statistics of ``log1p(tp)`` for the transformed variant, from the training split)."""
    stats = json.loads((data / "stats.json").read_text())
    with netCDF4.Dataset(data / "train.nc") as nc:
        total = total_sq = count = 0.0
        for start in range(0, len(nc["time"]), 256):
            values = np.log1p(np.clip(nc["output"]["tp"][start:start + 256].astype(
                np.float64), 0, None))
            total, total_sq, count = (total + values.sum(), total_sq + (values**2).sum(),
                                      count + values.size)
    log_mean = total / count
    log_std = float(np.sqrt(total_sq / count - log_mean**2))
    paths = {}
    for name, (transform, nonnegative) in VARIANTS.items():
        entry = dict(stats["output"]["tp"], nonnegative=nonnegative)
        entry.pop("transform", None)
        if transform == "log1p":
            entry.update(mean=log_mean, std=log_std, transform="log1p")
        variant = dict(stats, output=dict(stats["output"], tp=entry))
        paths[name] = out / f"stats_{name}.json"
        paths[name].write_text(json.dumps(variant, indent=2) + "\n")
    return paths


def negative_shares(path: Path) -> tuple[float, float, float]:
    """(share of negative tp member values, share among dry truth pixels, minimum)."""
    with netCDF4.Dataset(path) as nc:
        members = np.asarray(nc["prediction"]["tp"][:], dtype=np.float64)
        truth = np.asarray(nc["truth"]["tp"][:], dtype=np.float64)
    dry = np.broadcast_to(truth <= 1e-6, members.shape)
    return float((members < 0).mean()), float((members[dry] < 0).mean()), float(members.min())


def run_variant(name: str, out: Path, data: Path, stats: Path, run_dir: Path, tiny: bool,
                times: list[str]) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    scores = None
    for stage, command in stage_commands(out, data, tiny, times, stats=stats, run=run_dir):
        if stage not in STAGES:
            continue
        print(f"=== {name}: {stage}", flush=True)
        started = time.perf_counter()
        result = subprocess.run(command, cwd=ROOT, text=True,
                                stdout=subprocess.PIPE if stage == "score" else
                                subprocess.DEVNULL, stderr=subprocess.PIPE)
        if result.returncode:
            raise SystemExit(f"{name}: {stage} failed:\n{result.stderr[-3000:]}")
        print(f"    {time.perf_counter() - started:.0f} s", flush=True)
        if stage == "score":
            scores = json.loads(result.stdout)["metrics"]["tp"]
    negative, negative_dry, minimum = negative_shares(out / "corrdiff.nc")
    power = high_wavenumber_power(out / "corrdiff.nc")["tp"]
    regression_power = high_wavenumber_power(out / "regression.nc")["tp"]
    return {"negative": negative, "negative_dry": negative_dry, "minimum": minimum,
            "crps_fair": scores["crps_fair"], "mae": scores["mae"],
            "regression_mae": scores["regression_mae"], "spread_skill": scores["spread_skill"],
            "power_truth": power["truth"], "power_corrdiff": power["prediction"],
            "power_regression": regression_power["prediction"]}


def table(results: dict[str, dict]) -> str:
    lines = ["| tp treatment | negative member values (all / dry pixels) | minimum (mm/h) "
             "| CorrDiff fair CRPS | CorrDiff MAE | regression MAE | CRPS / regression MAE "
             "| spread-skill | high-k power: truth / regression / CorrDiff |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, r in results.items():
        lines.append(
            f"| {name} | {100 * r['negative']:.1f}% / {100 * r['negative_dry']:.1f}% "
            f"| {r['minimum']:.3f} | {r['crps_fair']:.4f} | {r['mae']:.4f} "
            f"| {r['regression_mae']:.4f} | {r['crps_fair'] / r['regression_mae']:.3f} "
            f"| {r['spread_skill']:.2f} | {r['power_truth']:.3g} / {r['power_regression']:.3g} / "
            f"{r['power_corrdiff']:.3g} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("data/synthetic"))
    parser.add_argument("--out", type=Path, default=Path("outputs/bench_nonnegative"))
    parser.add_argument("--tiny", action="store_true", help="a few steps, to check the script")
    args = parser.parse_args(argv)
    out, data = args.out.resolve(), args.data.resolve()
    out.mkdir(parents=True, exist_ok=True)
    if not all((data / f).is_file() for f in ("train.nc", "valid.nc", "stats.json")):
        subprocess.run(dataset_command(data, args.tiny), cwd=ROOT, check=True)
    stats = variant_stats(data, out)
    times = evaluation_times(data / "valid.nc", 2 if args.tiny else N_TIMES)
    results = {}
    for name in VARIANTS:
        # clamp only changes how members are de-normalized: it reuses the signed models.
        run_dir = out / ("signed" if name == "clamp" else name) / "run"
        results[name] = run_variant(name, out / name, data, stats[name], run_dir, args.tiny,
                                    times)
    text = (f"tp on the embedded dataset's valid split ({len(times)} times, demo schedule"
            f"{', tiny' if args.tiny else ''})\n\n" + table(results) + "\n")
    write_text(out / "summary.md", text)
    print("\n" + text)
    print(f"wrote {out / 'summary.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
