"""Convert a coarse + a fine dataset (NetCDF or zarr) into the HRRR-Mini layout.

This is the "convert your data to an existing datapipe" path: once converted, the data trains
with ``dataset.type: hrrr_mini`` and no new code. Example::

    python -m datasets.convert --coarse era5.nc --fine hires.nc \\
        --input-variables t2m,u10,v10,tcwv --output-variables t2m,u10,v10 \\
        --invariant-variables orog,lsm --out data/myregion --window 64 --stride 32

Every ``window`` fine-grid window (top-left corners every ``stride`` pixels) at every common
time becomes one sample; its coarse input is the matching block range of the coarse grid;
``--window full`` makes one whole-domain sample per time. The fine grid is cropped at its far
edges to whole coarse cells (``--crop``). Windows whose target has more missing values than
``--max-missing`` are skipped; missing values that remain stay NaN and are marked in
``stats.json``. The last ``--valid-fraction`` of the times (or all times from
``--valid-start``) go to ``valid.nc``, the rest to ``train.nc``; ``stats.json`` is computed from
the valid values of the training samples. See `datasets.xarray_pairs` for how channels, times
and grids are matched.
"""

from __future__ import annotations

import argparse
import datetime
import logging
import os
import shutil
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from datasets.channel_policy import normalization_plan
from datasets.hrrrmini import MASK_SUFFIX
from datasets.hrrrmini_format import HRRRMiniWriter
from datasets.sample_windows import check_multiple, parse_window, split_times, window_positions
from datasets.stats_file import write_stats
from datasets.variable_metadata import channel_attributes
from datasets.xarray_pairs import PairedData
from helpers.infrastructure.errors import DataError, run_cli

log = logging.getLogger(__name__)


def convert(
    coarse: str | os.PathLike,
    fine: str | os.PathLike,
    input_variables: str | Sequence[str],
    output_variables: str | Sequence[str],
    out: str | os.PathLike,
    window: int | str | Sequence[int],
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
    *,
    select: str | Mapping[str, object] | None = None,
    crop: str | int = "auto",
    max_missing: float = 0.0,
    nonnegative: str | Sequence[str] | None = None,
    transform: str | Sequence[str] | Mapping[str, str] | None = None,
) -> dict:
    """Write ``out/train.nc``, ``out/valid.nc`` (if any validation times) and ``out/stats.json``.

    Returns a summary: output paths, sample counts (kept and skipped per split), factor and
    shapes. On any error nothing is left behind: no partial file, and no ``out`` directory if
    this call created it."""
    if not 0 <= float(max_missing) < 1:
        raise DataError(f"--max-missing must be a fraction in [0, 1), got {max_missing}")
    out = Path(out)
    created = not out.exists()
    try:
        pairs = PairedData(coarse, fine, input_variables, output_variables, regrid=regrid,
                           factor=factor, coarse_dims=coarse_dims, fine_dims=fine_dims,
                           select=select, crop=crop)
        try:
            options = dict(window=window, stride=stride, invariant_variables=invariant_variables,
                           invariant_file=invariant_file, valid_fraction=valid_fraction,
                           valid_start=valid_start, max_missing=float(max_missing),
                           nonnegative=nonnegative, transform=transform)
            return _Conversion(pairs, out, progress, (str(coarse), str(fine)), options).run()
        finally:
            pairs.close()
    except BaseException:
        if created and out.is_dir() and not any(out.iterdir()):
            out.rmdir()
        raise


