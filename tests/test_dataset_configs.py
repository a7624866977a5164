"""Every dataset config we ship composes and builds a working dataset on fixture data."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from datasets.registry import build_dataset
from datasets.synthetic import generate_synthetic_dataset
from tests.conftest import ROOT, write_hrrr_mini
from tests.cwa_fixture import write_cwa_zarr
from tests.gefs_hrrr_fixtures import write_gefs_hrrr_fixture
from tests.test_convert import write_pair
from tests.training_fixtures import TINY

SHIPPED = sorted(p.stem for p in (ROOT / "conf/dataset").glob("*.yaml"))


def _hrrrmini(tmp_path):
    data_path, stats_path, _ = write_hrrr_mini(tmp_path)
    return {"data_path": str(data_path), "stats_path": str(stats_path)}


def _cwb(tmp_path):
    write_cwa_zarr(tmp_path / "cwa.zarr", grid=(20, 22))
    return {"data_path": str(tmp_path / "cwa.zarr"), "img_shape_x": 16, "img_shape_y": 16}


def _custom(tmp_path):
    coarse_path, fine_path, _, _ = write_pair(tmp_path)
    return {"coarse_path": str(coarse_path), "fine_path": str(fine_path),
            "input_variables": ["t2m", "u10"], "output_variables": ["t2m"],
            "invariant_variables": ["orog"]}


def _synthetic(tmp_path):
    generate_synthetic_dataset(tmp_path / "synthetic", **TINY)
    return {"data_path": str(tmp_path / "synthetic/valid.nc"),
            "stats_path": str(tmp_path / "synthetic/stats.json")}


def _gefs_hrrr(tmp_path):
    write_gefs_hrrr_fixture(tmp_path, years=(2024,), inits_per_store=1, lead_hours=(0, 3),
                            hrrr_shape=(16, 24))
    return {"data_path": str(tmp_path), "stats_path": str(tmp_path / "stats.json"),
            "train_years": [2024], "lead_hours": [0, 3], "hrrr_window": [[0, 16], [0, 16]]}


FIXTURES = {"hrrrmini": _hrrrmini, "cwb": _cwb, "custom": _custom, "synthetic": _synthetic,
            "gefs_hrrr": _gefs_hrrr}


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_dataset_config_builds(name, tmp_path, monkeypatch):
    assert name in FIXTURES, f"conf/dataset/{name}.yaml is shipped but no test loads it"
    monkeypatch.chdir(ROOT)  # relative paths in configs resolve from the repository root
    config = OmegaConf.merge(
        OmegaConf.load(ROOT / f"conf/dataset/{name}.yaml"), FIXTURES[name](tmp_path)
    )
    dataset = build_dataset(config)
    img_clean, img_lr, *label = dataset[0]
    assert label == ([] if dataset.lead_time_hours() is None else [0])
    assert img_clean.shape == (len(dataset.output_channels()), *dataset.image_shape())
    assert img_lr.shape == (len(dataset.input_channels()), *dataset.image_shape())
