import subprocess
import sys

from tests.conftest import ROOT, write_hrrr_mini


def test_preview_cli_prints_summary_and_writes_png(tmp_path):
    data_path, stats_path, _ = write_hrrr_mini(tmp_path, same_coord=True)
    out = tmp_path / "plots" / "preview.png"
    result = subprocess.run(
        [sys.executable, "-m", "datasets.preview", str(ROOT / "conf/dataset/hrrrmini.yaml"),
         f"data_path={data_path}", f"stats_path={stats_path}", "--index", "2", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "HRRRMiniDataset: 6 samples on a (16, 16) grid" in result.stdout
    assert "elev_mean (aux)" in result.stdout
    assert "lat 35." in result.stdout
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000
    assert str(out) in result.stderr  # the log line says where the plot went


def test_preview_cli_reports_bad_config_in_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "datasets.preview", str(ROOT / "conf/dataset/hrrrmini.yaml")],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 1
    assert result.stderr.strip().startswith("error: dataset option(s) ['data_path', 'stats_path']")
    assert "Traceback" not in result.stderr
