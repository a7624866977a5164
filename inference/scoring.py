"""Score a generated ensemble against its truth, per variable and time, with baselines.

Reads a few times at a time (bounded memory) and computes every metric for all pixels of those
times at once with numpy; nothing loops over pixels or members in Python. The result layout is
documented in :func:`score_file` and in ``score_samples.py``.
"""

from __future__ import annotations

import logging
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import xarray as xr
from tqdm import tqdm

from helpers.infrastructure.errors import GeneratedFileError
from inference import metrics
from inference.generated_file import (
    channels,
    complete_times,
    field,
    open_generated,
    sample_dim,
    sample_keys,
    select_variables,
)

logger = logging.getLogger(__name__)

ENSEMBLE_METRICS = ("crps", "crps_fair", "mae", "rmse", "bias", "spread", "spread_skill")
PROBABILITY_METRICS = ("brier",)  # category channels (probabilities), NaN for the others
BASELINE_METRICS = ("mae", "rmse", "bias", "crps")
CHUNK_BYTES = 32 * 2**20  # float64 members per read; temporaries take ~6x that at peak


def score_file(
    path: str | os.PathLike,
    n_ensemble: int | None = None,
    variables: list[str] | None = None,
    regression: str | os.PathLike | None = None,
    seed: int = 0,
    chunk_times: int | None = None,
    progress: bool = True,
    workers: int | None = None,
) -> xr.Dataset:
    """Scores of ``path`` as a Dataset with coords ``metric``, ``time``, ``rank``:

    - ``<var>(metric, time)``: ensemble metrics (``crps``, ``crps_fair``; ``mae``, ``rmse``,
      ``bias`` of the ensemble mean; ``spread``, ``spread_skill``), then ``input_*`` and
      ``regression_*`` baselines (``mae``, ``rmse``, ``bias``, ``crps`` = MAE), NaN where that
      baseline has no such variable;
    - ``<var>_time_mean(metric)``: over times; RMSE and spread are the root of the mean squares
      and the spread-skill ratio is recomputed from those, everything else is a plain mean;
    - ``<var>_rank_histogram(time, rank)``: counts of the truth's rank among the members.

    For a file laid out along ``sample`` (several windows per time) ``time`` above reads
    ``sample``, with the valid ``time`` as a coordinate along it. ``workers`` threads (default:
    one per core, at most one per variable) score the variables of a chunk in parallel while
    the next chunk is read; the numbers do not depend on it.
    """
    ds = open_generated(path)
    try:
        return _score(ds, n_ensemble, variables, regression, seed, chunk_times, progress,
                      workers)
    finally:
        ds.close()


