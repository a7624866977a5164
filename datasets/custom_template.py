"""Template datapipe: read a coarse and a fine xarray dataset directly, with no conversion.

Use it as is when your data are two NetCDF/zarr datasets whose grids are aligned (the fine grid is
``factor`` times the coarse grid, each coarse cell covering ``factor x factor`` fine pixels, or
``regrid: true`` with ``factor`` for a regular lat/lon coarse grid). Each sample is the whole fine
grid at one time: ``img_clean`` = the fine output variables, ``img_lr`` = the coarse input
variables bilinearly upsampled to the fine grid, then the static invariants. Config::

    dataset:
      type: custom_template            # or datasets/custom_template.py::PairedXarrayDataset
      coarse_path: era5.nc
      fine_path: hires.zarr
      input_variables: [t2m, u10, v10, tcwv]
      output_variables: [t2m, u10, v10]
      invariant_variables: [orog]      # fields of fine_path (or invariant_path) without time
      stats_path: null                 # stats.json in HRRR-Mini format, or computed at start-up

Every key besides ``type`` is a constructor argument below. ``name=source`` entries rename a file
variable (``2t=t2m``) and ``source@dim=value`` picks a level (``theta@level=10``); ``select``
picks one value of extra dimensions for every variable (``{level: 850}``); ``crop`` (``auto``)
crops both grids at their far edges to whole coarse cells; ``start_time``/``end_time`` pick a
time range (e.g. train vs. validation). This reader refuses missing values; for masked data
(land-only, radar coverage) use ``python -m datasets.convert --max-missing``, whose files mark
them so that training ignores them.

Writing a datapipe for another layout, step by step:

1. Copy this file somewhere, e.g. ``cp datasets/custom_template.py my_data.py``, and rename the
   class (``MyDataset``). Run from the repository root so ``datasets.*`` imports resolve.
2. Change ``__init__``'s parameters to what your data needs: they are the config keys.
3. Change ``_open``: how your files are opened and checked. Keep it cheap and lazy; it runs once
   per process (DataLoader workers each reopen files; open handles are never pickled).
4. Change ``_read_fields``: how one sample's raw ``(C, h, w)`` coarse and ``(C, H, W)`` fine arrays
   are read for time index ``k``, in physical units (select levels, convert units, crop here).
   ``read_raw`` puts them together (upsampled input, then invariants), still in physical
   units; the base class z-scores them for training and hands them as they are to generation
   and the preview, so values are never converted there and back.
5. If channels have levels, build them as ``ChannelMetadata("t", level="850")`` in
   ``input_channels``/``output_channels``; static fields are ``auxiliary=True`` and come last.
6. Statistics: pass ``stats_path`` (``{"input"|"output"|"invariant": {name: {"mean", "std"}}}``),
   or let the class compute them and save them for next time with
   ``datasets.stats_file.write_stats(path, dataset.stats())``. Always normalise validation
   data with the training statistics.
7. Point the config at it: ``dataset.type: my_data.py::MyDataset`` (path relative to where you
   run, or absolute), and check it loads::

       from datasets.registry import build_dataset
       ds = build_dataset({"type": "my_data.py::MyDataset", "coarse_path": ..., ...})
       img_clean, img_lr = ds[0]   # shapes [C_out, H, W] and [C_in + invariants, H, W]
"""

from __future__ import annotations

import datetime
import json
import logging
from collections.abc import Sequence

import numpy as np

from datasets.base import ChannelMetadata, ChannelNormalizer, RawSample, ZScoredDataset
from datasets.interpolation import upsample_bilinear
from datasets.per_process import PerProcess
from datasets.stats_file import RunningMoments, channel_stats, field_entry, read_stats
from datasets.variable_metadata import channel_attributes
from datasets.xarray_pairs import PairedData, check_finite
from helpers.infrastructure.errors import DataError

log = logging.getLogger(__name__)


