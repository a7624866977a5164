"""Refuse checkpoint files that could run code when loaded, before anything loads them.

A physicsnemo ``.mdlus`` file is an archive of ``args.json`` (the class to build, as a module
path and a class name), ``metadata.json`` and ``model.pt`` (the weights, a torch pickle).
physicsnemo imports whatever module ``args.json`` names, and a pickle can name any callable, so
a crafted file could run code on load. Before a ``.mdlus`` reaches physicsnemo we check that
every class it names is one of the CorrDiff network classes (current or legacy names, in the
physicsnemo/modulus namespace) and that its pickle references nothing but tensors and plain
data. Training-state files are loaded with ``torch.load(weights_only=True)`` only.
"""

from __future__ import annotations

import io
import json
import re
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import torch

from helpers.infrastructure.errors import CheckpointError

# The networks CorrDiff checkpoints hold: ours, and the names older CorrDiff releases used.
ALLOWED_CLASSES = frozenset({
    "CorrDiffRegressionUNet", "EDMPrecondSuperResolution", "SongUNet", "SongUNetPosEmbd",
    "SongUNetPosLtEmbd", "UNet", "EDMPrecondSR",
})
ALLOWED_NAMESPACES = ("physicsnemo", "modulus")
NESTED_PREFIX = "__mod__"  # physicsnemo's key prefix for a nested module's arguments


def _class_entries(args: dict[str, Any]):
    """Every (module, class name) pair an ``args.json`` asks for, nested modules included."""
    yield args.get("__module__"), args.get("__name__")
    for key, value in args.items():
        if isinstance(key, str) and key.startswith(NESTED_PREFIX) and isinstance(value, dict):
            yield from _class_entries(value)


def check_model_classes(args: Any, where: str) -> None:
    """Refuse an ``args.json`` that names a class outside the CorrDiff networks."""
    if not isinstance(args, dict):
        raise CheckpointError(f"{where}: args.json is not an object; this is not a physicsnemo "
                              "checkpoint")
    for module, name in _class_entries(args):
        if not isinstance(name, str) or not isinstance(module, str):
            raise CheckpointError(f"{where}: args.json names no model class; this is not a "
                                  "physicsnemo checkpoint")
        if name not in ALLOWED_CLASSES or module.split(".")[0] not in ALLOWED_NAMESPACES:
            raise CheckpointError(
                f"{where}: refusing to load class {module}.{name}: a CorrDiff checkpoint holds "
                f"one of {', '.join(sorted(ALLOWED_CLASSES))} from physicsnemo; use a "
                "checkpoint written by train.py (or a published CorrDiff one)"
            )


def check_pickle_is_plain_data(data: io.IOBase | str | Path, where: str) -> None:
    """Refuse a torch pickle that references anything but tensors and plain data."""
    try:
        unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(data)
    except Exception as err:
        raise CheckpointError(f"{where}: the weights cannot be read ({type(err).__name__}: "
                              f"{err}); the file is corrupt") from err
    if unsafe:
        raise CheckpointError(
            f"{where}: refusing to load weights that reference {', '.join(sorted(unsafe)[:5])}"
            " (a checkpoint holds only tensors and plain data; this file may be crafted to run "
            "code); use a checkpoint written by train.py"
        )


def check_mdlus(path: str | Path, what: str) -> dict[str, Any]:
    """Check a ``.mdlus`` archive's classes and weights before physicsnemo loads it; returns
    its recorded constructor arguments (``args.json``)."""
    where = f"{what}: {str(path)!r}"
    try:
        if tarfile.is_tarfile(path):  # physicsnemo checks tar first too (old checkpoints)
            with tarfile.open(path) as archive:
                members = {m.name.removeprefix("./"): m for m in archive.getmembers()}
                args_file = members.get("args.json")
                model_file = members.get("model.pt")
                if args_file is None or model_file is None:
                    raise CheckpointError(f"{where} lacks args.json or model.pt; this is not a "
                                          "physicsnemo checkpoint")
                args = json.load(archive.extractfile(args_file))
                check_model_classes(args, where)
                check_pickle_is_plain_data(archive.extractfile(model_file), where)
            return args
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            if not {"args.json", "model.pt"} <= names:
                raise CheckpointError(f"{where} lacks args.json or model.pt; this is not a "
                                      "physicsnemo checkpoint")
            args = json.loads(archive.read("args.json").decode("utf-8"))
            check_model_classes(args, where)
            with archive.open("model.pt") as weights:  # read in place, not copied
                check_pickle_is_plain_data(weights, where)
            return args
    except CheckpointError:
        raise
    except (OSError, zipfile.BadZipFile, tarfile.TarError, UnicodeDecodeError,
            json.JSONDecodeError, AttributeError) as err:
        raise CheckpointError(f"{where} is not a readable physicsnemo checkpoint "
                              f"({type(err).__name__}: {err})") from err


def load_plain_state(path: str | Path, what: str) -> Any:
    """``torch.load`` of a file that may hold only tensors and plain data."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        message = str(err)
        unsafe = re.search(r"GLOBAL (\S+) was not an allowed global", message)
        if unsafe:
            raise CheckpointError(
                f"refusing to load {what} {str(path)!r}: it references {unsafe[1]}, not only "
                "tensors and plain data (it may be crafted to run code); delete it and its "
                ".mdlus to resume from the previous checkpoint") from err
        lines = [line for line in message.splitlines() if line.strip()]
        reason = lines[-2 if "Check the documentation" in lines[-1] else -1][:200] if lines else ""
        raise CheckpointError(
            f"{what} {str(path)!r} is corrupt ({type(err).__name__}: {reason}); delete it and "
            "its .mdlus to resume from the previous checkpoint") from err
