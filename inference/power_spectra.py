"""Power spectra and autocorrelation of generated fields, and a patch size that covers the
decorrelation distance (so patch-based diffusion sees whole correlated structures).

    python -m inference.power_spectra <generated.nc> --out-dir DIR --grid-spacing-km 3 \
        [--multiple 16] [--threshold 0 | --threshold 1/e] [--detrend linear]

Spectrum normalisation (one-sided density): for a row of n values at spacing d km,
``psd_k = c_k * d / n * |X_k|^2`` with ``X = rfft(row)``, c_k = 2 except at 0 and Nyquist, so
``sum(psd) * df = mean(row**2)`` (Parseval), df = 1 / (n d). Units: (field units)^2 per
(cycle/km), frequencies in cycles/km.

Masked fields (land-only grids, radar coverage): a row counts when at least half of it is
valid; its gaps are filled with the row's fitted trend (its mean with ``--detrend mean``/``none``)
and its power is scaled by ``n / valid`` so the variance of the valid part is kept. This is the
usual gappy-periodogram approximation: the mask adds some leakage, the same for truth and
prediction, so comparisons between them stay fair.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from pathlib import Path

import numpy as np

from helpers.infrastructure.errors import run_cli

logger = logging.getLogger("inference.power_spectra")


def _detrend(rows: np.ndarray, how: str | None) -> np.ndarray:
    """Remove the row mean or least-squares line: a trend across a non-periodic domain leaks
    into every frequency as a spurious f^-2 tail."""
    if how in (None, "none"):
        return rows
    if how == "mean":
        return rows - rows.mean(axis=-1, keepdims=True)
    if how == "linear":
        s = np.linspace(-1.0, 1.0, rows.shape[-1])
        slope = (rows * s).sum(axis=-1, keepdims=True) / (s * s).sum()
        return rows - rows.mean(axis=-1, keepdims=True) - slope * s
    raise ValueError(f"detrend must be none, mean or linear, got {how!r}")


def spectrum_sum(data: np.ndarray, d: float, detrend: str | None = None,
                 min_valid: float = 0.5) -> tuple[np.ndarray, np.ndarray, int]:
    """(freqs, sum of row spectra, number of rows) along the last axis. Rows with gaps count
    when at least ``min_valid`` of them is valid (see the module docstring). Sums let callers
    average over data read in pieces."""
    n = data.shape[-1]
    rows = np.asarray(data, dtype=np.float64).reshape(-1, n)
    valid = np.isfinite(rows)
    counts = valid.sum(axis=1)
    keep = counts >= max(2, math.ceil(min_valid * n))
    rows, valid, counts = rows[keep], valid[keep], counts[keep]
    if valid.all():
        rows, scale = _detrend(rows, detrend), 1.0
    else:
        rows, scale = _fill_gaps(rows, valid, detrend), (n / counts)[:, None]
    freqs = np.fft.rfftfreq(n, d)
    psd = np.abs(np.fft.rfft(rows, axis=-1)) ** 2 * (d / n) * scale
    psd[:, 1:(n + 1) // 2] *= 2.0  # one-sided: interior bins carry both signs of frequency
    return freqs, psd.sum(axis=0), rows.shape[0]


def _fill_gaps(rows: np.ndarray, valid: np.ndarray, how: str | None) -> np.ndarray:
    """Remove each row's trend fitted on its valid points and set the gaps to 0 (the trend)."""
    s = np.broadcast_to(np.linspace(-1.0, 1.0, rows.shape[-1]), rows.shape)
    w = valid.astype(np.float64)
    x = np.where(valid, rows, 0.0)
    count = w.sum(axis=-1, keepdims=True)
    mean = x.sum(axis=-1, keepdims=True) / count
    if how == "linear":
        s_mean = (s * w).sum(axis=-1, keepdims=True) / count
        ds = (s - s_mean) * w
        slope = (ds * (x - mean)).sum(axis=-1, keepdims=True) / (ds * ds).sum(axis=-1,
                                                                             keepdims=True)
        trend = mean + slope * (s - s_mean)
    else:
        trend = np.broadcast_to(mean, rows.shape)
    anomalies = np.where(valid, rows - trend, 0.0)
    return anomalies if how in ("mean", "linear") else anomalies + trend


def average_power_spectrum(data: np.ndarray, d: float, detrend: str | None = None
                           ) -> tuple[np.ndarray, np.ndarray]:
    """1-D power spectral density along the last axis (x) averaged over all other axes.

    ``d`` is the grid spacing in km; returns frequencies in cycles/km and the one-sided density
    described in the module docstring. ``detrend``: None, "mean" or "linear" per row.
    """
    freqs, total, count = spectrum_sum(data, d, detrend)
    if count == 0:
        return freqs, np.full(freqs.shape, np.nan)
    return freqs, total / count


