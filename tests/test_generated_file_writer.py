"""The generation output file: layout, round trip, atomic progressive writing and resume."""

from __future__ import annotations

import datetime
import logging

import netCDF4
import numpy as np
import pytest
import xarray as xr

from datasets.base import ChannelMetadata
from datasets.variable_metadata import describe
from inference.generated_file import EnsembleWriter

H, W, M = 6, 8, 3
TIMES = [datetime.datetime(2023, 7, 1) + datetime.timedelta(hours=h) for h in range(4)]
INPUTS = [ChannelMetadata("10u"), ChannelMetadata("temperature", "850"),
          ChannelMetadata("elev_mean", auxiliary=True)]
OUTPUTS = [ChannelMetadata("2t"), ChannelMetadata("mystery")]


def fields(t: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Deterministic (inputs, truth, prediction) for time index ``t``."""
    rng = np.random.default_rng(t)
    inputs = rng.normal(size=(len(INPUTS), H, W)).astype(np.float32)
    truth = rng.normal(size=(len(OUTPUTS), H, W)).astype(np.float32)
    prediction = rng.normal(size=(M, len(OUTPUTS), H, W)).astype(np.float32)
    prediction[0, 0, 0, 0] = np.nan  # NaN is data, not an error
    return inputs, truth, prediction


def make_writer(path, resume=False, **overrides) -> EnsembleWriter:
    lat, lon = np.meshgrid(np.linspace(20, 25, H), np.linspace(120, 122, W), indexing="ij")
    kwargs = dict(times=TIMES, num_ensembles=M, latitude=lat, longitude=lon,
                  input_channels=INPUTS, output_channels=OUTPUTS,
                  attributes={"config": "a: 1\nb: [2, 3]\n", "checkpoint": "/x/y.mdlus"},
                  resume=resume)
    kwargs.update(overrides)
    return EnsembleWriter(path, **kwargs)


def progress(nc: netCDF4.Dataset) -> np.ndarray:
    """The resume flags, where the field's tools never look."""
    return nc["generation_progress"]["sample_complete"][:]


def write(writer: EnsembleWriter, indices) -> None:
    for t in indices:
        writer.write_time(t, *fields(t))


@pytest.fixture
def complete_file(tmp_path):
    path = tmp_path / "out" / "gen.nc"  # parent directory does not exist yet
    with make_writer(path) as writer:
        write(writer, range(len(TIMES)))
    return path


def test_layout_and_attributes(complete_file):
    with netCDF4.Dataset(complete_file) as nc:
        # The reference layout: the root holds only time, lat and lon; the field groups only
        # fields; ensemble is the prediction group's own dimension; bookkeeping sits apart.
        assert {d: len(v) for d, v in nc.dimensions.items()} == {"time": 4, "y": H, "x": W}
        assert set(nc.variables) == {"time", "lat", "lon"}
        assert set(nc.groups) == {"input", "truth", "prediction", "generation_progress"}
        assert {d: len(v) for d, v in nc["prediction"].dimensions.items()} == {"ensemble": M}
        for group in ("input", "truth", "prediction"):
            assert set(nc[group].variables) == {c.label for c in (
                INPUTS if group == "input" else OUTPUTS)}
        assert nc.Conventions == "CF-1.8" and nc.title and nc.created
        assert nc.config == "a: 1\nb: [2, 3]\n" and nc.checkpoint == "/x/y.mdlus"
        assert nc["lat"].standard_name == "latitude" and nc["lat"].units == "degrees_north"
        assert nc["lon"].standard_name == "longitude" and nc["lon"].units == "degrees_east"
        assert nc["time"].calendar == "standard" and nc["time"].dtype == np.float64
        decoded = netCDF4.num2date(nc["time"][:], nc["time"].units, nc["time"].calendar,
                                   only_use_cftime_datetimes=False)
        assert list(decoded) == TIMES
        assert list(progress(nc)) == [1, 1, 1, 1]
        assert list(nc["input"].variables) == ["10u", "temperature850", "elev_mean"]
        assert nc["input"]["10u"].dimensions == ("time", "y", "x")
        assert nc["prediction"]["2t"].dimensions == ("ensemble", "time", "y", "x")
        assert nc["prediction"]["2t"].dtype == np.float32
        assert nc["input"]["elev_mean"].auxiliary == 1
        assert "auxiliary" not in nc["input"]["10u"].ncattrs()
        assert nc["input"]["temperature850"].long_name == "temperature at 850 hPa"
        assert nc["input"]["temperature850"].units == "K"
        assert nc["truth"]["2t"].units == "K"
        assert "units" not in nc["truth"]["mystery"].ncattrs()  # unknown: no made-up units
        filters = nc["prediction"]["2t"].filters()
        assert filters["zlib"] and filters["complevel"] == 4
        assert nc["prediction"]["2t"].chunking() == [1, 1, H, W]


def test_xarray_opens_groups_and_values_round_trip(complete_file):
    with xr.open_dataset(complete_file) as root:
        assert list(root["time"].values.astype("datetime64[us]").tolist()) == TIMES
        assert root["lat"].attrs["standard_name"] == "latitude"
    opened = {g: xr.open_dataset(complete_file, group=g) for g in ("input", "truth", "prediction")}
    try:
        assert opened["prediction"]["2t"].dims == ("ensemble", "time", "y", "x")
        assert opened["prediction"]["2t"].dtype == np.float32
        for t in range(len(TIMES)):
            inputs, truth, prediction = fields(t)
            for c, ch in enumerate(INPUTS):
                np.testing.assert_array_equal(opened["input"][ch.label][t].values, inputs[c])
            for c, ch in enumerate(OUTPUTS):
                np.testing.assert_array_equal(opened["truth"][ch.label][t].values, truth[c])
                np.testing.assert_array_equal(
                    opened["prediction"][ch.label][:, t].values, prediction[:, c])
    finally:
        for ds in opened.values():
            ds.close()


def test_progressive_writing_renames_only_at_the_end(tmp_path):
    path = tmp_path / "gen.nc"
    partial = tmp_path / "gen.nc.partial"
    with make_writer(path) as writer:
        for t in range(len(TIMES)):
            write(writer, [t])
            assert partial.exists() and not path.exists()
            assert writer.completed == set(range(t + 1))
    assert path.exists() and not partial.exists()


def test_interruption_leaves_only_a_partial_file_then_resume_finishes(tmp_path):
    path = tmp_path / "gen.nc"
    partial = tmp_path / "gen.nc.partial"
    with pytest.raises(KeyboardInterrupt), make_writer(path) as writer:
        write(writer, [0, 1])
        raise KeyboardInterrupt
    assert not path.exists()
    with netCDF4.Dataset(partial) as nc:
        assert list(progress(nc)) == [1, 1, 0, 0]

    writer = make_writer(path, resume=True)
    assert writer.completed == {0, 1}
    with writer:
        write(writer, [t for t in range(len(TIMES)) if t not in writer.completed])
    assert path.exists() and not partial.exists()
    with xr.open_dataset(path, group="prediction") as ds:
        for t in range(len(TIMES)):
            np.testing.assert_array_equal(ds["2t"][:, t].values, fields(t)[2][:, 0])
    with netCDF4.Dataset(path) as nc:
        assert "resumed" in nc.history
        assert list(progress(nc)) == [1, 1, 1, 1]


def test_resume_of_a_finished_file_has_nothing_to_do(complete_file):
    before = complete_file.stat().st_mtime_ns
    with make_writer(complete_file, resume=True) as writer:
        assert writer.completed == set(range(len(TIMES)))
        with pytest.raises(RuntimeError, match="already complete"):
            write(writer, [0])
    assert complete_file.stat().st_mtime_ns == before


def test_resume_without_any_file_starts_fresh(tmp_path):
    writer = make_writer(tmp_path / "gen.nc", resume=True)
    assert writer.completed == set()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"num_ensembles": M + 1}, "ensemble size"),
        ({"times": TIMES[:3]}, "times"),
        ({"output_channels": OUTPUTS[:1]}, "truth channels"),
        ({"latitude": np.zeros((H, W + 1)), "longitude": np.zeros((H, W + 1))}, "grid shape"),
    ],
)
def test_resume_mismatch_is_a_clear_error(tmp_path, overrides, message):
    path = tmp_path / "gen.nc"
    with pytest.raises(KeyboardInterrupt), make_writer(path) as writer:
        write(writer, [0])
        raise KeyboardInterrupt
    with pytest.raises(ValueError, match=message) as err:
        make_writer(path, resume=True, **overrides)
    assert "resume=false" in str(err.value) and "delete" in str(err.value)
    # Without resume the stale partial file is simply replaced.
    assert make_writer(path, resume=False, **overrides).completed == set()


