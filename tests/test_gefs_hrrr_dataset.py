"""The gefs_hrrr datapipe on stores with the published layout's awkward properties."""

from __future__ import annotations

import datetime

import numpy as np
import pytest
import xarray as xr
from omegaconf import OmegaConf

from datasets.gefs_hrrr import GEFSHRRRDataset, parse_key
from datasets.interpolation import upsample_bilinear
from datasets.registry import build_dataset
from helpers.infrastructure.errors import DataError, DatasetConfigError
from tests.gefs_hrrr_fixtures import write_gefs_hrrr_fixture

SURFACE = ["u10m", "t2m", "msl"]
ISOBARIC = ["z200", "t100", "r850", "u500"]
OUTPUTS = ["u10m", "t2m", "precip", "cat_snow", "cat_ice", "cat_freez", "cat_rain", "cat_none"]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    path = tmp_path_factory.mktemp("gefs_hrrr_data")
    write_gefs_hrrr_fixture(path, years=(2021, 2022), inits_per_store=2, lead_hours=(0, 3, 6),
                            hrrr_shape=(20, 36))
    return path


def make(root, **options) -> GEFSHRRRDataset:
    settings = dict(data_path=str(root), stats_path=str(root / "stats.json"),
                    input_surface_variables=SURFACE, input_isobaric_variables=ISOBARIC,
                    output_variables=OUTPUTS, train_years=[2021], valid_years=[2022],
                    lead_hours=[0, 3, 6], hrrr_window=[[2, 18], [2, 34]])
    settings.update(options)
    return GEFSHRRRDataset(**settings)


def test_samples_are_the_stored_keys_with_lead_labels(root):
    ds = make(root)
    assert len(ds) == 12  # two half-year stores x 2 inits x 3 leads
    assert ds.sample_keys()[:4] == ["2021010100f00", "2021010100f03", "2021010100f06",
                                    "2021010106f00"]
    assert ds.time()[:3] == [datetime.datetime(2021, 1, 1, h) for h in (0, 3, 6)]
    assert ds.lead_time_hours() == [0, 3, 6]
    assert [ds.lead_time_label(i) for i in range(4)] == [0, 1, 2, 0]
    img_clean, img_lr, label = ds[5]
    assert label == 2 and img_clean.shape == (8, 16, 32) and img_lr.shape == (7, 16, 32)
    assert img_clean.dtype == img_lr.dtype == np.float32
    valid = make(root, train=False)
    assert {t.year for t in valid.time()} == {2022} and len(valid) == 12
    assert len(make(root, lead_hours=[3])) == 4
    assert make(root, lead_hours=[3]).lead_time_label(0) == 0
    later = make(root, first_time="2021-07-01T03:00")
    assert later.sample_keys()[0] == "2021070100f03" and len(later) == 5
    assert parse_key("2024011212f21") == (datetime.datetime(2024, 1, 12, 12), 21)


def test_categories_are_probabilities_and_cat_none_is_derived(root):
    ds = make(root)
    assert ds.probability_channels() == [3, 4, 5, 6, 7]
    clean, _, _ = ds[0]
    physical = ds.denormalize_output(clean)
    categories = physical[3:]
    np.testing.assert_allclose(categories.sum(axis=0), 1.0, atol=1e-6)
    np.testing.assert_array_equal(clean[3:], categories)  # not z-scored
    with xr.open_zarr(root / "hrrr_forecast" / "hrrr_forecast_2021_01_06.zarr") as hrrr:
        stored = hrrr["values"].sel(time="2021010100f00").values[:, 2:18, 2:34]
        names = list(hrrr.channel.values)
    rain = stored[names.index("cat_rain")]
    none = (stored[[names.index(c) for c in ("cat_snow", "cat_ice", "cat_freez", "cat_rain")]]
            .sum(axis=0) == 0)
    np.testing.assert_array_equal(categories[3], rain)
    np.testing.assert_array_equal(categories[4], none.astype(np.float32))
    np.testing.assert_allclose(physical[1], stored[names.index("t2m")], rtol=1e-6)
    units = {c.name: c.units for c in ds.output_channels()}
    assert units["cat_rain"] == "1" and units["t2m"] == "K"