def power_spectra_to_acf(f: np.ndarray, pw: np.ndarray, n: int | None = None,
                         remove_mean: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Autocorrelation against lag (km) from a one-sided spectrum, by inverse FFT
    (Wiener-Khinchin), normalised so ``acf[0] = 1``.

    ``n`` is the row length the spectrum came from (default ``2 * (len(f) - 1)``, an even
    length). ``remove_mean`` drops the zero-frequency term: the ACF of anomalies. The result is
    the circular autocorrelation, for lags 0 .. n//2 grid steps.
    """
    f = np.asarray(f, dtype=np.float64)
    two_sided = np.array(pw, dtype=np.float64)
    n = int(n or 2 * (len(f) - 1))
    d = 1.0 / (n * (f[1] - f[0]))
    two_sided[1:(n + 1) // 2] /= 2.0  # undo the one-sided doubling; irfft adds both signs
    if remove_mean:
        two_sided[0] = 0.0
    acov = np.fft.irfft(two_sided, n)[: n // 2 + 1]
    lags = np.arange(n // 2 + 1) * d
    if not acov[0] > 0:
        return lags, np.full(lags.shape, np.nan)
    return lags, acov / acov[0]


def decorrelation_distance(lags: np.ndarray, acf: np.ndarray, threshold: float = 0.0) -> float:
    """First lag where the ACF drops below ``threshold`` (linearly interpolated between grid
    lags); default 0, the first zero crossing, 1/e gives the e-folding distance. ``inf`` when
    it stays above within the lags given (structures as large as the domain)."""
    below = np.flatnonzero(np.asarray(acf) < threshold)
    if below.size == 0 or below[0] == 0:
        return math.inf if below.size == 0 else 0.0
    i = below[0]
    a0, a1 = acf[i - 1], acf[i]
    return float(lags[i - 1] + (a0 - threshold) / (a0 - a1) * (lags[i] - lags[i - 1]))


def recommend_patch_size(distance_px: float, multiple: int = 16, domain: int | None = None
                         ) -> int:
    """Smallest patch the UNet takes that covers ``distance_px``: a multiple of ``multiple``
    (2**(levels-1); 16 for 5 levels), capped at ``domain``."""
    if domain is not None and not distance_px <= domain:
        return domain
    if not math.isfinite(distance_px):
        raise ValueError("an infinite decorrelation distance needs a domain size to cap it")
    size = max(1, math.ceil(distance_px / multiple)) * multiple
    return size if domain is None else min(size, domain)


# -- CLI ------------------------------------------------------------------------------------

def file_spectra(path: str | Path, grid_spacing_km: float, detrend: str | None = "linear",
                 variables: list[str] | None = None, chunk_bytes: int = 32 * 2**20
                 ) -> tuple[dict, tuple[int, int]]:
    """Mean power spectra of a generated file, accumulated a few times at a time:
    ``({var: {(source, axis): (wavenumber, psd), "attrs": truth attrs}}, (H, W))`` with
    sources ``truth``, ``prediction`` (mean over members) and ``input`` where the variable is
    an input too, along axes ``x`` and ``y``."""
    from inference.generated_file import (
        channels,
        field,
        open_generated,
        sample_dim,
        select_variables,
    )

    ds = open_generated(path)
    try:
        names = select_variables(ds, variables)
        inputs = set(channels(ds, "input"))
        height, width, n_members = ds.sizes["y"], ds.sizes["x"], ds.sizes["ensemble"]
        step = max(1, chunk_bytes // (8 * n_members * height * width))
        dim = sample_dim(ds)
        result = {}
        for var in names:
            sources = ["truth", "prediction"] + (["input"] if var in inputs else [])
            acc = {(s, a): None for s in sources for a in "xy"}
            for start in range(0, ds.sizes[dim], step):
                rows = slice(start, start + step)
                for source in sources:
                    values = field(ds, source, var).isel({dim: rows}).values
                    for axis, data in (("x", values), ("y", np.swapaxes(values, -1, -2))):
                        freqs, total, count = spectrum_sum(data, grid_spacing_km, detrend)
                        old = acc[source, axis]
                        acc[source, axis] = (freqs, total, count) if old is None else (
                            freqs, old[1] + total, old[2] + count)
            result[var] = {key: (f, t / c if c else np.full(f.shape, np.nan))
                           for key, (f, t, c) in acc.items()}
            result[var]["attrs"] = dict(field(ds, "truth", var).attrs)
        return result, (height, width)
    finally:
        ds.close()


def _plot(var, spectra, distances, threshold, out_dir) -> Path:
    from inference.plotting import pyplot, save_png, units_label

    plt = pyplot()
    fig, (ax_s, ax_a) = plt.subplots(1, 2, figsize=(11, 4.2))
    styles = {"truth": "k-", "prediction": "C1-", "input": "C0--"}
    for source, style in styles.items():
        if (source, "x") in spectra:
            f, p = spectra[source, "x"]
            ax_s.loglog(f[1:-1], p[1:-1], style, label=f"{source}" + (
                " (mean over members)" if source == "prediction" else ""))
    ax_s.set_xlabel("wavenumber [cycles/km] (zero and Nyquist bins not drawn)")
    ax_s.set_ylabel(f"PSD along x [({spectra['attrs'].get('units', '1')})² km]")
    ax_s.set_title(f"{units_label(spectra['attrs'])}: power spectrum", fontsize=9)
    ax_s.legend(fontsize=8)
    for (source, axis), (lags, acf) in distances["acf"].items():
        line = ax_a.plot(lags, acf, ("-" if axis == "x" else ":"), color=(
            "k" if source == "truth" else "C1"), label=f"{source}, {axis}")[0]
        dist = distances["km"][source, axis]
        if math.isfinite(dist):
            ax_a.axvline(dist, color=line.get_color(), ls=line.get_linestyle(), lw=0.8)
    ax_a.axhline(threshold, color="grey", lw=0.6)
    ax_a.set_xlabel("lag [km]")
    ax_a.set_ylabel("autocorrelation")
    ax_a.set_title(f"ACF; vertical lines: first drop below {threshold:.3g}", fontsize=9)
    ax_a.legend(fontsize=8)
    return save_png(fig, Path(out_dir) / f"power_spectrum_{var}.png")


def analyse(path, out_dir, grid_spacing_km: float = 3.0, multiple: int = 16,
            threshold: float = 0.0, detrend: str | None = "linear",
            variables: list[str] | None = None) -> dict:
    """Write one PNG per variable; return distances and the recommended patch shape."""
    spectra, (height, width) = file_spectra(path, grid_spacing_km, detrend, variables)
    report = {"distance_km": {}, "pngs": []}
    worst = {"x": 0.0, "y": 0.0}
    for var, spec in spectra.items():
        info = {"acf": {}, "km": {}}
        for source in ("truth", "prediction"):
            for axis, n in (("x", width), ("y", height)):
                lags, acf = power_spectra_to_acf(*spec[source, axis], n=n)
                info["acf"][source, axis] = (lags, acf)
                info["km"][source, axis] = decorrelation_distance(lags, acf, threshold)
        report["pngs"].append(_plot(var, spec, info, threshold, out_dir))
        use = "truth" if np.isfinite(info["acf"]["truth", "x"][1]).any() else "prediction"
        report["distance_km"][var] = {a: info["km"][use, a] for a in "xy"}
        for a in "xy":
            worst[a] = max(worst[a], info["km"][use, a])
    report["distance_px"] = {a: worst[a] / grid_spacing_km for a in "xy"}
    report["patch_shape_x"] = recommend_patch_size(report["distance_px"]["x"], multiple, width)
    report["patch_shape_y"] = recommend_patch_size(report["distance_px"]["y"], multiple, height)
    report["domain"] = (height, width)
    return report


def _threshold(text: str) -> float:
    return 1.0 / math.e if text.lower() in ("1/e", "e", "efold", "e-fold") else float(text)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    parser = argparse.ArgumentParser(prog="python -m inference.power_spectra",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("path", help="generated NetCDF file")
    parser.add_argument("--out-dir", default="outputs/spectra")
    parser.add_argument("--grid-spacing-km", type=float, default=3.0)
    parser.add_argument("--multiple", type=int, default=16,
                        help="patch sizes must be multiples of this (2**(UNet levels - 1))")
    parser.add_argument("--threshold", type=_threshold, default=0.0,
                        help="ACF level that defines decorrelation: 0 (first zero crossing, "
                             "default) or 1/e")
    parser.add_argument("--detrend", choices=("none", "mean", "linear"), default="linear")
    parser.add_argument("--variables", help="comma-separated (default all output variables)")
    args = parser.parse_args(argv)
    return run_cli(lambda: print_report(args))


def print_report(args: argparse.Namespace) -> None:
    report = analyse(args.path, args.out_dir, args.grid_spacing_km, args.multiple,
                     args.threshold, args.detrend,
                     args.variables.split(",") if args.variables else None)
    print(f"decorrelation distance (ACF below {args.threshold:.3g}), km:")
    for var, dist in report["distance_km"].items():
        print(f"  {var}: x {dist['x']:.1f}, y {dist['y']:.1f}")
    px = report["distance_px"]
    print(f"largest: x {px['x']:.1f} px, y {px['y']:.1f} px at {args.grid_spacing_km:g} km")
    print(f"recommended: patch_shape_x={report['patch_shape_x']} "
          f"patch_shape_y={report['patch_shape_y']} (multiples of {args.multiple}; "
          f"domain {report['domain'][1]}x{report['domain'][0]})")
    if (report["patch_shape_y"], report["patch_shape_x"]) == report["domain"]:
        print("the correlated structures span the domain: train without patching")


if __name__ == "__main__":
    sys.exit(main())
