"""Tiny stores in the GEFS-HRRR layout the reference CorrDiff GEFS-HRRR datapipe reads.

Layout under one root directory (zarr v2, consolidated), one store per half year:

    gefs/gefs_surface_<YYYY>_01_06.zarr, gefs/gefs_isobaric_<YYYY>_01_06.zarr, ..._07_12.zarr
    hrrr_forecast/hrrr_forecast_<YYYY>_01_06.zarr, ...
    stats.json        {"input": {name: {"mean", "std"}}, "output": {...}}

Every store holds ``values (time, channel, y, x)`` with string coordinates ``channel`` and
``time`` (``YYYYMMDDHHfFF``: initialisation time and lead hours) and 2-D ``lat``/``lon``. GEFS
is a regular 0.25-degree grid (longitudes 0-360) around a curvilinear HRRR-like grid (longitudes
-180-180, as HRRR files carry them). As in the published stores, isobaric humidity is stored as
``q<level>`` and the top levels of z and t under other names (``z250``, ``t250``), and HRRR has no
``cat_none`` channel: the reader derives it. The fields carry a lead-time-dependent error: GEFS
is the HRRR truth, smoothed, plus noise growing with lead time.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import xarray as xr

GEFS_SURFACE = ["u10m", "v10m", "t2m", "q2m", "sp", "msl", "precipitable_water"]
ISOBARIC_LEVELS = (1000, 925, 850, 700, 500, 250)
# As stored: the reference's requested names z200 / t100 / r<level> are z250 / t250 / q<level>.
GEFS_ISOBARIC_STORED = [f"{name}{level}" for name in ("u", "v", "z", "t", "q")
                        for level in ISOBARIC_LEVELS]
HRRR_STORED = ["u10m", "v10m", "t2m", "precip", "cat_snow", "cat_ice", "cat_freez", "cat_rain",
               "refc"]
CATEGORIES = ["cat_snow", "cat_ice", "cat_freez", "cat_rain"]
HALVES = ("01_06", "07_12")


def time_label(init: datetime.datetime, lead_hours: int) -> str:
    """The stores' sample key: initialisation time and lead, e.g. ``2021010106f03``."""
    return f"{init:%Y%m%d%H}f{lead_hours:02d}"