def test_inputs_are_gefs_interpolated_to_hrrr_points_under_stored_names(root):
    ds = make(root)
    _, img_lr, _ = ds[4]
    physical = ds.denormalize_input(img_lr)
    lat, lon = ds.latitude(), ds.longitude()
    assert lat.shape == (16, 32) and lon.max() < 0
    key = ds.sample_keys()[4]
    with xr.open_zarr(root / "gefs" / "gefs_isobaric_2021_01_06.zarr") as gefs:
        field = gefs["values"].sel(time=key)
        grid = xr.DataArray(field.values, dims=("channel", "lat", "lon"),
                            coords={"channel": field.channel.values,
                                    "lat": gefs.lat.values[:, 0], "lon": gefs.lon.values[0]})
        points = dict(lat=xr.DataArray(lat.ravel()), lon=xr.DataArray(lon.ravel() % 360))
        for k, stored in ((3, "z250"), (4, "t250"), (5, "q850"), (6, "u500")):
            expected = grid.sel(channel=stored).interp(**points).values.reshape(lat.shape)
            np.testing.assert_allclose(physical[k], expected, rtol=1e-4,
                                       err_msg=f"{ISOBARIC[k - 3]} read as {stored}")


def test_ds_factor_smooths_the_input_as_the_reference(root):
    fine, coarse = make(root), make(root, ds_factor=4)
    a, b = fine[0][1], coarse[0][1]
    assert b.shape == a.shape
    # Every 4th pixel kept, each standing for its 4x4 block, bilinearly interpolated back.
    np.testing.assert_allclose(b, upsample_bilinear(a[:, ::4, ::4], 4), atol=2e-4)
    assert not np.allclose(a, b) and np.abs(a - b).max() < 0.2


def test_built_from_the_preset_config(root):
    config = OmegaConf.load("conf/dataset/gefs_hrrr.yaml")
    dataset = build_dataset(config, data_path=str(root), stats_path=str(root / "stats.json"),
                            train_years=[2021], valid_years=[2022], lead_hours=[0, 3, 6],
                            hrrr_window=[[0, 16], [0, 32]])
    assert len(dataset.input_channels()) == 37 and len(dataset.output_channels()) == 9
    assert dataset.image_shape() == (16, 32)
    clean, lr, label = dataset[len(dataset) - 1]
    assert label == 2 and np.isfinite(clean).all() and np.isfinite(lr).all()


@pytest.mark.parametrize(("options", "message"), [
    ({"train_years": [2020, 2021]}, r"no GEFS/HRRR stores for year\(s\) \[2020\]"),
    ({"input_surface_variables": ["u10m", "tcc"]}, r"has no channel\(s\) \['tcc'\]"),
    ({"input_isobaric_variables": ["z200"], "stored_names": {}},
     r"has no channel\(s\) \['z200'\]"),
    ({"lead_hours": [0, 3, 12]}, r"no samples at lead time\(s\) \[12\] h .*\[0, 3, 6\]"),
    ({"hrrr_window": [[0, 40], [0, 10]]}, r"hrrr_window .* does not fit the 20x36"),
    ({"output_variables": ["t2m", "cat_rain"]}, r"lacks the category channel"),
    ({"prob_variables": []}, r"has no channel\(s\) \['cat_none'\]"),  # derived from categories
    ({"sample_shape": [8, 8]}, r"patch_shape_x/y instead"),
    ({"data_path": "/nonexistent/gefs"}, r"is not a directory"),
])
def test_clear_errors(root, options, message):
    with pytest.raises((DataError, DatasetConfigError), match=message):
        make(root, **options)


def test_preview_draws_a_gefs_hrrr_sample(root, tmp_path):
    from datasets.preview import main

    out = tmp_path / "preview.png"
    assert main(["conf/dataset/gefs_hrrr.yaml", f"data_path={root}",
                 f"stats_path={root / 'stats.json'}", "train_years=[2021]",
                 "hrrr_window=[[0,16],[0,32]]", "lead_hours=[0,3,6]", "--index", "4",
                 "--out", str(out)]) == 0
    assert out.stat().st_size > 10_000
