"""Bilinear regridding of a regular lat/lon grid to a curvilinear fine grid, side by side: our
precomputed-weight `BilinearRegridder` (what the GEFS-HRRR and xarray-pair readers call for
every sample) against ``xarray.DataArray.interp(method="linear")`` on the same sub-box and on
the whole coarse field, with the largest difference between them.

    python benchmarks/bench_regrid.py [--size 256] [--channels 10] [--repeats 20]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import xarray as xr

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from datasets.grid_alignment import BilinearRegridder  # noqa: E402


def seconds_per_call(function, repeats: int) -> float:
    function()  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        function()
    return (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256, help="fine grid is size x size")
    parser.add_argument("--channels", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    src_lat, src_lon = np.arange(60, 20, -0.25), np.arange(230, 300, 0.25)  # GEFS-like 0.25 deg
    yy, xx = np.meshgrid(np.arange(args.size), np.arange(args.size), indexing="ij")
    lat = 35 + 0.027 * yy + 0.003 * xx  # a rotated ~3 km grid, like HRRR's
    lon = -100 + 0.03 * xx - 0.004 * yy
    field = rng.normal(size=(args.channels, src_lat.size, src_lon.size)).astype(np.float32)
    regridder = BilinearRegridder(src_lat, src_lon, lat, lon)
    box = field[:, regridder.box[0], regridder.box[1]]
    coarse = xr.DataArray(field, dims=("channel", "lat", "lon"),
                          coords={"lat": src_lat, "lon": src_lon})
    sub_box = coarse.isel(lat=regridder.box[0], lon=regridder.box[1])
    points = {"lat": xr.DataArray(lat, dims=("y", "x")),
              "lon": xr.DataArray(lon % 360, dims=("y", "x"))}
    ours = regridder(box)
    reference = sub_box.interp(**points, method="linear").values
    t_ours = seconds_per_call(lambda: regridder(box), args.repeats)
    t_box = seconds_per_call(lambda: sub_box.interp(**points, method="linear").values,
                             max(1, args.repeats // 4))
    t_whole = seconds_per_call(lambda: coarse.interp(**points, method="linear").values,
                               max(1, args.repeats // 4))
    print(f"{args.channels} channels to a {args.size}x{args.size} curvilinear grid, per sample:")
    print(f"  BilinearRegridder (precomputed weights) {t_ours * 1e3:8.2f} ms")
    print(f"  xarray interp, same sub-box             {t_box * 1e3:8.2f} ms  "
          f"({t_box / t_ours:.1f}x)")
    print(f"  xarray interp, whole coarse field       {t_whole * 1e3:8.2f} ms  "
          f"({t_whole / t_ours:.1f}x)")
    print(f"  largest difference: {np.abs(ours - reference).max():.2e}")


if __name__ == "__main__":
    main()
