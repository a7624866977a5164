import datetime
import pickle

import numpy as np
import pytest
import torch
import zarr

from datasets.base import ChannelMetadata
from datasets.cwb import DEFAULT_IN_CHANNELS, CWADataset
from datasets.registry import build_dataset
from helpers.infrastructure.errors import DataError
from tests.cwa_fixture import (
    CWB_CHANNELS,
    INVALID_CWB_TIME,
    INVALID_ERA5_CHANNEL,
    INVALID_ERA5_TIME,
    TIMES,
    write_cwa_zarr,
)

CROP = {"img_shape_y": 16, "img_shape_x": 12}  # non-square, so rows and columns cannot swap
TRAIN_TIMES = [0, 2, 3]  # 2020, minus the time with cwb_valid False
VALID_TIMES = [4, 6, 7]  # 2021, minus the time with one era5 channel invalid


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("cwa") / "cwa.zarr"
    return str(path), write_cwa_zarr(path)


def _zscore(values, center, scale):
    return (values - np.asarray(center)[:, None, None]) / np.asarray(scale)[:, None, None]


def test_shapes_channels_and_levels(store):
    path, _ = store
    ds = CWADataset(path, **CROP)
    assert len(ds) == 3
    assert ds.image_shape() == (16, 12)
    img_clean, img_lr = ds[0]
    assert img_clean.shape == (4, 16, 12) and img_lr.shape == (12, 16, 12)
    assert img_clean.dtype == np.float32 and img_lr.dtype == np.float32
    assert ds.output_channels() == [ChannelMetadata(n) for n in CWB_CHANNELS]
    channels = ds.input_channels()
    assert len(channels) == len(DEFAULT_IN_CHANNELS)
    assert channels[0] == ChannelMetadata("geopotential_height", "500")
    assert channels[2] == ChannelMetadata("geopotential_height", "850")
    assert channels[4] == ChannelMetadata("temperature", "500")
    assert channels[-1] == ChannelMetadata("total_column_water_vapour", "")
    assert channels[2].label == "geopotential_height850"


def test_times_decoded_and_invalid_times_skipped(store):
    path, _ = store
    assert CWADataset(path, **CROP).time() == [TIMES[t] for t in TRAIN_TIMES]
    assert CWADataset(path, train=False, **CROP).time() == [TIMES[t] for t in VALID_TIMES]
    every = CWADataset(path, all_times=True, **CROP).time()
    assert every == [TIMES[t] for t in sorted(TRAIN_TIMES + VALID_TIMES)]
    assert TIMES[INVALID_CWB_TIME] not in every and TIMES[INVALID_ERA5_TIME] not in every
    assert all(type(t) is datetime.datetime for t in every)
    # channel 7 is not an input, yet its invalid flag still drops the time
    assert INVALID_ERA5_CHANNEL not in DEFAULT_IN_CHANNELS


