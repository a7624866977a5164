"""Shared plotting helpers: headless matplotlib, atomic PNG writes, maps on lat/lon or pixels."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import xarray as xr

from helpers.infrastructure.atomic_write import atomic_path

logger = logging.getLogger(__name__)


def pyplot():
    """matplotlib.pyplot on the Agg backend: the scripts run on servers without a display."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_png(fig, path: str | os.PathLike, dpi: int = 110) -> Path:
    """Save to a temporary name in the same folder, then rename: a PNG at ``path`` is whole."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as temporary:
        fig.savefig(temporary, format="png", dpi=dpi, bbox_inches="tight")
        pyplot().close(fig)
    logger.info("wrote %s", path.resolve())
    return path


def units_label(attrs: dict) -> str:
    """``long_name [units]`` from CF attributes, whichever of them exist."""
    name = attrs.get("long_name", attrs.get("channel", ""))
    units = attrs.get("units", "")
    return f"{name} [{units}]" if units else str(name)


def color_limits(*fields: np.ndarray) -> tuple[float, float]:
    """Shared 1st-99th percentile range, so panels of one variable compare by colour."""
    values = np.concatenate([np.asarray(f, dtype=np.float64).ravel() for f in fields])
    values = values[np.isfinite(values)]
    if values.size == 0:
        return 0.0, 1.0
    low, high = np.percentile(values, [1, 99])
    return (float(low), float(high)) if high > low else (float(low) - 0.5, float(high) + 0.5)


def draw_map(ax, data: np.ndarray, grid: tuple[np.ndarray, np.ndarray] | None, title: str,
             vmin: float, vmax: float, cmap: str = "viridis", label: str = "",
             colorbar: bool = True):
    """One field: pcolormesh on ``grid = (lon, lat)`` when given, else pixel indices."""
    if grid is not None:
        lon, lat = grid
        mesh = ax.pcolormesh(lon, lat, data, vmin=vmin, vmax=vmax, cmap=cmap, shading="auto",
                             rasterized=True)
        ax.set_xlabel("longitude [°E]")
        ax.set_ylabel("latitude [°N]")
    else:
        mesh = ax.imshow(data, origin="lower", vmin=vmin, vmax=vmax, cmap=cmap,
                         interpolation="nearest")
        ax.set_xlabel("x [pixel]")
        ax.set_ylabel("y [pixel]")
    ax.set_title(title, fontsize=9)
    ax.tick_params(labelsize=7)
    if colorbar:
        bar = ax.figure.colorbar(mesh, ax=ax, shrink=0.85)
        bar.set_label(label, fontsize=7)
        bar.ax.tick_params(labelsize=7)
    return mesh


def map_grid(ds: xr.Dataset, index: int = 0) -> tuple[np.ndarray, np.ndarray] | None:
    """(lon, lat) of sample ``index`` when the file has a finite grid there, else None (plot
    in pixels). Files with one grid give the same one for every index."""
    from inference.generated_file import grid_of

    grid = grid_of(ds, index)
    return None if grid is None else (grid[1], grid[0])


def time_label(ds: xr.Dataset, index: int) -> str:
    return str(np.datetime_as_string(ds["time"].values[index], unit="m")).replace("T", " ")
