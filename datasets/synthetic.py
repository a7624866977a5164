"""The embedded synthetic dataset (``dataset.type: synthetic``): a small but real downscaling
problem that is generated on the fly, so the whole pipeline runs without downloading anything.

``python -m datasets.synthetic --out data/synthetic`` writes ``train.nc``, ``valid.nc`` and
``stats.json`` in the HRRR-Mini layout (`datasets.hrrrmini_format`), deterministically for a
``--seed``, in well under a minute on two CPU cores.

What is simulated (see the ``synthetic_*`` modules):

- a 256 x 256 fine grid with 3 km spacing on HRRR's Lambert conformal projection (standard
  parallel 38.5 N, central meridian 97.5 W), centred at 38.5 N 121 W: an ocean in the west, a
  coast range and a high main ridge, with fractal (power-law spectrum) terrain. Invariants are
  ``elev_mean`` (m, 0 over sea) and ``lsm_mean`` (1 land, 0 sea); root ``lat``/``lon`` hold the
  2-D coordinates;
- weather from a pseudo-spectral equivalent-barotropic flow over that terrain (solved at 6 km)
  with a wandering background wind and advected temperature and moisture
  (`datasets.synthetic_flow`), turned into surface fields on the 3 km grid
  (`datasets.synthetic_surface`): ``10u``/``10v`` (m/s, blocked and sped up by terrain), ``2t``
  (K, 6.5 K/km lapse rate, land-sea contrast, advected anomalies) and ``tp`` (mm/h, upslope and
  synoptic lift times moisture: mostly zero, heavy right tail).

Samples are 64 x 64 fine windows (outputs) with 8 x 8 coarse inputs, the 8 x 8 block means
(24 km, like ERA5) of ``10u``, ``10v``, ``2t``, ``tp`` plus ``tcwv`` (kg/m^2) and ``msl`` (Pa),
which exist only at the coarse resolution. After a spin-up, the flow is saved every 2 hours:

- ``train.nc``: at each saved time, 8 windows at random ``coord`` positions across the domain.
  2048 samples span 21 days, so training sees many weather regimes (the background wind
  decorrelates in 12 h); a few days of training data would teach the models only the two or
  three regimes they saw, and the validation period would then be out of distribution;
- ``valid.nc``: a later segment of the same run, after a 12 h gap so no time is shared, always
  the same evaluation window (the roughest stretch of the west coast, sea on its western side),
  so every validation sample and every generated file has one lat/lon grid.

``stats.json`` holds statistics of the training split only.

``--lead-hours 0,6,12,18,24`` makes the inputs forecast-like: each sample gets a lead time (in
``lead_time(time)``) and an input error growing with it, for trying lead-time-aware models on
CPU (`forecast_error`).
"""

from __future__ import annotations

import argparse
import datetime
import fcntl
import logging
import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import netCDF4
import numpy as np
from tqdm import tqdm

from datasets.channel_policy import normalization_plan
from datasets.hrrrmini import HRRRMiniDataset
from datasets.hrrrmini_format import HRRRMiniWriter
from datasets.interpolation import upsample_bilinear
from datasets.stats_file import write_stats
from datasets.synthetic_flow import TerrainFlow
from datasets.synthetic_surface import SurfaceDiagnostics
from datasets.synthetic_terrain import Terrain, make_terrain
from datasets.variable_metadata import describe
from helpers.infrastructure.errors import DataError, UsageError, run_cli

logger = logging.getLogger(__name__)

OUTPUT_VARIABLES = ("10u", "10v", "2t", "tp")
INPUT_VARIABLES = ("10u", "10v", "2t", "tp", "tcwv", "msl")
SPLIT_FILES = {"train": "train.nc", "valid": "valid.nc"}
STATS_FILE = "stats.json"
DEFAULT_N_TRAIN, DEFAULT_N_VALID = 2048, 64
DEFAULT_WINDOWS_PER_TIME = 8
DEFAULT_SAVE_INTERVAL_HOURS = 2.0
START_TIME = datetime.datetime(2023, 7, 1)
GRID_SPACING_KM = 3.0
CENTER_LAT, CENTER_LON = 38.5, -121.0
FLOW_COARSENING = 2  # the flow is solved on a grid this many times coarser


