"""The reference workflow's scoring pattern runs on our generated files and agrees with our
scores: open a group, merge the root into it, score with xskillscore."""

from __future__ import annotations

import netCDF4
import numpy as np
import pytest
import xarray as xr
import xskillscore as xs

from inference.generated_file.layout import encode_times
from inference.scoring import score_file
from inference.synthetic import write_synthetic
from tests.test_generated_file_writer import (
    INPUTS,
    OUTPUTS,
    TIMES,
    fields,
    make_writer,
    window_grid,
)


def reference_style_scores(path) -> dict[str, np.ndarray]:
    """What the reference workflow's scorer does, per output variable (arrays over samples)."""
    root = xr.open_dataset(path)
    names = list(xr.open_dataset(path, group="truth").data_vars)  # every variable of the group
    truth = xr.open_dataset(path, group="truth").merge(root)
    prediction = xr.open_dataset(path, group="prediction").merge(root)
    out = {}
    for name in names:
        out[f"{name}_crps"] = xs.crps_ensemble(truth[name], prediction[name],
                                               member_dim="ensemble", dim=["x", "y"]).values
        out[f"{name}_rmse"] = xs.rmse(truth[name], prediction[name].mean("ensemble"),
                                      dim=["x", "y"]).values
        out[f"{name}_mae"] = xs.mae(truth[name], prediction[name].mean("ensemble"),
                                    dim=["x", "y"]).values
    for dataset in (root, truth, prediction):
        dataset.close()
    return out


def windows_file(tmp_path):
    """Several windows per valid time, each at its own place (the real-data layout)."""
    path = tmp_path / "windows.nc"
    times = [TIMES[0], TIMES[0], TIMES[1], TIMES[1]]
    with make_writer(path, times=times, latitude=None, longitude=None,
                     sample_grid=window_grid) as writer:
        for k in range(4):
            inputs, truth, prediction = fields(k)
            prediction[0, 0, 0, 0] = 1.0  # xskillscore has no NaN handling by default
            writer.write_time(k, inputs, truth, prediction)
    return path


@pytest.mark.parametrize("layout", ["time", "sample"])
def test_merge_then_xskillscore_agrees_with_our_scores(tmp_path, layout):
    if layout == "time":
        path = write_synthetic(tmp_path / "gen.nc", n_times=3, n_members=5, shape=(12, 16))
    else:
        path = windows_file(tmp_path)
    theirs = reference_style_scores(path)
    ours = score_file(path, progress=False)
    with netCDF4.Dataset(path) as nc:
        names = list(nc["truth"].variables)
    assert names
    for name in names:
        for metric in ("crps", "rmse", "mae"):
            np.testing.assert_allclose(ours[name].sel(metric=metric).values,
                                       theirs[f"{name}_{metric}"], rtol=1e-5,
                                       err_msg=f"{name} {metric}")


def write_legacy_partial(path) -> None:
    """A partial file of an earlier version: ``ensemble`` and ``time_complete`` at the root."""
    reference = make_writer(path.with_name("reference.nc"))
    with netCDF4.Dataset(path, "w") as nc:
        for name, size in (("time", len(TIMES)), ("ensemble", 3), ("y", 6), ("x", 8)):
            nc.createDimension(name, size)
        values, units = encode_times(TIMES)
        time = nc.createVariable("time", "f8", ("time",))
        time.units, time.calendar, time[:] = units, "standard", values
        nc.history = "written by an earlier version"
        nc.createVariable("ensemble", "i4", ("ensemble",))[:] = np.arange(3)
        nc.createVariable("lat", "f8", ("y", "x"))[:] = reference.latitude
        nc.createVariable("lon", "f8", ("y", "x"))[:] = reference.longitude
        nc.createVariable("time_complete", "i1", ("time",))[:] = [1, 1, 0, 0]
        for group, channels in (("input", INPUTS), ("truth", OUTPUTS), ("prediction", OUTPUTS)):
            dims = ("ensemble", "time", "y", "x") if group == "prediction" else ("time", "y", "x")
            for channel in channels:
                nc.createGroup(group).createVariable(channel.label, "f4", dims)[:] = 0.0


def test_legacy_partial_files_still_read_and_resume(tmp_path):
    partial = tmp_path / "old.nc.partial"
    write_legacy_partial(partial)
    resumed = make_writer(tmp_path / "old.nc", resume=True)
    assert resumed.completed == {0, 1}
    with resumed:
        for t in (2, 3):
            resumed.write_time(t, *fields(t))
    scores = score_file(tmp_path / "old.nc", progress=False)
    assert scores.sizes["time"] == len(TIMES)
