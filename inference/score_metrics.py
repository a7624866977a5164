"""Scores as composable metrics, after WeatherBench 2 (``weatherbench2.metrics``; Rasp et al.
2024, JAMES, doi:10.1029/2023MS004019).

A :class:`Statistic` gives one number per time: a spatial mean over a :class:`Chunk` (one
variable, a few times). A :class:`Metric` is one row of the scores' ``metric`` coordinate: the
statistics it needs and its value from their means. Per time the mean is the statistic itself;
over times (or the times of one lead time) it is the plain mean, so an RMSE (the root of the
mean squared error) is the root of the time-mean squares, and the spread-skill ratio is formed
from the finalised spread and RMSE. Statistics are equal by value, so metrics that need the
same one share it, computed once per chunk; work shared by different statistics (one sort gives
both CRPS variants, the ensemble mean serves MAE, RMSE, bias and Brier) is cached on the chunk.

Adding a metric touches one place: an entry in :data:`STANDARD_METRICS`, plus a statistic
class if none of those here fits. The hot path stays numpy; the chunk's arrays are laid out
``[ensemble, time, y, x]`` and ``[time, y, x]`` (the axes are named below).

Two outputs are not rows of the table: :class:`RankHistogram` (per time) and
:class:`ReliabilityDiagram` (over all times, for probability channels), each with its own
output variables.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from inference import metrics

ENSEMBLE = 0  # members[ensemble, time, y, x]
SPACE = (1, 2)  # (y, x) of truth-shaped arrays [time, y, x]


@dataclass(frozen=True)
class ScoredFile:
    """What a file offers the metrics: its deterministic baselines (``"input"``,
    ``"regression"``) and whether some scored variable is a probability (category) channel."""

    baselines: tuple[str, ...] = ()
    has_probabilities: bool = False


class Chunk:
    """One variable over a few times: ``members[ensemble, time, y, x]`` and ``truth[time, y, x]``
    in float64, ``baselines[source][time, y, x]`` as read; ``valid`` marks the pixels where
    truth and every member are finite. Shared intermediate results are cached per chunk (one
    chunk belongs to one thread)."""

    def __init__(self, members: np.ndarray, truth: np.ndarray,
                 baselines: Mapping[str, np.ndarray] | None = None, probability: bool = False):
        self.members = members.astype(np.float64)
        self.truth = truth.astype(np.float64)
        self.baselines = dict(baselines or {})
        self.probability = probability  # a category channel: members are probabilities
        self.n_members = self.members.shape[ENSEMBLE]
        self.valid = np.isfinite(self.truth) & np.isfinite(self.members).all(axis=ENSEMBLE)
        self._cache: dict[object, object] = {}

    def shared(self, key: object, compute: Callable[[], object]):
        """``compute()``, once per chunk for each ``key``."""
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]

    def spatial_mean(self, values: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
        """Mean over (y, x) of the valid pixels, per time; NaN where none is valid."""
        return metrics.masked_mean(values, self.valid if valid is None else valid, SPACE)

    @property
    def ensemble_mean(self) -> np.ndarray:
        return self.shared("ensemble_mean", lambda: self.members.mean(axis=ENSEMBLE))

    @property
    def crps_pair(self) -> tuple[np.ndarray, np.ndarray]:
        """(standard, fair) CRPS per pixel, from one sort of the members."""
        return self.shared("crps_pair", lambda: metrics.crps_ensemble_pair(
            self.members, self.truth, axis=ENSEMBLE))

    def error(self, source: str | None = None) -> tuple[np.ndarray, np.ndarray] | None:
        """(forecast - truth, valid pixels) of the ensemble mean (``source`` None) or of the
        baseline ``source``; None when the chunk has no such baseline."""
        if source is None:
            return self.shared("error", lambda: (self.ensemble_mean - self.truth, self.valid))
        if source not in self.baselines:
            return None

        def baseline_error():
            error = self.baselines[source].astype(np.float64) - self.truth
            return error, np.isfinite(error)
        return self.shared(("error", source), baseline_error)


# -- statistics: one spatial mean per time -------------------------------------------------

class Statistic:
    """``compute(chunk)``: the spatial mean per time, shape ``(time,)``, or None where it does
    not apply to the chunk's variable (its values stay NaN). ``applies(file)``: whether the
    file can have it at all (metrics that need one that cannot are left out of the table)."""

    def applies(self, file: ScoredFile) -> bool:
        return True

    def compute(self, chunk: Chunk) -> np.ndarray | None:
        raise NotImplementedError


@dataclass(frozen=True)
class CRPS(Statistic):
    """CRPS of the ensemble: standard (empirical distribution) or fair; see
    :func:`inference.metrics.crps_ensemble`."""

    fair: bool = False

    def compute(self, chunk: Chunk) -> np.ndarray:
        standard, fair = chunk.crps_pair
        return chunk.spatial_mean(fair if self.fair else standard)


@dataclass(frozen=True)
class Error(Statistic):
    """forecast - truth: of the ensemble mean (``source`` None) or of a deterministic baseline
    (``"input"``, ``"regression"``, over the pixels where that baseline is finite)."""

    source: str | None = None

    def applies(self, file: ScoredFile) -> bool:
        return self.source is None or self.source in file.baselines

    def compute(self, chunk: Chunk) -> np.ndarray | None:
        found = chunk.error(self.source)
        if found is None:
            return None
        error, valid = found
        return chunk.spatial_mean(self.transform(error), valid)

    @staticmethod
    def transform(error: np.ndarray) -> np.ndarray:
        return error


@dataclass(frozen=True)
class AbsoluteError(Error):
    """|forecast - truth|."""

    @staticmethod
    def transform(error: np.ndarray) -> np.ndarray:
        return np.abs(error)


@dataclass(frozen=True)
class SquaredError(Error):
    """(forecast - truth)**2."""

    @staticmethod
    def transform(error: np.ndarray) -> np.ndarray:
        return error**2


@dataclass(frozen=True)
class EnsembleVariance(Statistic):
    """Unbiased (ddof=1) member variance; NaN for one member."""

    def compute(self, chunk: Chunk) -> np.ndarray:
        return chunk.spatial_mean(metrics.ensemble_variance(chunk.members, axis=ENSEMBLE))


@dataclass(frozen=True)
class BrierTerm(Statistic):
    """(p - o)**2 of the ensemble-mean probability p of a category channel against its 0/1
    truth o; other variables have none."""

    def applies(self, file: ScoredFile) -> bool:
        return file.has_probabilities

    def compute(self, chunk: Chunk) -> np.ndarray | None:
        if not chunk.probability:
            return None
        return chunk.spatial_mean(metrics.brier_terms(chunk.ensemble_mean, chunk.truth))


# -- metrics: rows of the table, finalised from the statistics' means ----------------------

class Metric:
    """A row ``name`` of the ``metric`` coordinate: :meth:`value` from ``mean`` (each of
    ``statistics`` averaged per time or over times; scalars or arrays alike)."""

    name: str
    statistics: tuple[Statistic, ...]

    def applies(self, file: ScoredFile) -> bool:
        return all(s.applies(file) for s in self.statistics)

    def value(self, mean: Mapping[Statistic, np.ndarray], n_members: int) -> np.ndarray:
        raise NotImplementedError


@dataclass(frozen=True)
class Mean(Metric):
    """The mean of one statistic (CRPS, MAE, bias, Brier score)."""

    name: str
    statistic: Statistic

    @property
    def statistics(self) -> tuple[Statistic, ...]:
        return (self.statistic,)

    def value(self, mean: Mapping[Statistic, np.ndarray], n_members: int) -> np.ndarray:
        return mean[self.statistic]


@dataclass(frozen=True)
class RootMean(Mean):
    """The root of the mean of a squared statistic (RMSE, spread): over times, the root of the
    mean squares."""

    def value(self, mean: Mapping[Statistic, np.ndarray], n_members: int) -> np.ndarray:
        return np.sqrt(mean[self.statistic])


RMSE = RootMean("rmse", SquaredError())
SPREAD = RootMean("spread", EnsembleVariance())


@dataclass(frozen=True)
class SpreadSkill(Metric):
    """spread * sqrt((M+1)/M) / RMSE from the finalised spread and RMSE (1 when calibrated)."""

    name: str = "spread_skill"

    @property
    def statistics(self) -> tuple[Statistic, ...]:
        return SPREAD.statistics + RMSE.statistics

    def value(self, mean: Mapping[Statistic, np.ndarray], n_members: int) -> np.ndarray:
        return metrics.spread_skill_ratio(SPREAD.value(mean, n_members),
                                          RMSE.value(mean, n_members), n_members)


def baseline_metrics(source: str) -> tuple[Metric, ...]:
    """MAE, RMSE, bias and CRPS (of a single value: its MAE) of a deterministic baseline."""
    return (Mean(f"{source}_mae", AbsoluteError(source)),
            RootMean(f"{source}_rmse", SquaredError(source)),
            Mean(f"{source}_bias", Error(source)),
            Mean(f"{source}_crps", AbsoluteError(source)))


STANDARD_METRICS: tuple[Metric, ...] = (
    Mean("crps", CRPS()),
    Mean("crps_fair", CRPS(fair=True)),
    Mean("mae", AbsoluteError()),  # of the ensemble mean, as rmse and bias
    RMSE,
    Mean("bias", Error()),
    SPREAD,
    SpreadSkill(),
    *baseline_metrics("input"),
    *baseline_metrics("regression"),
    Mean("brier", BrierTerm()),
)


def statistics_of(metric_list: Sequence[Metric]) -> list[Statistic]:
    """The distinct statistics the metrics need, in order of first use."""
    return list(dict.fromkeys(s for m in metric_list for s in m.statistics))


def finalise(metric_list: Sequence[Metric], mean: Mapping[Statistic, np.ndarray],
             n_members: int) -> np.ndarray:
    """Each metric's value from the statistics' means: ``(metric, ...)``."""
    return np.stack([np.asarray(m.value(mean, n_members), dtype=np.float64)
                     for m in metric_list])


# -- outputs of their own ------------------------------------------------------------------

class RankHistogram:
    """Counts of the truth's rank (0..M) among the M members per time, over the valid pixels:
    ``<var>_rank_histogram(time, rank)``. Ties are broken with draws from ``rng``; the driver
    calls :meth:`add` in one thread, chunk by chunk and variable by variable, so the draws come
    in the same order whatever the threads."""

    def __init__(self, n_times: int, n_members: int):
        self.n_members = n_members
        self.counts = np.zeros((n_times, n_members + 1), dtype=np.int64)

    def add(self, rows: slice, members: np.ndarray, truth: np.ndarray,
            rng: np.random.Generator) -> None:
        """``members[ensemble, time, y, x]`` and ``truth[time, y, x]`` of the times ``rows``, as
        read (comparisons need no float64 copy)."""
        valid = np.isfinite(truth) & np.isfinite(members).all(axis=ENSEMBLE)
        ranks = metrics.rank_of_truth(members, truth, axis=ENSEMBLE, rng=rng)
        self.counts[rows] = metrics.rank_histogram(ranks, self.n_members, valid)

    def outputs(self, var: str, dim: str) -> dict[str, tuple]:
        return {f"{var}_rank_histogram": (
            (dim, "rank"), self.counts, {"long_name": f"rank of the truth among "
                                                      f"{self.n_members} members"})}


class ReliabilityDiagram:
    """Per bin of the ensemble-mean forecast probability (ten equal bins of [0, 1]), over all
    times: how many valid pixels and the observed frequency of the category among them,
    ``<var>_reliability_count(probability_bin)`` and ``<var>_reliability_observed``."""

    bins = metrics.RELIABILITY_BINS

    def __init__(self):
        self.counts = np.zeros(self.bins, dtype=np.int64)
        self.hits = np.zeros(self.bins)

    def add(self, chunk: Chunk) -> None:
        counts, hits = metrics.reliability_counts(chunk.ensemble_mean, chunk.truth, chunk.valid,
                                                  self.bins)
        self.counts += counts
        self.hits += hits

    def coords(self) -> dict[str, tuple]:
        edges = np.linspace(0, 1, self.bins + 1)
        return {"probability_bin": ("probability_bin", (edges[:-1] + edges[1:]) / 2,
                                    {"long_name": "centre of the forecast probability bin"})}

    def outputs(self, var: str) -> dict[str, tuple]:
        with np.errstate(invalid="ignore", divide="ignore"):
            observed = self.hits / self.counts
        return {f"{var}_reliability_count": (("probability_bin",), self.counts, {
                    "long_name": "pixels forecast a probability in the bin"}),
                f"{var}_reliability_observed": (("probability_bin",), observed, {
                    "long_name": "observed frequency of the pixels of the bin"})}
