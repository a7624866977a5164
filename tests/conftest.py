"""Shared test fixtures: small files in the exact published layouts, made by the tests."""

from __future__ import annotations

import datetime
import os
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from datasets.hrrrmini_format import HRRRMiniWriter  # noqa: E402
from datasets.stats_file import write_stats  # noqa: E402

# Tiny models on a small CPU: several threads only contend (and make timings erratic).
os.environ.setdefault("OMP_NUM_THREADS", "1")
try:
    import torch

    torch.set_num_threads(1)
except ImportError:  # pragma: no cover
    pass


# The longest test files (minutes of subprocesses each) start first, so that with the files
# spread over processes (`make test`: pytest -n 2 --dist loadfile) no process is left with
# one of them at the end while the others idle.
LONGEST_FIRST = ("test_bad_input_cli", "test_train_cli", "test_demo", "test_real_data_cli",
                 "test_training", "test_generate_cli", "test_gefs_hrrr_cli", "test_generate",
                 "test_export_earth2studio", "test_lead_time_training")


def pytest_collection_modifyitems(items: list) -> None:
    rank = {name: k for k, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(Path(str(item.fspath)).stem, len(rank)))


def one_error_line(result) -> str:
    """A finished command (``subprocess.CompletedProcess``) must have failed cleanly: exit
    status 1, no traceback, exactly one ``error:`` line, which is returned."""
    output = result.stdout + result.stderr
    assert result.returncode == 1, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    errors = [line for line in output.splitlines() if "error: " in line]
    assert len(errors) == 1, output[-3000:]
    return errors[0]


def read_only_directory(tmp_path: Path) -> Path:
    """A directory this process cannot write in (root ignores permissions: use /sys)."""
    if os.geteuid() == 0:
        return Path("/sys/corrdiff_test")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    return locked


def write_hrrr_mini(
    directory: Path,
    n: int = 6,
    window: int = 16,
    factor: int = 4,
    grid: tuple[int, int] = (24, 32),
    seed: int = 0,
    same_coord: bool = False,
    with_latlon: bool = True,
    name: str = "hrrr_mini_train.nc",
) -> tuple[Path, Path, dict]:
    """Write a tiny HRRR-Mini file + stats.json; returns the paths and the raw arrays.

    The grid is a rotated (curvilinear) affine lat/lon grid whose steps are powers of two, so
    it, and the centres of its blocks, are exact in float32."""
    rng = np.random.default_rng(seed)
    h = window // factor
    times = [datetime.datetime(2021, 1, 1) + datetime.timedelta(hours=3 * i) for i in range(n)]
    rows = rng.integers(0, grid[0] - window + 1, n)
    cols = rng.integers(0, grid[1] - window + 1, n)
    coords = np.stack([rows, cols], axis=1)
    if same_coord:
        coords[:] = coords[0]
    raw = {
        "times": times,
        "coords": coords,
        "input": {
            "10u": rng.normal(2.0, 3.0, (n, h, h)),
            "2t": rng.normal(280.0, 5.0, (n, h, h)),
            "tcwv": rng.gamma(2.0, 5.0, (n, h, h)),
        },
        "output": {
            "10u": rng.normal(2.0, 3.0, (n, window, window)),
            "2t": rng.normal(280.0, 5.0, (n, window, window)),
        },
        "invariant": {
            "elev_mean": rng.uniform(0, 2000, grid),
            "lsm_mean": (rng.uniform(0, 1, grid) > 0.3).astype(float),
        },
    }
    yy, xx = np.meshgrid(np.arange(grid[0]), np.arange(grid[1]), indexing="ij")
    raw["lat"] = 35.0 + 2.0**-5 * yy + 2.0**-10 * xx
    raw["lon"] = -100.0 + 2.0**-5 * xx - 2.0**-10 * yy
    data_path, stats_path = directory / name, directory / "stats.json"
    with HRRRMiniWriter(
        data_path, (h, h), (window, window), list(raw["input"]), list(raw["output"]),
        raw["invariant"],
        lat=raw["lat"] if with_latlon else None, lon=raw["lon"] if with_latlon else None,
    ) as writer:
        writer.append(times, coords, raw["input"], raw["output"])
        stats = writer.stats()
    write_stats(stats_path, stats)
    raw["stats"] = stats
    return data_path, stats_path, raw


def mark_missing_values(data_path: Path, stats_path: Path) -> None:
    """Make a `write_hrrr_mini` file masked like real data: a missing input cell (``2t`` of
    sample 3 at (0, 0)) and missing target rows (``10u`` of sample 3, rows 0-3), both marked
    as missing on purpose in stats.json (a land-only or radar-coverage grid)."""
    import json

    import netCDF4

    with netCDF4.Dataset(data_path, "a") as nc:
        nc["input"]["2t"][3, 0, 0] = np.nan
        nc["output"]["10u"][3, :4, :] = np.nan
    stats = json.loads(stats_path.read_text())
    stats["input"]["2t"]["missing_values"] = True
    stats["output"]["10u"]["missing_values"] = True
    stats_path.write_text(json.dumps(stats))


@pytest.fixture
def hrrr_mini_files(tmp_path):
    return write_hrrr_mini(tmp_path)
