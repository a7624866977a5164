"""``dataset.type`` names to datapipe classes, and building a dataset from its config.

Besides the built-in names, ``type: path/to/file.py::ClassName`` loads a user's own
`DownscalingDataset` subclass, so custom data needs no change to this project.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from datasets.base import DownscalingDataset
from helpers.infrastructure.errors import DatasetConfigError

# Imported lazily: each datapipe pulls in its own I/O library.
BUILTIN_DATASETS: dict[str, str] = {
    "hrrr_mini": "datasets.hrrrmini:HRRRMiniDataset",
    "cwb": "datasets.cwb:CWADataset",
    "synthetic": "datasets.synthetic:SyntheticDataset",
    "custom_template": "datasets.custom_template:PairedXarrayDataset",
    "gefs_hrrr": "datasets.gefs_hrrr:GEFSHRRRDataset",
}


def dataset_class(type_name: str) -> type[DownscalingDataset]:
    """Resolve a ``dataset.type`` value to a class."""
    if "::" in type_name:
        return _class_from_file(type_name)
    if type_name not in BUILTIN_DATASETS:
        raise DatasetConfigError(
            f"unknown dataset.type {type_name!r}; known types: "
            f"{', '.join(sorted(BUILTIN_DATASETS))}, or 'path/to/file.py::ClassName' for your "
            "own datapipe"
        )
    module_name, class_name = BUILTIN_DATASETS[type_name].split(":")
    return getattr(importlib.import_module(module_name), class_name)


def _class_from_file(spec: str) -> type[DownscalingDataset]:
    file_name, _, class_name = spec.partition("::")
    path = Path(file_name).expanduser()
    if not path.is_absolute():
        path = Path.cwd() / path
    if not path.is_file():
        raise DatasetConfigError(
            f"dataset.type {spec!r}: file {str(path)!r} does not exist; give the path of a .py "
            "file (absolute, or relative to the directory you run from) as 'file.py::ClassName'"
        )
    module_name = f"_corrdiff_user_dataset_{abs(hash(str(path)))}"
    module = sys.modules.get(module_name)
    if module is None:
        spec_obj = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec_obj)
        sys.modules[module_name] = module
        try:
            spec_obj.loader.exec_module(module)
        except Exception:
            del sys.modules[module_name]
            raise
    cls = getattr(module, class_name, None)
    if cls is None:
        found = sorted(
            n for n, obj in vars(module).items()
            if inspect.isclass(obj) and issubclass(obj, DownscalingDataset)
            and obj.__module__ == module.__name__
        )
        raise DatasetConfigError(
            f"dataset.type {spec!r}: {str(path)!r} defines no class {class_name!r}; "
            f"datasets defined there: {found or 'none'}"
        )
    if not (inspect.isclass(cls) and issubclass(cls, DownscalingDataset)):
        raise DatasetConfigError(
            f"dataset.type {spec!r}: {class_name} must subclass datasets.base.DownscalingDataset"
        )
    return cls


# Dataset config keys that describe the data for other tools rather than configure the class.
DESCRIPTIVE_KEYS = ("earth2studio_names",)  # our channel -> Earth2Studio lexicon name (export)


def build_dataset(config: Mapping[str, Any], **overrides: Any) -> DownscalingDataset:
    """Instantiate the dataset a config describes: ``type`` picks the class, every other key
    but the `DESCRIPTIVE_KEYS` is passed to its constructor (``overrides`` win)."""
    _check_no_missing(config, overrides)
    options = {str(k): v for k, v in _plain(config).items() if k not in DESCRIPTIVE_KEYS}
    options.update(overrides)
    type_name = options.pop("type", None)
    if not type_name:
        raise DatasetConfigError(
            f"dataset config has no 'type'; set dataset.type to one of "
            f"{', '.join(sorted(BUILTIN_DATASETS))} or 'path/to/file.py::ClassName'"
        )
    cls = dataset_class(str(type_name))
    signature = inspect.signature(cls.__init__)
    accepts_any = any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())
    allowed = [n for n in signature.parameters if n != "self"]
    unexpected = sorted(set(options) - set(allowed))
    if unexpected and not accepts_any:
        raise DatasetConfigError(
            f"dataset.type {type_name!r} does not take option(s) {unexpected}; "
            f"its options are: {', '.join(allowed)}"
        )
    missing = [
        n for n, p in signature.parameters.items()
        if n != "self" and p.default is p.empty
        and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and n not in options
    ]
    if missing:
        raise DatasetConfigError(
            f"dataset.type {type_name!r} needs option(s) {missing}; set them as dataset.<name>"
        )
    return cls(**{k: _plain(v) for k, v in options.items()})


def _check_no_missing(config: Mapping[str, Any], overrides: Mapping[str, Any]) -> None:
    """Mandatory values left as ``???`` in a YAML config get one message naming all of them."""
    from omegaconf import DictConfig, OmegaConf

    if isinstance(config, DictConfig):
        missing = sorted(k for k in OmegaConf.missing_keys(config) if k not in overrides)
        if missing:
            settings = " ".join(f"++dataset.{k}=<value>" for k in missing)
            raise DatasetConfigError(
                f"dataset option(s) {missing} are not set; give them on the command line "
                f"({settings}) or in the dataset config"
            )


def _plain(value: Any) -> Any:
    """OmegaConf containers to plain Python, so datapipes never see config types."""
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf
    except ImportError:  # pragma: no cover - omegaconf is a runtime dependency
        return value
    if isinstance(value, DictConfig | ListConfig):
        return OmegaConf.to_container(value, resolve=True)
    return value
