"""GEFS-HRRR datapipe (``dataset.type: gefs_hrrr``): GEFS forecasts to HRRR's 3 km CONUS grid.

The layout is the one the reference CorrDiff GEFS-HRRR example reads, under ``data_path``:

    gefs/<name>surface<name>_<period>.zarr, gefs/<name>isobaric<name>_<period>.zarr
    hrrr_forecast/<name>_<period>.zarr          (period: the last 10 characters, e.g. 2021_01_06)

Each store holds ``values (time, channel, y, x)`` with string ``channel`` names, string ``time``
keys ``YYYYMMDDHHfFF`` (initialisation time, lead hours) and 2-D ``lat``/``lon``; GEFS is a
regular lat/lon grid. A sample is one key: GEFS surface and isobaric fields bilinearly
interpolated to the HRRR points (`datasets.grid_alignment.BilinearRegridder`, the regridder
the converter uses), the HRRR fields of the same key cropped to ``hrrr_window``, and the
lead-time label (the lead's position in ``lead_hours``).

Where the reference reader hard-codes things they are options: the samples are the keys the
stores hold (no fixed date range; ``first_time``/``last_time`` narrow them), and the names the
published stores use for some requested variables (``z200`` is stored as ``z250``, ``t100`` as
``t250``, relative humidity ``r<level>`` as ``q<level>``, ``r100`` as ``q250``) are the default
of ``stored_names``. ``cat_none`` is derived (1 where no other category is set); the category
channels (``prob_variables`` plus ``cat_none``) are divided by their sum, so they are
probabilities summing to 1, and are not z-scored.

Stores are opened lazily, once per process, so DataLoader workers each have their own handles.
"""

from __future__ import annotations

import datetime
import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from datasets.base import ChannelMetadata, ChannelNormalizer, RawSample, ZScoredDataset
from datasets.grid_alignment import BilinearRegridder
from datasets.interpolation import upsample_bilinear
from datasets.per_process import PerProcess
from datasets.stats_file import ChannelStats, channel_stats, read_stats
from helpers.infrastructure.errors import DataError, DatasetConfigError

logger = logging.getLogger(__name__)

SURFACE_VARIABLES = ["u10m", "v10m", "t2m", "q2m", "sp", "msl", "precipitable_water"]
ISOBARIC_VARIABLES = [f"{name}{level}" for name, levels in (
    ("u", (1000, 925, 850, 700, 500, 250)), ("v", (1000, 925, 850, 700, 500, 250)),
    ("z", (1000, 925, 850, 700, 500, 200)), ("t", (1000, 925, 850, 700, 500, 100)),
    ("r", (1000, 925, 850, 700, 500, 100))) for level in levels]
OUTPUT_VARIABLES = ["u10m", "v10m", "t2m", "precip", "cat_snow", "cat_ice", "cat_freez",
                    "cat_rain", "cat_none"]
PROB_VARIABLES = ["cat_snow", "cat_ice", "cat_freez", "cat_rain"]
DERIVED_CATEGORY = "cat_none"
LEAD_HOURS = list(range(0, 25, 3))
# The published stores' names for requested variables the reference renames on reading.
STORED_NAMES = {"z200": "z250", "t100": "t250", "r100": "q250",
                **{f"r{level}": f"q{level}" for level in (1000, 925, 850, 700, 500)}}
KEY_PATTERN = re.compile(r"^(\d{10})f(\d{2,3})$")
ROLES = {"surface": ("gefs", "*surface*.zarr"), "isobaric": ("gefs", "*isobaric*.zarr"),
         "hrrr": ("hrrr_forecast", "*.zarr")}


def parse_key(key: str) -> tuple[datetime.datetime, int]:
    """``YYYYMMDDHHfFF`` to (initialisation time, lead hours)."""
    match = KEY_PATTERN.match(str(key))
    if match is None:
        raise DataError(f"time key {key!r} is not of the form YYYYMMDDHHfFF (init, lead hours)")
    return datetime.datetime.strptime(match[1], "%Y%m%d%H"), int(match[2])


