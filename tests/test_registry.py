import textwrap

import pytest
from omegaconf import OmegaConf

from datasets.hrrrmini import HRRRMiniDataset
from datasets.registry import build_dataset, dataset_class
from helpers.infrastructure.errors import DatasetConfigError
from tests.conftest import ROOT


def test_builtin_type_with_omegaconf_options(hrrr_mini_files):
    data_path, stats_path, _ = hrrr_mini_files
    config = OmegaConf.create({
        "type": "hrrr_mini", "data_path": str(data_path), "stats_path": str(stats_path),
        "output_variables": ["2t"],
    })
    ds = build_dataset(config)
    assert isinstance(ds, HRRRMiniDataset)
    assert ds.output_variables == ["2t"] and isinstance(ds.output_variables, list)


def test_overrides_win_over_config(hrrr_mini_files):
    data_path, stats_path, _ = hrrr_mini_files
    config = {"type": "hrrr_mini", "data_path": "elsewhere.nc", "stats_path": str(stats_path)}
    assert len(build_dataset(config, data_path=str(data_path))) == 6


def test_unknown_type_lists_known_ones():
    with pytest.raises(DatasetConfigError, match=r"unknown dataset.type 'hrrr'.*cwb.*hrrr_mini"):
        dataset_class("hrrr")


def test_missing_type():
    with pytest.raises(DatasetConfigError, match="has no 'type'"):
        build_dataset({"data_path": "x.nc"})


def test_unexpected_keyword_lists_options(hrrr_mini_files):
    data_path, stats_path, _ = hrrr_mini_files
    config = {"type": "hrrr_mini", "data_path": str(data_path), "stats_path": str(stats_path),
              "img_shape_x": 64}
    with pytest.raises(DatasetConfigError, match=r"does not take option\(s\) \['img_shape_x'\]"):
        build_dataset(config)


def test_missing_required_option(hrrr_mini_files):
    data_path, _, _ = hrrr_mini_files
    with pytest.raises(DatasetConfigError, match=r"needs option\(s\) \['stats_path'\]"):
        build_dataset({"type": "hrrr_mini", "data_path": str(data_path)})


USER_DATASET = textwrap.dedent('''
    from datasets.hrrrmini import HRRRMiniDataset

    class MyRegion(HRRRMiniDataset):
        """A user's datapipe living outside the project."""

    class NotADataset:
        pass
''')


def test_user_class_from_file(tmp_path, hrrr_mini_files, monkeypatch):
    data_path, stats_path, _ = hrrr_mini_files
    module = tmp_path / "my_data.py"
    module.write_text(USER_DATASET)
    ds = build_dataset({"type": f"{module}::MyRegion", "data_path": str(data_path),
                        "stats_path": str(stats_path)})
    assert type(ds).__name__ == "MyRegion" and len(ds) == 6
    monkeypatch.chdir(tmp_path)  # relative paths resolve against the working directory
    assert dataset_class("my_data.py::MyRegion").__name__ == "MyRegion"


def test_user_file_or_class_missing(tmp_path):
    module = tmp_path / "my_data.py"
    module.write_text(USER_DATASET)
    with pytest.raises(DatasetConfigError, match=r"file .*nothere.py.* does not exist"):
        dataset_class(f"{tmp_path}/nothere.py::MyRegion")
    with pytest.raises(DatasetConfigError, match=r"defines no class 'Other'.*\['MyRegion'\]"):
        dataset_class(f"{module}::Other")
    with pytest.raises(DatasetConfigError, match="must subclass"):
        dataset_class(f"{module}::NotADataset")


def test_unset_mandatory_values_are_named():
    config = OmegaConf.load(ROOT / "conf/dataset/hrrrmini.yaml")
    with pytest.raises(DatasetConfigError, match=r"\['data_path', 'stats_path'\] are not set.*"
                       r"\+\+dataset.data_path=<value>"):
        build_dataset(config)
