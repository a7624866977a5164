"""The whole pipeline through the real command lines, on a tiny configuration."""

import os
import subprocess
import sys

import xarray as xr

from tests.conftest import ROOT


def test_tiny_demo_runs_every_stage(tmp_path):
    out = tmp_path / "demo"
    command = [sys.executable, "demo.py", "--tiny", "--out", str(out), "--data",
               str(tmp_path / "data")]
    result = subprocess.run(command,
                            cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"},
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    for name in ("summary.md", "scores.nc", "corrdiff.nc", "regression.nc"):
        assert (out / name).is_file(), name
    assert sorted(p.name for p in (out / "run").iterdir()) >= [
        "checkpoints_diffusion", "checkpoints_regression"]
    with xr.open_dataset(out / "corrdiff.nc", group="prediction") as prediction:
        assert dict(prediction.sizes) == {"ensemble": 2, "time": 2, "y": 64, "x": 64}
    with xr.open_dataset(out / "regression.nc", group="prediction") as regression:
        assert regression.sizes["ensemble"] == 1
    summary = (out / "summary.md").read_text()
    assert "| 2t |" in summary and "| stage | wall time |" in summary
    assert len(list((out / "spectra").glob("*.png"))) == 4
    assert len(list((out / "maps").glob("*.png"))) == 4
    assert "stage wall times: " in result.stdout


def test_evaluation_times_spread_over_the_valid_split(tmp_path):
    from datasets.synthetic import generate_synthetic_dataset
    from demo import evaluation_times
    from tests.training_fixtures import TINY

    paths = generate_synthetic_dataset(tmp_path, **{**TINY, "n_valid": 5})
    with xr.open_dataset(paths["valid"]) as valid:
        all_times = [t.strftime("%Y-%m-%dT%H:%M") for t in valid.indexes["time"]]
    assert len(all_times) == 5
    assert evaluation_times(paths["valid"], 2) == [all_times[0], all_times[-1]]
    assert evaluation_times(paths["valid"], 3) == [all_times[0], all_times[2], all_times[4]]
    assert evaluation_times(paths["valid"], 16) == all_times  # never more than there are