def test_values_are_the_stored_crop_normalized_with_v1(store):
    path, raw = store
    ds = CWADataset(path, in_channels=[19, 4, 17], out_channels=[3, 1], train=False, **CROP)
    img_clean, img_lr = ds[1]
    t = VALID_TIMES[1]
    expected_out = _zscore(raw["cwb"][t, [3, 1], :16, :12], raw["cwb_center"][[3, 1]],
                           raw["cwb_scale"][[3, 1]])
    expected_in = _zscore(raw["era5"][t, [19, 4, 17], :16, :12], raw["era5_center"][[19, 4, 17]],
                          raw["era5_scale"][[19, 4, 17]])
    np.testing.assert_allclose(img_clean, expected_out, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(img_lr, expected_in, rtol=1e-5, atol=1e-5)
    assert [c.name for c in ds.output_channels()] == ["northward_wind_10m", "temperature_2m"]
    np.testing.assert_array_equal(ds[-1][0], ds[2][0])


def test_v2_uses_fixed_statistics_for_reflectivity_and_10m_winds(store):
    path, raw = store
    v1 = CWADataset(path, normalization="v1", **CROP)
    v2 = CWADataset(path, normalization="v2", **CROP)
    clean_v1, lr_v1 = v1[0]
    clean_v2, lr_v2 = v2[0]
    target = raw["cwb"][TRAIN_TIMES[0], :, :16, :12]
    np.testing.assert_allclose(clean_v2[0], (target[0] - 25.0) / 25.0, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(clean_v2[2], target[2] / 20.0, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(clean_v2[3], target[3] / 20.0, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(clean_v2[1], clean_v1[1])  # 2 m temperature: stored stats
    np.testing.assert_array_equal(lr_v2, lr_v1)  # inputs are never changed by v2
    assert not np.allclose(clean_v2[0], clean_v1[0])


def test_v2_falls_back_to_published_channel_order_without_names(tmp_path):
    path = tmp_path / "nameless.zarr"
    raw = write_cwa_zarr(path, omit=("cwb_variable",))
    ds = CWADataset(str(path), normalization="v2", out_channels=[2, 0], **CROP)
    assert [c.name for c in ds.output_channels()] == ["cwb_2", "cwb_0"]
    clean, _ = ds[0]
    target = raw["cwb"][TRAIN_TIMES[0], :, :16, :12]
    np.testing.assert_allclose(clean[0], target[2] / 20.0, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(clean[1], (target[0] - 25.0) / 25.0, rtol=1e-5, atol=1e-5)


def test_normalisation_round_trip_numpy_and_torch(store):
    path, raw = store
    ds = CWADataset(path, normalization="v2", **CROP)
    img_clean, img_lr = ds[1]
    t = TRAIN_TIMES[1]
    np.testing.assert_allclose(ds.denormalize_output(img_clean), raw["cwb"][t, :, :16, :12],
                               rtol=1e-5, atol=1e-3)
    physical_in = ds.denormalize_input(img_lr)
    np.testing.assert_allclose(physical_in, raw["era5"][t, list(DEFAULT_IN_CHANNELS), :16, :12],
                               rtol=1e-5, atol=1e-2)
    np.testing.assert_allclose(ds.normalize_input(physical_in), img_lr, atol=1e-4)
    batch = torch.from_numpy(np.stack([img_clean, img_clean]))
    back = ds.normalize_output(ds.denormalize_output(batch))
    assert isinstance(back, torch.Tensor) and back.shape == (2, 4, 16, 12)
    torch.testing.assert_close(back, batch, atol=1e-5, rtol=1e-5)


def test_latitude_longitude_are_crops(store):
    path, raw = store
    ds = CWADataset(path, **CROP)
    np.testing.assert_allclose(ds.latitude(), raw["XLAT"][:16, :12], rtol=1e-6)
    np.testing.assert_allclose(ds.longitude(), raw["XLONG"][:16, :12], rtol=1e-6)
    assert ds.latitude().shape == ds.image_shape()


@pytest.mark.parametrize("string_dtype", ["str", "|S32"])  # variable-length UTF-8, bytes
def test_unconsolidated_store_other_name_encodings_and_int8_flags(tmp_path, string_dtype):
    path = tmp_path / "plain.zarr"
    write_cwa_zarr(path, consolidated=False, string_dtype=string_dtype, valid_dtype="int8")
    ds = CWADataset(str(path), all_times=True, **CROP)
    assert len(ds) == 6
    assert ds.output_channels()[0] == ChannelMetadata("maximum_radar_reflectivity")
    assert ds.input_channels()[1] == ChannelMetadata("geopotential_height", "700")


def test_pickled_dataset_reopens_the_store(store):
    path, _ = store
    ds = CWADataset(path, **CROP)
    ds[0]
    clone = pickle.loads(pickle.dumps(ds))
    assert ds._store.is_open() and not clone._store.is_open()
    np.testing.assert_array_equal(clone[2][1], ds[2][1])


def test_dataloader_workers_each_open_the_store(store):
    path, _ = store
    ds = CWADataset(path, **CROP)
    ds[0]  # the parent process now holds a handle the workers must not reuse
    loader = torch.utils.data.DataLoader(ds, batch_size=1, num_workers=2)
    batches = [clean for clean, _ in loader]
    assert len(batches) == 3
    np.testing.assert_array_equal(batches[2][0].numpy(), ds[2][0])


def test_built_through_the_registry(store):
    path, _ = store
    ds = build_dataset({"type": "cwb", "data_path": path, "in_channels": [0, 1],
                        "out_channels": [1], "train": False, **CROP})
    assert isinstance(ds, CWADataset)
    assert ds[0][0].shape == (1, 16, 12) and ds[0][1].shape == (2, 16, 12)
    assert ds.time() == [TIMES[t] for t in VALID_TIMES]


@pytest.mark.parametrize(
    ("options", "fragments"),
    [
        ({"in_channels": [0, 20]}, ["in_channels", "20", "0..19", "19=total_column_water_vapour"]),
        ({"out_channels": [4]}, ["out_channels", "0..3", "0=maximum_radar_reflectivity"]),
        ({"out_channels": []}, ["out_channels", "empty"]),
        ({"img_shape_y": 21}, ["21 x 12", "20 x 22"]),
        ({"img_shape_x": 23}, ["16 x 23", "20 x 22"]),
        ({"normalization": "v3"}, ["'v3'", "v1", "v2"]),
    ],
)
def test_bad_options_are_explained(store, options, fragments):
    path, _ = store
    with pytest.raises(DataError) as err:
        CWADataset(path, **{**CROP, **options})
    for fragment in fragments:
        assert fragment in str(err.value)


def test_missing_path(tmp_path):
    with pytest.raises(DataError, match=r"data_path .*nowhere\.zarr.* does not exist"):
        CWADataset(str(tmp_path / "nowhere.zarr"))


def test_not_a_zarr_store(tmp_path):
    with pytest.raises(DataError, match="not a readable zarr group"):
        CWADataset(str(tmp_path))


def test_missing_array_is_named_with_the_store_contents(tmp_path):
    path = tmp_path / "partial.zarr"
    write_cwa_zarr(path, omit=("era5_scale",))
    with pytest.raises(DataError) as err:
        CWADataset(str(path), **CROP)
    message = str(err.value)
    assert "['era5_scale']" in message and "'era5_center'" in message and "'cwb'" in message


def test_no_times_left(tmp_path):
    path = tmp_path / "invalid.zarr"
    write_cwa_zarr(path)
    flags = zarr.open_group(path, mode="r+")["cwb_valid"]
    flags[4:] = False
    with pytest.raises(DataError, match=r"no times left: 3 of 8 .*year 2021 \(train=False\)"):
        CWADataset(str(path), train=False, **CROP)


def test_nan_in_a_served_sample_names_array_and_time(tmp_path):
    path = tmp_path / "nan.zarr"
    write_cwa_zarr(path)
    zarr.open_group(path, mode="r+")["era5"][TRAIN_TIMES[1], 17, 3, 4] = np.nan
    ds = CWADataset(str(path), **CROP)
    ds[0]
    with pytest.raises(DataError) as err:
        ds[1]
    message = str(err.value)
    assert "'era5'" in message and f"time index {TRAIN_TIMES[1]}" in message
    assert "2020-08-20T12:00" in message and "eastward_wind_10m" in message
