"""Score a generated ensemble against its truth, per variable and time, with baselines.

The driver: reads a few times at a time (bounded memory), hands each variable's chunk to the
metrics of :mod:`inference.score_metrics` (each a small object: the per-time statistics it
needs and how its value follows from their means; a new metric is one entry in
``STANDARD_METRICS`` there, or pass ``metrics=``) and assembles their values, the rank
histograms and the reliability diagrams into a Dataset. Every statistic is computed for all
pixels of the chunk's times at once with numpy; nothing loops over pixels or members in Python.
The result layout is documented in :func:`score_file` and in ``score_samples.py``.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import xarray as xr
from tqdm import tqdm

from helpers.infrastructure.errors import GeneratedFileError
from inference.generated_file import (
    channels,
    complete_times,
    field,
    open_generated,
    sample_dim,
    sample_keys,
    select_variables,
)
from inference.score_metrics import (
    STANDARD_METRICS,
    Chunk,
    Metric,
    RankHistogram,
    ReliabilityDiagram,
    ScoredFile,
    Statistic,
    finalise,
    statistics_of,
)

logger = logging.getLogger(__name__)

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
    metrics: Sequence[Metric] = STANDARD_METRICS,
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

    ``metrics`` (default :data:`inference.score_metrics.STANDARD_METRICS`) are the rows of
    ``metric``, in order; those the file cannot have (a baseline it lacks, Brier without
    probability channels) are left out.
    """
    names = [m.name for m in metrics]
    if not names:
        raise ValueError("metrics is empty; leave it out for the standard metrics")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"metric names must be distinct; {repeated} appear more than once")
    ds = open_generated(path)
    try:
        return _score(ds, n_ensemble, variables, regression, seed, chunk_times, progress,
                      workers, tuple(metrics))
    finally:
        ds.close()


def _score(ds, n_ensemble, variables, regression, seed, chunk_times, progress,
           workers, metric_list) -> xr.Dataset:
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
    sources = (["input"] if input_names & set(names) else []) + (
        ["regression"] if regression else [])
    probabilities = [v for v in str(ds.attrs.get("probability_variables", "")).split()
                     if v in names]
    scored = ScoredFile(baselines=tuple(sources), has_probabilities=bool(probabilities))
    metric_list = [m for m in metric_list if m.applies(scored)]
    if not metric_list:
        raise GeneratedFileError(f"{source}: none of the metrics applies to this file")
    statistics = statistics_of(metric_list)
    reg_ds, reg_index = _open_regression(regression, ds, times) if regression else (None, None)
    acc = {v: _Accumulator(statistics, len(times), n, v in probabilities) for v in names}
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
        arrays = {}
        for var in names:
            truth = field(ds, "truth", var).isel(sel).values
            pred = field(ds, "prediction", var).isel({**sel, "ensemble": slice(0, n)}).values
            baselines = {}
            if "input" in sources and var in input_names:
                baselines["input"] = field(ds, "input", var).isel(sel).values
            if reg_ds is not None and f"prediction_{var}" in reg_ds:
                baselines["regression"] = reg_ds[f"prediction_{var}"].isel(
                    {sample_dim(reg_ds): _indexer(reg_index[rows]), "ensemble": 0}).values
            arrays[var] = (pred, truth, baselines)
        return arrays

    bar = tqdm(total=len(times), unit="time", desc="scoring", disable=not progress,
               dynamic_ncols=True)
    try:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="scoring") as pool:
            arrays = read(starts[0])
            for number, start in enumerate(starts):
                rows = slice(start, start + step)
                # Variables in parallel threads (numpy releases the GIL in its loops) while
                # this thread reads the next chunk; the tie-breaking draws of the rank
                # histogram stay in this thread, in variable order, so the numbers do not
                # depend on the threads.
                jobs = [pool.submit(acc[var].add, rows, *arrays[var]) for var in names]
                following = read(starts[number + 1]) if number + 1 < len(starts) else None
                for var in names:
                    acc[var].ranks.add(rows, arrays[var][0], arrays[var][1], rng)
                for job in jobs:
                    job.result()
                arrays = following
                bar.update(len(times[rows]))
    finally:
        bar.close()
        if reg_ds is not None:
            reg_ds.close()
    return _assemble(ds, names, acc, metric_list, times, n, regression, seed)


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
    """One variable's statistics per time, rank histogram and (probability channels)
    reliability diagram, filled chunk by chunk."""

    def __init__(self, statistics: list[Statistic], n_times: int, n_members: int,
                 probability: bool = False):
        self.n_members = n_members
        self.probability = probability
        self.values = {s: np.full(n_times, np.nan) for s in statistics}
        self.ranks = RankHistogram(n_times, n_members)
        self.reliability = ReliabilityDiagram() if probability else None

    def add(self, rows: slice, members: np.ndarray, truth: np.ndarray,
            baselines: dict[str, np.ndarray]) -> None:
        """The statistics of these times (no random draws: safe in any thread)."""
        chunk = Chunk(members, truth, baselines, self.probability)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # NaN pixels are masked
            for statistic, values in self.values.items():
                found = statistic.compute(chunk)
                if found is not None:
                    values[rows] = found
            if self.reliability is not None:
                self.reliability.add(chunk)

    def table(self, metric_list: list[Metric], groups: list[np.ndarray] = ()
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(metric, time) values, their time mean, and the time means over each of ``groups``
        (time indices; ``(group, metric)``), in the order of ``metric_list``."""
        v = self.values
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows stay NaN
            table = finalise(metric_list, v, self.n_members)
            means = finalise(metric_list, {s: np.nanmean(a) for s, a in v.items()},
                             self.n_members)
            grouped = np.stack([
                finalise(metric_list, {s: np.nanmean(a[g]) for s, a in v.items()},
                         self.n_members) for g in groups]) if len(groups) else (
                np.zeros((0, len(means))))
        return table, means, grouped


def _assemble(ds, names, acc, metric_list, times, n, regression, seed) -> xr.Dataset:
    dim = sample_dim(ds)
    coords = {"metric": np.array([m.name for m in metric_list], dtype=object),
              "rank": np.arange(n + 1)}
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
        table, means, per_lead = acc[var].table(metric_list, groups)
        if leads is not None:
            out[f"{var}_lead_time_mean"] = (("lead_time", "metric"), per_lead, attrs)
        reliability = acc[var].reliability
        if reliability is not None:
            out.coords.update(reliability.coords())
            out.update(reliability.outputs(var))
        if not acc[var].ranks.counts.any():
            logger.warning("%s: no finite truth/prediction pixel; its scores are NaN", var)
        out[var] = (("metric", dim), table, attrs)
        out[f"{var}_time_mean"] = (("metric",), means, attrs)
        out.update(acc[var].ranks.outputs(var, dim))
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
