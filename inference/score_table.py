"""Present scores from :func:`inference.scoring.score_file`: a text table, JSON, a NetCDF file."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import xarray as xr

from helpers.infrastructure.atomic_write import atomic_path
from inference.generated_file import sample_dim


def score_variables(scores: xr.Dataset) -> list[str]:
    """Output variables in the scores, in order (those with a ``(metric, time)`` table, or
    ``(metric, sample)`` for files with several windows per time)."""
    return [str(n) for n, v in scores.data_vars.items()
            if v.dims in (("metric", "time"), ("metric", "sample"))]


def _count(scores: xr.Dataset) -> tuple[int, str]:
    dim = sample_dim(scores)
    return int(scores.sizes[dim]), dim


def time_mean_table(scores: xr.Dataset) -> dict[str, dict[str, float | None]]:
    """``{variable: {metric: time-mean value}}``; NaN becomes None (JSON has no NaN)."""
    table = {}
    for var in score_variables(scores):
        values = scores[f"{var}_time_mean"].values
        table[var] = {str(m): (None if math.isnan(x) else float(x))
                      for m, x in zip(scores["metric"].values, values, strict=True)}
    return table


def _plain(x: float) -> float | None:
    return None if math.isnan(x) else float(x)


def lead_time_table(scores: xr.Dataset) -> dict[str, dict[str, dict[str, float | None]]]:
    """``{variable: {lead hours: {metric: mean over that lead's times}}}`` (forecast files)."""
    if "lead_time" not in scores.coords:
        return {}
    metrics = [str(m) for m in scores["metric"].values]
    return {var: {f"{float(h):g}": dict(zip(metrics, map(_plain, row), strict=True))
                  for h, row in zip(scores["lead_time"].values,
                                    scores[f"{var}_lead_time_mean"].values, strict=True)}
            for var in score_variables(scores)}


def reliability_table(scores: xr.Dataset) -> dict[str, dict[str, list]]:
    """``{category variable: {"bin_centre", "count", "observed_frequency"}}``."""
    out = {}
    for var in score_variables(scores):
        if f"{var}_reliability_count" in scores:
            out[var] = {"bin_centre": scores["probability_bin"].values.tolist(),
                        "count": scores[f"{var}_reliability_count"].values.tolist(),
                        "observed_frequency": [_plain(x) for x in
                                               scores[f"{var}_reliability_observed"].values]}
    return out


def to_json(scores: xr.Dataset) -> str:
    """Machine-readable summary: time-mean metrics and rank histograms summed over time (and,
    for forecasts, means per lead time; for category channels, reliability counts)."""
    return json.dumps({
        "source_file": scores.attrs.get("source_file", ""),
        "regression_file": scores.attrs.get("regression_file", "") or None,
        "n_ensemble": int(scores.attrs.get("n_ensemble", 0)),
        "n_times": _count(scores)[0],
        "metrics": time_mean_table(scores),
        "rank_histogram": {v: scores[f"{v}_rank_histogram"].values.sum(axis=0).tolist()
                           for v in score_variables(scores)},
        "lead_time_metrics": lead_time_table(scores),
        "reliability": reliability_table(scores),
    }, indent=2)


def format_table(scores: xr.Dataset) -> str:
    """Variables x metrics (time mean) as aligned text; ``-`` where a metric does not apply."""
    table = time_mean_table(scores)
    metrics = [str(m) for m in scores["metric"].values]
    head = ["variable", *metrics]
    rows = [[var] + ["-" if table[var][m] is None else f"{table[var][m]:.4g}" for m in metrics]
            for var in table]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    lines = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in
                       enumerate(zip(r, widths, strict=True))) for r in [head, *rows]]
    count, dim = _count(scores)
    title = (f"time mean over {count} {dim}(s), {scores.attrs.get('n_ensemble', '?')} "
             "member(s)")
    units = {var: scores[var].attrs.get("units", "") for var in table}
    if any(units.values()):
        title += "; units: " + ", ".join(f"{v} [{u}]" for v, u in units.items() if u)
    return "\n".join([title, *lines, *_lead_time_lines(scores)])


def _lead_time_lines(scores: xr.Dataset) -> list[str]:
    """CRPS (and Brier for category channels) per lead time, one column per lead."""
    table = lead_time_table(scores)
    if not table:
        return []
    leads = list(next(iter(table.values())))
    head = ["variable", "metric", *[f"{h} h" for h in leads]]
    rows = []
    for var, by_lead in table.items():
        metric = "brier" if by_lead[leads[0]].get("brier") is not None else "crps"
        rows.append([var, metric, *["-" if by_lead[h][metric] is None else
                                    f"{by_lead[h][metric]:.4g}" for h in leads]])
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    return ["", "by lead time:", *["  ".join(c.rjust(w) if i > 1 else c.ljust(w) for i, (c, w)
                                             in enumerate(zip(r, widths, strict=True)))
                                   for r in [head, *rows]]]


def write_scores(scores: xr.Dataset, path: str | os.PathLike) -> Path:
    """Write to a temporary name and rename, so ``path`` is never a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    encoding = {}
    for name, var in scores.data_vars.items():
        if var.dtype.kind == "f":
            encoding[name] = {"_FillValue": np.nan}
    with atomic_path(path) as temporary:
        scores.to_netcdf(temporary, engine="netcdf4", format="NETCDF4", encoding=encoding)
    return path
