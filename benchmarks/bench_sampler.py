"""Sampler settings against skill: fewer network calls per member at equal quality?

Generates the embedded dataset's validation times with trained models (the demo's, by default)
under several sampler settings, all with the same seed (so the comparison is not blurred by
different noise), scores each file and prints one row per setting:

- network calls per member (the diffusion network's forward passes, counted by a hook);
- fair CRPS, spread-skill ratio and high-wavenumber power (the two highest octaves, as the
  demo's spectrum check) per variable, and their change against the first (reference) row;
- seconds of generation.

    python benchmarks/bench_sampler.py               # the demo's models and 16 evaluation times
    python benchmarks/bench_sampler.py --times 0 --members 8 --json    # every valid time

Run ``make demo`` first (or pass --regression/--diffusion). It takes about (calls per member)
x members x times network calls per setting: with 8 members and 16 times on 2 CPU cores (demo
models), about 5 minutes per 35-call setting.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# (label, generation.sampler overrides); the first row is the reference (today's default).
SETTINGS = [
    ("stochastic Heun 18 (default)", {"type": "stochastic", "num_steps": 18}),
    ("stochastic Heun 12", {"type": "stochastic", "num_steps": 12}),
    ("stochastic Heun 9", {"type": "stochastic", "num_steps": 9}),
    ("stochastic Heun 6", {"type": "stochastic", "num_steps": 6}),
    ("deterministic Euler 18", {"type": "deterministic", "solver": "euler", "num_steps": 18}),
    ("deterministic Euler 12", {"type": "deterministic", "solver": "euler", "num_steps": 12}),
    ("stochastic Heun 9, churn 10", {"type": "stochastic", "num_steps": 9, "S_churn": 10,
                                     "S_min": 0.05, "S_max": 50}),
    ("stochastic Heun 12, sigma_max 80", {"type": "stochastic", "num_steps": 12,
                                          "sigma_max": 80}),
    ("stochastic Heun 9, sigma_max 80", {"type": "stochastic", "num_steps": 9,
                                         "sigma_max": 80}),
    ("stochastic Heun 9, sigma_max 20", {"type": "stochastic", "num_steps": 9,
                                         "sigma_max": 20}),
    ("stochastic Heun 12, sigma_max 20", {"type": "stochastic", "num_steps": 12,
                                          "sigma_max": 20}),
    ("stochastic Heun 9, sigma_max 10", {"type": "stochastic", "num_steps": 9,
                                         "sigma_max": 10}),
    ("stochastic Heun 9, sigma_max 5", {"type": "stochastic", "num_steps": 9,
                                        "sigma_max": 5}),
]


def generate(args: argparse.Namespace, sampler: dict, output: Path, dist) -> tuple[float, float]:
    """Seconds and diffusion calls per member of one generation."""
    import torch

    from helpers.generation.config import validate_generation_config
    from helpers.generation.ensemble import EnsembleGenerator

    config = validate_generation_config({
        "dataset": {"type": "synthetic", "data_path": str(args.data / "valid.nc"),
                    "stats_path": str(args.data / "stats.json"),
                    "output_variables": ["10u", "10v", "2t", "tp"],
                    "invariant_variables": ["elev_mean", "lsm_mean"]},
        "generation": {"num_ensembles": args.members, "seed_batch_size": args.members,
                       "times": args.selected, "sampler": sampler,
                       "io": {"reg_ckpt_filename": str(args.regression),
                              "res_ckpt_filename": str(args.diffusion),
                              "output_filename": str(output)}}})
    generator = EnsembleGenerator(config, dist)
    calls = [0]
    hook = generator.diffusion.register_forward_hook(
        lambda module, inputs, result: calls.__setitem__(0, calls[0] + inputs[0].shape[0]))
    start = time.perf_counter()
    with torch.inference_mode():
        generator.run()
    seconds = time.perf_counter() - start
    hook.remove()
    return seconds, calls[0] / (args.members * len(generator.indices))


def quality(path: Path) -> dict[str, dict[str, float]]:
    from demo import high_wavenumber_power
    from inference.score_table import time_mean_table
    from inference.scoring import score_file

    table = time_mean_table(score_file(path, progress=False))
    power = high_wavenumber_power(path)
    return {var: {"crps_fair": m["crps_fair"], "spread_skill": m["spread_skill"],
                  "high_k_power": power[var]["prediction"] / power[var]["truth"]}
            for var, m in table.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--regression", type=Path,
                        default=ROOT / "outputs/demo/run/checkpoints_regression")
    parser.add_argument("--diffusion", type=Path,
                        default=ROOT / "outputs/demo/run/checkpoints_diffusion")
    parser.add_argument("--data", type=Path, default=ROOT / "data/synthetic")
    parser.add_argument("--members", type=int, default=8)
    parser.add_argument("--times", type=int, default=16,
                        help="N valid times spread evenly, as the demo picks them (16); 0: all")
    parser.add_argument("--settings", type=int, nargs="*", default=None,
                        help="row numbers of SETTINGS to run (all); 0 is the reference")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    import torch

    from benchmarks.device_info import device_name
    from datasets.registry import build_dataset
    from demo import evaluation_times
    from helpers.infrastructure.distributed import init_distributed

    dist = init_distributed()
    if args.times:  # the demo's evaluation times
        args.selected = evaluation_times(args.data / "valid.nc", args.times)
    else:
        dataset = build_dataset({"type": "synthetic", "data_path": str(args.data / "valid.nc"),
                                 "stats_path": str(args.data / "stats.json")})
        args.selected = [t.strftime("%Y-%m-%dT%H:%M") for t in dataset.time()]
    times = args.selected
    chosen = [SETTINGS[i] for i in (args.settings if args.settings is not None
                                    else range(len(SETTINGS)))]
    print(f"device: {device_name(dist.device)}, torch {torch.__version__}, threads "
          f"{torch.get_num_threads()}; {len(times)} times x {args.members} members, seed 0",
          flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_sampler_") as tmp:
        for number, (label, sampler) in enumerate(chosen):
            output = Path(tmp) / f"{number}.nc"
            seconds, calls = generate(args, sampler, output, dist)
            rows.append({"setting": label, "sampler": sampler, "calls_per_member": calls,
                         "seconds": seconds, "scores": quality(output)})
            print(f"{label}: {calls:g} calls per member, {seconds:.0f} s", flush=True)
    reference = rows[0]["scores"]
    variables = list(reference)
    print("\nchange against the first row (fair CRPS: lower is better; spread-skill and "
          "high-k power ratio: closer to 1 is better)")
    header = f"{'setting':<30} {'calls':>5} {'time s':>7} " + " ".join(
        f"{v + ' ' + k:>22}" for v in variables for k in ("crps", "ss", "pow"))
    print(header)
    for row in rows:
        cells = []
        for var in variables:
            s, r = row["scores"][var], reference[var]
            cells += [f"{s['crps_fair']:.4f} ({s['crps_fair'] / r['crps_fair'] - 1:+.1%})",
                      f"{s['spread_skill']:.3f}", f"{s['high_k_power']:.3f}"]
        print(f"{row['setting']:<30} {row['calls_per_member']:>5g} {row['seconds']:>7.0f} "
              + " ".join(f"{c:>22}" for c in cells))
    if args.json:
        print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
