"""The main job end to end on the embedded dataset, through the documented command lines.

    python demo.py [--out outputs/demo] [--tiny]

Stages: make the dataset, train the regression model (`train.py`), train the diffusion model on
its residual, generate CorrDiff ensembles and a regression-only file for the valid split
(`generate.py`), score them (`score_samples.py`), draw spectra and sample maps (`inference`), and
write ``summary.md`` comparing interpolation, regression and CorrDiff. ``--tiny`` shrinks every
stage (a few steps, 2 times, 2 members) to check the plumbing in seconds.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from helpers.infrastructure.atomic_write import write_text
from helpers.infrastructure.errors import run_cli

ROOT = Path(__file__).resolve().parent
DIFFUSION_CONFIG = "config_training_synthetic_diffusion"

TINY_MODEL = ["++model.model_args.model_channels=8", "++model.model_args.channel_mult=[1,2]",
              "++model.model_args.num_blocks=1", "++model.model_args.attn_resolutions=[]"]


N_TIMES = 16  # validation times generated and scored (2 with --tiny)


def dataset_command(data: Path, tiny: bool) -> list[str]:
    """The documented command that makes the embedded dataset (smaller with ``--tiny``)."""
    sizes = ["--n-train", "256", "--n-valid", "8"] if tiny else []
    return [sys.executable, "-m", "datasets.synthetic", "--out", str(data), *sizes]


def evaluation_times(valid_file: Path, count: int) -> list[str]:
    """``count`` times spread evenly over the valid split (ISO strings for ``generation.times``),
    so the scores cover all of its weather rather than one spell."""
    from datasets.hrrrmini_format import read_times

    dates = read_times(valid_file)
    picks = np.unique(np.linspace(0, len(dates) - 1, min(count, len(dates))).round().astype(int))
    return [dates[i].strftime("%Y-%m-%dT%H:%M") for i in picks]


def stage_commands(out: Path, data: Path, tiny: bool, times: list[str],
                   stats: Path | None = None, run: Path | None = None
                   ) -> list[tuple[str, list[str]]]:
    """(stage name, argv) for every stage after the dataset; the argv are the documented
    commands. ``times`` are the validation times to generate; ``stats`` replaces the dataset's
    ``stats.json`` and ``run`` the training directory (``out/run``), for comparisons."""
    run = run or out / "run"
    stats = stats or data / "stats.json"
    python = sys.executable
    dataset = [f"++dataset.data_path={data}/train.nc", f"++dataset.stats_path={stats}"]
    common_training = [f"++training.io.checkpoint_dir={run}", *dataset,
                       f"++validation.data_path={data}/valid.nc"]
    regression_training, diffusion_training, generation = [], [], []
    if tiny:
        common_training += [*TINY_MODEL, "++training.hp.training_duration=32",
                            "++training.hp.total_batch_size=8",
                            "++training.io.validation_steps=1",
                            "++training.perf.dataloader_workers=0"]
        generation = ["++generation.num_ensembles=2", "++generation.seed_batch_size=2",
                      "++generation.sampler.num_steps=4"]
    else:
        # Sized for about 15 minutes on 2 CPU cores (see README, "The demo").
        # Batches of 8: twice the optimizer steps of the default 16 for the same samples,
        # which on this budget cuts the regression error far more than a larger learning rate.
        regression_training = ["++training.hp.training_duration=6000",
                               "++training.hp.total_batch_size=8",
                               "++training.hp.lr_rampup=160", "++training.hp.lr_decay=0.5",
                               "++training.hp.lr_decay_rate=3000"]
        diffusion_training = ["++training.hp.training_duration=5280",
                              "++training.hp.lr_rampup=160", "++training.hp.lr_decay=0.7",
                              "++training.hp.lr_decay_rate=2000"]
        generation = ["++generation.num_ensembles=8", "++generation.seed_batch_size=8"]
    generation.append(f"++generation.times=[{','.join(times)}]")
    corrdiff, regression = out / "corrdiff.nc", out / "regression.nc"
    checkpoints = [f"++generation.io.reg_ckpt_filename={run}/checkpoints_regression",
                   f"++generation.io.res_ckpt_filename={run}/checkpoints_diffusion",
                   f"++dataset.data_path={data}/valid.nc",
                   f"++dataset.stats_path={stats}"]
    return [
        ("train regression", [python, "train.py", *common_training, *regression_training]),
        ("train diffusion", [python, "train.py", f"--config-name={DIFFUSION_CONFIG}",
                             *common_training, *diffusion_training,
                             f"++training.io.regression_checkpoint_path={run}/"
                             "checkpoints_regression"]),
        ("generate CorrDiff", [python, "generate.py", *checkpoints, *generation,
                               f"++generation.io.output_filename={corrdiff}"]),
        ("generate regression", [python, "generate.py", *checkpoints, *generation,
                                 "++generation.inference_mode=regression",
                                 f"++generation.io.output_filename={regression}"]),
        ("score", [python, "score_samples.py", f"path={corrdiff}", f"output={out}/scores.nc",
                   f"regression={regression}", "--json", "--no-progress"]),
        ("spectra", [python, "-m", "inference.power_spectra", str(corrdiff), "--out-dir",
                     str(out / "spectra"), "--grid-spacing-km", "3", "--multiple", "4"]),
        ("sample maps", [python, "-m", "inference.plot_single_sample", str(corrdiff),
                         "--time-index", "0", "--out", str(out / "maps")]),
    ]


def high_wavenumber_power(path: Path) -> dict[str, dict[str, float]]:
    """Mean power in the two highest wavenumber octaves of the truth and of the file's
    prediction members, per variable."""
    from inference.power_spectra import file_spectra

    out = {}
    spectra, _ = file_spectra(path, grid_spacing_km=3.0, detrend="linear")
    for var, by_source in spectra.items():
        freqs, psd_truth = by_source["truth", "x"]
        _, psd_members = by_source["prediction", "x"]
        top = freqs >= freqs[-1] / 4  # the two highest octaves
        out[var] = {"truth": float(psd_truth[top].mean()),
                    "prediction": float(psd_members[top].mean())}
    return out


def write_summary(out: Path, scores: dict, regression_file: Path, corrdiff_file: Path,
                  timings: dict[str, float]) -> str:
    power = high_wavenumber_power(corrdiff_file)
    power_regression = high_wavenumber_power(regression_file)
    lines = ["# CorrDiff demo on the embedded dataset (valid split)", "",
             f"{scores['n_times']} times, {scores['n_ensemble']} members.", "",
             "| variable | interpolation MAE | regression MAE | CorrDiff MAE "
             "| CorrDiff CRPS (fair) | CRPS / regression MAE | spread-skill "
             "| high-k power: truth / regression / CorrDiff | checks |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    all_ok = True
    for var, m in scores["metrics"].items():
        interp, reg = m.get("input_mae"), m.get("regression_mae")
        ratio = m["crps_fair"] / reg if reg else float("nan")
        p_truth, p_diff = power[var]["truth"], power[var]["prediction"]
        p_reg = power_regression[var]["prediction"]
        checks = {
            "reg<interp": reg is not None and interp is not None and reg < interp,
            "crps<=0.8reg": ratio <= 0.8,
            "spread-skill in [0.8,1.2]": 0.8 <= m["spread_skill"] <= 1.2,
            "spectrum": abs(np.log(p_diff / p_truth)) < abs(np.log(p_reg / p_truth)),
        }
        all_ok &= all(checks.values())
        failed = [k for k, ok in checks.items() if not ok]
        lines.append(
            f"| {var} | {_f(interp)} | {_f(reg)} | {_f(m['mae'])} | {_f(m['crps_fair'])} | "
            f"{ratio:.2f} | {m['spread_skill']:.2f} | {p_truth:.3g} / {p_reg:.3g} / {p_diff:.3g} "
            f"| {'all met' if not failed else 'not met: ' + ', '.join(failed)} |")
    lines += ["", "Targets: regression MAE below interpolation MAE; CorrDiff fair CRPS at most "
              "0.8 x regression MAE; spread-skill in [0.8, 1.2]; CorrDiff power in the two "
              "highest wavenumber octaves closer to the truth's than the regression's.",
              "", f"All targets met: {'yes' if all_ok else 'no'}.", "", "| stage | wall time |",
              "| --- | --- |"]
    lines += [f"| {name} | {seconds:.0f} s |" for name, seconds in timings.items()]
    text = "\n".join(lines) + "\n"
    write_text(out / "summary.md", text)
    return text


def _f(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _run_stage(name: str, command: list[str], timings: dict[str, float],
               capture: bool = False) -> subprocess.CompletedProcess:
    """Run one stage, timing it and saying so if it failed; ``capture`` keeps its stdout."""
    print(f"\n=== {name}: {' '.join(command[1:])}", flush=True)
    start = time.perf_counter()
    result = subprocess.run(command, cwd=ROOT, stdout=subprocess.PIPE if capture else None,
                            text=True)
    timings[name] = time.perf_counter() - start
    if result.returncode != 0:
        print(f"demo stopped: stage '{name}' failed (exit {result.returncode})", file=sys.stderr)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("outputs/demo"))
    parser.add_argument("--data", type=Path, default=Path("data/synthetic"),
                        help="where the embedded dataset is (made if missing)")
    parser.add_argument("--tiny", action="store_true", help="a few steps, 2 times, 2 members")
    args = parser.parse_args(argv)
    out, data = args.out.resolve(), args.data.resolve()
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    if all((data / f).is_file() for f in ("train.nc", "valid.nc", "stats.json")):
        print(f"\n=== dataset: {data} already exists", flush=True)
    else:
        result = _run_stage("dataset", dataset_command(data, args.tiny), timings)
        if result.returncode:
            return result.returncode
    times = evaluation_times(data / "valid.nc", 2 if args.tiny else N_TIMES)
    scores = None
    for name, command in stage_commands(out, data, args.tiny, times):
        result = _run_stage(name, command, timings, capture=name == "score")
        if result.returncode:
            return result.returncode
        if name == "score":
            scores = json.loads(result.stdout)
    summary = write_summary(out, scores, out / "regression.nc", out / "corrdiff.nc", timings)
    print("\n" + summary)
    print(f"outputs in {out}: summary.md, scores.nc, corrdiff.nc, regression.nc, spectra/, maps/")
    print("stage wall times: " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items())
          + f"; total {sum(timings.values()):.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
