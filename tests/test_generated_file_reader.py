"""The merged view of a generated file, and one-line errors for files that are not one."""

from __future__ import annotations

import re
from pathlib import Path

import netCDF4
import numpy as np
import pytest

from helpers.infrastructure.errors import GeneratedFileError
from inference.generated_file import (
    channels,
    complete_times,
    field,
    grid_of,
    open_generated,
    select_variables,
    weather_channels,
)
from inference.synthetic import write_synthetic


def write_broken(path: Path, kind: str) -> Path:
    """A small file in the generated layout with one defect: ``missing_group`` (no
    prediction), ``mismatched`` (prediction grid differs from truth), ``no_ensemble``
    (prediction without the ensemble dimension), or ``ok``."""
    with netCDF4.Dataset(path, "w") as nc:
        for name, size in (("time", 2), ("ensemble", 3), ("y", 4), ("x", 5), ("y2", 6)):
            nc.createDimension(name, size)
        time = nc.createVariable("time", "f8", ("time",))
        time.units = "hours since 2000-01-01"
        time[:] = [0, 1]
        nc.createVariable("ensemble", "i4", ("ensemble",))[:] = [0, 1, 2]
        truth = nc.createGroup("truth").createVariable("2t", "f4", ("time", "y", "x"))
        truth[:] = np.zeros((2, 4, 5))
        if kind == "missing_group":
            return path
        dims = {"mismatched": ("ensemble", "time", "y2", "x"),
                "no_ensemble": ("time", "y", "x")}.get(kind, ("ensemble", "time", "y", "x"))
        pred = nc.createGroup("prediction").createVariable("2t", "f4", dims)
        pred[:] = np.zeros([len(nc.dimensions[d]) for d in dims])
    return path


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    return write_synthetic(tmp_path_factory.mktemp("read") / "gen.nc", n_times=3, n_members=4,
                           shape=(8, 10))


def test_groups_merge_into_prefixed_variables(generated):
    with open_generated(generated) as ds:
        assert set(ds.data_vars) == {"input_2t", "input_tcwv", "input_elev_mean", "truth_2t",
                                     "truth_10u", "prediction_2t", "prediction_10u"}
        assert ds["prediction_2t"].dims == ("ensemble", "time", "y", "x")
        assert ds["truth_10u"].dims == ("time", "y", "x")
        assert ds["truth_2t"].attrs["units"] == "K"
        assert ds["time"].dtype.kind == "M" and {"lat", "lon"} <= set(ds.coords)
        assert channels(ds, "truth") == ["2t", "10u"]
        assert channels(ds, "input") == ["2t", "tcwv", "elev_mean"]
        assert weather_channels(ds) == ["2t", "tcwv"]
        assert grid_of(ds, 0) is not None
        assert list(complete_times(ds)) == [0, 1, 2]
        assert select_variables(ds, None) == ["2t", "10u"]


def test_reading_is_lazy(generated):
    with open_generated(generated) as ds:
        assert not ds["prediction_2t"].variable._in_memory
        one = field(ds, "prediction", "2t").isel(time=1, ensemble=0).values
        assert one.shape == (8, 10) and np.isfinite(one).all()


def test_nan_latlon_is_not_a_grid(tmp_path):
    path = write_synthetic(tmp_path / "g.nc", n_times=1, n_members=2, shape=(4, 4), latlon=False)
    with open_generated(path) as ds:
        assert grid_of(ds, 0) is None


@pytest.mark.parametrize(("kind", "message"), [
    ("missing_group", "group(s) ['prediction'] missing"),
    ("mismatched", "shapes differ for 2t"),
    ("no_ensemble", "has no ensemble dimension"),
])
def test_broken_files_are_named(tmp_path, kind, message):
    path = write_broken(tmp_path / f"{kind}.nc", kind)
    with pytest.raises(GeneratedFileError, match=re.escape(message)):
        open_generated(path)


def test_wrong_path_and_wrong_file(tmp_path, generated):
    with pytest.raises(GeneratedFileError, match="no such file"):
        open_generated(tmp_path / "absent.nc")
    text = tmp_path / "notes.nc"
    text.write_text("not netcdf")
    with pytest.raises(GeneratedFileError, match="not a readable NetCDF file"):
        open_generated(text)
    with open_generated(generated) as ds, pytest.raises(GeneratedFileError, match="unknown"):
        select_variables(ds, ["2t", "rain"])


def test_a_minimal_valid_file_opens(tmp_path):
    with open_generated(write_broken(tmp_path / "ok.nc", "ok")) as ds:
        assert channels(ds, "prediction") == ["2t"] and channels(ds, "input") == []


def test_analysis_imports_without_torch_or_physicsnemo():
    """Scoring, spectra, plots and the file format work on a machine without torch."""
    import subprocess
    import sys

    from tests.conftest import ROOT

    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name.split('.')[0] in ('torch', 'physicsnemo'):\n"
        "            raise ImportError('blocked ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import score_samples, inference.generated_file, inference.scoring, "
        "inference.power_spectra, inference.plot_single_sample, inference.plot_multiple_samples, "
        "inference.synthetic\n"
        "print('imported')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == "imported", done.stderr[-2000:]
