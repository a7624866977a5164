"""Score a file written by generate.py: CRPS, MAE/RMSE/bias of the ensemble mean, spread,
spread-skill ratio and rank histograms per output variable and time, next to the interpolated
input and (optionally) the regression mean as baselines.

    python score_samples.py path=<generated.nc> output=<scores.nc>   # Hydra-style (++key= too)
    python score_samples.py <generated.nc> <scores.nc> [--n-ensemble N] [--json]
                            [--regression FILE | regression=FILE] [--variables 2t,10u]

Options (``--name`` or ``name=``): ``n_ensemble`` (first N members only), ``regression`` (a file
generated with ``inference_mode=regression``; its member 0 is the baseline), ``variables``
(comma list, default all), ``seed`` (rank-histogram tie breaking, default 0), ``chunk_times``
(times read at once; default: as many as fit 32 MiB of float64 members), ``json`` (print JSON
of the time means instead of the table).

Output NetCDF (written to ``<output>.tmp`` and renamed), coords ``metric``, ``time``, ``rank``:

    <var>(metric, time)          crps, crps_fair, mae, rmse, bias, spread, spread_skill,
                                 input_{mae,rmse,bias,crps}, regression_{mae,rmse,bias,crps},
                                 brier
    <var>_time_mean(metric)      over times (rmse/spread: root of mean squares)
    <var>_rank_histogram(time, rank)   counts, rank 0..M of the truth among M members

``input_*`` appears when some scored variable is also an input channel (NaN for the others),
``regression_*`` only with a regression file; ``brier`` (and the reliability diagram) only for
files with probability channels. Details: ``inference/scoring.py`` (the driver). Each metric is
a small object in ``inference/score_metrics.py`` (the per-time statistics it needs, and its
value from their means); a new metric is one entry in ``STANDARD_METRICS`` there.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys

from helpers.infrastructure.errors import UsageError, run_cli
from inference.score_table import format_table, to_json, write_scores
from inference.scoring import score_file

logger = logging.getLogger("score_samples")

KEYS = ("path", "output", "n_ensemble", "regression", "variables", "seed", "chunk_times",
        "json", "progress")
OVERRIDE = re.compile(r"^\+{0,2}(?P<key>[A-Za-z_][\w-]*)=(?P<value>.*)$")


def parse_args(argv: list[str]) -> argparse.Namespace:
    """``key=value`` / ``++key=value`` overrides plus ordinary positional and ``--`` options;
    an override wins over the same option given the other way."""
    parser = argparse.ArgumentParser(
        prog="score_samples.py", description="Score a generated CorrDiff ensemble file.",
        usage="%(prog)s path=<generated.nc> [output=<scores.nc>] [key=value ...]\n"
              "       %(prog)s <generated.nc> [<scores.nc>] [--n-ensemble N] [--json] "
              "[--regression FILE] [--variables a,b]",
        epilog="key=value forms: " + ", ".join(f"{k}=" for k in KEYS))
    parser.add_argument("files", nargs="*", metavar="path [output]",
                        help="generated NetCDF file, then the scores NetCDF to write (optional)")
    parser.add_argument("--n-ensemble", dest="n_ensemble", type=int, help="first N members")
    parser.add_argument("--regression", help="regression-only generated file (baseline)")
    parser.add_argument("--variables", help="comma-separated output variables (default all)")
    parser.add_argument("--seed", type=int, default=0, help="rank tie-breaking seed")
    parser.add_argument("--chunk-times", dest="chunk_times", type=int, help="times per read")
    parser.add_argument("--json", action="store_true", help="print JSON of the time means")
    parser.add_argument("--no-progress", dest="progress", action="store_false")
    overrides, rest = {}, []
    for arg in argv:
        match = OVERRIDE.match(arg)
        if match is None:
            rest.append(arg)
            continue
        key = match["key"].replace("-", "_")
        if key not in KEYS:
            raise UsageError(f"unknown option {match['key']!r}; known: {', '.join(KEYS)}")
        overrides[key] = match["value"]
    args = parser.parse_args(rest)
    args.path = args.output = None
    free = [k for k in ("path", "output") if k not in overrides]  # slots positionals fill
    if len(args.files) > len(free):
        raise UsageError(f"too many positional arguments: {args.files[len(free):]}")
    for key, value in zip(free, args.files, strict=False):
        setattr(args, key, value)
    for key, value in overrides.items():
        setattr(args, key, _convert(key, value))
    if isinstance(args.variables, str):
        args.variables = [v.strip() for v in args.variables.strip("[]").split(",") if v.strip()]
    if not args.path:
        raise UsageError("no input file: give path=<generated.nc> (or it as first argument)")
    return args


def _convert(key: str, value: str) -> object:
    value = value.strip().strip("'\"")
    if key in ("n_ensemble", "seed", "chunk_times"):
        if value.lower() in ("null", "none", ""):
            return None if key != "seed" else 0
        try:
            return int(value)
        except ValueError:
            raise UsageError(f"{key} must be an integer, got {value!r}") from None
    if key in ("json", "progress"):
        if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
            raise UsageError(f"{key} must be true or false, got {value!r}")
        return value.lower() in ("true", "1", "yes")
    return None if value.lower() in ("null", "none", "") else value


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)

    def job() -> None:
        args = parse_args(sys.argv[1:] if argv is None else argv)
        scores = score_file(args.path, n_ensemble=args.n_ensemble, variables=args.variables,
                            regression=args.regression, seed=args.seed,
                            chunk_times=args.chunk_times, progress=args.progress)
        if args.output:
            logger.info("wrote %s", write_scores(scores, args.output).resolve())
        print(to_json(scores) if args.json else format_table(scores))

    return run_cli(job)


if __name__ == "__main__":
    sys.exit(main())
