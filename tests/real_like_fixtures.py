"""Small files with the awkward properties of real km-scale data, made by the tests.

- `national_land_grid`: a projected (Lambert-like, 2-D lat/lon) forecast grid that is no
  multiple of the coarse factor, with a fixed land-only mask covering about half the domain
  (NaN over the sea, coasts included), a heavy-tailed non-negative precipitation rate, and
  coarse inputs made by block-averaging the fine fields (partial blocks at the far edges, NaN
  where a block is all sea);
- `flattened_levels`: a rotated-pole model field whose records are a flattened
  (valid time x model level) axis: ``time(record)`` repeats once per level;
- `radar_precipitation`: an hourly precipitation analysis on a polar-stereographic grid with a
  fixed radar-coverage disk, units ``mm/h`` and no standard name.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr


def block_nanmean(field: np.ndarray, factor: int) -> np.ndarray:
    """Means over ``factor x factor`` blocks of the last two axes, ignoring NaN; partial
    blocks at the far edges are kept (the coarse grid has ``ceil(n / factor)`` cells)."""
    *lead, h, w = field.shape
    ch, cw = -(-h // factor), -(-w // factor)
    padded = np.full((*lead, ch * factor, cw * factor), np.nan)
    padded[..., :h, :w] = field
    blocks = padded.reshape(*lead, ch, factor, cw, factor)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN (sea) blocks stay NaN
        return np.nanmean(blocks, axis=(-3, -1))


def _projected_grid(shape: tuple[int, int], lat0: float, lon0: float, spacing_deg: float,
                    rotation: float) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    lat = lat0 + spacing_deg * (yy * np.cos(rotation) + xx * np.sin(rotation))
    lon = lon0 + spacing_deg * 1.3 * (xx * np.cos(rotation) - yy * np.sin(rotation))
    return lat, lon


def _rain(rng: np.random.Generator, n: int, shape: tuple[int, int]) -> np.ndarray:
    """Showers: a few blobs with log-normal peaks minus a threshold: mostly 0, heavy tail."""
    yy, xx = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    out = np.zeros((n, *shape))
    for t in range(n):
        for _ in range(4):
            cy, cx = rng.uniform(0, shape[0]), rng.uniform(0, shape[1])
            width = rng.uniform(3, 8)
            out[t] += rng.lognormal(1.0, 1.0) * np.exp(
                -((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * width**2))
    return np.maximum(out - 0.3, 0.0)


def national_land_grid(directory: Path, n_times: int = 8, shape: tuple[int, int] = (53, 77),
                       factor: int = 4, seed: int = 0) -> dict:
    """Write ``coarse.nc`` and ``fine.nc``; returns paths, arrays and the land mask."""
    rng = np.random.default_rng(seed)
    h, w = shape
    yy, xx = np.meshgrid(np.arange(h) / h, np.arange(w) / w, indexing="ij")
    land = xx > 0.45 + 0.12 * np.sin(2 * np.pi * 1.5 * yy)  # a wavy west coast
    lat, lon = _projected_grid(shape, 44.0, 3.0, 0.045, 0.15)
    orog = np.where(land, 200 + 1500 * xx * (1 + 0.3 * np.sin(9 * yy)), np.nan)
    times = pd.date_range("2022-06-01", periods=n_times, freq="h")
    base = 295 - 0.0065 * np.nan_to_num(orog) + rng.normal(0, 1, (n_times, 1, 1))
    t2m = base + rng.normal(0, 0.7, (n_times, h, w))
    u10 = 3 + 2 * np.sin(6 * xx + np.arange(n_times)[:, None, None]) + rng.normal(
        0, 0.5, (n_times, h, w))
    tp = _rain(rng, n_times, shape)
    fine_fields = {name: np.where(land, values, np.nan).astype("f4")
                   for name, values in (("t2m", t2m), ("u10", u10), ("tp", tp))}
    attrs = {"t2m": {"units": "K", "long_name": "2 m temperature",
                     "standard_name": "air_temperature"},
             "u10": {"units": "m s-1", "long_name": "10 m eastward wind",
                     "standard_name": "eastward_wind"},
             "tp": {"units": "mm h-1", "long_name": "precipitation rate",
                    "standard_name": "lwe_precipitation_rate"}}
    fine = xr.Dataset(
        {name: (("time", "y", "x"), values, attrs[name]) for name, values in fine_fields.items()}
        | {"orog": (("y", "x"), orog.astype("f4"), {"units": "m",
                                                    "standard_name": "surface_altitude"})},
        coords={"time": times, "lat": (("y", "x"), lat), "lon": (("y", "x"), lon)},
    )
    coarse_fields = {name: block_nanmean(values, factor).astype("f4")
                     for name, values in fine_fields.items()}
    ch, cw = coarse_fields["t2m"].shape[1:]
    coarse_fields["msl"] = (101300 + rng.normal(0, 300, (n_times, ch, cw))).astype("f4")
    attrs["msl"] = {"units": "Pa", "long_name": "mean sea level pressure"}
    coarse_times = pd.date_range(times[0] - pd.Timedelta("1h"), periods=n_times + 1, freq="h")
    pad = np.full((1, ch, cw), np.nan, "f4")
    coarse = xr.Dataset(
        {name: (("time", "y", "x"), np.concatenate([pad, values]), attrs[name])
         for name, values in coarse_fields.items()},
        coords={"time": coarse_times,
                "lat": (("y", "x"), block_nanmean(lat, factor)),
                "lon": (("y", "x"), block_nanmean(lon, factor))},
    )
    directory.mkdir(parents=True, exist_ok=True)
    paths = {"coarse": directory / "coarse.nc", "fine": directory / "fine.nc"}
    coarse.to_netcdf(paths["coarse"])
    fine.to_netcdf(paths["fine"])
    return {**paths, "fine_ds": fine, "coarse_ds": coarse, "land": land, "factor": factor}


def flattened_levels(directory: Path, n_times: int = 5, levels: tuple[int, ...] = (1, 10, 20),
                     shape: tuple[int, int] = (24, 40), factor: int = 4, seed: int = 1) -> dict:
    """Write ``coarse.nc`` and ``fine.nc`` whose records are (time x level) flattened."""
    rng = np.random.default_rng(seed)
    times = pd.date_range("2021-03-01", periods=n_times, freq="3h")
    record_time = np.repeat(times.values, len(levels))
    record_level = np.tile(np.array(levels), n_times)
    n = len(record_time)
    theta = (290 + 3 * record_level[:, None, None] + rng.normal(0, 1, (n, *shape))).astype("f4")
    u = (5 + 0.2 * record_level[:, None, None] + rng.normal(0, 1, (n, *shape))).astype("f4")
    lat, lon = _projected_grid(shape, 50.0, -5.0, 0.02, 0.3)
    coords = {"time": ("record", record_time), "level": ("record", record_level),
              "rlat": np.linspace(-2, 2, shape[0]), "rlon": np.linspace(-3, 3, shape[1]),
              "lat": (("rlat", "rlon"), lat), "lon": (("rlat", "rlon"), lon)}
    fine = xr.Dataset({"theta": (("record", "rlat", "rlon"), theta,
                                 {"units": "K", "long_name": "potential temperature"}),
                       "u": (("record", "rlat", "rlon"), u, {"units": "m s-1"})}, coords=coords)
    coarse_coords = {**coords, "rlat": fine.rlat.values[::factor],
                     "rlon": fine.rlon.values[::factor],
                     "lat": (("rlat", "rlon"), block_nanmean(lat, factor)),
                     "lon": (("rlat", "rlon"), block_nanmean(lon, factor))}
    coarse = xr.Dataset({name: (("record", "rlat", "rlon"), block_nanmean(
        fine[name].values, factor).astype("f4"), fine[name].attrs) for name in ("theta", "u")},
        coords=coarse_coords)
    directory.mkdir(parents=True, exist_ok=True)
    paths = {"coarse": directory / "coarse.nc", "fine": directory / "fine.nc"}
    coarse.to_netcdf(paths["coarse"])
    fine.to_netcdf(paths["fine"])
    return {**paths, "fine_ds": fine, "coarse_ds": coarse, "levels": levels, "times": times}


def radar_precipitation(directory: Path, n_times: int = 6, shape: tuple[int, int] = (43, 45),
                        factor: int = 8, seed: int = 2) -> dict:
    """Write ``coarse.nc`` and ``fine.nc``: precipitation inside a radar-coverage disk."""
    rng = np.random.default_rng(seed)
    h, w = shape
    yy, xx = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    coverage = (yy - 0.45 * h) ** 2 + (xx - 0.5 * w) ** 2 <= (0.42 * min(h, w)) ** 2
    # Polar stereographic: lat/lon from distance and bearing to the pole.
    px, py = (xx - 200.0) * 4.0, (yy + 1400.0) * 4.0  # km from the pole
    radius, bearing = np.hypot(px, py), np.degrees(np.arctan2(px, -py))
    lat, lon = 90 - radius / 111.2, bearing - 105.0
    precip = np.where(coverage, _rain(rng, n_times, shape), np.nan).astype("f4")
    times = pd.date_range("2023-08-10", periods=n_times, freq="h")
    attrs = {"units": "mm/h", "long_name": "hourly accumulation analysis"}
    fine = xr.Dataset({"precip": (("time", "y", "x"), precip, attrs)},
                      coords={"time": times, "lat": (("y", "x"), lat), "lon": (("y", "x"), lon)})
    coarse_precip = block_nanmean(precip, factor)[:, : h // factor, : w // factor]
    coarse = xr.Dataset({"precip": (("time", "y", "x"), coarse_precip.astype("f4"), attrs)},
                        coords={"time": times})
    directory.mkdir(parents=True, exist_ok=True)
    paths = {"coarse": directory / "coarse.nc", "fine": directory / "fine.nc"}
    coarse.to_netcdf(paths["coarse"])
    fine.to_netcdf(paths["fine"])
    return {**paths, "fine_ds": fine, "coverage": coverage, "factor": factor}