def _score(ds, n_ensemble, variables, regression, seed, chunk_times, progress,
           workers) -> xr.Dataset:
    source = ds.attrs["source_file"]
    names = select_variables(ds, variables)
    size = ds.sizes["ensemble"]
    n = size if n_ensemble is None else int(n_ensemble)
    if not 1 <= n <= size:
        raise GeneratedFileError(f"n_ensemble={n} is out of range: {source} has {size} member(s)")
    if n == 1:
        logger.warning("%s: scoring 1 member: crps equals the MAE and spread, spread_skill and "
                       "the rank histogram say nothing; probabilistic scores need at least 2 "
                       "members (generation.num_ensembles)", source)
    dim = sample_dim(ds)
    times = complete_times(ds)
    if len(times) == 0:
        raise GeneratedFileError(f"{source}: no complete time to score")
    if len(times) < ds.sizes[dim]:
        logger.warning("%s: scoring only the %d complete %s(s) of %d", source, len(times), dim,
                       ds.sizes[dim])
    input_names = set(channels(ds, "input"))
    reg_ds, reg_index = _open_regression(regression, ds, times) if regression else (None, None)
    sources = (["input"] if input_names & set(names) else []) + (["regression"] if reg_ds else [])
    probabilities = [v for v in str(ds.attrs.get("probability_variables", "")).split()
                     if v in names]
    metric_names = list(ENSEMBLE_METRICS) + [f"{s}_{m}" for s in sources for m in BASELINE_METRICS]
    if probabilities:
        metric_names += list(PROBABILITY_METRICS)
    acc = {v: _Accumulator(len(times), n, sources, v in probabilities) for v in names}
    rng = np.random.default_rng(seed)
    height, width = ds.sizes["y"], ds.sizes["x"]
    workers = max(1, min(workers or os.cpu_count() or 1, len(names)))
    # Chunks as before threads came (so the tie-breaking draws come in the same order); two
    # chunks of every variable are held at once (one scored, the next read meanwhile).
    step = chunk_times or max(1, CHUNK_BYTES // (8 * n * height * width))
    starts = list(range(0, len(times), step))

    def read(start: int) -> dict[str, tuple]:
        rows = slice(start, start + step)
        sel = {dim: _indexer(times[rows])}
        chunk = {}
        for var in names:
            truth = field(ds, "truth", var).isel(sel).values
            pred = field(ds, "prediction", var).isel({**sel, "ensemble": slice(0, n)}).values
            baselines = {}
            if "input" in sources and var in input_names:
                baselines["input"] = field(ds, "input", var).isel(sel).values
            if reg_ds is not None and f"prediction_{var}" in reg_ds:
                baselines["regression"] = reg_ds[f"prediction_{var}"].isel(
                    {sample_dim(reg_ds): _indexer(reg_index[rows]), "ensemble": 0}).values
            chunk[var] = (pred, truth, baselines)
        return chunk

    bar = tqdm(total=len(times), unit="time", desc="scoring", disable=not progress,
               dynamic_ncols=True)
    try:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="scoring") as pool:
            chunk = read(starts[0])
            for number, start in enumerate(starts):
                rows = slice(start, start + step)
                # Variables in parallel threads (numpy releases the GIL in its loops) while
                # this thread reads the next chunk; the tie-breaking draws of the rank
                # histogram stay in this thread, in variable order, so the numbers do not
                # depend on the threads.
                jobs = [pool.submit(acc[var].add, rows, *chunk[var]) for var in names]
                following = read(starts[number + 1]) if number + 1 < len(starts) else None
                for var in names:
                    acc[var].add_ranks(rows, chunk[var][0], chunk[var][1], rng)
                for job in jobs:
                    job.result()
                chunk = following
                bar.update(len(times[rows]))
    finally:
        bar.close()
        if reg_ds is not None:
            reg_ds.close()
    return _assemble(ds, names, acc, metric_names, times, n, regression, seed)


def lead_hours(ds: xr.Dataset) -> np.ndarray | None:
    """Each sample's lead time in hours (forecast files), else None."""
    if "lead_time" not in ds.variables:
        return None
    values = ds["lead_time"].values
    if np.issubdtype(values.dtype, np.timedelta64):
        return values / np.timedelta64(1, "h")
    return values.astype(np.float64)


def _indexer(indices: np.ndarray) -> slice | np.ndarray:
    """A slice when the indices are consecutive: netCDF reads those as one block."""
    if len(indices) and np.all(np.diff(indices) == 1):
        return slice(int(indices[0]), int(indices[-1]) + 1)
    return indices


def _open_regression(path, ds: xr.Dataset, times: np.ndarray) -> tuple[xr.Dataset, np.ndarray]:
    """The regression-mean file (``inference_mode=regression``), aligned on the scored times."""
    reg = open_generated(path, require=("prediction",))
    try:
        if (reg.sizes["y"], reg.sizes["x"]) != (ds.sizes["y"], ds.sizes["x"]):
            raise GeneratedFileError(
                f"{path}: grid {(reg.sizes['y'], reg.sizes['x'])} differs from the scored file's "
                f"{(ds.sizes['y'], ds.sizes['x'])}")
        where = {k: i for i, k in enumerate(sample_keys(reg))}
        keys = sample_keys(ds)
        wanted = [keys[t] for t in times]
        missing = [k for k in wanted if k not in where]
        if missing:
            raise GeneratedFileError(f"{path}: lacks {len(missing)} scored time(s), first at "
                                     f"{str(missing[0][0])[:16]}; generate the regression file "
                                     "from the same dataset and times")
        if reg.sizes["ensemble"] > 1 or reg.attrs.get("inference_mode", "regression") != (
                "regression"):
            logger.warning("%s: not a regression-only file (%d members, inference_mode=%s); "
                           "using member 0 as the regression baseline", path,
                           reg.sizes["ensemble"], reg.attrs.get("inference_mode"))
        absent = sorted(set(channels(ds, "truth")) - set(channels(reg, "prediction")))
        if absent:
            logger.warning("%s: no %s; those regression scores are NaN", path, absent)
    except BaseException:
        reg.close()
        raise
    return reg, np.array([where[t] for t in wanted])


