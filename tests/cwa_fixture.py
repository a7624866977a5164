"""A tiny store in the published CWA zarr layout (zarr v2, consolidated), written by the tests.

Eight times over 2020-2021 on a small grid; time 1 has ``cwb_valid`` False and time 5 has one
invalid ERA5 channel (7, which the default ``in_channels`` does not use), so both must be skipped.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import zarr

LEVELS = (500.0, 700.0, 850.0, 925.0)
ERA5_CHANNELS = [
    (name, level)
    for name in ("geopotential_height", "temperature", "eastward_wind", "northward_wind")
    for level in LEVELS
] + [
    ("temperature_2m", np.nan), ("eastward_wind_10m", np.nan), ("northward_wind_10m", np.nan),
    ("total_column_water_vapour", np.nan),
]
ERA5_STATS = [
    *[(5500.0 + 1500.0 * i, 50.0) for i in range(4)],
    *[(270.0 + 5.0 * i, 5.0) for i in range(4)],
    *[(3.0, 6.0)] * 4,
    *[(0.5, 5.0)] * 4,
    (295.0, 4.0), (1.0, 3.0), (0.2, 3.0), (45.0, 12.0),
]
CWB_CHANNELS = [
    "maximum_radar_reflectivity", "temperature_2m", "eastward_wind_10m", "northward_wind_10m",
]
CWB_STATS = [(3.0, 8.0), (294.0, 4.5), (0.8, 2.5), (0.1, 2.5)]
TIMES = [
    datetime.datetime(2020, 1, 1, 0), datetime.datetime(2020, 3, 15, 6),
    datetime.datetime(2020, 8, 20, 12), datetime.datetime(2020, 12, 31, 23),
    datetime.datetime(2021, 1, 1, 0), datetime.datetime(2021, 5, 5, 5),
    datetime.datetime(2021, 9, 30, 18), datetime.datetime(2021, 12, 31, 21),
]
TIME_UNITS = "hours since 1990-01-01"
INVALID_CWB_TIME = 1
INVALID_ERA5_TIME, INVALID_ERA5_CHANNEL = 5, 7


def write_cwa_zarr(
    path: Path,
    grid: tuple[int, int] = (20, 22),
    seed: int = 0,
    omit: Iterable[str] = (),
    consolidated: bool = True,
    string_dtype: str = "<U32",
    valid_dtype: str = "bool",
) -> dict[str, np.ndarray]:
    """Write the store at ``path`` and return every array written, by name.

    ``omit`` leaves arrays out (to test errors); ``string_dtype`` is ``"<U32"`` (fixed width),
    ``"str"`` (variable-length UTF-8) or ``"|S32"`` (bytes); ``valid_dtype`` lets the flags be
    stored as int8.
    """
    rng = np.random.default_rng(seed)
    n, (rows, cols) = len(TIMES), grid
    era5_center, era5_scale = (np.array(v) for v in zip(*ERA5_STATS, strict=True))
    cwb_center, cwb_scale = (np.array(v) for v in zip(*CWB_STATS, strict=True))
    yy, xx = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    epoch = datetime.datetime(1990, 1, 1)
    cwb_valid = np.ones(n, bool)
    cwb_valid[INVALID_CWB_TIME] = False
    era5_valid = np.ones((n, len(ERA5_CHANNELS)), bool)
    era5_valid[INVALID_ERA5_TIME, INVALID_ERA5_CHANNEL] = False
    arrays = {
        "cwb": cwb_center[:, None, None]
        + cwb_scale[:, None, None] * rng.standard_normal((n, len(CWB_CHANNELS), rows, cols)),
        "era5": era5_center[:, None, None]
        + era5_scale[:, None, None] * rng.standard_normal((n, len(ERA5_CHANNELS), rows, cols)),
        "cwb_center": cwb_center, "cwb_scale": cwb_scale,
        "era5_center": era5_center, "era5_scale": era5_scale,
        "cwb_variable": np.array(CWB_CHANNELS),
        "era5_variable": np.array([name for name, _ in ERA5_CHANNELS]),
        "cwb_pressure": np.full(len(CWB_CHANNELS), np.nan),
        "era5_pressure": np.array([level for _, level in ERA5_CHANNELS]),
        "cwb_valid": cwb_valid.astype(valid_dtype),
        "era5_valid": era5_valid.astype(valid_dtype),
        "time": np.array([(t - epoch) // datetime.timedelta(hours=1) for t in TIMES], np.int64),
        "XLAT": 21.9 + 0.018 * yy + 0.001 * xx,
        "XLONG": 118.9 + 0.019 * xx - 0.001 * yy,
    }
    arrays["cwb"] = arrays["cwb"].astype(np.float32)
    arrays["era5"] = arrays["era5"].astype(np.float32)

    group = zarr.open_group(path, mode="w", zarr_format=2)
    for name, values in arrays.items():
        if name in omit:
            continue
        is_text = name.endswith("_variable")
        chunks = (1, 1, rows, cols) if values.ndim == 4 else values.shape
        array = group.create_array(
            name, shape=values.shape, chunks=chunks,
            dtype=(string_dtype if is_text else values.dtype),
        )
        array[...] = values.astype(object) if is_text and string_dtype == "str" else values
    if "time" not in omit:
        group["time"].attrs["units"] = TIME_UNITS
    if consolidated:
        zarr.consolidate_metadata(path, zarr_format=2)
    return arrays