class GEFSHRRRDataset(ZScoredDataset):
    """Reader for the GEFS-HRRR store layout; samples keyed by initialisation and lead time."""

    def __init__(
        self,
        data_path: str,
        stats_path: str,
        input_surface_variables: Sequence[str] | None = None,
        input_isobaric_variables: Sequence[str] | None = None,
        output_variables: Sequence[str] | None = None,
        prob_variables: Sequence[str] | None = None,
        train: bool = True,
        train_years: Sequence[int] = (2020, 2021, 2022, 2023),
        valid_years: Sequence[int] = (2024,),
        hrrr_window: Sequence[Sequence[int]] | None = None,
        lead_hours: Sequence[int] = tuple(LEAD_HOURS),
        first_time: str | None = None,
        last_time: str | None = None,
        stored_names: Mapping[str, str] | None = None,
        ds_factor: int = 1,
        normalize: bool = True,
        sample_shape: Sequence[int] | None = None,
        shard: bool = False,
        overfit: bool = False,
        use_all: bool = False,
    ):
        _refuse_unsupported(normalize, sample_shape, shard, overfit, use_all)
        self.data_path = str(data_path)
        self.stats_path = str(stats_path)
        if not Path(self.data_path).is_dir():
            raise DataError(f"dataset.data_path {self.data_path!r} is not a directory; point it at "
                            "the folder holding gefs/ and hrrr_forecast/")
        self.surface_variables = list(input_surface_variables or SURFACE_VARIABLES)
        self.isobaric_variables = list(input_isobaric_variables or ISOBARIC_VARIABLES)
        self.input_variables = self.surface_variables + self.isobaric_variables
        self.output_variables = list(output_variables or OUTPUT_VARIABLES)
        self.prob_variables = list(PROB_VARIABLES if prob_variables is None else prob_variables)
        self._check_categories()
        # cat_none is derived from the categories; without categories it is read if asked for.
        self.derived = bool(self.prob_variables)
        self.stored_names = dict(STORED_NAMES if stored_names is None else stored_names)
        self.years = [int(y) for y in (train_years if train else valid_years)]
        self.lead_hours = [int(h) for h in lead_hours]
        if not self.lead_hours or len(set(self.lead_hours)) != len(self.lead_hours):
            raise DatasetConfigError(f"dataset.lead_hours must list distinct lead times in "
                                     f"hours, got {list(lead_hours)}")
        if int(ds_factor) < 1:
            raise DatasetConfigError(f"dataset.ds_factor must be 1 or more, got {ds_factor}")
        self.ds_factor = int(ds_factor)
        self._stores = self._find_stores()
        self._read_grids(hrrr_window)
        self._keys, self._where = self._find_samples(first_time, last_time)
        self._read_stats()
        self._handles: PerProcess[dict] = PerProcess(dict)  # (period, role) -> values
        logger.info("%s: %d samples (%d leads) from %d store period(s) of years %s",
                    self.data_path, len(self._keys), len(self.lead_hours), len(self._stores),
                    self.years)

    # ----------------------------------------------------------------------------- set-up
    def _check_categories(self) -> None:
        wanted = self.prob_variables + [DERIVED_CATEGORY]
        if not self.prob_variables:
            return
        missing = [v for v in wanted if v not in self.output_variables]
        if missing:
            raise DatasetConfigError(
                f"dataset.output_variables lacks the category channel(s) {missing}: with "
                f"prob_variables {self.prob_variables} it must list them and "
                f"{DERIVED_CATEGORY!r}; or set dataset.prob_variables=[] for no categories")

    def _find_stores(self) -> dict[str, dict[str, Path]]:
        """``{period: {role: path}}`` for the selected years, each period complete."""
        root = Path(self.data_path)
        found: dict[str, dict[str, Path]] = {}
        for role, (folder, pattern) in ROLES.items():
            for path in sorted((root / folder).glob(pattern)):
                if role == "hrrr" and path.stem.endswith("backup"):
                    continue
                period = path.stem[-10:]
                if period[:4].isdigit() and int(period[:4]) in self.years:
                    found.setdefault(period, {})[role] = path
        covered = {int(period[:4]) for period in found}
        absent = [y for y in self.years if y not in covered]
        if absent:
            raise DataError(
                f"{self.data_path!r} has no GEFS/HRRR stores for year(s) {absent} (stores are "
                f"named <...>_<YYYY_MM_MM>.zarr under gefs/ and hrrr_forecast/; found periods "
                f"{sorted(found) or 'none'}); fix dataset.train_years / valid_years")
        for period, roles in found.items():
            lacking = [r for r in ROLES if r not in roles]
            if lacking:
                raise DataError(f"{self.data_path!r}: period {period} has no "
                                f"{' or '.join(lacking)} store; every period needs GEFS surface, "
                                "GEFS isobaric and HRRR stores")
        return dict(sorted(found.items()))

    def _open(self, path: Path):
        import xarray as xr

        try:
            # chunks=None: lazily indexed arrays, no dask (each read is one small indexing)
            return xr.open_zarr(path, consolidated=None, mask_and_scale=False, chunks=None)
        except Exception as err:  # missing metadata, not zarr, ...
            raise DataError(f"{str(path)!r} is not a readable zarr store ({err})") from err

    def _read_grids(self, hrrr_window) -> None:
        roles = next(iter(self._stores.values()))
        with self._open(roles["hrrr"]) as hrrr:
            lat, lon = np.asarray(hrrr["lat"].values), np.asarray(hrrr["lon"].values)
        self._grid_shape = lat.shape
        ((y0, y1), (x0, x1)) = ((0, lat.shape[0]), (0, lat.shape[1])) if hrrr_window is None \
            else [[int(v) for v in pair] for pair in hrrr_window]
        if not (0 <= y0 < y1 <= lat.shape[0] and 0 <= x0 < x1 <= lat.shape[1]):
            raise DatasetConfigError(
                f"dataset.hrrr_window {hrrr_window} does not fit the {lat.shape[0]}x"
                f"{lat.shape[1]} HRRR grid; give [[y0, y1], [x0, x1]] inside it")
        self.window = (slice(y0, y1), slice(x0, x1))
        self._lat = lat[self.window].astype(np.float32)
        self._lon = ((lon[self.window] + 180) % 360 - 180).astype(np.float32)
        self._regridders = {}
        for role in ("surface", "isobaric"):
            with self._open(roles[role]) as gefs:
                glat, glon = np.asarray(gefs["lat"].values), np.asarray(gefs["lon"].values)
            self._regridders[role] = BilinearRegridder(
                glat[:, 0], glon[0, :] % 360, self._lat, self._lon % 360,
                option=f"GEFS {role} grid of {str(roles[role])!r}")

    def _find_samples(self, first_time, last_time):
        """The keys every store of their period holds, at the selected leads and times."""
        from helpers.generation.time_selection import parse_time

        first = parse_time(first_time, "dataset.first_time") if first_time else None
        last = parse_time(last_time, "dataset.last_time") if last_time else None
        keys, where = [], {}
        seen_leads: set[int] = set()
        for period, roles in self._stores.items():
            held = []
            for role in ROLES:
                with self._open(roles[role]) as ds:
                    held.append([str(k) for k in ds["time"].values])
            common = set(held[0]) & set(held[1])
            surface, isobaric = ({k: i for i, k in enumerate(keys_)} for keys_ in held[:2])
            for position, key in enumerate(held[2]):
                if key not in common:
                    continue
                init, lead = parse_key(key)
                seen_leads.add(lead)
                valid = init + datetime.timedelta(hours=lead)
                if lead not in self.lead_hours or init.year not in self.years or (
                        first and valid < first) or (last and valid > last):
                    continue
                keys.append(key)
                where[key] = (period, {"hrrr": position, "surface": surface[key],
                                       "isobaric": isobaric[key]})
        absent = [h for h in self.lead_hours if h not in seen_leads]
        if absent:
            raise DataError(
                f"{self.data_path!r}: no samples at lead time(s) {absent} h (the stores hold "
                f"{sorted(seen_leads)}); fix dataset.lead_hours")
        if not keys:
            raise DataError(f"{self.data_path!r}: no sample of years {self.years} lies between "
                            f"dataset.first_time={first_time} and last_time={last_time}")
        keys.sort(key=lambda k: (parse_key(k)[0], parse_key(k)[1]))
        return keys, where

    def _stored(self, name: str) -> str:
        return self.stored_names.get(name, name)

    def _channel_positions(self, role: str, names: list[str]) -> list[int]:
        path = next(iter(self._stores.values()))[role]
        with self._open(path) as ds:
            available = [str(c) for c in ds["channel"].values]
        stored = [self._stored(n) for n in names]
        missing = [n for n, s in zip(names, stored, strict=True) if s not in available]
        if missing:
            renamed = {n: self._stored(n) for n in missing if self._stored(n) != n}
            raise DataError(
                f"{str(path)!r} has no channel(s) {missing}"
                + (f" (read as {renamed})" if renamed else "")
                + f"; it holds {available}; fix the dataset's variable lists or "
                "dataset.stored_names")
        return [available.index(s) for s in stored]

    def _loaded_outputs(self) -> list[str]:
        """The output variables read from the HRRR stores (all but a derived ``cat_none``)."""
        return [v for v in self.output_variables if not (self.derived and v == DERIVED_CATEGORY)]

    def _read_stats(self) -> None:
        stats = read_stats(self.stats_path)
        self._positions = {
            "surface": self._channel_positions("surface", self.surface_variables),
            "isobaric": self._channel_positions("isobaric", self.isobaric_variables),
            "hrrr": self._channel_positions("hrrr", self._loaded_outputs()),
        }
        categories = set(self.prob_variables) | ({DERIVED_CATEGORY} if self.prob_variables
                                                 else set())
        self._input_stats = channel_stats(stats, "input", self.input_variables, self.stats_path)
        continuous = [v for v in self.output_variables if v not in categories]
        table = dict(zip(continuous, channel_stats(stats, "output", continuous, self.stats_path),
                         strict=True))
        # Probabilities stay as they are: cross-entropy needs them, not z-scores.
        self._output_stats = [table.get(v) or ChannelStats(0.0, 1.0, attributes={
            "units": "1", "long_name": f"probability of precipitation type {v[4:]}"})
            for v in self.output_variables]
        try:
            self.input_normalizer = ChannelNormalizer.from_stats(self._input_stats)
            self.output_normalizer = ChannelNormalizer.from_stats(self._output_stats)
        except DataError as err:
            raise DataError(f"{self.stats_path!r}: {err}") from err

    # ----------------------------------------------------------------------------- interface
    def input_channels(self) -> list[ChannelMetadata]:
        return [ChannelMetadata(v, **s.attributes)
                for v, s in zip(self.input_variables, self._input_stats, strict=True)]

    def output_channels(self) -> list[ChannelMetadata]:
        return [ChannelMetadata(v, **s.attributes)
                for v, s in zip(self.output_variables, self._output_stats, strict=True)]

    def image_shape(self) -> tuple[int, int]:
        return tuple(self._lat.shape)

    def time(self) -> list[datetime.datetime]:
        """Valid times (initialisation + lead)."""
        return [init + datetime.timedelta(hours=lead) for init, lead in map(parse_key, self._keys)]

    def sample_keys(self) -> list[str]:
        """The stores' keys ``YYYYMMDDHHfFF`` of the samples, in sample order."""
        return list(self._keys)

    def lead_time_hours(self) -> list[int]:
        return list(self.lead_hours)

    def lead_time_label(self, idx: int) -> int:
        return self.lead_hours.index(parse_key(self._keys[int(idx)])[1])

    def probability_channels(self) -> list[int]:
        if not self.prob_variables:
            return []
        return [self.output_variables.index(v) for v in self.prob_variables + [DERIVED_CATEGORY]]

    def latitude(self) -> np.ndarray:
        return self._lat.copy()

    def longitude(self) -> np.ndarray:
        return self._lon.copy()

    def __len__(self) -> int:
        return len(self._keys)

    def read_raw(self, idx: int) -> RawSample:
        if not -len(self) <= idx < len(self):
            raise IndexError(f"sample {idx} out of range for {len(self)} samples")
        idx = int(idx) % len(self)
        key = self._keys[idx]
        period, positions = self._where[key]
        gefs = [self._regrid(period, role, positions[role], key)
                for role in ("surface", "isobaric")]
        img_lr = np.concatenate(gefs)
        if self.ds_factor > 1:
            img_lr = self._coarsen(img_lr)
        target = self._hrrr(period, positions["hrrr"], key)
        return RawSample(target, img_lr, self.lead_time_label(idx))

    # ----------------------------------------------------------------------------- reading
    def _store(self, period: str, role: str):
        """One handle per store and process (`datasets.per_process`)."""
        handles = self._handles.get()
        if (period, role) not in handles:
            handles[period, role] = self._open(self._stores[period][role])["values"]
        return handles[period, role]

    def _regrid(self, period: str, role: str, position: int, key: str) -> np.ndarray:
        regridder = self._regridders[role]
        box = self._store(period, role)[position, self._positions[role], *regridder.box].values
        field = regridder(np.asarray(box, np.float32))
        if not np.isfinite(field).all():
            names = self.surface_variables if role == "surface" else self.isobaric_variables
            bad = [n for n, f in zip(names, field, strict=True) if not np.isfinite(f).all()]
            raise DataError(f"{str(self._stores[period][role])!r}: GEFS {role} variable(s) {bad} "
                            f"hold NaN or Inf at {key} over the HRRR window; fill or drop "
                            "that time")
        return field

    def _coarsen(self, fine: np.ndarray) -> np.ndarray:
        """The reference's ``ds_factor``: keep every f-th pixel, interpolate back (bilinear)."""
        f, (H, W) = self.ds_factor, fine.shape[-2:]
        return np.ascontiguousarray(upsample_bilinear(fine[:, ::f, ::f], f)[:, :H, :W])

    def _hrrr(self, period: str, position: int, key: str) -> np.ndarray:
        stored = self._store(period, "hrrr")[position, self._positions["hrrr"],
                                             *self.window].values
        stored = np.asarray(stored, np.float32)
        out = np.empty((len(self.output_variables), *stored.shape[-2:]), np.float32)
        loaded = self._loaded_outputs()
        for k, name in enumerate(loaded):
            out[self.output_variables.index(name)] = stored[k]
        if not np.isfinite(stored).all():
            bad = [n for n, f in zip(loaded, stored, strict=True) if not np.isfinite(f).all()]
            raise DataError(f"{str(self._stores[period]['hrrr'])!r}: HRRR variable(s) {bad} hold "
                            f"NaN or Inf at {key} inside dataset.hrrr_window; fill or drop that "
                            "time")
        categories = self.probability_channels()
        if categories:
            none = categories[-1]
            out[none] = (out[categories[:-1]].sum(axis=0) == 0).astype(np.float32)
            out[categories] /= out[categories].sum(axis=0, keepdims=True)
        return out


def _refuse_unsupported(normalize, sample_shape, shard, overfit, use_all) -> None:
    """Reference options kept for config compatibility, at the values that mean the same here."""
    problems = []
    if not normalize:
        problems.append("normalize=false (samples are always z-scored; generated files are "
                        "in physical units)")
    if sample_shape is not None and [int(s) for s in sample_shape] != [-1, -1]:
        problems.append(f"sample_shape={list(sample_shape)} (random crops: train on patches "
                        "with training.hp.patch_shape_x/y instead)")
    if shard:
        problems.append("shard=true (every process already reads only its share of each batch)")
    if overfit:
        problems.append("overfit=true (train on a one-sample dataset via first_time/last_time)")
    if use_all:
        problems.append("use_all=true (select years with train_years/valid_years)")
    if problems:
        raise DatasetConfigError("dataset.type gefs_hrrr does not support "
                                 + "; ".join(problems))
