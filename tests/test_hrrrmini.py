import datetime
import json

import netCDF4
import numpy as np
import pytest
import torch

from datasets.base import ChannelMetadata
from datasets.hrrrmini import HRRRMiniDataset
from datasets.interpolation import upsample_bilinear
from helpers.infrastructure.errors import DataError
from tests.conftest import mark_missing_values, write_hrrr_mini


def _zscore(values, stats):
    return (values - stats["mean"]) / stats["std"]


def test_sample_shapes_metadata_and_times(hrrr_mini_files):
    data_path, stats_path, raw = hrrr_mini_files
    ds = HRRRMiniDataset(str(data_path), str(stats_path))
    assert len(ds) == 6
    assert ds.image_shape() == (16, 16)
    assert ds.upsample_factor == 4
    assert ds.input_channels() == [
        ChannelMetadata("10u"), ChannelMetadata("2t"), ChannelMetadata("tcwv"),
        ChannelMetadata("elev_mean", auxiliary=True), ChannelMetadata("lsm_mean", auxiliary=True),
    ]
    assert [c.name for c in ds.output_channels()] == ["10u", "2t"]
    assert ds.time() == raw["times"]
    img_clean, img_lr = ds[2]
    assert img_clean.shape == (2, 16, 16) and img_lr.shape == (5, 16, 16)
    assert img_clean.dtype == np.float32 and img_lr.dtype == np.float32


def test_sample_values_are_normalized_upsampled_input_and_invariant_crop(hrrr_mini_files):
    data_path, stats_path, raw = hrrr_mini_files
    ds = HRRRMiniDataset(str(data_path), str(stats_path))
    stats = raw["stats"]
    idx = 4
    img_clean, img_lr = ds[idx]
    expected_out = _zscore(raw["output"]["2t"][idx], stats["output"]["2t"])
    np.testing.assert_allclose(img_clean[1], expected_out, rtol=1e-5, atol=1e-5)
    expected_in = _zscore(upsample_bilinear(raw["input"]["tcwv"][idx], 4), stats["input"]["tcwv"])
    np.testing.assert_allclose(img_lr[2], expected_in, rtol=1e-4, atol=1e-4)
    row, col = raw["coords"][idx]
    crop = raw["invariant"]["elev_mean"][row:row + 16, col:col + 16]
    np.testing.assert_allclose(
        img_lr[3], _zscore(crop, stats["invariant"]["elev_mean"]), rtol=1e-4, atol=1e-4
    )
    assert abs(stats["output"]["2t"]["mean"] - raw["output"]["2t"].mean()) < 1e-6 * 280
    assert stats["output"]["2t"]["std"] == pytest.approx(raw["output"]["2t"].std(), rel=1e-5)


