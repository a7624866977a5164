"""Convert a coarse + a fine dataset (NetCDF or zarr) into the HRRR-Mini layout.

This is the "convert your data to an existing datapipe" path: once converted, the data trains
with ``dataset.type: hrrr_mini`` and no new code. Example::

    python -m datasets.convert --coarse era5.nc --fine hires.nc \\
        --input-variables t2m,u10,v10,tcwv --output-variables t2m,u10,v10 \\
        --invariant-variables orog,lsm --out data/myregion --window 64 --stride 32

Every ``window x window`` fine-grid window (top-left corners every ``stride`` pixels) at every
common time becomes one sample; its coarse input is the matching block range of the coarse grid.
The last ``--valid-fraction`` of the times (or all times from ``--valid-start``) go to
``valid.nc``, the rest to ``train.nc``; ``stats.json`` is computed from the training samples.
See `datasets.xarray_pairs` for how times and grids are matched (and ``--regrid``).
"""

from __future__ import annotations

import argparse
import datetime
import logging
import math
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from datasets.base import DataError
from datasets.hrrrmini_format import HRRRMiniWriter, write_stats
from datasets.xarray_pairs import PairedData, check_finite, parse_variables

log = logging.getLogger(__name__)


def window_positions(shape: tuple[int, int], window: int, stride: int) -> np.ndarray:
    """Top-left ``(row, col)`` of every window, row-major, ``(n, 2)``."""
    if window > min(shape):
        raise DataError(f"window {window} is larger than the fine grid {shape}")
    rows = range(0, shape[0] - window + 1, stride)
    cols = range(0, shape[1] - window + 1, stride)
    return np.array([(r, c) for r in rows for c in cols], dtype=np.int64)


def split_times(
    times: Sequence[datetime.datetime],
    valid_fraction: float | None,
    valid_start: str | datetime.datetime | None,
) -> tuple[list[int], list[int]]:
    """Indices of train and valid times: a contiguous final fraction, or all times from a date."""
    if valid_start is not None and valid_fraction is not None:
        raise DataError("give either a valid fraction or a valid start time, not both")
    n = len(times)
    if valid_start is not None:
        start = valid_start
        if not isinstance(start, datetime.datetime):
            try:
                start = datetime.datetime.fromisoformat(str(start))
            except ValueError as err:
                raise DataError(f"valid start {valid_start!r} is not an ISO date") from err
        valid = [i for i, t in enumerate(times) if t >= start]
    else:
        fraction = 0.1 if valid_fraction is None else float(valid_fraction)
        if not 0 <= fraction < 1:
            raise DataError(f"valid fraction must be in [0, 1), got {fraction}")
        valid = list(range(n - math.ceil(fraction * n), n)) if fraction > 0 else []
    in_valid = set(valid)
    train = [i for i in range(n) if i not in in_valid]
    if not train:
        raise DataError(f"no training times left: all {n} common times fall in the validation set")
    return train, valid


def _check_multiple(name: str, value: int, factor: int) -> int:
    if int(value) != value or value < 1 or value % factor:
        raise DataError(f"{name} {value} must be a positive multiple of the grid factor {factor}")
    return int(value)


def convert(
    coarse: str | os.PathLike,
    fine: str | os.PathLike,
    input_variables: str | Sequence[str],
    output_variables: str | Sequence[str],
    out: str | os.PathLike,
    window: int,
    stride: int | None = None,
    invariant_variables: str | Sequence[str] | None = None,
    invariant_file: str | os.PathLike | None = None,
    valid_fraction: float | None = None,
    valid_start: str | datetime.datetime | None = None,
    regrid: bool = False,
    factor: int | None = None,
    coarse_dims: Sequence[str] | None = None,
    fine_dims: Sequence[str] | None = None,
    progress: bool = True,
) -> dict:
    """Write ``out/train.nc``, ``out/valid.nc`` (if any validation times) and ``out/stats.json``.

    Returns a summary: output paths, sample counts, factor and shapes."""
    pairs = PairedData(coarse, fine, input_variables, output_variables, regrid=regrid,
                       factor=factor, coarse_dims=coarse_dims, fine_dims=fine_dims)
    try:
        return _convert(pairs, out, window, stride, invariant_variables, invariant_file,
                        valid_fraction, valid_start, progress, (str(coarse), str(fine)))
    finally:
        pairs.close()