class _Conversion:
    """One conversion: the plan (windows, invariants, statistics policy), then both splits."""

    def __init__(self, pairs: PairedData, out: Path, progress: bool, sources: tuple[str, str],
                 options: dict):
        self.pairs, self.out, self.progress = pairs, out, progress
        self.max_missing = options["max_missing"]
        f = pairs.factor
        self.window = check_multiple("window", parse_window(options["window"], pairs.fine_shape),
                                      f)
        stride = options["stride"]
        self.stride = check_multiple("stride", self.window if stride is None else
                                      parse_window(stride, pairs.fine_shape), f)
        log.info("%s", pairs.describe())
        self.positions = window_positions(pairs.fine_shape, self.window, self.stride)
        uncovered = np.subtract(pairs.fine_shape, self.positions.max(axis=0) + self.window)
        if uncovered.any():
            log.info("the last %d rows and %d columns of the fine grid are in no window "
                     "(stride does not divide grid - window)", *uncovered)
        invariants, invariant_attrs = self._invariants(options["invariant_variables"],
                                                       options["invariant_file"])
        attrs = {name: channel_attributes(name, stored=pairs.attributes(name))
                 for name in [*pairs.input_names, *pairs.output_names]}
        channels = {"input": pairs.input_names, "output": pairs.output_names}
        self.plan = normalization_plan(channels, attrs, options["nonnegative"],
                                       options["transform"])
        self.train, self.valid = split_times(pairs.times, options["valid_fraction"],
                                             options["valid_start"])
        ll = pairs.latlon()
        h, w = self.window[0] // f, self.window[1] // f
        self.writer_options = dict(
            input_shape=(h, w), output_shape=self.window,
            input_variables=pairs.input_names, output_variables=pairs.output_names,
            invariants=invariants, lat=None if ll is None else ll[0],
            lon=None if ll is None else ll[1],
            attributes=dict(coarse_source=sources[0], fine_source=sources[1], factor=str(f),
                            window=f"{self.window[0]}x{self.window[1]}",
                            stride=f"{self.stride[0]}x{self.stride[1]}",
                            regridded=str(pairs.regridder is not None),
                            fine_grid=f"{pairs.fine_shape[0]}x{pairs.fine_shape[1]}",
                            max_missing=str(self.max_missing),
                            channels="; ".join(f"{c.name}: {c.text}" for c in
                                               [*pairs.inputs, *pairs.outputs])),
            variable_attributes={"input": {n: attrs[n] for n in pairs.input_names},
                                 "output": {n: attrs[n] for n in pairs.output_names},
                                 "invariant": invariant_attrs},
            normalization=self.plan,
        )

    def _invariants(self, variables, path) -> tuple[dict, dict]:
        """Static fields; one with missing values is filled with its valid mean and gets a
        0/1 companion ``<name>_valid`` (a land-only orography yields a land mask)."""
        fields, attrs = self.pairs.read_static(variables, path)
        out, out_attrs = {}, {}
        for name, values in fields.items():
            out_attrs[name] = channel_attributes(name, stored=attrs[name])
            valid = np.isfinite(values)
            if valid.all():
                out[name] = values
                continue
            if not valid.any():
                raise DataError(f"invariant {name!r} has no valid value in the (cropped) fine "
                                "grid; leave it out of --invariant-variables")
            out[name] = np.where(valid, values, values[valid].mean()).astype(np.float32)
            out[name + MASK_SUFFIX] = valid.astype(np.float32)
            out_attrs[name + MASK_SUFFIX] = {"units": "1",
                                             "long_name": f"{name} is valid (1) or missing (0)"}
            log.info("invariant %r is missing at %.1f%% of the grid: filled with its mean and "
                     "added %r (1 where it is valid)", name, 100 * (1 - valid.mean()),
                     name + MASK_SUFFIX)
        return out, out_attrs

    def run(self) -> dict:
        out = self.out
        summary = dict(factor=self.pairs.factor, window=self.window, stride=self.stride,
                       windows_per_time=len(self.positions), fine_shape=self.pairs.fine_shape)
        # Both splits and the statistics are written to a staging folder and moved into place
        # only when all succeeded, so a failure never leaves a mix of new and old files.
        stage = out / ".convert-partial"
        shutil.rmtree(stage, ignore_errors=True)
        stage.mkdir(parents=True)
        try:
            stats, missing_inputs = None, set()
            for split, indices in (("train", self.train), ("valid", self.valid)):
                summary[f"{split}_samples"] = summary[f"{split}_skipped"] = 0
                if not indices:
                    continue
                with HRRRMiniWriter(stage / f"{split}.nc", **self.writer_options) as writer:
                    counts = self._write_split(writer, split, indices)
                missing_inputs |= {n for n, m in writer.moments["input"].items() if m.missing}
                if split == "train":
                    stats = writer.stats()
                summary.update({f"{split}_samples": counts[0], f"{split}_skipped": counts[1],
                                f"{split}_times": len(indices), split: str(out / f"{split}.nc")})
            for name in missing_inputs:  # the validation split may lack values the train had
                stats["input"][name]["missing_values"] = True
            write_stats(stage / "stats.json", stats)
            self._report_missing(stats)
            if not self.valid and (out / "valid.nc").exists():
                (out / "valid.nc").unlink()
                log.info("removed stale %s (no validation times this time)", out / "valid.nc")
            for written in stage.iterdir():
                os.replace(written, out / written.name)
        finally:
            shutil.rmtree(stage, ignore_errors=True)
        summary["stats"] = str(out / "stats.json")
        log.info(
            "wrote %s (%d samples from %d times) and %s (%d samples); statistics in %s; "
            "%d windows of %dx%d per time", summary["train"], summary["train_samples"],
            len(self.train), summary.get("valid", "no valid.nc"), summary["valid_samples"],
            summary["stats"], len(self.positions), *self.window)
        return summary

    def _write_split(self, writer: HRRRMiniWriter, split: str, indices: list[int]
                     ) -> tuple[int, int]:
        """Every kept window of the split's times; returns (kept, skipped)."""
        kept = skipped = 0
        least = 1.0
        bar = tqdm(indices, desc=f"writing {split}", unit="time", disable=not self.progress)
        for k in bar:
            fractions = self._write_time(writer, k)
            keep = fractions <= self.max_missing
            kept, skipped = kept + int(keep.sum()), skipped + int((~keep).sum())
            least = min(least, float(fractions.min()))
            bar.set_postfix(kept=kept, skipped=skipped, refresh=False)
        log.info("%s: kept %d window(s), skipped %d with more than %g of their target values "
                 "missing (--max-missing)", split, kept, skipped, self.max_missing)
        if kept == 0:
            raise DataError(
                f"the {split} split keeps none of its {skipped} windows: each has more than "
                f"{self.max_missing:g} of its target values missing (the least has {least:.2f}); "
                f"raise --max-missing above {least:.2f}, or choose windows that cover the data "
                "(--window, --stride)" + (", or fewer validation times (--valid-fraction)"
                                          if split == "valid" else ""))
        return kept, skipped

    def _write_time(self, writer: HRRRMiniWriter, k: int) -> np.ndarray:
        """All windows at matched time ``k`` (each field is read once, then cut) whose target
        is complete enough; returns every window's missing fraction (worst channel)."""
        pairs, f, (wy, wx) = self.pairs, self.pairs.factor, self.window
        rows, cols = self.positions[:, 0], self.positions[:, 1]
        outputs = {}
        fractions = np.zeros(len(self.positions))
        for name in pairs.output_names:
            field = _as_missing(pairs.read_fine(k, name))
            windows = np.stack([field[r:r + wy, c:c + wx] for r, c in zip(rows, cols,
                                                                           strict=True)])
            fractions = np.maximum(fractions, np.isnan(windows).mean(axis=(1, 2)))
            outputs[name] = windows
        keep = fractions <= self.max_missing
        if not keep.any():
            return fractions
        inputs = {}
        for name in pairs.input_names:
            field = _as_missing(pairs.read_coarse(k, name))
            inputs[name] = np.stack([field[r // f:(r + wy) // f, c // f:(c + wx) // f]
                                     for r, c in self.positions[keep]])
        writer.append([pairs.times[k]] * int(keep.sum()), self.positions[keep], inputs,
                      {n: v[keep] for n, v in outputs.items()})
        return fractions

    def _report_missing(self, stats: dict) -> None:
        for group, what in (("input", "training and generation fill them and add a validity "
                                      "channel '{name}_valid'"),
                            ("output", "kept as NaN: training leaves them out of the loss")):
            for name, entry in stats[group].items():
                if entry.get("missing_values"):
                    log.info("%s %r has missing values: %s", group, name,
                             what.format(name=name))


def _as_missing(values: np.ndarray) -> np.ndarray:
    """NaN for every non-finite value (Inf and decoded fill values count as missing)."""
    if np.isfinite(values).all():
        return values
    return np.where(np.isfinite(values), values, np.nan).astype(np.float32)


def _dims(text: str | None) -> tuple[str, str] | None:
    if text is None:
        return None
    dims = tuple(d.strip() for d in text.split(","))
    if len(dims) != 2:
        raise argparse.ArgumentTypeError(f"expected two dimension names 'y,x', got {text!r}")
    return dims


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m datasets.convert", description=__doc__.split("\n\n")[0],
        epilog="Variable lists are comma-separated; 'name=source' renames a file variable and "
               "'source@dim=value' selects a level (several levels: one channel each).",
    )
    parser.add_argument("--coarse", required=True, help="coarse (input) NetCDF file or zarr store")
    parser.add_argument("--fine", required=True, help="fine (target) NetCDF file or zarr store")
    parser.add_argument("--input-variables", required=True, help="coarse variables, e.g. t2m,u10")
    parser.add_argument("--output-variables", required=True, help="fine variables to predict")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--window", required=True,
                        help="sample size in fine pixels: 64, 64x96 (rows x columns) or full "
                             "(one whole-domain sample per time); multiples of the grid factor")
    parser.add_argument("--stride", help="window spacing in fine pixels (default: window)")
    parser.add_argument("--invariant-variables", help="static fields, e.g. orog,lsm")
    parser.add_argument("--invariant-file",
                        help="invariants on the fine grid (default: the fine file)")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--valid-fraction", type=float,
                       help="final fraction of the times kept for validation (default 0.1)")
    group.add_argument("--valid-start", help="validation = all times from this ISO date on")
    parser.add_argument("--crop", default="auto",
                        help="auto (default): crop the grids at their far edges to whole coarse "
                             "cells; N: also to a multiple of N fine pixels (e.g. 16 for a "
                             "whole-domain UNet); none: refuse grids that need cropping")
    parser.add_argument("--select",
                        help="pick one value of extra dimensions in both files, e.g. "
                             "level=850,member=0 (also coordinates along time, for a flattened "
                             "time x level axis)")
    parser.add_argument("--max-missing", type=float, default=0.0,
                        help="skip windows whose target has a larger missing fraction (default "
                             "0); missing values that remain are kept as NaN and masked")
    parser.add_argument("--nonnegative",
                        help="channels that are never negative (precipitation is recognised "
                             "from units/standard_name; 'none' switches that off)")
    parser.add_argument("--transform",
                        help="value transform before normalising, e.g. tp=log1p (none, log1p, "
                             "sqrt)")
    parser.add_argument("--regrid", action="store_true",
                        help="interpolate coarse lat/lon data to the centres of fine blocks")
    parser.add_argument("--factor", type=int,
                        help="fine pixels per coarse cell side (default: inferred from sizes)")
    parser.add_argument("--coarse-dims", type=_dims,
                        help="coarse (y,x) dims, e.g. latitude,longitude (default: detected)")
    parser.add_argument("--fine-dims", type=_dims,
                        help="fine (y,x) dims, e.g. south_north,west_east (default: detected)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    return run_cli(lambda: convert(
        args.coarse, args.fine, args.input_variables, args.output_variables, args.out,
        args.window, args.stride, args.invariant_variables, args.invariant_file,
        args.valid_fraction, args.valid_start, args.regrid, args.factor,
        args.coarse_dims, args.fine_dims, progress=not args.no_progress,
        select=args.select, crop=args.crop, max_missing=args.max_missing,
        nonnegative=args.nonnegative, transform=args.transform))


if __name__ == "__main__":
    sys.exit(main())