class PairedXarrayDataset(ZScoredDataset):
    """Whole-grid samples from a coarse and a fine xarray dataset, paired by time."""

    def __init__(
        self,
        coarse_path: str,
        fine_path: str,
        input_variables: str | Sequence[str],
        output_variables: str | Sequence[str],
        invariant_variables: str | Sequence[str] | None = None,
        invariant_path: str | None = None,
        stats_path: str | None = None,
        regrid: bool = False,
        factor: int | None = None,
        coarse_dims: Sequence[str] | None = None,
        fine_dims: Sequence[str] | None = None,
        start_time: str | None = None,
        end_time: str | None = None,
        select: dict | str | None = None,
        crop: str | int = "auto",
    ):
        self.options = dict(coarse_path=coarse_path, fine_path=fine_path,
                            input_variables=input_variables, output_variables=output_variables,
                            regrid=regrid, factor=factor, coarse_dims=coarse_dims,
                            fine_dims=fine_dims, select=select, crop=crop)
        self._pairs: PerProcess[PairedData] = PerProcess(self._open_pairs)
        pairs = self._open()
        self.input_variables = pairs.input_names
        self.output_variables = pairs.output_names
        self._attributes = {n: channel_attributes(n, stored=pairs.attributes(n))
                            for n in [*self.input_variables, *self.output_variables]}
        self.factor = pairs.factor
        self._shape = pairs.fine_shape
        self._indices = _select_times(pairs.times, start_time, end_time)
        self._times = [pairs.times[k] for k in self._indices]
        static, _ = pairs.read_static(invariant_variables, invariant_path)
        self.invariant_variables = list(static)
        for name, values in static.items():
            if not np.isfinite(values).all():
                raise DataError(f"invariant {name!r} has missing values; fill them (e.g. "
                                "elevation 0 over sea) or convert with python -m "
                                "datasets.convert, which adds a validity mask")
        self._invariants = np.stack(list(static.values())) if static else np.zeros(
            (0, *self._shape), np.float32)
        ll = pairs.latlon()
        self._latlon = None if ll is None else (ll[0].astype(np.float32), ll[1].astype(np.float32))
        if stats_path:
            self._stats = read_stats(stats_path, "stats_path",
                                     if_missing="set it to null to compute statistics")
        else:
            self._stats = self._compute_stats()
        self._set_normalizers(stats_path or "computed statistics")

    # --------------------------------------------------------------------- reading (adapt these)
    def _open(self) -> PairedData:
        """The data files, open once per process (reopened in each DataLoader worker)."""
        return self._pairs.get()

    def _open_pairs(self) -> PairedData:
        return PairedData(**self.options)

    def _read_fields(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Raw coarse ``(C_in, h, w)`` and fine ``(C_out, H, W)`` fields at matched time ``k``."""
        pairs = self._open()
        t = pairs.times[k]
        coarse = np.stack([pairs.read_coarse(k, name) for name in pairs.input_names])
        fine = np.stack([pairs.read_fine(k, name) for name in pairs.output_names])
        advice = ("fill or drop that time; for masked data use python -m datasets.convert "
                  "--max-missing FRACTION and dataset.type hrrr_mini")
        for name, field in zip(pairs.input_names, coarse, strict=True):
            check_finite(field, name, t, "coarse", advice)
        for name, field in zip(pairs.output_names, fine, strict=True):
            check_finite(field, name, t, "fine", advice)
        return coarse, fine

    # --------------------------------------------------------------------- statistics
    def _compute_stats(self) -> dict:
        """Mean/std per channel, streaming over the selected times (memory stays one sample)."""
        log.info("computing normalisation statistics from %d times of %s and %s "
                 "(set stats_path to skip this)", len(self._indices),
                 self.options["coarse_path"], self.options["fine_path"])
        moments = {g: {v: RunningMoments() for v in names} for g, names in
                   (("input", self.input_variables), ("output", self.output_variables))}
        for k in self._indices:
            coarse, fine = self._read_fields(k)
            for group, fields in (("input", coarse), ("output", fine)):
                for m, field in zip(moments[group].values(), fields, strict=True):
                    m.update(field)
        stats = {g: {v: m.entry() for v, m in ms.items()} for g, ms in moments.items()}
        stats["invariant"] = {v: field_entry(f) for v, f in
                              zip(self.invariant_variables, self._invariants, strict=True)}
        for group in stats.values():
            for name, entry in group.items():
                if not entry["std"] > 0:  # a constant field: leave it centred, unscaled
                    log.warning("channel %r is constant; using std 1 for it", name)
                    entry["std"] = 1.0
        return stats

    def stats(self) -> dict:
        """Statistics in ``stats.json`` format (save with ``stats_file.write_stats``)."""
        return json.loads(json.dumps(self._stats))

    def _set_normalizers(self, source: str) -> None:
        def normalizer(*groups: tuple[str, list[str]]) -> ChannelNormalizer:
            return ChannelNormalizer.from_stats(
                [e for group, names in groups
                 for e in channel_stats(self._stats, group, names, source, self._attributes)])

        try:
            self.input_normalizer = normalizer(("input", self.input_variables),
                                               ("invariant", self.invariant_variables))
            self.output_normalizer = normalizer(("output", self.output_variables))
        except ValueError as err:
            raise DataError(f"{source}: bad statistics: {err}") from err

    # --------------------------------------------------------------------- interface
    def input_channels(self) -> list[ChannelMetadata]:
        return [self._channel(v) for v in self.input_variables] + [
            ChannelMetadata(v, auxiliary=True) for v in self.invariant_variables]

    def output_channels(self) -> list[ChannelMetadata]:
        return [self._channel(v) for v in self.output_variables]

    def _channel(self, name: str) -> ChannelMetadata:
        return ChannelMetadata(name, **self._attributes[name])

    def image_shape(self) -> tuple[int, int]:
        return self._shape

    def time(self) -> list[datetime.datetime]:
        return list(self._times)

    def latitude(self) -> np.ndarray:
        return self._latlon[0].copy() if self._latlon else super().latitude()

    def longitude(self) -> np.ndarray:
        return self._latlon[1].copy() if self._latlon else super().longitude()

    def __len__(self) -> int:
        return len(self._indices)

    def read_raw(self, idx: int) -> RawSample:
        if not -len(self) <= idx < len(self):
            raise IndexError(f"sample {idx} out of range for {len(self)} samples")
        coarse, fine = self._read_fields(self._indices[int(idx)])
        img_lr = np.concatenate([upsample_bilinear(coarse, self.factor), self._invariants])
        return RawSample(fine, img_lr)


def _select_times(times: list[datetime.datetime], start: str | None, end: str | None) -> list[int]:
    """Indices of times in ``[start, end)``; a DataError if none are left."""
    try:
        lo = datetime.datetime.fromisoformat(str(start)) if start else None
        hi = datetime.datetime.fromisoformat(str(end)) if end else None
    except ValueError as err:
        raise DataError(f"start_time/end_time must be ISO dates: {err}") from err
    keep = [k for k, t in enumerate(times)
            if (lo is None or t >= lo) and (hi is None or t < hi)]
    if not keep:
        raise DataError(
            f"no common times in [{start}, {end}); the data cover {times[0]} .. {times[-1]}"
        )
    return keep