def test_unreadable_partial_file_is_a_clear_error(tmp_path):
    (tmp_path / "gen.nc.partial").write_bytes(b"killed while creating the file")
    with pytest.raises(ValueError, match=r"not a readable output file.*resume=false"):
        make_writer(tmp_path / "gen.nc", resume=True)


def test_overwrite_keeps_the_old_file_until_the_new_one_is_complete(complete_file):
    with pytest.raises(KeyboardInterrupt), make_writer(complete_file) as writer:
        writer.write_time(0, *(np.zeros_like(a) for a in fields(0)))
        raise KeyboardInterrupt
    with xr.open_dataset(complete_file, group="truth") as ds:  # old file, intact
        np.testing.assert_array_equal(ds["2t"][0].values, fields(0)[1][0])


def test_shape_errors(tmp_path):
    inputs, truth, prediction = fields(0)
    with make_writer(tmp_path / "gen.nc") as writer:
        with pytest.raises(ValueError, match="inputs: expected shape"):
            writer.write_time(0, inputs[:2], truth, prediction)
        with pytest.raises(ValueError, match="truth: expected shape"):
            writer.write_time(0, inputs, truth[:, :, :-1], prediction)
        with pytest.raises(ValueError, match="prediction: expected shape"):
            writer.write_time(0, inputs, truth, prediction[:2])
        with pytest.raises(ValueError, match="out of range"):
            writer.write_time(len(TIMES), inputs, truth, prediction)
        assert writer.completed == set()
    with pytest.raises(ValueError, match="2-D"):
        make_writer(tmp_path / "x.nc", latitude=np.zeros(H))
    with pytest.raises(ValueError, match="invalid or duplicated"):
        make_writer(tmp_path / "x.nc", output_channels=[ChannelMetadata("2t")] * 2)