def _convert(pairs, out, window, stride, invariant_variables, invariant_file, valid_fraction,
             valid_start, progress, sources) -> dict:
    f = pairs.factor
    window = _check_multiple("window", window, f)
    stride = _check_multiple("stride", window if stride is None else stride, f)
    log.info("%s", pairs.describe())
    positions = window_positions(pairs.fine_shape, window, stride)
    uncovered = np.subtract(pairs.fine_shape, positions.max(axis=0) + window)
    if uncovered.any():
        log.info("the last %d rows and %d columns of the fine grid are in no window "
                 "(stride does not divide grid - window)", *uncovered)
    invariant_pairs = parse_variables(invariant_variables)
    static = pairs.read_static([s for _, s in invariant_pairs], invariant_file)
    invariants = {name: static[src] for name, src in invariant_pairs}
    ll = pairs.latlon()
    train, valid = split_times(pairs.times, valid_fraction, valid_start)
    out = Path(out)
    common = dict(
        input_shape=(window // f, window // f), output_shape=(window, window),
        input_variables=[n for n, _ in pairs.inputs],
        output_variables=[n for n, _ in pairs.outputs], invariants=invariants,
        lat=None if ll is None else ll[0], lon=None if ll is None else ll[1],
        attributes=dict(coarse_source=sources[0], fine_source=sources[1], factor=str(f),
                        window=str(window), stride=str(stride),
                        regridded=str(pairs.regridder is not None)),
    )
    summary = dict(factor=f, window=window, stride=stride, windows_per_time=len(positions))
    # Both splits and the statistics are written to a staging folder and moved into place only
    # when all succeeded, so a failure never leaves a mix of new and old files.
    stage = out / ".convert-partial"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    try:
        for split, indices in (("train", train), ("valid", valid)):
            summary[f"{split}_samples"] = 0
            if not indices:
                continue
            with HRRRMiniWriter(stage / f"{split}.nc", **common) as writer:
                for k in tqdm(indices, desc=f"writing {split}", unit="time",
                              disable=not progress):
                    _write_time(writer, pairs, k, positions, window)
            if split == "train":
                write_stats(stage / "stats.json", writer.stats())
            summary[f"{split}_samples"] = writer.count
            summary[f"{split}_times"] = len(indices)
            summary[split] = str(out / f"{split}.nc")
        if not valid and (out / "valid.nc").exists():
            (out / "valid.nc").unlink()
            log.info("removed stale %s (no validation times this time)", out / "valid.nc")
        for written in stage.iterdir():
            os.replace(written, out / written.name)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    summary["stats"] = str(out / "stats.json")
    log.info(
        "wrote %s (%d samples from %d times) and %s (%d samples); statistics in %s; "
        "%d windows of %dx%d per time",
        summary["train"], summary["train_samples"], len(train), summary.get("valid", "no valid.nc"),
        summary["valid_samples"], summary["stats"], len(positions), window, window,
    )
    return summary


def _write_time(writer: HRRRMiniWriter, pairs: PairedData, k: int, positions: np.ndarray,
                window: int) -> None:
    """All windows at matched time ``k``: each field is read once, then cut."""
    f, t = pairs.factor, pairs.times[k]
    w = window // f
    inputs, outputs = {}, {}
    for name, src in pairs.inputs:
        field = pairs.read_coarse(k, src)
        check_finite(field, src, t, "coarse")
        inputs[name] = np.stack([field[r // f:r // f + w, c // f:c // f + w] for r, c in positions])
    for name, src in pairs.outputs:
        field = pairs.read_fine(k, src)
        check_finite(field, src, t, "fine")
        outputs[name] = np.stack([field[r:r + window, c:c + window] for r, c in positions])
    writer.append([t] * len(positions), positions, inputs, outputs)


def _dims(text: str | None) -> tuple[str, str] | None:
    if text is None:
        return None
    dims = tuple(d.strip() for d in text.split(","))
    if len(dims) != 2:
        raise argparse.ArgumentTypeError(f"expected two dimension names 'y,x', got {text!r}")
    return dims


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m datasets.convert", description=__doc__.split("\n\n")[0],
        epilog="Variable lists are comma-separated; 'name=source' renames a file variable.",
    )
    parser.add_argument("--coarse", required=True, help="coarse (input) NetCDF file or zarr store")
    parser.add_argument("--fine", required=True, help="fine (target) NetCDF file or zarr store")
    parser.add_argument("--input-variables", required=True, help="coarse variables, e.g. t2m,u10")
    parser.add_argument("--output-variables", required=True, help="fine variables to predict")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--window", type=int, required=True,
                        help="sample size in fine pixels (a multiple of the grid factor)")
    parser.add_argument("--stride", type=int,
                        help="window spacing in fine pixels (default: window)")
    parser.add_argument("--invariant-variables", help="static fields, e.g. orog,lsm")
    parser.add_argument("--invariant-file",
                        help="invariants on the fine grid (default: the fine file)")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--valid-fraction", type=float,
                       help="final fraction of the times kept for validation (default 0.1)")
    group.add_argument("--valid-start", help="validation = all times from this ISO date on")
    parser.add_argument("--regrid", action="store_true",
                        help="interpolate coarse lat/lon data to the centres of fine blocks")
    parser.add_argument("--factor", type=int, help="fine pixels per coarse cell side")
    parser.add_argument("--coarse-dims", type=_dims,
                        help="coarse (y,x) dims, e.g. latitude,longitude (default: detected)")
    parser.add_argument("--fine-dims", type=_dims,
                        help="fine (y,x) dims, e.g. south_north,west_east (default: detected)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        convert(args.coarse, args.fine, args.input_variables, args.output_variables, args.out,
                args.window, args.stride, args.invariant_variables, args.invariant_file,
                args.valid_fraction, args.valid_start, args.regrid, args.factor,
                args.coarse_dims, args.fine_dims, progress=not args.no_progress)
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
