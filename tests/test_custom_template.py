"""The template datapipe reads paired xarray data directly and loads through the registry."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import datasets
from datasets.custom_template import PairedXarrayDataset
from datasets.interpolation import upsample_bilinear
from datasets.registry import build_dataset
from datasets.stats_file import write_stats
from helpers.infrastructure.errors import DataError

F, HF, WF = 8, 32, 48
INPUTS, OUTPUTS = ["t2m", "u10", "tcwv"], ["t2m", "u10"]
TEMPLATE = Path(datasets.__file__).parent / "custom_template.py"


@pytest.fixture
def pair(tmp_path):
    """Coarse 4x6 NetCDF (12 times) and fine 32x48 zarr (11 times, 10 shared) with orography."""
    rng = np.random.default_rng(1)
    y, x = np.arange(HF), np.arange(WF)
    fine = xr.Dataset(
        {v: (("time", "south_north", "west_east"), rng.normal(280, 5, (11, HF, WF)).astype("f4"))
         for v in OUTPUTS}
        | {"orog": (("south_north", "west_east"), rng.uniform(0, 2000, (HF, WF)).astype("f4"))},
        coords={"time": pd.date_range("2021-01-01 02:00", periods=11, freq="h"),
                "XLAT": (("south_north", "west_east"), 30 + 0.1 * y[:, None] + 0 * x),
                "XLONG": (("south_north", "west_east"), -100 + 0.1 * x[None, :] + 0 * y[:, None])},
    )
    coarse = xr.Dataset(
        {v: (("time", "latitude", "longitude"), rng.normal(0, 3, (12, HF // F, WF // F)))
         for v in INPUTS},
        coords={"time": pd.date_range("2021-01-01", periods=12, freq="h")},
    )
    coarse.to_netcdf(tmp_path / "coarse.nc")
    fine.to_zarr(tmp_path / "fine.zarr", mode="w", consolidated=False)
    config = dict(coarse_path=str(tmp_path / "coarse.nc"), fine_path=str(tmp_path / "fine.zarr"),
                  input_variables=INPUTS, output_variables=OUTPUTS, invariant_variables=["orog"])
    return config, coarse.isel(time=slice(2, 12)), fine.isel(time=slice(0, 10))


def test_shapes_metadata_and_values(pair):
    config, coarse, fine = pair
    ds = PairedXarrayDataset(**config)
    assert len(ds) == 10 and ds.image_shape() == (HF, WF) and ds.factor == F
    assert [c.name for c in ds.input_channels()] == [*INPUTS, "orog"]
    assert [c.auxiliary for c in ds.input_channels()] == [False] * 3 + [True]
    assert [c.name for c in ds.output_channels()] == OUTPUTS
    assert ds.time()[0] == pd.Timestamp("2021-01-01 02:00").to_pydatetime()
    np.testing.assert_allclose(ds.latitude(), fine.XLAT.values, rtol=1e-6)
    for k in (0, 7, -1):
        img_clean, img_lr = ds[k]
        assert img_clean.shape == (2, HF, WF) and img_lr.shape == (4, HF, WF)
        assert img_clean.dtype == img_lr.dtype == np.float32
        target = np.stack([fine[v].isel(time=k).values for v in OUTPUTS])
        np.testing.assert_allclose(ds.denormalize_output(img_clean), target, atol=1e-3)
        lowres = np.stack([coarse[v].isel(time=k).values for v in INPUTS]).astype("f4")
        physical = ds.denormalize_input(img_lr)
        np.testing.assert_allclose(physical[:3], upsample_bilinear(lowres, F), atol=1e-4)
        np.testing.assert_allclose(physical[3], fine.orog.values, atol=1e-3)
    with pytest.raises(IndexError):
        ds[10]


def test_computed_stats_and_normalisation_round_trip(pair):
    config, coarse, fine = pair
    ds = PairedXarrayDataset(**config)
    stats = ds.stats()
    for v in INPUTS:
        assert stats["input"][v]["mean"] == pytest.approx(coarse[v].values.mean(), abs=1e-5)
        assert stats["input"][v]["std"] == pytest.approx(coarse[v].values.std(), rel=1e-5)
    for v in OUTPUTS:
        values = fine[v].values.astype(np.float64)
        assert stats["output"][v]["mean"] == pytest.approx(values.mean(), rel=1e-7)
        assert stats["output"][v]["std"] == pytest.approx(values.std(), rel=1e-5)
    x = np.random.default_rng(2).normal(size=(5, 4, HF, WF)).astype("f4")
    np.testing.assert_allclose(ds.denormalize_input(ds.normalize_input(x)), x, atol=1e-4)
    img_clean, _ = ds[0]
    assert abs(img_clean.mean()) < 1.0 and 0.5 < img_clean.std() < 2.0


def test_stats_file_and_time_range(pair, tmp_path):
    config, _, fine = pair
    stats = {"input": {v: {"mean": 1.0, "std": 2.0} for v in INPUTS},
             "output": {v: {"mean": 280.0, "std": 4.0} for v in OUTPUTS},
             "invariant": {"orog": {"mean": 1000.0, "std": 500.0}}}
    write_stats(tmp_path / "stats.json", stats)
    ds = PairedXarrayDataset(**config, stats_path=str(tmp_path / "stats.json"),
                             start_time="2021-01-01T05:00", end_time="2021-01-01T08:00")
    assert [t.hour for t in ds.time()] == [5, 6, 7]
    img_clean, img_lr = ds[0]
    np.testing.assert_allclose(img_clean[0], (fine.t2m.isel(time=3).values - 280) / 4, atol=1e-4)
    np.testing.assert_allclose(img_lr[3], (fine.orog.values - 1000) / 500, atol=1e-5)
    del stats["output"]["u10"]
    write_stats(tmp_path / "bad.json", stats)
    with pytest.raises(DataError, match="u10"):
        PairedXarrayDataset(**config, stats_path=str(tmp_path / "bad.json"))


def test_registry_loading_and_pickling(pair):
    config, _, _ = pair
    by_name = build_dataset({"type": "custom_template", **config})
    by_path = build_dataset({"type": f"{TEMPLATE}::PairedXarrayDataset", **config})
    assert type(by_name).__name__ == type(by_path).__name__ == "PairedXarrayDataset"
    np.testing.assert_array_equal(by_name[3][0], by_path[3][0])
    clone = pickle.loads(pickle.dumps(by_name))  # as a DataLoader worker would receive it
    assert not clone._pairs.is_open()
    np.testing.assert_array_equal(clone[3][1], by_name[3][1])


def test_errors_name_the_problem(pair, tmp_path):
    config, coarse, _ = pair
    with pytest.raises(DataError, match=r"'q'.*not found"):
        PairedXarrayDataset(**{**config, "output_variables": ["t2m", "q"]})
    with pytest.raises(DataError, match="does not exist"):
        PairedXarrayDataset(**{**config, "fine_path": str(tmp_path / "missing.zarr")})
    coarse.isel(latitude=slice(0, 3)).to_netcdf(tmp_path / "c5.nc")
    with pytest.raises(DataError, match=r"cannot tell the grid factor.*no integer factor fits"):
        PairedXarrayDataset(**{**config, "coarse_path": str(tmp_path / "c5.nc")})
    with pytest.raises(DataError, match="no common times"):
        PairedXarrayDataset(**config, start_time="2030-01-01")
