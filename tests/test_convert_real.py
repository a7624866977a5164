"""The converter on fields with real data's awkward properties: uneven grids, masks, level axes,
flattened (time x level) records, units and non-negative variables."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import netCDF4
import numpy as np
import pytest
import xarray as xr

from datasets.convert import convert
from datasets.hrrrmini import HRRRMiniDataset
from datasets.preview import describe, plot_sample
from helpers.infrastructure.errors import DataError
from tests.conftest import ROOT
from tests.real_like_fixtures import flattened_levels, national_land_grid, radar_precipitation


def group(path, name):
    with netCDF4.Dataset(path) as nc:
        return {k: np.ma.filled(v[:].astype(np.float64), np.nan)
                for k, v in nc[name].variables.items()}


def attrs(path, name, var):
    with netCDF4.Dataset(path) as nc:
        return {k: nc[name][var].getncattr(k) for k in nc[name][var].ncattrs()}


@pytest.fixture(scope="module")
def land(tmp_path_factory):
    return national_land_grid(tmp_path_factory.mktemp("land"))


@pytest.fixture(scope="module")
def levels(tmp_path_factory):
    return flattened_levels(tmp_path_factory.mktemp("levels"))


@pytest.fixture(scope="module")
def radar(tmp_path_factory):
    return radar_precipitation(tmp_path_factory.mktemp("radar"))


def test_uneven_grid_is_cropped_to_whole_coarse_cells(land, tmp_path, caplog):
    with caplog.at_level(logging.INFO):
        summary = convert(land["coarse"], land["fine"], "t2m", "t2m", tmp_path / "o",
                          window="full", max_missing=0.6, progress=False)
    assert summary["fine_shape"] == (52, 76) and summary["windows_per_time"] == 1
    assert "fine grid 53x77 -> 52x76" in caplog.text and "coarse grid 14x20 -> 13x19" in caplog.text
    with netCDF4.Dataset(tmp_path / "o" / "train.nc") as nc:
        np.testing.assert_allclose(nc["lat"][:], land["fine_ds"]["lat"].values[:52, :76],
                                   rtol=1e-6)
        assert nc["output"]["t2m"].shape[1:] == (52, 76)
        assert nc["input"]["t2m"].shape[1:] == (13, 19)
        times = netCDF4.num2date(nc["time"][:], nc["time"].units, only_use_cftime_datetimes=False)
    outputs, inputs = group(tmp_path / "o" / "train.nc", "output"), group(tmp_path / "o" /
                                                                          "train.nc", "input")
    for i, t in enumerate(times):
        np.testing.assert_array_equal(outputs["t2m"][i], land["fine_ds"]["t2m"].sel(
            time=t).values[:52, :76])
        np.testing.assert_array_equal(inputs["t2m"][i], land["coarse_ds"]["t2m"].sel(
            time=t).values[:13, :19])
    # --crop none refuses, and its advice (drop it) is what the run above did.
    with pytest.raises(DataError, match="drop --crop none to crop it to 52 x 76"):
        convert(land["coarse"], land["fine"], "t2m", "t2m", tmp_path / "n", window=16,
                crop="none", progress=False)
    assert not (tmp_path / "n").exists()
    # A multiple for a whole-domain UNet: 52x76 -> 48x64 (multiples of 16 and of the factor).
    summary = convert(land["coarse"], land["fine"], "t2m", "t2m", tmp_path / "m",
                      window="full", crop=16, max_missing=0.6, progress=False)
    assert summary["fine_shape"] == (48, 64)


def test_grid_factor_needs_to_be_given_when_sizes_do_not_tell(land, tmp_path):
    coarse = land["coarse_ds"].isel(x=slice(0, 17))  # ratios 53/14 and 77/17 round differently
    coarse.to_netcdf(tmp_path / "c.nc")
    with pytest.raises(DataError, match=r"cannot tell the grid factor.*pass --factor F"):
        convert(tmp_path / "c.nc", land["fine"], "t2m", "t2m", tmp_path / "o", window=16,
                progress=False)
    with pytest.raises(DataError, match=r"does not match the fine grid.*with factor 4"):
        convert(tmp_path / "c.nc", land["fine"], "t2m", "t2m", tmp_path / "o", window=16,
                factor=4, progress=False)


def test_masked_windows_kept_skipped_and_statistics_of_valid_values(radar, tmp_path, caplog):
    coverage = radar["coverage"][:40, :40]  # 43x45 with factor 8 -> 40x40
    starts = range(0, 40 - 16 + 1, 8)
    missing = np.array([1 - coverage[r:r + 16, c:c + 16].mean() for r in starts for c in starts])
    # 43x45 over 5x5 fits factor 8 (partial edge blocks dropped) and 9 or 10 (kept): the user
    # has to say which.
    with pytest.raises(DataError, match=r"factors 8, 9, 10 all fit.*pass --factor F"):
        convert(radar["coarse"], radar["fine"], "precip", "precip", tmp_path / "o", window=16,
                progress=False)
    with caplog.at_level(logging.INFO):
        summary = convert(radar["coarse"], radar["fine"], "precip", "precip", tmp_path / "o",
                          window=16, stride=8, max_missing=0.3, valid_fraction=1 / 6,
                          factor=8, progress=False)
    kept = int((missing <= 0.3).sum())
    assert 0 < kept < missing.size
    assert (summary["train_samples"], summary["train_skipped"]) == (5 * kept, 5 * (16 - kept))
    assert (summary["valid_samples"], summary["valid_skipped"]) == (kept, 16 - kept)
    assert f"valid: kept {kept} window(s), skipped {16 - kept}" in caplog.text
    outputs = group(tmp_path / "o" / "train.nc", "output")["precip"]
    with netCDF4.Dataset(tmp_path / "o" / "train.nc") as nc:
        coords = np.asarray(nc["coord"][:])
    for window, (r, c) in zip(outputs, coords, strict=True):
        np.testing.assert_array_equal(np.isnan(window), ~coverage[r:r + 16, c:c + 16])
    stats = json.loads((tmp_path / "o" / "stats.json").read_text())["output"]["precip"]
    # Recognised as precipitation from its units alone (mm/h, no standard_name), so it is
    # non-negative and normalized as log1p by default; statistics of the valid values only.
    assert stats["nonnegative"] and stats["missing_values"] and stats["units"] == "mm/h"
    assert stats["transform"] == "log1p"
    assert stats["mean"] == pytest.approx(np.nanmean(np.log1p(outputs)), rel=1e-9)
    assert stats["std"] == pytest.approx(np.nanstd(np.log1p(outputs)), rel=1e-7)
    with pytest.raises(DataError, match=r"train split keeps none.*raise --max-missing above"):
        convert(radar["coarse"], radar["fine"], "precip", "precip", tmp_path / "z",
                window="full", max_missing=0.0, factor=8, progress=False)
    assert not (tmp_path / "z").exists()


def test_missing_inputs_and_invariants_get_validity_channels(land, tmp_path):
    convert(land["coarse"], land["fine"], "t2m,msl", "t2m,tp", tmp_path / "o", window=16,
            stride=8, invariant_variables="orog", max_missing=0.6, valid_fraction=0.25,
            progress=False)
    stats = json.loads((tmp_path / "o" / "stats.json").read_text())
    assert stats["input"]["t2m"]["missing_values"] and "missing_values" not in stats["input"]["msl"]
    invariants = group(tmp_path / "o" / "train.nc", "invariant")
    land_mask = land["land"][:52, :76]
    np.testing.assert_array_equal(invariants["orog_valid"], land_mask.astype(float))
    assert np.isfinite(invariants["orog"]).all()
    np.testing.assert_allclose(invariants["orog"][land_mask],
                               land["fine_ds"]["orog"].values[:52, :76][land_mask], rtol=1e-6)
    ds = HRRRMiniDataset(tmp_path / "o" / "train.nc", tmp_path / "o" / "stats.json")
    labels = [c.label for c in ds.input_channels()]
    assert labels == ["t2m", "msl", "t2m_valid", "orog", "orog_valid"]
    coarse = group(tmp_path / "o" / "train.nc", "input")["t2m"]
    i = int(np.argmax(np.isnan(coarse).any(axis=(1, 2))))  # a window with missing coarse cells
    img_clean, img_lr = ds[i]
    assert np.isfinite(img_lr).all()  # filled, never NaN for the network
    mask = np.kron(np.isfinite(coarse[i]), np.ones((4, 4)))
    np.testing.assert_array_equal(img_lr[2], mask)
    physical = ds.denormalize_input(img_lr)
    np.testing.assert_array_equal(np.isnan(physical[0]), mask == 0)
    assert np.isnan(img_clean).any() and ds.has_missing_outputs()


def test_flattened_time_level_axis(levels, tmp_path):
    with pytest.raises(DataError, match=r"repeated time stamps along 'record'.*differ in "
                                        r"'level'.*--select level=<value>.*theta@level=1"):
        convert(levels["coarse"], levels["fine"], "theta", "theta", tmp_path / "o", window=8,
                progress=False)
    convert(levels["coarse"], levels["fine"], "theta,u", "theta,u", tmp_path / "one", window=8,
            select="level=10", valid_fraction=0, progress=False)
    fine = levels["fine_ds"]
    at_10 = fine.where(fine.level == 10, drop=True)
    outputs = group(tmp_path / "one" / "train.nc", "output")
    np.testing.assert_array_equal(outputs["theta"][0], at_10["theta"].values[0, :8, :8])
    assert outputs["theta"].shape[0] == 5 * 3 * 5  # 5 times x 15 windows of 8x8 in 24x40
    convert(levels["coarse"], levels["fine"], "theta@level=1,u@level=1",
            "theta@level=1,th20=theta@level=20", tmp_path / "two", window=24, stride=8,
            valid_fraction=0, progress=False)
    outputs = group(tmp_path / "two" / "train.nc", "output")
    assert list(outputs) == ["theta_level1", "th20"]
    np.testing.assert_array_equal(outputs["th20"][:, :, :24][::3], fine.where(
        fine.level == 20, drop=True)["theta"].values[:, :, :24])
    stats = json.loads((tmp_path / "two" / "stats.json").read_text())
    assert stats["output"]["th20"]["units"] == "K"
    with netCDF4.Dataset(tmp_path / "two" / "train.nc") as nc:
        assert "th20: theta@level=20" in nc.channels
    with pytest.raises(DataError, match="no level equals 7; level has 3 value"):
        convert(levels["coarse"], levels["fine"], "theta", "theta", tmp_path / "x", window=8,
                select="level=7", progress=False)
    with pytest.raises(DataError, match="neither file has a dimension or coordinate 'levle'"):
        convert(levels["coarse"], levels["fine"], "theta", "theta", tmp_path / "x", window=8,
                select="levle=10", progress=False)


def test_level_dimension_selects_and_extra_dimension_is_named(tmp_path):
    times = np.array(["2021-01-01T00", "2021-01-01T06"], dtype="datetime64[ns]")
    rng = np.random.default_rng(0)
    data = rng.normal(size=(2, 3, 8, 12)).astype("f4")
    fine = xr.Dataset({"t": (("time", "plev", "y", "x"), data)},
                      coords={"time": times, "plev": [1000.0, 850.0, 500.0]})
    coarse = fine.coarsen(y=4, x=4).mean()
    fine.to_netcdf(tmp_path / "f.nc")
    coarse.to_netcdf(tmp_path / "c.nc")
    with pytest.raises(DataError, match=r"extra dimension\(s\) \{'plev': 3\}.*--select "
                                        r"plev=<value> \(plev: 1000.0, 850.0, 500.0\)"):
        convert(tmp_path / "c.nc", tmp_path / "f.nc", "t", "t", tmp_path / "o", window=4,
                progress=False)
    convert(tmp_path / "c.nc", tmp_path / "f.nc", "t", "t850=t@plev=850", tmp_path / "o",
            window=4, select="plev=500", valid_fraction=0, progress=False)
    out = group(tmp_path / "o" / "train.nc", "output")["t850"]
    inp = group(tmp_path / "o" / "train.nc", "input")["t"]
    np.testing.assert_array_equal(out[0], data[0, 1, :4, :4])
    np.testing.assert_allclose(inp[0], coarse["t"].values[0, 2, :1, :1], rtol=1e-6)


def test_nonnegative_and_transform_options(land, tmp_path):
    convert(land["coarse"], land["fine"], "t2m", "t2m,u10,tp", tmp_path / "a", window=16,
            stride=8, max_missing=0.6, nonnegative="u10", transform="tp=log1p", progress=False)
    stats = json.loads((tmp_path / "a" / "stats.json").read_text())["output"]
    assert stats["u10"]["nonnegative"] and stats["tp"]["nonnegative"]
    assert stats["tp"]["transform"] == "log1p" and "transform" not in stats["t2m"]
    tp = group(tmp_path / "a" / "train.nc", "output")["tp"]
    assert stats["tp"]["mean"] == pytest.approx(np.nanmean(np.log1p(tp)), rel=1e-9)
    convert(land["coarse"], land["fine"], "t2m", "tp", tmp_path / "b", window=16, stride=8,
            max_missing=0.6, nonnegative="none", progress=False)
    signed = json.loads((tmp_path / "b" / "stats.json").read_text())["output"]["tp"]
    assert not signed["nonnegative"] and "transform" not in signed
    convert(land["coarse"], land["fine"], "t2m", "tp", tmp_path / "d", window=16, stride=8,
            max_missing=0.6, transform="tp=none", progress=False)
    clamped = json.loads((tmp_path / "d" / "stats.json").read_text())["output"]["tp"]
    assert clamped["nonnegative"] and "transform" not in clamped
    with pytest.raises(DataError, match=r"--nonnegative: no channel named \['rain'\]"):
        convert(land["coarse"], land["fine"], "t2m", "tp", tmp_path / "c", window=16,
                max_missing=0.6, nonnegative="rain", progress=False)
    with pytest.raises(DataError, match="--transform: 'tp=log' is not NAME=KIND"):
        convert(land["coarse"], land["fine"], "t2m", "tp", tmp_path / "c", window=16,
                max_missing=0.6, transform="tp=log", progress=False)


def test_units_and_names_travel_into_the_dataset(land, tmp_path):
    convert(land["coarse"], land["fine"], "t2m,msl", "2t=t2m,tp", tmp_path / "o", window=16,
            stride=8, invariant_variables="orog", max_missing=0.6, progress=False)
    assert attrs(tmp_path / "o" / "train.nc", "output", "2t")["units"] == "K"
    assert attrs(tmp_path / "o" / "train.nc", "input", "msl")["units"] == "Pa"
    assert attrs(tmp_path / "o" / "train.nc", "invariant", "orog")["standard_name"] == (
        "surface_altitude")
    ds = HRRRMiniDataset(tmp_path / "o" / "train.nc", tmp_path / "o" / "stats.json")
    channels = {c.label: c for c in ds.output_channels()}
    assert channels["tp"].units == "mm h-1" and channels["2t"].long_name == "2 m temperature"
    # The preview draws masked samples (NaN over the sea) with units in the titles.
    assert "tp" in describe(ds) and plot_sample(ds, 3, tmp_path / "preview.png").is_file()


def test_rectangular_windows_and_inf_as_missing(land, tmp_path):
    fine = land["fine_ds"].copy(deep=True)
    fine["t2m"].values[0, 30, 60] = np.inf  # a land pixel: Inf counts as missing
    fine.to_netcdf(tmp_path / "fine.nc")
    summary = convert(land["coarse"], tmp_path / "fine.nc", "t2m", "t2m", tmp_path / "o",
                      window="16x32", stride=16, max_missing=0.6, valid_fraction=0,
                      progress=False)
    assert summary["window"] == (16, 32)
    out = group(tmp_path / "o" / "train.nc", "output")["t2m"]
    assert out.shape[1:] == (16, 32) and not np.isinf(out).any()
    with pytest.raises(DataError, match=r"window 16x30 must be a positive multiple of the grid "
                                        r"factor 4 in both directions, e\.g\. 16x28"):
        convert(land["coarse"], land["fine"], "t2m", "t2m", tmp_path / "x", window="16x30",
                progress=False)


def test_cli_error_is_one_line(levels, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "datasets.convert", "--coarse", str(levels["coarse"]), "--fine",
         str(levels["fine"]), "--input-variables", "theta", "--output-variables", "theta",
         "--window", "8", "--out", str(tmp_path / "o")],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1 and "--select level=<value>" in result.stderr
    assert not (tmp_path / "o").exists()
