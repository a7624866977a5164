"""Spectra and autocorrelation of known processes, and the patch-size recommendation."""

from __future__ import annotations

import datetime
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.signal import lfilter

from datasets.base import ChannelMetadata
from inference.generated_file import EnsembleWriter
from inference.power_spectra import (
    analyse,
    average_power_spectrum,
    decorrelation_distance,
    power_spectra_to_acf,
    recommend_patch_size,
)

ROOT = Path(__file__).resolve().parents[1]


def test_white_noise_is_flat_and_obeys_parseval():
    x = np.random.default_rng(0).normal(0.0, 2.0, size=(20, 10, 256))
    freqs, psd = average_power_spectrum(x, d=3.0)
    assert freqs[1] == pytest.approx(1 / (256 * 3.0)) and freqs[-1] == pytest.approx(1 / 6.0)
    interior = psd[1:-1]
    low, high = interior[: interior.size // 4].mean(), interior[-interior.size // 4:].mean()
    assert high / low == pytest.approx(1.0, abs=0.1)
    assert interior.mean() == pytest.approx(2 * 3.0 * 4.0, rel=0.05)  # 2 d sigma^2, one-sided
    assert psd.sum() * freqs[1] == pytest.approx((x**2).mean(), rel=1e-10)


def test_sinusoid_peaks_at_its_frequency_and_has_a_cosine_acf():
    period_px, d = 32, 2.0
    x = np.arange(256)
    rows = np.stack([np.sin(2 * np.pi * x / period_px + phase) for phase in (0.0, 1.0, 2.5)])
    freqs, psd = average_power_spectrum(rows, d)
    assert freqs[np.argmax(psd)] == pytest.approx(1 / (period_px * d))
    lags, acf = power_spectra_to_acf(freqs, psd)
    assert lags[1] == pytest.approx(d) and acf[0] == 1.0
    np.testing.assert_allclose(acf, np.cos(2 * np.pi * lags / (period_px * d)), atol=1e-9)
    assert decorrelation_distance(lags, acf) == pytest.approx(period_px * d / 4, rel=1e-6)


def ar1_rows(length_px: float, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """AR(1) along the last axis: correlation exp(-lag / length_px), stationary start."""
    a = math.exp(-1 / length_px)
    burn = int(8 * length_px)
    noise = np.random.default_rng(seed).normal(size=(*shape[:-1], shape[-1] + burn))
    return lfilter([math.sqrt(1 - a * a)], [1, -a], noise, axis=-1)[..., burn:]


def test_ar1_autocorrelation_and_e_folding_distance():
    length_px, d = 10.0, 3.0
    freqs, psd = average_power_spectrum(ar1_rows(length_px, (60, 4096)), d, detrend="mean")
    lags, acf = power_spectra_to_acf(freqs, psd, n=4096)
    near = lags <= 3 * length_px * d
    np.testing.assert_allclose(acf[near], np.exp(-lags[near] / (length_px * d)), atol=0.03)
    e_fold = decorrelation_distance(lags, acf, threshold=1 / math.e)
    assert e_fold == pytest.approx(length_px * d, rel=0.08)


def test_detrending_and_odd_lengths():
    ramp = np.linspace(0.0, 50.0, 101)[None] + np.random.default_rng(1).normal(size=(30, 101))
    _, raw = average_power_spectrum(ramp, 1.0)
    freqs, flat = average_power_spectrum(ramp, 1.0, detrend="linear")
    assert raw[1] > 100 * flat[1]  # the trend dominated the lowest frequency
    assert flat[2:].mean() == pytest.approx(2.0, rel=0.15)
    lags, acf = power_spectra_to_acf(freqs, flat, n=101)
    assert len(lags) == 51 and abs(acf[5:]).max() < 0.2
    with pytest.raises(ValueError, match="detrend"):
        average_power_spectrum(ramp, 1.0, detrend="quadratic")


def test_decorrelation_distance_interpolates_and_reports_no_crossing():
    lags = np.arange(5) * 2.0
    assert decorrelation_distance(lags, np.array([1.0, 0.6, 0.2, -0.2, -0.5])) == pytest.approx(5)
    assert decorrelation_distance(lags, np.ones(5)) == math.inf


@pytest.mark.parametrize(("distance", "expected"), [
    (0.5, 16), (3, 16), (8, 16), (16, 16), (16.1, 32), (47, 48), (math.inf, 64), (200, 64),
])
def test_patch_size_is_a_multiple_of_the_unet_factor(distance, expected):
    # A 5-level UNet halves the grid 4 times: smaller powers of two (8, 4, ...) fail inside it.
    assert recommend_patch_size(distance, multiple=16, domain=64) == expected


def write_waves(path: Path, period_x: int, period_y: int, shape=(120, 200)) -> Path:
    """Random-phase cosines along x and y: zero crossings at a quarter period."""
    height, width = shape
    yy, xx = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    rng = np.random.default_rng(0)
    times = [datetime.datetime(2022, 5, 1, h) for h in range(3)]
    nan = np.full(shape, np.nan)
    with EnsembleWriter(path, times, 2, nan, nan, [ChannelMetadata("tcwv")],
                        [ChannelMetadata("10u"), ChannelMetadata("2t")],
                        compression_level=0) as writer:
        for t in range(len(times)):
            phases = rng.uniform(0, 2 * np.pi, size=(3, 2, 2))
            fields = np.cos(2 * np.pi * xx / period_x + phases[..., 0, None, None]) + np.cos(
                2 * np.pi * yy / period_y + phases[..., 1, None, None])
            writer.write_time(t, fields[0, :1], fields[0], fields[1:])
    return path


def test_patch_recommendation_covers_the_known_correlation_length(tmp_path):
    path = write_waves(tmp_path / "waves.nc", period_x=100, period_y=40)
    report = analyse(path, tmp_path / "png", grid_spacing_km=3.0, detrend="mean")
    assert report["distance_px"]["x"] == pytest.approx(25, rel=0.02)
    assert report["distance_px"]["y"] == pytest.approx(10, rel=0.02)
    assert (report["patch_shape_x"], report["patch_shape_y"]) == (32, 16)
    assert report["distance_km"]["2t"]["x"] == pytest.approx(75, rel=0.02)
    assert all(p.stat().st_size > 1000 for p in report["pngs"])


def test_cli_prints_the_recommendation_and_writes_pngs(tmp_path):
    path = write_waves(tmp_path / "waves.nc", period_x=40, period_y=40)
    out = tmp_path / "spectra"
    done = subprocess.run([sys.executable, "-m", "inference.power_spectra", str(path),
                           "--out-dir", str(out), "--grid-spacing-km", "2", "--detrend", "mean",
                           "--variables", "2t"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert "patch_shape_x=16 patch_shape_y=16" in done.stdout
    assert "2t: x 20.0, y 20.0" in done.stdout
    assert [p.name for p in out.iterdir()] == ["power_spectrum_2t.png"]
    bad = subprocess.run([sys.executable, "-m", "inference.power_spectra", str(path),
                          "--variables", "rain", "--out-dir", str(out)], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and "unknown variable(s) ['rain']" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_masked_rows_keep_the_spectrum_of_the_valid_part():
    rng = np.random.default_rng(4)
    x = lfilter([1.0], [1.0, -0.8], rng.normal(size=(400, 256)), axis=-1)[:, 64:192]
    _, full = average_power_spectrum(x, d=2.0, detrend="mean")
    masked = x.copy()
    masked[:, :40] = np.nan  # a coast: every row has a gap, as on a land-only grid
    masked[:10, :] = np.nan  # and rows with nothing valid, which are left out
    _, gappy = average_power_spectrum(masked, d=2.0, detrend="mean")
    assert np.isfinite(gappy).all()  # rows with any NaN used to be dropped: NaN everywhere
    # The variance is kept (power scaled by n / valid) and the shape follows the full field.
    assert gappy.sum() == pytest.approx(full.sum(), rel=0.1)
    low, high = slice(1, 8), slice(40, 60)
    assert gappy[low].mean() / gappy[high].mean() == pytest.approx(
        full[low].mean() / full[high].mean(), rel=0.3)
    _, too_gappy = average_power_spectrum(np.where(np.arange(128) < 80, np.nan, x), d=2.0)
    assert np.isnan(too_gappy).all()  # under half valid: not counted