def test_normalisation_round_trip_numpy_and_torch(hrrr_mini_files):
    data_path, stats_path, raw = hrrr_mini_files
    ds = HRRRMiniDataset(str(data_path), str(stats_path))
    img_clean, img_lr = ds[0]
    physical = ds.denormalize_output(img_clean)
    np.testing.assert_allclose(physical[0], raw["output"]["10u"][0], rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(ds.normalize_output(physical), img_clean, atol=1e-5)
    batch = torch.from_numpy(np.stack([img_lr, img_lr]))
    round_trip = ds.normalize_input(ds.denormalize_input(batch))
    assert isinstance(round_trip, torch.Tensor)
    torch.testing.assert_close(round_trip, batch, atol=1e-4, rtol=1e-4)


def test_variable_selection_and_order(hrrr_mini_files):
    data_path, stats_path, raw = hrrr_mini_files
    ds = HRRRMiniDataset(
        str(data_path), str(stats_path), input_variables=["tcwv", "10u"],
        output_variables=["2t"], invariant_variables=["lsm_mean"],
    )
    assert [c.name for c in ds.input_channels()] == ["tcwv", "10u", "lsm_mean"]
    img_clean, img_lr = ds[1]
    assert img_clean.shape == (1, 16, 16) and img_lr.shape == (3, 16, 16)
    np.testing.assert_allclose(
        ds.denormalize_input(img_lr)[0], upsample_bilinear(raw["input"]["tcwv"][1], 4), rtol=1e-4
    )


def test_lat_lon_crop_for_a_fixed_window(tmp_path):
    data_path, stats_path, raw = write_hrrr_mini(tmp_path, same_coord=True)
    ds = HRRRMiniDataset(str(data_path), str(stats_path))
    row, col = raw["coords"][0]
    np.testing.assert_allclose(ds.latitude(), raw["lat"][row:row + 16, col:col + 16], rtol=1e-6)
    np.testing.assert_allclose(ds.longitude(), raw["lon"][row:row + 16, col:col + 16], rtol=1e-6)


def test_lat_lon_nan_without_coordinates_or_with_moving_windows(tmp_path):
    data_path, stats_path, _ = write_hrrr_mini(tmp_path, with_latlon=False)
    ds = HRRRMiniDataset(str(data_path), str(stats_path))
    assert ds.latitude().shape == (16, 16) and np.isnan(ds.latitude()).all()
    moving = tmp_path / "moving"
    moving.mkdir()
    data_path, stats_path, raw = write_hrrr_mini(moving)
    assert len({tuple(c) for c in raw["coords"]}) > 1
    assert np.isnan(HRRRMiniDataset(str(data_path), str(stats_path)).longitude()).all()


def test_works_in_dataloader_workers(hrrr_mini_files):
    data_path, stats_path, _ = hrrr_mini_files
    ds = HRRRMiniDataset(str(data_path), str(stats_path))
    ds[0]  # open a handle in this process first: workers must not reuse it
    loader = torch.utils.data.DataLoader(ds, batch_size=3, num_workers=2)
    batches = list(loader)
    assert [tuple(b[0].shape) for b in batches] == [(3, 2, 16, 16)] * 2
    torch.testing.assert_close(batches[1][1][0], torch.from_numpy(ds[3][1]))


# ------------------------------------------------------------------------------- bad input
def test_missing_files(tmp_path, hrrr_mini_files):
    data_path, stats_path, _ = hrrr_mini_files
    with pytest.raises(DataError, match=r"dataset.data_path .*nope.nc.* does not exist"):
        HRRRMiniDataset(str(tmp_path / "nope.nc"), str(stats_path))
    with pytest.raises(DataError, match=r"dataset.stats_path .*missing.json.* does not exist"):
        HRRRMiniDataset(str(data_path), str(tmp_path / "missing.json"))


def test_not_a_netcdf_file(tmp_path, hrrr_mini_files):
    _, stats_path, _ = hrrr_mini_files
    bogus = tmp_path / "bogus.nc"
    bogus.write_text("not netcdf")
    with pytest.raises(DataError, match="not a readable NetCDF4 file"):
        HRRRMiniDataset(str(bogus), str(stats_path))


def test_unknown_variable_lists_available(hrrr_mini_files):
    data_path, stats_path, _ = hrrr_mini_files
    with pytest.raises(DataError, match=r"output variable\(s\) \['tp'\] not found.*'10u', '2t'"):
        HRRRMiniDataset(str(data_path), str(stats_path), output_variables=["tp"])


def test_stats_missing_a_variable(hrrr_mini_files):
    data_path, stats_path, _ = hrrr_mini_files
    stats = json.loads(stats_path.read_text())
    del stats["input"]["tcwv"]
    stats_path.write_text(json.dumps(stats))
    with pytest.raises(DataError, match=r"no statistics for input variable\(s\) \['tcwv'\]"):
        HRRRMiniDataset(str(data_path), str(stats_path))


def test_stats_with_zero_std(hrrr_mini_files):
    data_path, stats_path, _ = hrrr_mini_files
    stats = json.loads(stats_path.read_text())
    stats["output"]["2t"]["std"] = 0.0
    stats_path.write_text(json.dumps(stats))
    with pytest.raises(DataError, match="not a positive number"):
        HRRRMiniDataset(str(data_path), str(stats_path))


def test_missing_group(hrrr_mini_files):
    data_path, stats_path, _ = hrrr_mini_files
    with netCDF4.Dataset(data_path, "a") as nc:
        nc.renameGroup("output", "outputs")
    with pytest.raises(DataError, match="has no group 'output'"):
        HRRRMiniDataset(str(data_path), str(stats_path))


def test_nan_in_a_sample_names_variable_and_time(hrrr_mini_files):
    data_path, stats_path, _ = hrrr_mini_files
    with netCDF4.Dataset(data_path, "a") as nc:
        nc["input"]["2t"][3, 0, 0] = np.nan
    ds = HRRRMiniDataset(str(data_path), str(stats_path))
    ds[2]  # other samples are still served
    with pytest.raises(DataError, match=r"input variable\(s\) \['2t'\].*sample 3.*2021-01-01T09"
                                        r".*--max-missing"):
        ds[3]


def test_missing_values_marked_in_stats_are_masked(hrrr_mini_files):
    data_path, stats_path, raw = hrrr_mini_files
    mark_missing_values(data_path, stats_path)
    stats = json.loads(stats_path.read_text())
    ds = HRRRMiniDataset(str(data_path), str(stats_path))
    labels = [c.label for c in ds.input_channels()]
    assert labels == ["10u", "2t", "tcwv", "2t_valid", "elev_mean", "lsm_mean"]
    assert ds.has_missing_outputs()
    img_clean, img_lr = ds[3]
    assert np.isnan(img_clean[0, :4]).all() and np.isfinite(img_clean[0, 4:]).all()
    assert np.isfinite(img_lr).all()
    assert (img_lr[3, :4, :4] == 0).all() and (img_lr[3, 4:] == 1).all()  # factor 4 block
    # The missing cell is filled with the value that normalizes to 0 (the training mean).
    coarse = raw["input"]["2t"][3].copy()
    coarse[0, 0] = stats["input"]["2t"]["mean"]
    expected = (upsample_bilinear(coarse, 4) - stats["input"]["2t"]["mean"]) / stats["input"][
        "2t"]["std"]
    np.testing.assert_allclose(img_lr[1], expected, atol=1e-4)
    physical = ds.denormalize_input(img_lr)
    assert np.isnan(physical[1, :4, :4]).all() and np.isfinite(physical[1, 4:]).all()
    assert np.isfinite(ds[2][1]).all() and (ds[2][1][3] == 1).all()


def test_coord_out_of_bounds(hrrr_mini_files):
    data_path, stats_path, _ = hrrr_mini_files
    with netCDF4.Dataset(data_path, "a") as nc:
        nc["coord"][1] = [20, 0]  # a 16-row window at row 20 overruns the 24-row grid
    with pytest.raises(DataError, match=r"coord of sample 1 is \[20, 0\].*does not fit the 24x32"):
        HRRRMiniDataset(str(data_path), str(stats_path))


def test_mismatched_shapes(tmp_path):
    data_path, stats_path, _ = write_hrrr_mini(tmp_path)
    with netCDF4.Dataset(data_path, "a") as nc:
        group = nc["output"]
        group.createDimension("y_odd", 15)
        group.createVariable("tp", "f4", ("time", "y_odd", "x_output"))
    with pytest.raises(DataError, match="must all be shaped"):
        HRRRMiniDataset(str(data_path), str(stats_path))


def test_read_times_without_building_a_dataset(hrrr_mini_files, tmp_path):
    from datasets.hrrrmini_format import read_times

    data_path, _, raw = hrrr_mini_files
    (tmp_path / "stats.json").unlink()  # no statistics needed to list the times
    assert read_times(data_path) == raw["times"]


def test_writer_renames_into_place_only_when_the_block_succeeds(tmp_path):
    from datasets.hrrrmini_format import HRRRMiniWriter

    def write(path, fail: bool) -> None:
        with HRRRMiniWriter(path, (2, 2), (8, 8), ["2t"], ["2t"], {}) as writer:
            writer.append([datetime.datetime(2021, 1, 1)], np.zeros((1, 2), int),
                          {"2t": np.ones((1, 2, 2))}, {"2t": np.ones((1, 8, 8))})
            if fail:
                raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError, match="interrupted"):
        write(tmp_path / "a.nc", fail=True)
    assert list(tmp_path.iterdir()) == []  # neither the file nor its temporary
    write(tmp_path / "b.nc", fail=False)
    assert [p.name for p in tmp_path.iterdir()] == ["b.nc"]
    with netCDF4.Dataset(tmp_path / "b.nc") as nc:
        assert nc["output"]["2t"].shape == (1, 8, 8)