def test_missing_truth_nan_latlon_and_rewrite(tmp_path, caplog):
    path = tmp_path / "gen.nc"
    nan_grid = np.full((H, W), np.nan, dtype=np.float32)
    with make_writer(path, latitude=nan_grid, longitude=nan_grid) as writer:
        for t in range(len(TIMES)):
            inputs, _, prediction = fields(t)
            writer.write_time(t, inputs, None, prediction)
        writer.write_time(1, *fields(1))  # writing a time twice overwrites it
    with xr.open_dataset(path, group="truth") as ds:
        assert np.isnan(ds["2t"][0].values).all()
        np.testing.assert_array_equal(ds["2t"][1].values, fields(1)[1][0])
    with xr.open_dataset(path) as root:
        assert np.isnan(root["lat"].values).all() and root["lat"].shape == (H, W)

    # Leaving the block before every time is written keeps the partial file and says so.
    with caplog.at_level(logging.WARNING), make_writer(tmp_path / "b.nc") as writer:
        write(writer, [0])
    assert not (tmp_path / "b.nc").exists() and (tmp_path / "b.nc.partial").exists()
    assert "resume=true" in caplog.text


def test_writer_holds_no_data_between_times(tmp_path):
    """Every call goes straight to disk: the writer keeps no arrays, only the open handle."""
    with make_writer(tmp_path / "gen.nc") as writer:
        write(writer, [0, 1])
        held = [k for k, v in vars(writer).items()
                if isinstance(v, np.ndarray) and k not in ("latitude", "longitude")]
        assert held == []
        # HDF5's default 64 MiB per-variable chunk cache would keep finished fields in memory.
        assert writer._nc["prediction"]["2t"].get_var_chunk_cache()[0] == 0
        with netCDF4.Dataset(writer.partial_path) as nc:  # already readable by others
            assert list(progress(nc)) == [1, 1, 0, 0]


def test_sub_hourly_times_decode_exactly(tmp_path):
    times = [datetime.datetime(2020, 1, 1, 0, 10), datetime.datetime(2020, 1, 1, 0, 20)]
    path = tmp_path / "gen.nc"
    with make_writer(path, times=times) as writer:
        write(writer, [0, 1])
    with xr.open_dataset(path) as root:
        assert root["time"].values.astype("datetime64[us]").tolist() == times
        assert root["time"].encoding["units"].startswith("minutes since 1990-01-01")


