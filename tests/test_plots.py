"""The plotting scripts write non-empty PNGs atomically, with or without a lat/lon grid."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from inference.plot_multiple_samples import main as multiple_main
from inference.plot_multiple_samples import plot_multiple_samples
from inference.plot_single_sample import main as single_main
from inference.plot_single_sample import plot_single_sample
from inference.synthetic import write_synthetic

ROOT = Path(__file__).resolve().parents[1]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_pngs(folder: Path, names: list[str]) -> None:
    assert sorted(p.name for p in folder.iterdir()) == sorted(names)  # no temporaries left
    for name in names:
        data = (folder / name).read_bytes()
        assert data.startswith(PNG_SIGNATURE) and len(data) > 5000


@pytest.fixture(scope="module", params=[True, False], ids=["latlon", "pixels"])
def generated(request, tmp_path_factory) -> Path:
    return write_synthetic(tmp_path_factory.mktemp("plots") / "gen.nc", n_times=3, n_members=4,
                           shape=(16, 20), latlon=request.param)


def test_single_sample(generated, tmp_path):
    written = plot_single_sample(generated, time_index=-1, out_dir=tmp_path, n_members=2)
    assert [p.name for p in written] == ["sample_t2_2t.png", "sample_t2_10u.png"]
    assert_pngs(tmp_path, ["sample_t2_2t.png", "sample_t2_10u.png"])


def test_multiple_samples(generated, tmp_path):
    plot_multiple_samples(generated, tmp_path, times=[0, 2], variables=["10u"])
    assert_pngs(tmp_path, ["samples_10u.png"])
    plot_multiple_samples(generated, tmp_path / "all", n_times=2)
    assert_pngs(tmp_path / "all", ["samples_2t.png", "samples_10u.png"])


def test_single_sample_errors(generated, tmp_path, capsys):
    assert single_main([str(generated), "--time-index", "9", "--out", str(tmp_path)]) == 1
    assert "time index 9 out of range" in capsys.readouterr().err
    assert single_main([str(generated), "--variables", "rain", "--out", str(tmp_path)]) == 1
    assert "unknown variable(s) ['rain']" in capsys.readouterr().err
    # Both plot commands take --variables (and --variable as its alias).
    assert multiple_main([str(generated), "--variables", "rain", "--out", str(tmp_path)]) == 1
    assert "unknown variable(s) ['rain']" in capsys.readouterr().err
    assert single_main([str(generated), "--variable", "rain", "--out", str(tmp_path)]) == 1
    assert "unknown variable(s) ['rain']" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_cli_logs_where_the_pngs_went(tmp_path):
    path = write_synthetic(tmp_path / "gen.nc", n_times=2, n_members=2, shape=(8, 8))
    out = tmp_path / "maps"
    done = subprocess.run([sys.executable, "-m", "inference.plot_multiple_samples", str(path),
                           "--out", str(out), "--variable", "2t", "--times", "0,1"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"wrote {out.resolve() / 'samples_2t.png'}" in done.stderr
    assert_pngs(out, ["samples_2t.png"])