def hrrr_grid(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """A rotated, slightly converging ~3 km grid over the central US (curvilinear lat/lon)."""
    ny, nx = shape
    j, i = np.meshgrid(np.arange(ny, dtype=np.float64), np.arange(nx, dtype=np.float64),
                       indexing="ij")
    lat = 38.0 + 0.027 * j + 0.004 * i
    lon = -97.0 + (0.034 - 0.0002 * j) * i - 0.006 * j
    return lat, lon


def gefs_grid(lat: np.ndarray, lon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A regular 0.25-degree grid covering the HRRR grid with two cells to spare, lon 0-360."""
    lats = np.arange(np.floor(lat.min() * 4) / 4 - 0.5, lat.max() + 0.75, 0.25)
    lons = np.arange(np.floor(lon.min() * 4) / 4 - 0.5, lon.max() + 0.75, 0.25) % 360
    grid_lon, grid_lat = np.meshgrid(lons, lats)
    return grid_lat, grid_lon


def _truth(rng: np.random.Generator, lat: np.ndarray, lon: np.ndarray, phase: float
           ) -> dict[str, np.ndarray]:
    """Smooth physical fields (HRRR names) at any lat/lon, from one random phase per sample."""
    x, y = np.radians(lon % 360) * 20, np.radians(lat) * 20
    wave = np.sin(x + phase) * np.cos(y - 0.5 * phase)
    t2m = 285.0 + 8.0 * wave - 0.6 * (lat - 38.0)
    u10m = 4.0 * np.cos(y + phase) + 1.0
    v10m = 3.0 * np.sin(x - phase)
    moisture = np.clip(wave + 0.3 * np.sin(2 * x + 3 * phase), 0, None)
    precip = 2.0 * moisture ** 3  # heavy-tailed, mostly 0
    return {"u10m": u10m, "v10m": v10m, "t2m": t2m, "precip": precip,
            "q2m": 0.008 + 0.002 * wave, "sp": 97000.0 + 500.0 * wave, "msl": 101300.0 + 600.0
            * np.cos(y + phase), "precipitable_water": 25.0 + 10.0 * moisture}


def _hrrr_channels(fields: dict[str, np.ndarray]) -> np.ndarray:
    precip, t2m = fields["precip"], fields["t2m"]
    wet = precip > 0.05
    category = {  # one-hot where it precipitates, all zero where it does not (cat_none)
        "cat_snow": wet & (t2m < 276.0),
        "cat_ice": wet & (t2m >= 276.0) & (t2m < 278.0),
        "cat_freez": wet & (t2m >= 278.0) & (t2m < 280.0),
        "cat_rain": wet & (t2m >= 280.0),
    }
    refc = np.where(wet, 10.0 + 15.0 * np.log1p(precip), -10.0)
    channels = {**fields, **{k: v.astype(np.float64) for k, v in category.items()}, "refc": refc}
    return np.stack([channels[name] for name in HRRR_STORED])


def _gefs_channels(fields: dict[str, np.ndarray], names: Sequence[str]) -> np.ndarray:
    rows = []
    for name in names:
        if name in fields:
            rows.append(fields[name])
            continue
        kind, level = name[0], int(name[1:])
        height = 1 - level / 1100
        rows.append({"u": fields["u10m"] * (1 + 3 * height), "v": fields["v10m"] * (1 + 2 * height),
                     "z": 9.81 * (8000 * height) + 50 * fields["u10m"],
                     "t": fields["t2m"] - 60 * height,
                     "q": fields["q2m"] * (1 - height)}[kind])
    return np.stack(rows)


def write_gefs_hrrr_fixture(root: str | Path, years: Sequence[int] = (2021, 2022),
                            inits_per_store: int = 2, lead_hours: Sequence[int] = (0, 3, 6),
                            hrrr_shape: tuple[int, int] = (32, 48), seed: int = 0
                            ) -> dict[str, Path]:
    """Write the stores and ``stats.json`` under ``root``; returns the paths by role."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    lat, lon = hrrr_grid(hrrr_shape)
    glat, glon = gefs_grid(lat, lon)
    paths: dict[str, Path] = {}
    sums: dict[str, list[np.ndarray]] = {}
    for year in years:
        for half in HALVES:
            first = datetime.datetime(year, 1 if half == "01_06" else 7, 1)
            inits = [first + datetime.timedelta(hours=6 * k) for k in range(inits_per_store)]
            labels, hrrr, surface, isobaric = [], [], [], []
            for init in inits:
                phase = rng.uniform(0, 2 * np.pi)
                for lead in lead_hours:
                    labels.append(time_label(init, lead))
                    valid_phase = phase + 0.05 * lead
                    hrrr.append(_hrrr_channels(_truth(rng, lat, lon, valid_phase)))
                    # Forecast error grows with lead time: a phase error and noise.
                    error = 0.02 * lead * rng.standard_normal()
                    coarse = _truth(rng, glat, glon, valid_phase + error)
                    noisy = {k: v + 0.01 * lead * np.std(v) * rng.standard_normal(v.shape)
                             for k, v in coarse.items()}
                    surface.append(_gefs_channels(noisy, GEFS_SURFACE))
                    isobaric.append(_gefs_channels(noisy, GEFS_ISOBARIC_STORED))
            for role, data, names, grid in (
                ("gefs_surface", surface, GEFS_SURFACE, (glat, glon)),
                ("gefs_isobaric", isobaric, GEFS_ISOBARIC_STORED, (glat, glon)),
                ("hrrr_forecast", hrrr, HRRR_STORED, (lat, lon)),
            ):
                folder = root / ("hrrr_forecast" if role == "hrrr_forecast" else "gefs")
                path = folder / f"{role}_{year}_{half}.zarr"
                values = np.stack(data).astype(np.float32)
                dims = ("y", "x")
                xr.Dataset(
                    {"values": (("time", "channel", *dims), values)},
                    coords={"time": np.array(labels), "channel": np.array(names),
                            "lat": (dims, grid[0]), "lon": (dims, grid[1])},
                ).to_zarr(path, mode="w", consolidated=True, zarr_format=2)
                paths[f"{role}_{year}_{half}"] = path
                for k, name in enumerate(names):
                    sums.setdefault(f"{role}:{name}", []).append(values[:, k].ravel())
    paths["stats"] = _write_stats(root, sums)
    return paths


def _write_stats(root: Path, sums: dict[str, list[np.ndarray]]) -> Path:
    """Means and standard deviations under the names a config requests (the reference's:
    ``z200``, ``t100``, ``r<level>``), ``cat_none`` included."""
    def stats(key: str) -> dict[str, float]:
        data = np.concatenate(sums[key]).astype(np.float64)
        return {"mean": float(data.mean()), "std": float(max(data.std(), 1e-6))}

    requested = {"z250": "z200", "t250": "t100", "q250": "r100",
                 **{f"q{lv}": f"r{lv}" for lv in ISOBARIC_LEVELS if lv != 250}}
    inputs = {name: stats(f"gefs_surface:{name}") for name in GEFS_SURFACE}
    inputs.update({requested.get(name, name): stats(f"gefs_isobaric:{name}")
                   for name in GEFS_ISOBARIC_STORED})
    outputs = {name: stats(f"hrrr_forecast:{name}") for name in HRRR_STORED}
    outputs["cat_none"] = {"mean": 0.5, "std": 0.5}
    path = root / "stats.json"
    path.write_text(json.dumps({"input": inputs, "output": outputs}, indent=1))
    return path


# ------------------------------------------------------------------------- tiny training set-up
TINY_SURFACE = ["u10m", "t2m", "msl"]
TINY_ISOBARIC = ["z200", "t100", "r850"]
TINY_OUTPUTS = ["u10m", "t2m", "precip", "cat_snow", "cat_ice", "cat_freez", "cat_rain",
                "cat_none"]
TINY_LT_ARCH = {
    "model_type": "SongUNetPosLtEmbd", "model_channels": 8, "channel_mult": [1, 2],
    "num_blocks": 1, "attn_resolutions": [], "dropout": 0.0, "N_grid_channels": 4,
    "gridtype": "sinusoidal_octave", "lead_time_channels": 4, "lead_time_steps": 3,
}


def tiny_gefs_hrrr_dataset(root: Path) -> dict:
    """The dataset section of a 16x32 GEFS-HRRR window over a fixture (written if absent)."""
    root = Path(root)
    if not (root / "stats.json").exists():
        write_gefs_hrrr_fixture(root, years=(2021, 2022), inits_per_store=2,
                                lead_hours=(0, 3, 6), hrrr_shape=(20, 36))
    return {"type": "gefs_hrrr", "data_path": str(root), "stats_path": str(root / "stats.json"),
            "input_surface_variables": TINY_SURFACE, "input_isobaric_variables": TINY_ISOBARIC,
            "output_variables": TINY_OUTPUTS, "train_years": [2021], "valid_years": [2022],
            "lead_hours": [0, 3, 6], "hrrr_window": [[2, 18], [2, 34]], "ds_factor": 1}


def tiny_gefs_hrrr_config(root: Path, run_dir: Path, name: str = "lt_aware_ce_regression",
                          **hp) -> dict:
    """A complete training config (plain dict) of a tiny lead-time-aware model."""
    config = {
        "dataset": tiny_gefs_hrrr_dataset(root),
        "validation": {"train": False},
        "model": {"name": name, "model_args": dict(TINY_LT_ARCH)},
        "training": {
            "hp": {"training_duration": 24, "total_batch_size": 4, "lr": 2e-3, "lr_rampup": 0,
                   **hp},
            "perf": {"dataloader_workers": 0},
            "io": {"checkpoint_dir": str(run_dir), "print_progress_freq": 8,
                   "save_checkpoint_freq": 12, "validation_freq": 12, "validation_steps": 1},
        },
    }
    if "diffusion" in name:
        config["model"]["hr_mean_conditioning"] = True
        config["model"]["model_args"]["embedding_type"] = "positional"
    else:
        config["model"]["model_args"]["embedding_type"] = "zero"
    return config
