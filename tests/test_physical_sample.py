"""Physical-units access to samples: exact file values for writing and drawing, no round trip
through model units, and model units that are unchanged by it."""


import numpy as np
import pytest

from datasets.base import DownscalingDataset, PhysicalSample
from datasets.hrrrmini import HRRRMiniDataset
from datasets.interpolation import upsample_bilinear
from tests.conftest import mark_missing_values


def _masked_files(hrrr_mini_files):
    """The HRRR-Mini fixture with a missing input cell and missing target rows, marked in
    stats.json as missing on purpose (a land-only or radar-coverage grid)."""
    data_path, stats_path, raw = hrrr_mini_files
    mark_missing_values(data_path, stats_path)
    return HRRRMiniDataset(str(data_path), str(stats_path)), raw


def test_physical_sample_is_the_file_values_exactly(hrrr_mini_files):
    ds, raw = _masked_files(hrrr_mini_files)
    truth, inputs = ds.physical_sample(3)
    expected_truth = np.stack([raw["output"][v][3] for v in ("10u", "2t")]).astype(np.float32)
    expected_truth[0, :4] = np.nan
    np.testing.assert_array_equal(truth, expected_truth)  # NaN in the same places, no rounding
    row, col = raw["coords"][3]
    for k, name in enumerate(("elev_mean", "lsm_mean")):
        np.testing.assert_array_equal(
            inputs[4 + k], raw["invariant"][name][row:row + 16, col:col + 16].astype(np.float32))
    np.testing.assert_array_equal(
        inputs[2], upsample_bilinear(raw["input"]["tcwv"][3].astype(np.float32), 4))
    # the masked input: NaN where its validity mask says missing, the mask itself 0/1
    assert np.isnan(inputs[1, :4, :4]).all() and np.isfinite(inputs[1, 4:]).all()
    assert (inputs[3, :4, :4] == 0).all() and (inputs[3, 4:] == 1).all()


def test_model_units_are_the_normalized_physical_sample(hrrr_mini_files):
    ds, _ = _masked_files(hrrr_mini_files)
    (img_clean, img_lr), physical = ds.sample_in_both_units(3)
    np.testing.assert_array_equal(img_clean, ds[3][0])
    np.testing.assert_array_equal(img_lr, ds[3][1])
    np.testing.assert_allclose(ds.denormalize_output(img_clean), physical.truth, rtol=1e-6,
                               atol=1e-4)
    np.testing.assert_allclose(ds.denormalize_input(img_lr), physical.inputs, rtol=1e-6,
                               atol=1e-3)
    # invariants are z-scored once, with their own stats.json entries
    stats = ds.statistics("invariant")[0]
    np.testing.assert_allclose(img_lr[4], (physical.inputs[4] - stats.mean) / stats.std,
                               rtol=1e-5, atol=1e-5)


class _NormalizedOnly(DownscalingDataset):
    """A third-party dataset that only serves model units (scale 2, offset 1)."""

    def input_channels(self):
        return []

    def output_channels(self):
        return []

    def image_shape(self):
        return (2, 2)

    def time(self):
        return []

    def normalize_input(self, x):
        return (x - 1) / 2

    def denormalize_input(self, x):
        return x * 2 + 1

    normalize_output, denormalize_output = normalize_input, denormalize_input

    def __len__(self):
        return 1

    def __getitem__(self, idx):
        return np.zeros((1, 2, 2), np.float32), np.ones((1, 2, 2), np.float32)


def test_default_physical_sample_denormalizes_the_model_sample():
    sample = _NormalizedOnly().physical_sample(0)
    assert isinstance(sample, PhysicalSample)
    np.testing.assert_array_equal(sample.truth, np.ones((1, 2, 2)))
    np.testing.assert_array_equal(sample.inputs, np.full((1, 2, 2), 3.0))


def test_physical_sample_out_of_range(hrrr_mini_files):
    ds, _ = _masked_files(hrrr_mini_files)
    with pytest.raises(IndexError, match="sample 6 out of range for 6 samples"):
        ds.physical_sample(6)
