"""How a coarse grid maps onto a fine one: the factor, the crop, and regridding.

Coarse cell ``(i, j)`` covers fine pixels ``[i*f:(i+1)*f, j*f:(j+1)*f]``, both grids starting at
the same corner. Real fine grids are rarely a whole multiple of ``f`` (HRRR is 1059 x 1799, a
national 5 km grid 689 x 1073), and block-averaged coarse data then have ``floor`` or ``ceil``
of ``fine / f`` cells per side. The usable region is the largest one made of whole coarse
cells: the fine grid (and the coarse grid) are cropped at their far edges to it, optionally to
a multiple of a further number so that a UNet can take the whole domain (``--crop 16``).
"""

from __future__ import annotations

import math

import numpy as np

from helpers.infrastructure.errors import DataError

CROP_CHOICES = ("auto", "none")


def parse_crop(value: object) -> str | int:
    """``auto`` (whole coarse cells), ``none`` (refuse to crop) or a positive integer M (whole
    coarse cells and a multiple of M fine pixels)."""
    text = str(value).strip().lower() if value is not None else "auto"
    if text in CROP_CHOICES:
        return text
    try:
        multiple = int(text)
    except ValueError:
        raise DataError(f"--crop must be auto, none or a positive integer, got {value!r}") from None
    if multiple < 1:
        raise DataError(f"--crop must be auto, none or a positive integer, got {value!r}")
    return multiple


def infer_factor(coarse: tuple[int, int], fine: tuple[int, int], factor: int | None) -> int:
    """Fine pixels per coarse cell side. A given ``factor`` must be consistent: the coarse
    sides are both ``floor`` or both ``ceil`` of ``fine / factor`` (block means without or with
    the partial blocks at the far edges). Otherwise the exact ratio when the grids are exact
    multiples, else the one consistent factor; when several are (small grids), ``--factor``
    must say which."""
    def fits(f: int) -> bool:
        pairs = list(zip(coarse, fine, strict=True))
        if any(fine_side < f for _, fine_side in pairs):
            return False
        return (all(c == n // f for c, n in pairs) or all(c == -(-n // f) for c, n in pairs))

    if factor is not None:
        if int(factor) != factor or factor < 1:
            raise DataError(f"--factor must be a positive integer, got {factor!r}")
        if fits(int(factor)):
            return int(factor)
        raise DataError(
            f"the coarse grid {tuple(coarse)} does not match the fine grid {tuple(fine)} with "
            f"factor {factor} (it would have {fine[0] // factor}-{-(-fine[0] // factor)} x "
            f"{fine[1] // factor}-{-(-fine[1] // factor)} cells); if the coarse data are not "
            "block means of the fine grid, interpolate them with --regrid --factor F"
        )
    exact = fine[0] % coarse[0] == 0 and fine[1] % coarse[1] == 0 and (
        fine[0] // coarse[0] == fine[1] // coarse[1])
    if exact and fine[0] // coarse[0] > 1:
        return fine[0] // coarse[0]
    consistent = [f for f in range(2, max(fine) + 1) if fits(f)]
    if len(consistent) == 1:
        return consistent[0]
    ratios = " and ".join(f"{f / c:.3g}" for f, c in zip(fine, coarse, strict=True))
    which = (f"factors {', '.join(map(str, consistent))} all fit" if consistent
             else "no integer factor fits")
    raise DataError(
        f"cannot tell the grid factor: the fine grid {tuple(fine)} is {ratios} times the coarse "
        f"grid {tuple(coarse)} ({which}); if each coarse cell covers F x F fine pixels pass "
        "--factor F, otherwise interpolate the coarse data with --regrid --factor F"
    )


def aligned_shape(fine: tuple[int, int], coarse: tuple[int, int] | None, factor: int,
                  crop: str | int) -> tuple[int, int]:
    """The fine grid shape to use: whole coarse cells (``coarse=None`` when regridding, where
    every whole block counts), further rounded down to a multiple of ``crop`` if it is a
    number. ``crop="none"`` refuses any cropping with a message saying what would be kept."""
    unit = factor if not isinstance(crop, int) else math.lcm(factor, crop)
    usable = [fine_side // factor if coarse is None else min(coarse[i], fine_side // factor)
              for i, fine_side in enumerate(fine)]
    shape = tuple((cells * factor) // unit * unit for cells in usable)
    if min(shape) < 1:
        raise DataError(f"the fine grid {tuple(fine)} holds no {unit} x {unit} block; use a "
                        "smaller --crop multiple or --factor")
    if crop == "none":
        exact = coarse is None or tuple(c * factor for c in coarse) == tuple(fine)
        if shape != tuple(fine) or not exact:
            raise DataError(
                f"the fine grid {tuple(fine)} is not a whole number of {factor} x {factor} "
                f"coarse cells" + ("" if coarse is None else f" (coarse grid {tuple(coarse)})")
                + f"; drop --crop none to crop it to {shape[0]} x {shape[1]} automatically"
            )
    return shape  # type: ignore[return-value]


class BilinearRegridder:
    """Precomputed bilinear weights from a regular 1-D lat/lon grid to arbitrary points, reading
    only the coarse sub-box that the points need.

    It gives what ``xarray.DataArray.interp(method="linear")`` gives (tested against it), but
    the readers call it for every sample, and xarray recomputes the weights on each call:
    ``benchmarks/bench_regrid.py`` measured xarray about 2x slower per sample."""

    def __init__(self, src_lat: np.ndarray, src_lon: np.ndarray, lat: np.ndarray, lon: np.ndarray,
                 option: str = "--regrid"):
        src_lat, src_lon = np.asarray(src_lat, float), np.asarray(src_lon, float)
        lon = lon % 360 if src_lon.max() > 180 else (lon + 180) % 360 - 180
        self.rows = self._weights(src_lat, lat, "latitude", option)
        self.cols = self._weights(src_lon, lon, "longitude", option)
        lo_r, lo_c = self.rows[0].min(), self.cols[0].min()
        self.box = (slice(lo_r, self.rows[0].max() + 2), slice(lo_c, self.cols[0].max() + 2))
        self.rows = (self.rows[0] - lo_r, self.rows[1])
        self.cols = (self.cols[0] - lo_c, self.cols[1])

    @staticmethod
    def _weights(axis: np.ndarray, points: np.ndarray, name: str, option: str):
        flip = axis.size > 1 and axis[0] > axis[-1]
        asc = axis[::-1] if flip else axis
        if asc.size < 2 or points.min() < asc[0] or points.max() > asc[-1]:
            raise DataError(
                f"{option}: fine {name}s span {points.min():.3f}..{points.max():.3f} but the "
                f"coarse grid covers {asc[0]:.3f}..{asc[-1]:.3f}; it must cover the fine domain"
            )
        i = np.clip(np.searchsorted(asc, points, side="right") - 1, 0, asc.size - 2)
        w = (points - asc[i]) / (asc[i + 1] - asc[i])
        if flip:  # index into the original (descending) order
            i, w = axis.size - 2 - i, 1 - w
        return i, w

    def __call__(self, field: np.ndarray) -> np.ndarray:
        """``field[..., box rows, box cols]`` (the coarse sub-box `box`) at the points."""
        (i, wy), (j, wx) = self.rows, self.cols
        out = ((1 - wy) * (1 - wx) * field[..., i, j] + (1 - wy) * wx * field[..., i, j + 1]
               + wy * (1 - wx) * field[..., i + 1, j] + wy * wx * field[..., i + 1, j + 1])
        return out.astype(np.float32)