def test_describe():
    assert describe("10u") == {"units": "m s-1", "long_name": "10 m eastward wind",
                               "standard_name": "eastward_wind"}
    assert describe("temperature850") == describe("temperature", "850")
    assert describe("geopotential_height", "500")["long_name"] == "geopotential height at 500 hPa"
    assert describe("maximum_radar_reflectivity")["units"] == "dBZ"
    assert describe("tp")["units"] == "mm h-1"
    assert describe("foo") == {"long_name": "foo"}


def window_grid(k: int) -> tuple[np.ndarray, np.ndarray]:
    """Sample ``k``'s own grid: windows of a larger domain sit at different places."""
    lat, lon = np.meshgrid(np.linspace(20, 25, H) + k, np.linspace(120, 122, W), indexing="ij")
    return lat, lon


def test_windows_at_repeated_times_each_keep_their_own_grid(tmp_path):
    times = [TIMES[0], TIMES[0], TIMES[1], TIMES[1]]  # two windows per valid time
    path = tmp_path / "windows.nc"
    with make_writer(path, times=times, latitude=None, longitude=None,
                     sample_grid=window_grid) as writer:
        assert writer.sample_dim == "sample"
        write(writer, range(4))
    with netCDF4.Dataset(path) as nc:
        assert {d: len(v) for d, v in nc.dimensions.items()} == {"sample": 4, "y": H, "x": W}
        assert set(nc.variables) == {"time", "lat", "lon"}
        assert nc["lat"].dimensions == ("sample", "y", "x")
        assert nc["prediction"]["2t"].dimensions == ("ensemble", "sample", "y", "x")
        assert nc["truth"]["2t"].coordinates == "time lat lon"
    with xr.open_dataset(path) as root:
        assert root["time"].dims == ("sample",)
        assert root["time"].values.astype("datetime64[us]").tolist() == times
        for k in range(4):
            np.testing.assert_array_equal(root["lat"].values[k], window_grid(k)[0])
    with xr.open_dataset(path, group="prediction") as ds:
        np.testing.assert_array_equal(ds["2t"][:, 3].values, fields(3)[2][:, 0])


def test_repeated_times_on_one_grid_and_resume_of_windows(tmp_path):
    times = [TIMES[0], TIMES[0], TIMES[1]]
    with make_writer(tmp_path / "one.nc", times=times) as writer:
        assert writer.sample_dim == "sample"
        write(writer, range(3))
    with xr.open_dataset(tmp_path / "one.nc") as root:
        assert root["lat"].dims == ("y", "x")
    path = tmp_path / "windows.nc"
    options = dict(times=times, latitude=None, longitude=None, sample_grid=window_grid)
    with pytest.raises(KeyboardInterrupt), make_writer(path, **options) as writer:
        write(writer, [0, 1])
        raise KeyboardInterrupt
    resumed = make_writer(path, resume=True, **options)
    assert resumed.completed == {0, 1}
    with resumed:
        write(resumed, [2])
    assert path.exists()
    moved = dict(options, sample_grid=lambda k: window_grid(k + 1))
    with pytest.raises(KeyboardInterrupt), make_writer(path, **options) as writer:
        write(writer, [0])
        raise KeyboardInterrupt
    with pytest.raises(ValueError, match="lat/lon differ"):
        make_writer(path, resume=True, **moved)


def test_time_encoding_takes_the_coarsest_exact_unit_and_decodes_back():
    from helpers.infrastructure.cf_time import decode_times
    from inference.generated_file.layout import encode_times

    cases = {
        "hours": [datetime.datetime(2021, 1, 1, 3), datetime.datetime(2021, 1, 2, 0)],
        "minutes": [datetime.datetime(2021, 1, 1, 3), datetime.datetime(2021, 1, 1, 4, 30)],
        "seconds": [datetime.datetime(2021, 1, 1, 3, 0, 7), datetime.datetime(2021, 1, 1, 3)],
    }
    for unit, times in cases.items():
        values, units = encode_times(times)
        assert units == f"{unit} since 1990-01-01 00:00:00"
        assert values.dtype == np.float64 and np.array_equal(values, np.round(values))
        assert decode_times(values, units, "standard") == times
    values, units = encode_times([datetime.datetime(1989, 12, 31, 23)])  # before the reference
    assert (values.tolist(), units) == ([-1.0], "hours since 1990-01-01 00:00:00")
