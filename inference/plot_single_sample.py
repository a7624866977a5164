"""Maps of one time of a generated file: per variable, the input (same-named channel if there
is one), truth, a few members, the ensemble mean and spread, one PNG per variable.

    python -m inference.plot_single_sample <generated.nc> --time-index 0 --out DIR \
        [--members 3] [--variables 2t,10u]

Maps use the file's lat/lon (pcolormesh) when they are finite, pixel indices otherwise.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

import numpy as np

from helpers.infrastructure.errors import GeneratedFileError, run_cli
from inference.generated_file import channels, field, open_generated, sample_dim, select_variables
from inference.plotting import color_limits, draw_map, map_grid, pyplot, save_png, time_label
from inference.plotting import units_label as label_of

logger = logging.getLogger("inference.plot_single_sample")


def plot_single_sample(path: str | os.PathLike, time_index: int, out_dir: str | os.PathLike,
                       n_members: int = 3, variables: list[str] | None = None) -> list[Path]:
    """Write ``sample_t<index>_<var>.png`` per variable into ``out_dir``; returns the paths."""
    plt = pyplot()
    ds = open_generated(path)
    try:
        dim = sample_dim(ds)
        n_times = ds.sizes[dim]
        if not -n_times <= time_index < n_times:
            raise GeneratedFileError(f"time index {time_index} out of range: {path} has "
                                     f"{n_times} {dim}(s)")
        time_index %= n_times
        at = {dim: time_index}
        names = select_variables(ds, variables)
        grid = map_grid(ds, time_index)
        members = min(n_members, ds.sizes["ensemble"])
        written = []
        for var in names:
            truth = field(ds, "truth", var).isel(at).values
            pred = field(ds, "prediction", var).isel(at).values
            panels = []
            if var in channels(ds, "input"):
                panels.append(("input (interpolated)",
                               field(ds, "input", var).isel(at).values))
            panels.append(("truth", truth))
            panels += [(f"member {m}", pred[m]) for m in range(members)]
            panels.append((f"ensemble mean ({pred.shape[0]})", np.mean(pred, axis=0)))
            vmin, vmax = color_limits(truth, pred)
            label = label_of(ds[f"truth_{var}"].attrs)
            spread = np.std(pred, axis=0, ddof=1) if pred.shape[0] > 1 else None
            n_panels = len(panels) + (spread is not None)
            cols = min(n_panels, 4)
            rows = -(-n_panels // cols)
            fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.5 * rows), squeeze=False)
            for ax, (title, data) in zip(axes.flat, panels, strict=False):
                draw_map(ax, data, grid, title, vmin, vmax, label=label)
            if spread is not None:
                draw_map(axes.flat[len(panels)], spread, grid, "ensemble spread (std)",
                         *color_limits(spread), cmap="magma", label=label)
            for ax in axes.flat[n_panels:]:
                ax.set_visible(False)
            fig.suptitle(f"{label} at {time_label(ds, time_index)}")
            fig.tight_layout()
            written.append(save_png(fig, Path(out_dir) / f"sample_t{time_index}_{var}.png"))
        return written
    finally:
        ds.close()


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    parser = argparse.ArgumentParser(prog="python -m inference.plot_single_sample",
                                     description="Maps of one time of a generated file.")
    parser.add_argument("path")
    parser.add_argument("--time-index", type=int, default=0)
    parser.add_argument("--out", default="outputs/plots", help="output folder")
    parser.add_argument("--members", type=int, default=3, help="members to draw")
    parser.add_argument("--variables", "--variable", dest="variables",
                        help="comma-separated (default all)")
    args = parser.parse_args(argv)
    return run_cli(lambda: plot_single_sample(
        args.path, args.time_index, args.out, args.members,
        args.variables.split(",") if args.variables else None))


if __name__ == "__main__":
    sys.exit(main())
