"""The files of an Earth2Studio CorrDiff package, made from what our dataset knows.

Earth2Studio 0.19's generic loader (``CorrDiff.load_model(Package(dir))``) reads
``regression.mdlus``, ``diffusion.mdlus``, ``metadata.json``, ``stats.json``,
``output_latlon_grid.nc``, ``input_latlon_grid.nc`` and ``invariants.nc``. At run time it
interpolates the input from its grid to the output grid, appends the invariants, z-scores both
with ``stats.json``, runs the networks and de-normalises linearly. The pieces here are chosen
so that the networks see what they saw in training:

- **Input grid = our coarse cells.** Our datapipes upsample a window's coarse blocks bilinearly
  in cell-index space. On a curvilinear grid Earth2Studio interpolates in index space too, so
  the input grid is the centres of the ``factor x factor`` blocks of the window, plus one ring
  of cells: the window's edge pixels lie beyond the outer block centres, and Earth2Studio only
  interpolates inside its input grid. Where our datapipe has no data there it extrapolates from
  the edge; `pad_like_training` computes that ring from the interior cells.
- **Names and units.** Our channel names map to Earth2Studio's lexicon (``u10m``, ``t2m``,
  ``tp``, ...), each with an optional unit ``scale`` (our value = scale x Earth2Studio's,
  e.g. 1000 from m to mm), folded into the z-score statistics.
- **Transformed outputs.** A ``log1p`` or ``sqrt`` output (heavy-tailed precipitation) cannot be
  inverted by a linear de-normalisation: it is exported in transformed units under
  ``<name>_<transform>`` and ``metadata.json`` says how to invert it.

The files need numpy and xarray only; `pad_like_training` borrows the datapipe's padding.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from helpers.infrastructure.errors import ConfigError, DataError

PACKAGE_FILES = ("regression.mdlus", "diffusion.mdlus", "metadata.json", "stats.json",
                 "output_latlon_grid.nc", "input_latlon_grid.nc", "invariants.nc")
# Earth2Studio's test of a 2-D grid being rectilinear (it refuses those stored 2-D).
RECTILINEAR_TOLERANCE = 1e-5
INVERSE_OF = {"log1p": "expm1", "sqrt": "square"}


@dataclass(frozen=True)
class ExportedName:
    """An Earth2Studio variable name and the unit scale: our value = ``scale`` x theirs."""

    name: str
    scale: float = 1.0


def parse_variable_map(raw: Mapping[str, Any] | None, option: str) -> dict[str, ExportedName]:
    """``{ours: name}`` or ``{ours: {name: theirs, scale: factor}}`` to `ExportedName` s."""
    parsed = {}
    for ours, target in (raw or {}).items():
        where = f"{option}.{ours}"
        if isinstance(target, str) and target.strip():
            parsed[str(ours)] = ExportedName(target.strip())
            continue
        if not isinstance(target, Mapping) or not str(target.get("name") or "").strip():
            raise ConfigError(f"{where}={target!r} must be an Earth2Studio variable name or "
                              "{name: <name>, scale: <our units per theirs>}")
        unknown = sorted(set(target) - {"name", "scale"})
        if unknown:
            raise ConfigError(f"{where} has unknown key(s) {unknown}; use name and scale")
        try:
            scale = float(target.get("scale", 1.0))
        except (TypeError, ValueError):
            scale = math.nan
        if not math.isfinite(scale) or scale <= 0:
            raise ConfigError(f"{where}.scale={target.get('scale')!r} must be a positive "
                              "number (our value = scale x Earth2Studio's value)")
        parsed[str(ours)] = ExportedName(str(target["name"]).strip(), scale)
    return parsed


def exported_names(names: Sequence[str], mapping: Mapping[str, ExportedName],
                   group: str) -> list[ExportedName]:
    """The Earth2Studio name of each of our ``group`` variables; every one must be mapped,
    and no two may get the same name."""
    missing = [n for n in names if n not in mapping]
    if missing:
        example = ",".join(f"{n}:<name>" for n in missing)
        raise ConfigError(
            f"{group} variable(s) {missing} have no Earth2Studio name; map them with "
            f"++export.variable_map={{{example}}} (names from Earth2Studio's lexicon, e.g. "
            "u10m, v10m, t2m, tp, msl, tcwv) or dataset.earth2studio_names")
    exported = [mapping[n] for n in names]
    targets = [e.name for e in exported]
    repeated = sorted({t for t in targets if targets.count(t) > 1})
    if repeated:
        raise ConfigError(f"{group} variables {list(names)} map to Earth2Studio names "
                          f"{targets}, which repeat {repeated}; each needs its own name")
    return exported


def normalisation(mean: float, std: float, scale: float = 1.0) -> dict[str, float]:
    """Statistics in Earth2Studio's units: ``(scale x - mean) / std = (x - mean/scale) /
    (std/scale)``, and de-normalising likewise gives ``(z std + mean) / scale``."""
    return {"mean": float(mean) / scale, "std": float(std) / scale}


def is_rectilinear(lat: np.ndarray, lon: np.ndarray) -> bool:
    """Latitude constant along rows and longitude along columns (Earth2Studio's criterion)."""
    def constant(values: np.ndarray, axis: int) -> bool:
        reference = np.take(values, [0], axis=axis)
        return bool(np.allclose(values, reference, rtol=RECTILINEAR_TOLERANCE,
                                atol=RECTILINEAR_TOLERANCE))

    return constant(lat, 1) and constant(lon, 0)


def check_output_grid(lat: np.ndarray, lon: np.ndarray, where: str) -> None:
    """A window Earth2Studio 0.19 can take as its output grid, else a clear refusal."""
    if not (np.isfinite(lat).all() and np.isfinite(lon).all()):
        raise DataError(
            f"{where} has no lat/lon grid (or one with missing values); Earth2Studio places "
            "outputs by latitude and longitude: store lat(y, x) and lon(y, x) in the file's "
            "root or invariant group (python -m datasets.convert does)")
    if np.ptp(lon) > 180:
        raise DataError(
            f"{where} crosses the antimeridian (longitudes {float(lon.min()):.1f} to "
            f"{float(lon.max()):.1f}); store longitudes continuous across the window "
            "(e.g. 0..360) before exporting")
    if is_rectilinear(lat, lon):
        raise DataError(
            f"{where} is a regular (rectilinear) lat/lon grid; Earth2Studio 0.19's CorrDiff "
            "refuses such an output grid stored 2-D and cannot interpolate onto one stored "
            "1-D, so it cannot run this model as is (projected grids such as HRRR's export "
            "fine)")


def cell_centres(lat: np.ndarray, lon: np.ndarray, factor: int) -> tuple[np.ndarray, np.ndarray]:
    """The centres of the window's ``factor x factor`` blocks, with one more ring of cells
    continued linearly, as float64 ``(h + 2, w + 2)`` arrays."""
    def blocks(values: np.ndarray) -> np.ndarray:
        h, w = values.shape[0] // factor, values.shape[1] // factor
        cropped = np.asarray(values, np.float64)[:h * factor, :w * factor]
        return cropped.reshape(h, factor, w, factor).mean(axis=(1, 3))

    return pad_linear(blocks(lat)), pad_linear(blocks(lon))


def pad_linear(values: np.ndarray) -> np.ndarray:
    """One ring of cells continued linearly (``2 x[0] - x[1]``) on the last two axes."""
    x = np.asarray(values, np.float64)
    x = np.concatenate([2 * x[..., :, :1] - x[..., :, 1:2], x,
                        2 * x[..., :, -1:] - x[..., :, -2:-1]], axis=-1)
    return np.concatenate([2 * x[..., :1, :] - x[..., 1:2, :], x,
                           2 * x[..., -1:, :] - x[..., -2:-1, :]], axis=-2)


def pad_like_training(coarse: np.ndarray) -> np.ndarray:
    """The ring of cells around a window's coarse input as our datapipe extrapolates it
    (linear from the edge, kept within each field's range; the datapipe's own function):
    feed this to the package where no real data surround the window, and it sees exactly
    the training input."""
    from datasets.interpolation import pad_within_range

    return pad_within_range(np.asarray(coarse))


def grid_dataset(lat: np.ndarray, lon: np.ndarray, title: str):
    """The ``lat(y, x)``, ``lon(y, x)`` file Earth2Studio reads a grid from."""
    import xarray as xr

    return xr.Dataset(
        {"lat": (("y", "x"), lat, {"units": "degrees_north", "standard_name": "latitude"}),
         "lon": (("y", "x"), lon, {"units": "degrees_east", "standard_name": "longitude"})},
        attrs={"title": title})


def invariants_dataset(fields: Mapping[str, np.ndarray], attributes: Mapping[str, dict],
                       lat: np.ndarray, lon: np.ndarray):
    """The static fields on the output grid, in physical units."""
    import xarray as xr

    return xr.Dataset(
        {name: (("y", "x"), np.asarray(values, np.float32), dict(attributes.get(name, {})))
         for name, values in fields.items()},
        coords={"lat": (("y", "x"), lat), "lon": (("y", "x"), lon)},
        attrs={"title": "CorrDiff invariants on the output grid"})


def check_destination(directory: Path, overwrite: bool) -> Path:
    """``directory`` may receive the package: new or empty (or ``overwrite``), and writable."""
    from helpers.infrastructure.output_paths import ensure_writable_directory

    if directory.exists() and not overwrite and (not directory.is_dir()
                                                 or any(directory.iterdir())):
        raise ConfigError(f"export.output_dir={str(directory)!r} already exists and is not "
                          "empty; choose a new directory or set ++export.overwrite=true")
    ensure_writable_directory(directory.parent, "export.output_dir")
    return directory


def write_package(directory: Path, checkpoints: Mapping[str, Path], metadata: dict,
                  stats: dict, datasets: Mapping[str, Any], overwrite: bool) -> Path:
    """Write every file into a temporary sibling directory, then rename it into place (an
    existing package is replaced only with ``overwrite``), so no half-written package ever
    sits at ``directory``."""
    directory = check_destination(Path(directory), overwrite)
    temporary = directory.with_name(f".{directory.name}.partial-{os.getpid()}")
    shutil.rmtree(temporary, ignore_errors=True)
    temporary.mkdir(parents=True)
    try:
        for name, source in checkpoints.items():
            shutil.copyfile(source, temporary / name)
        (temporary / "metadata.json").write_text(json.dumps(metadata, indent=1) + "\n")
        (temporary / "stats.json").write_text(json.dumps(stats, indent=1) + "\n")
        for name, dataset in datasets.items():
            dataset.to_netcdf(temporary / name)
        _replace_directory(temporary, directory)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    return directory


def _replace_directory(new: Path, target: Path) -> None:
    if not target.exists():
        os.replace(new, target)
        return
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    os.replace(target, old)
    os.replace(new, target)
    shutil.rmtree(old, ignore_errors=True)
