"""Several times of a generated file side by side: rows are times, columns are truth, a few
members and the ensemble mean (input first when a same-named input channel exists), with one
colour scale per variable so rows compare. One PNG per variable.

    python -m inference.plot_multiple_samples <generated.nc> --out DIR \
        [--times 0,2,4 | --n-times 4] [--variable 2t] [--members 2]
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

import numpy as np

from helpers.infrastructure.errors import GeneratedFileError, UsageError, run_cli
from inference.generated_file import channels, field, open_generated, sample_dim, select_variables
from inference.plotting import color_limits, draw_map, map_grid, pyplot, save_png, time_label
from inference.plotting import units_label as label_of

logger = logging.getLogger("inference.plot_multiple_samples")


def plot_multiple_samples(path: str | os.PathLike, out_dir: str | os.PathLike,
                          times: list[int] | None = None, n_times: int = 4,
                          variables: list[str] | None = None, n_members: int = 2) -> list[Path]:
    """Write ``samples_<var>.png`` per variable; ``times`` defaults to ``n_times`` evenly spread
    indices. Returns the paths."""
    plt = pyplot()
    ds = open_generated(path)
    try:
        dim = sample_dim(ds)
        total = ds.sizes[dim]
        if times is None:
            times = sorted(set(np.linspace(0, total - 1, min(n_times, total)).round().astype(int)))
        bad = [t for t in times if not 0 <= t < total]
        if bad:
            raise GeneratedFileError(f"time index {bad} out of range: {path} has {total} "
                                     f"{dim}(s)")
        at = {dim: times}
        grids = [map_grid(ds, t) for t in times]
        one_grid = dim not in ds["lat"].dims if "lat" in ds.coords else True
        members = min(n_members, ds.sizes["ensemble"])
        written = []
        for var in select_variables(ds, variables):
            with_input = var in channels(ds, "input")
            truth = field(ds, "truth", var).isel(at).values
            pred = field(ds, "prediction", var).isel(at).values
            columns = (["input"] if with_input else []) + ["truth"] + [
                f"member {m}" for m in range(members)] + ["ensemble mean"]
            inputs = field(ds, "input", var).isel(at).values if with_input else None
            vmin, vmax = color_limits(truth, pred[:members])
            label = label_of(ds[f"truth_{var}"].attrs)
            # Rows share axes only when every sample has the same grid.
            fig, axes = plt.subplots(len(times), len(columns), squeeze=False,
                                     sharex="all" if one_grid else "row",
                                     sharey="all" if one_grid else "row", layout="constrained",
                                     figsize=(3.0 * len(columns) + 1, 2.6 * len(times) + 0.6))
            for row, t in enumerate(times):
                fields = ([inputs[row]] if with_input else []) + [truth[row]] + [
                    pred[m, row] for m in range(members)] + [np.mean(pred[:, row], axis=0)]
                for col, (name, data) in enumerate(zip(columns, fields, strict=True)):
                    ax = axes[row, col]
                    mesh = draw_map(ax, data, grids[row], name if row == 0 else "", vmin, vmax,
                                    colorbar=False)
                    ax.label_outer()
                axes[row, 0].set_ylabel(f"{time_label(ds, t)}\n{axes[row, 0].get_ylabel()}",
                                        fontsize=8)
            bar = fig.colorbar(mesh, ax=axes, shrink=0.6, location="right")
            bar.set_label(label)
            fig.suptitle(label)
            written.append(save_png(fig, Path(out_dir) / f"samples_{var}.png"))
        return written
    finally:
        ds.close()


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    parser = argparse.ArgumentParser(prog="python -m inference.plot_multiple_samples",
                                     description="Several times x (truth, members, mean).")
    parser.add_argument("path")
    parser.add_argument("--out", default="outputs/plots", help="output folder")
    parser.add_argument("--times", help="comma-separated time indices")
    parser.add_argument("--n-times", type=int, default=4, help="evenly spread times if no --times")
    parser.add_argument("--variables", "--variable", dest="variables",
                        help="comma-separated (default all)")
    parser.add_argument("--members", type=int, default=2)
    args = parser.parse_args(argv)
    def job() -> None:
        try:
            times = [int(t) for t in args.times.split(",")] if args.times else None
        except ValueError:
            raise UsageError(f"--times {args.times!r}: give comma-separated time indices, "
                             "e.g. --times 0,3,7") from None
        plot_multiple_samples(args.path, args.out, times, args.n_times,
                              args.variables.split(",") if args.variables else None, args.members)

    return run_cli(job)


if __name__ == "__main__":
    sys.exit(main())