class _Accumulator:
    """Per-time spatial means of one variable, filled chunk by chunk."""

    def __init__(self, n_times: int, n_members: int, sources: list[str],
                 probability: bool = False):
        self.m = n_members
        keys = ["crps", "crps_fair", "mae", "mse", "bias", "var"]
        keys += [f"{s}_{k}" for s in sources for k in ("mae", "mse", "bias")]
        self.probability = probability
        if probability:
            keys.append("brier")
            self.reliability = np.zeros((2, metrics.RELIABILITY_BINS))  # counts, outcomes
        self.values = {k: np.full(n_times, np.nan) for k in keys}
        self.ranks = np.zeros((n_times, n_members + 1), dtype=np.int64)

    def add_ranks(self, rows: slice, pred: np.ndarray, truth: np.ndarray,
                  rng: np.random.Generator) -> None:
        """Rank histogram counts of these times (ties broken with draws from ``rng``)."""
        valid = np.isfinite(truth) & np.isfinite(pred).all(axis=0)
        ranks = metrics.rank_of_truth(pred, truth, rng=rng)
        self.ranks[rows] = metrics.rank_histogram(ranks, self.m, valid)

    def add(self, rows: slice, pred: np.ndarray, truth: np.ndarray,
            baselines: dict[str, np.ndarray]) -> None:
        """Every other metric of these times (no random draws: safe in any thread)."""
        pred = pred.astype(np.float64)
        truth = truth.astype(np.float64)
        valid = np.isfinite(truth) & np.isfinite(pred).all(axis=0)
        space = (1, 2)
        out = self.values
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # NaN pixels are masked below
            standard, fair = metrics.crps_ensemble_pair(pred, truth)
            out["crps"][rows] = metrics.masked_mean(standard, valid, space)
            out["crps_fair"][rows] = metrics.masked_mean(fair, valid, space)
            error = pred.mean(axis=0) - truth
            out["mae"][rows] = metrics.masked_mean(np.abs(error), valid, space)
            out["mse"][rows] = metrics.masked_mean(error**2, valid, space)
            out["bias"][rows] = metrics.masked_mean(error, valid, space)
            out["var"][rows] = metrics.masked_mean(metrics.ensemble_variance(pred), valid, space)
            if self.probability:  # the ensemble-mean probability against the 0/1 outcome
                probability = pred.mean(axis=0)
                out["brier"][rows] = metrics.masked_mean(
                    metrics.brier_terms(probability, truth), valid, space)
                counts, hits = metrics.reliability_counts(probability, truth, valid)
                self.reliability += np.stack([counts, hits])
            for name, base in baselines.items():
                base_error = base.astype(np.float64) - truth
                ok = np.isfinite(base_error)
                out[f"{name}_mae"][rows] = metrics.masked_mean(np.abs(base_error), ok, space)
                out[f"{name}_mse"][rows] = metrics.masked_mean(base_error**2, ok, space)
                out[f"{name}_bias"][rows] = metrics.masked_mean(base_error, ok, space)

    def table(self, metric_names: list[str], groups: list[np.ndarray] = ()
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(metric, time) values, their time mean, and the time means over each of ``groups``
        (time indices; ``(group, metric)``), in the order of ``metric_names``."""
        v = self.values
        table, means = self._summaries(metric_names, v)
        grouped = np.stack([self._summaries(metric_names, {k: a[g] for k, a in v.items()})[1]
                            for g in groups]) if len(groups) else np.zeros((0, len(means)))
        return table, means, grouped

    def _summaries(self, metric_names: list[str], v: dict[str, np.ndarray]
                   ) -> tuple[np.ndarray, np.ndarray]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows stay NaN
            mean = {k: np.nanmean(a) for k, a in v.items()}
            per_time = {**v, "rmse": np.sqrt(v["mse"]), "spread": np.sqrt(v["var"])}
            time_mean = {**mean, "rmse": np.sqrt(mean["mse"]), "spread": np.sqrt(mean["var"])}
            for row in (per_time, time_mean):
                row["spread_skill"] = metrics.spread_skill_ratio(row["spread"], row["rmse"],
                                                                 self.m)
                for key in [k for k in row if k.endswith("_mse")]:
                    source = key[: -len("_mse")]
                    row[f"{source}_rmse"] = np.sqrt(row[key])
                    row[f"{source}_crps"] = row[f"{source}_mae"]  # deterministic CRPS = MAE
        n_times = len(v["crps"])
        nan = np.full(n_times, np.nan)
        table = np.stack([per_time.get(k, nan) for k in metric_names])
        means = np.array([time_mean.get(k, np.nan) for k in metric_names], dtype=np.float64)
        return table, means


def _assemble(ds, names, acc, metric_names, times, n, regression, seed) -> xr.Dataset:
    dim = sample_dim(ds)
    coords = {"metric": np.array(metric_names, dtype=object), "rank": np.arange(n + 1)}
    if dim == "time":
        coords["time"] = ds["time"].values[times]
    else:
        coords.update(sample=times, time=("sample", ds["time"].values[times]))
    out = xr.Dataset(coords=coords)
    leads = lead_hours(ds)
    groups = []
    if leads is not None:
        leads = leads[times]
        distinct = np.unique(leads)
        groups = [np.flatnonzero(leads == h) for h in distinct]
        coords_lead = distinct
        out.coords["lead_time"] = ("lead_time", coords_lead, {"units": "hours",
                                                             "standard_name": "forecast_period"})
        out.coords["sample_lead_time"] = (dim, leads, {"units": "hours"})
    for var in names:
        attrs = {k: ds[f"truth_{var}"].attrs[k] for k in ("units", "long_name", "standard_name")
                 if k in ds[f"truth_{var}"].attrs}
        table, means, per_lead = acc[var].table(metric_names, groups)
        if leads is not None:
            out[f"{var}_lead_time_mean"] = (("lead_time", "metric"), per_lead, attrs)
        if acc[var].probability:
            counts, hits = acc[var].reliability
            edges = np.linspace(0, 1, metrics.RELIABILITY_BINS + 1)
            out.coords["probability_bin"] = ("probability_bin", (edges[:-1] + edges[1:]) / 2,
                                             {"long_name": "centre of the forecast "
                                              "probability bin"})
            out[f"{var}_reliability_count"] = (("probability_bin",), counts.astype(np.int64), {
                "long_name": "pixels forecast a probability in the bin"})
            with np.errstate(invalid="ignore", divide="ignore"):
                out[f"{var}_reliability_observed"] = (("probability_bin",), hits / counts, {
                    "long_name": "observed frequency of the pixels of the bin"})
        if np.isnan(table[0]).all():
            logger.warning("%s: no finite truth/prediction pixel; its scores are NaN", var)
        out[var] = (("metric", dim), table, attrs)
        out[f"{var}_time_mean"] = (("metric",), means, attrs)
        out[f"{var}_rank_histogram"] = ((dim, "rank"), acc[var].ranks,
                                        {"long_name": f"rank of the truth among {n} members"})
    out.attrs = {
        "title": "CorrDiff ensemble scores",
        "source_file": str(Path(ds.attrs["source_file"]).resolve()),
        "regression_file": str(Path(regression).resolve()) if regression else "",
        "n_ensemble": n,
        "metrics": "crps, crps_fair: CRPS (standard empirical / fair) of the ensemble; mae, rmse, "
                   "bias (prediction - truth): of the ensemble mean; spread: sqrt of the spatial "
                   "mean of the member variance (ddof=1); spread_skill: spread*sqrt((M+1)/M)/rmse;"
                   " input_*, regression_*: deterministic baselines (crps = mae)",
        "time_mean": "rmse and spread: root of the time-mean squares; spread_skill from those; "
                     "others: mean over times (<var>_lead_time_mean: over the times of each "
                     "lead time)",
        "probability": "brier: Brier score of the ensemble-mean probability of a category "
                       "channel; <var>_reliability_count/_observed: reliability diagram counts",
        "rank_ties": f"broken uniformly at random (numpy default_rng seed {seed})",
        "Conventions": "CF-1.8",
    }
    return out
