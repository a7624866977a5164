"""The converter writes exact source windows in the HRRR-Mini layout; bad data fail loudly."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import netCDF4
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from datasets.convert import convert, split_times
from datasets.interpolation import upsample_bilinear
from helpers.infrastructure.errors import DataError

REPO = Path(__file__).resolve().parents[1]
F, HF, WF = 8, 32, 48
COARSE_VARS = ["t2m", "u10", "v10", "tcwv"]
FINE_VARS = ["t2m", "u10"]


def write_pair(tmp_path: Path, coarse_shape=(HF // F, WF // F), fine_store="nc", nan_at=None,
               nan_everywhere=False):
    """Coarse 4x6 (12 hourly times) and fine 32x48 (11 times, 10 shared) files."""
    rng = np.random.default_rng(0)
    coarse_times = pd.date_range("2021-01-01", periods=12, freq="h")
    fine_times = pd.date_range("2021-01-01 02:00", periods=11, freq="h")
    y, x = np.arange(HF), np.arange(WF)
    fine = xr.Dataset(
        {v: (("time", "y", "x"), rng.normal(280, 5, (11, HF, WF)).astype("f4")) for v in FINE_VARS}
        | {"orog": (("y", "x"), rng.uniform(0, 3000, (HF, WF)).astype("f4")),
           "lsm": (("y", "x"), (rng.uniform(size=(HF, WF)) > 0.5).astype("f4"))},
        coords={"time": fine_times,
                "lat": (("y", "x"), 30 + 0.1 * y[:, None] + 0.01 * x[None, :]),
                "lon": (("y", "x"), -100 + 0.12 * x[None, :] + 0.0 * y[:, None])},
    )
    if nan_at is not None and nan_everywhere:
        fine["t2m"][nan_at:] = np.nan
    elif nan_at is not None:
        fine["t2m"][nan_at, 3, 4] = np.nan
    coarse = xr.Dataset(
        {v: (("time", "lat", "lon"), rng.normal(0, 1, (12, *coarse_shape)).astype("f4"))
         for v in COARSE_VARS},
        coords={"time": coarse_times, "lat": np.arange(coarse_shape[0]) * 0.8 + 30.4,
                "lon": np.arange(coarse_shape[1]) * 0.96 - 99.5},
    )
    coarse_path = tmp_path / "coarse.nc"
    coarse.to_netcdf(coarse_path)
    fine_path = tmp_path / ("fine.zarr" if fine_store == "zarr" else "fine.nc")
    if fine_store == "zarr":
        fine.to_zarr(fine_path, mode="w", consolidated=False)
    else:
        fine.to_netcdf(fine_path)
    return coarse_path, fine_path, coarse, fine


def read_group(path: Path, group: str) -> dict[str, np.ndarray]:
    with netCDF4.Dataset(path) as nc:
        return {k: np.asarray(v[:]) for k, v in nc[group].variables.items()}


def test_round_trip_exact_windows(tmp_path):
    coarse_path, fine_path, coarse, fine = write_pair(tmp_path)
    out = tmp_path / "out"
    summary = convert(coarse_path, fine_path, "t2m,u10,v10,tcwv", ["t2m", "u10"], out, window=16,
                      stride=8, invariant_variables="orog,lsm", valid_fraction=0.2,
                      progress=False)
    assert summary["factor"] == F and summary["windows_per_time"] == 3 * 5
    assert (summary["train_samples"], summary["valid_samples"]) == (8 * 15, 2 * 15)
    common = fine.time.values[:10]  # 02:00 .. 11:00 exist in both
    seen = {}
    for split in ("train", "valid"):
        path = out / f"{split}.nc"
        with netCDF4.Dataset(path) as nc:
            times = netCDF4.num2date(nc["time"][:], nc["time"].units,
                                     only_use_cftime_datetimes=False)
            coords = np.asarray(nc["coord"][:])
            np.testing.assert_allclose(nc["lat"][:], fine.lat.values, rtol=1e-6)
            np.testing.assert_allclose(nc["lon"][:], fine.lon.values, rtol=1e-6)
        seen[split] = {pd.Timestamp(t) for t in times}
        inputs, outputs = read_group(path, "input"), read_group(path, "output")
        assert list(inputs) == COARSE_VARS and list(outputs) == FINE_VARS
        for i, (t, (r, c)) in enumerate(zip(times, coords, strict=True)):
            for v in FINE_VARS:
                src = fine[v].sel(time=t).values[r:r + 16, c:c + 16]
                np.testing.assert_array_equal(outputs[v][i], src)
            for v in COARSE_VARS:
                src = coarse[v].sel(time=t).values[r // F:r // F + 2, c // F:c // F + 2]
                np.testing.assert_array_equal(inputs[v][i], src)
        assert sorted({tuple(rc) for rc in coords}) == [(r, c) for r in (0, 8, 16)
                                                       for c in (0, 8, 16, 24, 32)]
    invariants = read_group(out / "train.nc", "invariant")
    np.testing.assert_array_equal(invariants["orog"], fine.orog.values)
    assert not seen["train"] & seen["valid"]
    assert seen["train"] | seen["valid"] == {pd.Timestamp(t) for t in common}
    assert min(seen["valid"]) > max(seen["train"])  # a contiguous final block

    stats = json.loads((out / "stats.json").read_text())
    for group in ("input", "output"):
        arrays = read_group(out / "train.nc", group)
        for v, a in arrays.items():
            a = a.astype(np.float64)
            assert stats[group][v]["mean"] == pytest.approx(a.mean(), rel=1e-9, abs=1e-9)
            assert stats[group][v]["std"] == pytest.approx(a.std(), rel=1e-7)
    assert stats["invariant"]["orog"]["mean"] == pytest.approx(fine.orog.values.mean(), rel=1e-6)


def test_readable_by_hrrrmini_dataset(tmp_path):
    hrrrmini = pytest.importorskip("datasets.hrrrmini")
    coarse_path, fine_path, coarse, fine = write_pair(tmp_path)
    out = tmp_path / "out"
    convert(coarse_path, fine_path, COARSE_VARS, FINE_VARS, out, window=16, stride=16,
            invariant_variables=["orog"], valid_fraction=0.3, progress=False)
    ds = hrrrmini.HRRRMiniDataset(out / "train.nc", out / "stats.json")
    assert [c.name for c in ds.input_channels()] == [*COARSE_VARS, "orog"]
    assert len(ds) == 7 * 6 and ds.image_shape() == (16, 16)
    for i in (0, 5, len(ds) - 1):
        img_clean, img_lr = ds[i]
        t, (r, c) = ds.time()[i], ds.coords()[i]
        target = np.stack([fine[v].sel(time=t).values[r:r + 16, c:c + 16] for v in FINE_VARS])
        np.testing.assert_allclose(ds.denormalize_output(img_clean), target, atol=1e-3)
        blocks = np.stack([coarse[v].sel(time=t).values[r // F:r // F + 2, c // F:c // F + 2]
                           for v in COARSE_VARS])
        physical = ds.denormalize_input(img_lr)
        np.testing.assert_allclose(physical[:4], upsample_bilinear(blocks, F), atol=1e-4)
        np.testing.assert_allclose(physical[4], fine.orog.values[r:r + 16, c:c + 16], atol=1e-3)


def test_cli_with_renaming_zarr_and_valid_start(tmp_path):
    coarse_path, fine_path, _, _ = write_pair(tmp_path, fine_store="zarr")
    out = tmp_path / "cli"
    cmd = [sys.executable, "-m", "datasets.convert", "--coarse", str(coarse_path), "--fine",
           str(fine_path), "--input-variables", "2t=t2m,tcwv", "--output-variables", "2t=t2m",
           "--out", str(out), "--window", "32", "--stride", "16", "--invariant-variables",
           "elev=orog", "--valid-start", "2021-01-01T09:00", "--no-progress"]
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "train.nc" in result.stderr and "samples" in result.stderr
    assert set(read_group(out / "train.nc", "input")) == {"2t", "tcwv"}
    assert set(read_group(out / "valid.nc", "output")) == {"2t"}
    assert set(read_group(out / "valid.nc", "invariant")) == {"elev"}
    with netCDF4.Dataset(out / "valid.nc") as nc:
        assert len(nc["time"]) == 3 * 2  # 09:00, 10:00, 11:00 x 2 windows
    stats = json.loads((out / "stats.json").read_text())
    assert set(stats["output"]) == {"2t"} and set(stats["invariant"]) == {"elev"}


def test_regrid_interpolates_to_block_centres(tmp_path):
    _, fine_path, _, fine = write_pair(tmp_path)
    lat = np.arange(36.0, 28.9, -0.7)  # descending, not aligned with the fine grid
    lon = np.arange(258.0, 267.01, 0.5)  # 0..360 convention; fine lon is negative
    field = 2.0 * lat[:, None] + 0.5 * lon[None, :]
    times = pd.date_range("2021-01-01", periods=12, freq="h")
    coarse = xr.Dataset({"z": (("time", "latitude", "longitude"),
                               np.repeat(field[None], 12, 0) + np.arange(12)[:, None, None])},
                        coords={"time": times, "latitude": lat, "longitude": lon})
    coarse.to_netcdf(tmp_path / "era5.nc")
    with pytest.raises(DataError, match=r"cannot tell the grid factor.*--regrid --factor F"):
        convert(tmp_path / "era5.nc", fine_path, "z", "t2m", tmp_path / "o", window=16,
                progress=False)
    with pytest.raises(DataError, match="needs --factor"):
        convert(tmp_path / "era5.nc", fine_path, "z", "t2m", tmp_path / "o", window=16,
                regrid=True, progress=False)
    coarse.isel(longitude=slice(0, 6)).to_netcdf(tmp_path / "small.nc")
    with pytest.raises(DataError, match=r"longitudes span .* must cover the fine domain"):
        convert(tmp_path / "small.nc", fine_path, "z", "t2m", tmp_path / "o", window=16,
                regrid=True, factor=F, progress=False)
    convert(tmp_path / "era5.nc", fine_path, "z", "t2m", tmp_path / "o", window=16, stride=16,
            regrid=True, factor=F, valid_fraction=0, progress=False)
    assert not (tmp_path / "o" / "valid.nc").exists()
    blocks = [v.reshape(4, F, 6, F).mean(axis=(1, 3)) for v in (fine.lat.values, fine.lon.values)]
    expected = 2.0 * blocks[0] + 0.5 * (blocks[1] % 360)
    z = read_group(tmp_path / "o" / "train.nc", "input")["z"]
    with netCDF4.Dataset(tmp_path / "o" / "train.nc") as nc:
        coords, hours = np.asarray(nc["coord"][:]), np.asarray(nc["time"][:])
    offset = hours - hours.min() + 2  # fine times start at 02:00
    for i, (r, c) in enumerate(coords):
        np.testing.assert_allclose(z[i], expected[r // F:r // F + 2, c // F:c // F + 2]
                                   + offset[i], rtol=1e-5)


def test_misaligned_coordinates_warn(tmp_path, caplog):
    coarse_path, fine_path, coarse, _ = write_pair(tmp_path)
    coarse.assign_coords(lat=coarse.lat + 5).to_netcdf(tmp_path / "shifted.nc")
    with caplog.at_level("WARNING"):
        convert(coarse_path, fine_path, "t2m", "t2m", tmp_path / "a", window=16, progress=False)
    assert "aligned" not in caplog.text
    with caplog.at_level("WARNING"):
        convert(tmp_path / "shifted.nc", fine_path, "t2m", "t2m", tmp_path / "b", window=16,
                progress=False)
    assert "may not be aligned" in caplog.text


def test_split_times():
    times = list(pd.date_range("2021-01-01", periods=10, freq="D").to_pydatetime())
    assert split_times(times, 0.25, None) == (list(range(7)), [7, 8, 9])
    assert split_times(times, None, "2021-01-09") == (list(range(8)), [8, 9])
    with pytest.raises(DataError, match="no training times"):
        split_times(times, None, "2020-12-01")


@pytest.mark.parametrize(
    "case, match",
    [
        ("missing_file", "does not exist"),
        ("missing_variable", r"'q2'.*not found.*t2m"),
        ("ratio", r"cannot tell the grid factor.*\(5, 6\).*--factor F.*--regrid"),
        ("no_common_times", "no common times"),
        ("window", "window 12x12 must be a positive multiple of the grid factor 8 in both "
                   "directions, e.g. 8x8"),
        ("invariant", r"'soil'.*not found"),
    ],
)
def test_bad_input_raises(tmp_path, case, match):
    coarse_path, fine_path, coarse, _ = write_pair(
        tmp_path, coarse_shape=(5, 6) if case == "ratio" else (4, 6))
    kwargs = dict(coarse=coarse_path, fine=fine_path, input_variables="t2m",
                  output_variables="t2m", out=tmp_path / "out", window=16, progress=False)
    if case == "missing_file":
        kwargs["coarse"] = tmp_path / "nope.nc"
    elif case == "missing_variable":
        kwargs["output_variables"] = "t2m,q2"
    elif case == "no_common_times":
        coarse.assign_coords(time=coarse.time + pd.Timedelta("30min")).to_netcdf(tmp_path / "c2.nc")
        kwargs["coarse"] = tmp_path / "c2.nc"
    elif case == "window":
        kwargs["window"] = 12
    elif case == "invariant":
        kwargs["invariant_variables"] = "soil"
    with pytest.raises(DataError, match=match):
        convert(**kwargs)
    assert not (tmp_path / "out").exists()  # not even an empty output folder


def test_cli_bad_input_exits_nonzero(tmp_path):
    coarse_path, fine_path, _, _ = write_pair(tmp_path)
    cmd = [sys.executable, "-m", "datasets.convert", "--coarse", str(coarse_path), "--fine",
           str(fine_path), "--input-variables", "t2m", "--output-variables", "nope",
           "--out", str(tmp_path / "o"), "--window", "16"]
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "'nope'" in result.stderr and "Traceback" not in result.stderr


def test_lat_lon_written_without_invariants(tmp_path):
    coarse_path, fine_path, _, fine = write_pair(tmp_path)
    out = tmp_path / "out"
    convert(coarse_path, fine_path, "t2m", ["t2m"], out, window=16, valid_fraction=0.2,
            progress=False)
    with netCDF4.Dataset(out / "train.nc") as nc:
        assert list(nc["invariant"].variables) == []
        np.testing.assert_allclose(nc["lat"][:], fine.lat.values, rtol=1e-6)


def test_failure_in_valid_split_keeps_previous_output(tmp_path):
    coarse_path, fine_path, _, _ = write_pair(tmp_path)
    out = tmp_path / "out"
    convert(coarse_path, fine_path, "t2m", ["t2m"], out, window=16, valid_fraction=0.2,
            progress=False)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    bad = tmp_path / "bad"
    bad.mkdir()
    # Fine times 8 and 9 (10:00 and 11:00, the valid split) are all missing: no valid window
    # can be kept.
    coarse_path, fine_path, _, _ = write_pair(bad, nan_at=8, nan_everywhere=True)
    with pytest.raises(DataError, match=r"valid split keeps none of its 12 windows.*--max-missing"):
        convert(coarse_path, fine_path, "t2m", ["t2m"], out, window=16, valid_fraction=0.2,
                progress=False)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