def block_mean(field: np.ndarray, factor: int) -> np.ndarray:
    """Mean over non-overlapping ``factor x factor`` blocks of the last two axes."""
    *lead, h, w = field.shape
    return field.reshape(*lead, h // factor, factor, w // factor, factor).mean(axis=(-3, -1))


def evaluation_window(terrain: Terrain, window_size: int, stride: int) -> tuple[int, int]:
    """Top-left (row, col) of the fixed validation window: the roughest terrain (largest
    elevation standard deviation) among windows on the west coast (5-50% sea, more of it in the
    western half), so it holds the windward coast and mountains; the roughest window overall
    if none qualifies."""

    def windows(field: np.ndarray) -> np.ndarray:
        view = np.lib.stride_tricks.sliding_window_view(field, (window_size, window_size))
        return view[::stride, ::stride]

    roughness = windows(terrain.elev_mean).std(axis=(-2, -1))
    sea = 1 - windows(terrain.lsm_mean)
    half = window_size // 2
    sea_west, sea_east = sea[..., :half].mean(axis=(-2, -1)), sea[..., half:].mean(axis=(-2, -1))
    sea_fraction = (sea_west + sea_east) / 2
    west_coast = (sea_fraction >= 0.05) & (sea_fraction <= 0.5) & (sea_west > sea_east)
    score = np.where(west_coast, roughness, -np.inf) if west_coast.any() else roughness
    i, j = np.unravel_index(np.argmax(score), score.shape)
    return int(i * stride), int(j * stride)


FORECAST_ERROR = 0.6  # error at the longest lead, in standard deviations of each input


def forecast_error(inputs: dict[str, np.ndarray], lead_hours: Sequence[int], longest: int,
                   rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Coarse inputs ``(n, h, w)`` as forecasts of lead ``lead_hours[k]``: plus an error of
    ``FORECAST_ERROR * lead / longest`` standard deviations of the field, large-scale (a
    random 2 x 2 pattern, interpolated) plus cell noise; precipitation stays non-negative."""
    out = {}
    scale = FORECAST_ERROR * np.asarray(lead_hours, np.float64)[:, None, None] / longest
    for name, values in inputs.items():
        n, h, w = values.shape
        broad = np.stack([upsample_bilinear(rng.standard_normal((2, 2)), max(h // 2, 1))
                          [:h, :w] for _ in range(n)])
        error = scale * float(values.std()) * (broad + 0.5 * rng.standard_normal(values.shape))
        forecast = values + error
        out[name] = np.clip(forecast, 0, None) if name == "tp" else forecast
    return out


def _crop(
    fields: dict[str, np.ndarray], coords: np.ndarray, window_size: int, factor: int
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Windows at ``coords`` of every field: fine outputs and their coarse block means."""
    windows = {
        name: np.stack([field[r:r + window_size, c:c + window_size] for r, c in coords])
        for name, field in fields.items()
    }
    for name, values in windows.items():
        if not np.isfinite(values).all():
            raise FloatingPointError(f"synthetic field {name!r} has non-finite values")
    inputs = {name: block_mean(windows[name], factor) for name in INPUT_VARIABLES}
    outputs = {name: windows[name] for name in OUTPUT_VARIABLES}
    return inputs, outputs


def generate_synthetic_dataset(
    out_dir: str | os.PathLike,
    seed: int = 0,
    n_train: int = DEFAULT_N_TRAIN,
    n_valid: int = DEFAULT_N_VALID,
    *,
    domain_size: int = 256,
    window_size: int = 64,
    coarse_factor: int = 8,
    windows_per_time: int = DEFAULT_WINDOWS_PER_TIME,
    spinup_hours: float = 24.0,
    valid_gap_hours: float = 12.0,
    save_interval_hours: float = DEFAULT_SAVE_INTERVAL_HOURS,
    progress: bool = False,
    lead_hours: Sequence[int] | None = None,
) -> dict[str, Path]:
    """Simulate and write ``train.nc``, ``valid.nc`` and ``stats.json`` into ``out_dir``;
    returns their paths under the keys ``train``, ``valid`` and ``stats``. The size options
    exist so tests can make a tiny version; the defaults are the published dataset.

    ``lead_hours`` makes the inputs forecasts: sample ``i`` gets lead time
    ``lead_hours[i % len(lead_hours)]`` (in ``lead_time(time)``) and its coarse inputs an
    error growing with it (`forecast_error`), so lead-time-aware models can be tried on CPU."""
    leads = [int(h) for h in lead_hours] if lead_hours else None
    if leads is not None and (min(leads) < 0 or len(set(leads)) != len(leads)):
        raise UsageError(f"--lead-hours must be distinct non-negative hours, got {lead_hours}")
    if domain_size % (2 * FLOW_COARSENING) or not window_size <= domain_size:
        raise UsageError(
            f"domain_size must be a multiple of {2 * FLOW_COARSENING} and at least window_size; "
            f"got {domain_size} and {window_size}"
        )
    if window_size % coarse_factor:
        raise UsageError(f"window_size {window_size} is not a multiple of {coarse_factor}")
    for option, value in (("--n-train", n_train), ("--n-valid", n_valid),
                          ("windows_per_time", windows_per_time)):
        if value < 1:
            raise UsageError(f"{option}={value}: the dataset needs at least 1 sample per split; "
                             "give a positive number")
    started = time.perf_counter()
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"--out {str(out_dir)!r} is a file, not a directory; give a directory "
                         "for train.nc, valid.nc and stats.json")
    paths = {split: out_dir / name for split, name in SPLIT_FILES.items()}
    paths["stats"] = out_dir / STATS_FILE
    terrain_rng, flow_rng, window_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3)
    )
    terrain = make_terrain(terrain_rng, domain_size, GRID_SPACING_KM, CENTER_LAT, CENTER_LON)
    flow = TerrainFlow(
        flow_rng,
        block_mean(terrain.elev_mean, FLOW_COARSENING),
        block_mean(terrain.lsm_mean, FLOW_COARSENING),
        GRID_SPACING_KM * FLOW_COARSENING,
        CENTER_LAT,
    )
    surface = SurfaceDiagnostics(
        terrain,
        flow.temperature_gradient_k_per_m,
        flow.land_sea_contrast_k,
        flow.coast_sigma_m,
        flow.f0,
    )
    train_times = math.ceil(n_train / windows_per_time)
    interval_s = save_interval_hours * 3600.0
    total_s = (spinup_hours + valid_gap_hours) * 3600 + (train_times + n_valid) * interval_s
    bar = tqdm(total=round(total_s / 3600), unit="h", desc="simulating weather",
               disable=not progress)

    def run(seconds: float) -> None:
        """Advance the flow in save-interval chunks (the forcing is updated between chunks)."""
        done = 0.0
        while seconds - done > 1e-6:
            chunk = min(interval_s, seconds - done)
            flow.advance(chunk)
            done += chunk
            bar.update(chunk / 3600)

    def snapshot() -> tuple[datetime.datetime, dict[str, np.ndarray]]:
        valid_time = START_TIME + datetime.timedelta(seconds=round(flow.time_s))
        return valid_time, surface(flow.fine_fields(domain_size), flow.wind)

    invariants = {"elev_mean": terrain.elev_mean, "lsm_mean": terrain.lsm_mean}
    channel_attrs = {name: describe(name) for name in (*INPUT_VARIABLES, *invariants)}
    writer_options = dict(
        input_shape=(window_size // coarse_factor,) * 2,
        output_shape=(window_size,) * 2,
        input_variables=INPUT_VARIABLES,
        output_variables=OUTPUT_VARIABLES,
        invariants=invariants,
        lat=terrain.lat,
        lon=terrain.lon,
        variable_attributes={"input": {v: channel_attrs[v] for v in INPUT_VARIABLES},
                             "output": {v: channel_attrs[v] for v in OUTPUT_VARIABLES},
                             "invariant": {v: channel_attrs[v] for v in invariants}},
        # The same choice the converter makes: precipitation is non-negative (with its
        # default transform), everything else signed.
        normalization=normalization_plan({"input": INPUT_VARIABLES, "output": OUTPUT_VARIABLES},
                                         channel_attrs, None, None),
        lead_time=leads is not None,
    )
    error_rng = np.random.default_rng(np.random.SeedSequence([seed, 14]))
    written = 0

    def append(out: HRRRMiniWriter, times, coords, inputs, outputs) -> None:
        nonlocal written
        lead = None
        if leads is not None:
            lead = [leads[(written + k) % len(leads)] for k in range(len(times))]
            inputs = forecast_error(inputs, lead, max(leads) or 1, error_rng)
        out.append(times, coords, inputs, outputs, lead)
        written += len(times)

    def attributes(split: str) -> dict[str, str]:
        return {
            "title": f"CorrDiff embedded synthetic dataset, {split} split",
            "source": "datasets.synthetic (barotropic flow over fractal terrain)",
            "seed": str(seed),
            "grid_spacing_km": str(GRID_SPACING_KM),
        }

    run(spinup_hours * 3600)
    with HRRRMiniWriter(paths["train"], **writer_options, attributes=attributes("train")) as out:
        for i in range(train_times):
            run(interval_s)
            valid_time, fields = snapshot()
            count = min(windows_per_time, n_train - i * windows_per_time)
            coords = window_rng.integers(0, domain_size - window_size + 1, size=(count, 2))
            append(out, [valid_time] * count, coords,
                   *_crop(fields, coords, window_size, coarse_factor))
        stats = out.stats()
    run(valid_gap_hours * 3600)
    coord = np.array([evaluation_window(terrain, window_size, coarse_factor)])
    with HRRRMiniWriter(paths["valid"], **writer_options, attributes=attributes("valid")) as out:
        for _ in range(n_valid):
            run(interval_s)
            valid_time, fields = snapshot()
            append(out, [valid_time], coord, *_crop(fields, coord, window_size, coarse_factor))
    write_stats(paths["stats"], stats)
    bar.close()
    logger.info(
        "wrote synthetic dataset (seed %d: %d train, %d valid samples) in %.1f s to %s "
        "(train.nc, valid.nc, stats.json)",
        seed, n_train, n_valid, time.perf_counter() - started, out_dir.resolve(),
    )
    return paths


def ensure_synthetic_dataset(
    data_path: str | os.PathLike, stats_path: str | os.PathLike, seed: int = 0
) -> None:
    """Generate the dataset next to ``data_path`` unless it is already complete. A lock file
    makes concurrent callers (one per torchrun rank) wait for a single generator."""
    data_path, stats_path = Path(data_path), Path(stats_path)
    out_dir = data_path.parent
    if (
        data_path.name not in SPLIT_FILES.values()
        or stats_path.name != STATS_FILE
        or stats_path.parent.resolve() != out_dir.resolve()
    ):
        raise DataError(
            f"cannot generate the synthetic dataset for data_path {str(data_path)!r} and "
            f"stats_path {str(stats_path)!r}: generation writes train.nc, valid.nc and "
            f"stats.json into one directory, so data_path must be <dir>/train.nc or "
            f"<dir>/valid.nc and stats_path <dir>/stats.json"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    expected = [out_dir / name for name in (*SPLIT_FILES.values(), STATS_FILE)]
    with open(out_dir / ".synthetic.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if all(p.is_file() for p in expected):
                return  # another process generated it while we waited
            logger.info(
                "synthetic dataset not found; generating it (seed %d) into %s", seed,
                out_dir.resolve(),
            )
            generate_synthetic_dataset(out_dir, seed=seed, progress=True)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


class SyntheticDataset(HRRRMiniDataset):
    """The HRRR-Mini reader over the embedded synthetic data, generating it on first use.

    Existing files are used as they are (``seed`` only matters when generating; a warning is
    logged if the files were made with another seed)."""

    def __init__(
        self,
        data_path: str,
        stats_path: str,
        input_variables: Sequence[str] | None = None,
        output_variables: Sequence[str] | None = None,
        invariant_variables: Sequence[str] | None = None,
        seed: int = 0,
        generate_if_missing: bool = True,
    ):
        missing = [str(p) for p in (data_path, stats_path) if not Path(p).is_file()]
        if missing:
            if not generate_if_missing:
                raise DataError(
                    f"synthetic dataset file(s) {missing} do not exist and "
                    "dataset.generate_if_missing is false; run `python -m datasets.synthetic "
                    f"--out {Path(data_path).parent}` or set dataset.generate_if_missing=true"
                )
            ensure_synthetic_dataset(data_path, stats_path, seed)
        super().__init__(
            data_path, stats_path, input_variables, output_variables, invariant_variables
        )
        with netCDF4.Dataset(self.data_path) as nc:
            file_seed = getattr(nc, "seed", None)
        if file_seed is not None and file_seed != str(seed):
            logger.warning(
                "%s was generated with seed %s, not the configured seed %d; delete the "
                "directory to regenerate", self.data_path, file_seed, seed,
            )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Generate the embedded synthetic CorrDiff dataset (HRRR-Mini layout)."
    )
    parser.add_argument("--out", default="data/synthetic",
                        help="output directory (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--n-train", type=int, default=DEFAULT_N_TRAIN,
                        help="training samples (default: %(default)s)")
    parser.add_argument("--n-valid", type=int, default=DEFAULT_N_VALID,
                        help="validation samples (default: %(default)s)")
    parser.add_argument("--lead-hours", default=None,
                        help="forecast-like inputs: comma-separated lead times in hours, e.g. "
                             "0,6,12,18,24, cycled over the samples, the input error growing "
                             "with lead time (default: analyses, no lead time)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return run_cli(lambda: generate_synthetic_dataset(
        args.out, seed=args.seed, n_train=args.n_train, n_valid=args.n_valid, progress=True,
        lead_hours=_hours(args.lead_hours)))


def _hours(text: str | None) -> list[int] | None:
    if not text:
        return None
    try:
        return [int(h) for h in text.split(",")]
    except ValueError:
        raise UsageError(f"--lead-hours {text!r}: give whole hours separated by commas, e.g. "
                         "0,6,12") from None


if __name__ == "__main__":
    sys.exit(main())
