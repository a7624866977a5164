"""Value transforms in normalisation and non-negative channels: never negative when
de-normalized, numpy and torch alike; precipitation is recognised from CF attributes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from datasets.base import ChannelNormalizer
from datasets.variable_metadata import is_precipitation


@pytest.mark.parametrize("kind", ["log1p", "sqrt"])
def test_round_trip_and_statistics_space(kind):
    rain = np.random.default_rng(0).gamma(0.3, 3.0, size=(4, 2, 8, 8)).astype(np.float32)
    rain[:, 0] = 1.0 + rain[:, 0]  # channel 0: a positive field without a transform
    transformed = np.log1p(rain[:, 1]) if kind == "log1p" else np.sqrt(rain[:, 1])
    normalizer = ChannelNormalizer([1.0, transformed.mean()], [2.0, transformed.std()],
                                   ["none", kind], [False, True])
    z = normalizer.normalize(rain)
    np.testing.assert_allclose(z[:, 1].mean(), 0.0, atol=1e-5)
    np.testing.assert_allclose(z[:, 1].std(), 1.0, rtol=1e-4)
    np.testing.assert_allclose(normalizer.denormalize(z), rain, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(normalizer.denormalize(torch.from_numpy(z)).numpy(), rain,
                               rtol=1e-4, atol=1e-5)
    assert not np.shares_memory(z, rain)


def test_nonnegative_channels_are_clamped_and_nan_stays_nan():
    normalizer = ChannelNormalizer([0.0, 0.0], [1.0, 1.0], nonnegative=[True, False])
    z = np.array([[[-2.0, 3.0], [np.nan, -0.5]], [[-2.0, 3.0], [np.nan, -0.5]]], np.float32)
    out = normalizer.denormalize(z)
    np.testing.assert_array_equal(out[0], [[0.0, 3.0], [np.nan, 0.0]])
    np.testing.assert_array_equal(out[1], z[1])  # a signed channel is left alone
    torch_out = normalizer.denormalize(torch.from_numpy(z))
    np.testing.assert_array_equal(torch_out.numpy(), out)
    np.testing.assert_array_equal(normalizer.physical_zero(), [0.0, 0.0])


def test_log1p_of_a_very_negative_prediction_is_zero():
    normalizer = ChannelNormalizer([0.5], [0.8], ["log1p"], [True])
    out = normalizer.denormalize(np.full((1, 2, 2), -10.0, np.float32))
    assert (out == 0).all()  # expm1 alone would give values down to -1


def test_unknown_transform_is_refused():
    with pytest.raises(ValueError, match="unknown transform 'log'"):
        ChannelNormalizer([0.0], [1.0], ["log"])


@pytest.mark.parametrize("attrs, expected", [
    ({"standard_name": "lwe_precipitation_rate"}, True),
    ({"standard_name": "precipitation_flux", "units": "kg m-2 s-1"}, True),
    ({"units": "mm/h"}, True),
    ({"units": "kg m-2 s-1"}, True),
    ({"long_name": "total precipitation rate"}, True),
    ({"long_name": "precipitation anomaly", "units": "mm h-1"}, False),
    ({"long_name": "precipitation minus evaporation", "units": "mm"}, False),
    ({"units": "mm"}, False),  # an amount may be a signed budget
    ({"standard_name": "air_temperature", "units": "K"}, False),
    ({}, False),
])
def test_precipitation_is_recognised_from_cf_attributes(attrs, expected):
    assert is_precipitation(attrs) is expected
