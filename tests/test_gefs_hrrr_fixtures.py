"""The GEFS-HRRR fixture has the published layout's awkward properties (issue 14's first step)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr

from tests.gefs_hrrr_fixtures import (
    CATEGORIES,
    GEFS_ISOBARIC_STORED,
    GEFS_SURFACE,
    HRRR_STORED,
    write_gefs_hrrr_fixture,
)


@pytest.fixture(scope="module")
def fixture(tmp_path_factory):
    root = tmp_path_factory.mktemp("gefs_hrrr")
    return root, write_gefs_hrrr_fixture(root, years=(2021,), inits_per_store=2,
                                         lead_hours=(0, 3, 6), hrrr_shape=(16, 24))


def test_layout_names_and_keys(fixture):
    root, paths = fixture
    assert sorted(p.relative_to(root).as_posix() for p in root.glob("*/*.zarr")) == [
        "gefs/gefs_isobaric_2021_01_06.zarr", "gefs/gefs_isobaric_2021_07_12.zarr",
        "gefs/gefs_surface_2021_01_06.zarr", "gefs/gefs_surface_2021_07_12.zarr",
        "hrrr_forecast/hrrr_forecast_2021_01_06.zarr",
        "hrrr_forecast/hrrr_forecast_2021_07_12.zarr"]
    with xr.open_zarr(paths["hrrr_forecast_2021_07_12"], consolidated=True) as hrrr:
        assert list(hrrr.time.values) == ["2021070100f00", "2021070100f03", "2021070100f06",
                                          "2021070106f00", "2021070106f03", "2021070106f06"]
        assert list(hrrr.channel.values) == HRRR_STORED and "cat_none" not in HRRR_STORED
        assert hrrr["values"].dims == ("time", "channel", "y", "x")
        assert hrrr["values"].shape == (6, 9, 16, 24) and hrrr.lat.shape == (16, 24)
        assert float(hrrr.lon.max()) < 0  # HRRR carries -180..180
        cats = hrrr["values"].sel(channel=CATEGORIES).values
        assert set(np.unique(cats)) == {0.0, 1.0} and cats.sum(axis=1).max() == 1
        precip = hrrr["values"].sel(channel="precip").values
        assert precip.min() == 0 and (precip == 0).mean() > 0.2  # mostly dry, heavy tail
    with xr.open_zarr(paths["gefs_isobaric_2021_01_06"], consolidated=True) as gefs:
        assert list(gefs.channel.values) == GEFS_ISOBARIC_STORED
        assert {"z250", "t250", "q1000"} <= set(gefs.channel.values)
        assert "r1000" not in gefs.channel.values  # stored as q; configs ask for r
        lon = gefs.lon.values
        assert lon.min() >= 0 and lon.max() < 360 and np.allclose(np.diff(lon[0]), 0.25)


def test_gefs_covers_hrrr_and_error_grows_with_lead_time(fixture):
    _, paths = fixture
    with xr.open_zarr(paths["hrrr_forecast_2021_01_06"], consolidated=True) as hrrr, \
            xr.open_zarr(paths["gefs_surface_2021_01_06"], consolidated=True) as gefs:
        assert list(gefs.channel.values) == GEFS_SURFACE
        assert gefs.lat.min() < hrrr.lat.min() and gefs.lat.max() > hrrr.lat.max()
        assert gefs.lon.min() < hrrr.lon.min() % 360 and gefs.lon.max() > hrrr.lon.max() % 360
        # Nearest GEFS cell to each HRRR point: t2m error against the truth, per lead time.
        glat, glon = gefs.lat.values[:, 0], gefs.lon.values[0]
        rows = np.abs(glat[:, None] - hrrr.lat.values.ravel()).argmin(axis=0)
        cols = np.abs(glon[:, None] - hrrr.lon.values.ravel() % 360).argmin(axis=0)
        truth = hrrr["values"].sel(channel="t2m").values.reshape(6, -1)
        forecast = gefs["values"].sel(channel="t2m").values[:, rows, cols]
        error = np.abs(forecast - truth).reshape(2, 3, -1).mean(axis=(0, 2))  # per lead
        assert error[2] > error[0]


def test_stats_use_the_requested_names(fixture):
    _, paths = fixture
    stats = json.loads(paths["stats"].read_text())
    assert {"z200", "t100", "r100", "r1000", "precipitable_water"} <= set(stats["input"])
    assert not {"z250", "t250", "q250"} & set(stats["input"])
    assert set(stats["output"]) == {*HRRR_STORED, "cat_none"}
    assert all(v["std"] > 0 for group in stats.values() for v in group.values())
