"""Crafted checkpoint files are refused before anything in them can run."""

from __future__ import annotations

import io
import json
import sys
import zipfile

import pytest
import torch

from helpers.infrastructure.errors import CheckpointError
from helpers.models.checkpoint_safety import check_mdlus, load_plain_state
from helpers.models.networks import load_module
from tests.training_fixtures import TINY_ARCH


class RunsCode:
    """Unpickling this writes a marker file: proof that code ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('ran')",))


@pytest.fixture
def genuine_mdlus(tmp_path):
    from physicsnemo.models.diffusion_unets import CorrDiffRegressionUNet

    net = CorrDiffRegressionUNet(img_resolution=[16, 16], img_in_channels=3, img_out_channels=2,
                                 **{k: v for k, v in TINY_ARCH.items()})
    path = tmp_path / "genuine.mdlus"
    net.save(str(path))
    return path


def rewrite(source, target, **members: bytes) -> None:
    """Copy a .mdlus archive, replacing some of its members."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for name in old.namelist():
            new.writestr(name, members.get(name, old.read(name)))


def test_genuine_checkpoint_passes_and_loads(genuine_mdlus):
    check_mdlus(genuine_mdlus, "test")
    assert type(load_module(genuine_mdlus, "test")).__name__ == "CorrDiffRegressionUNet"


def test_checkpoint_saved_with_apex_group_norm_loads_without_apex(tmp_path):
    """Published checkpoints trained on GPUs with Apex record ``use_apex_gn: true``; they load
    here with torch's GroupNorm and the same weights (physicsnemo alone would refuse)."""
    from physicsnemo.models.diffusion_unets import CorrDiffRegressionUNet

    genuine = tmp_path / "plain.mdlus"  # 3 inputs + 4 positional channels
    CorrDiffRegressionUNet(img_resolution=[16, 16], img_in_channels=7, img_out_channels=2,
                           **TINY_ARCH).save(str(genuine))
    with zipfile.ZipFile(genuine) as archive:
        args = json.loads(archive.read("args.json"))
    args["__args__"]["use_apex_gn"] = True
    apex = tmp_path / "apex.mdlus"
    rewrite(genuine, apex, **{"args.json": json.dumps(args).encode()})
    import physicsnemo

    with pytest.raises(ValueError, match="apex"):
        physicsnemo.Module.from_checkpoint(str(apex))
    loaded, plain = load_module(apex, "test"), load_module(genuine, "test")
    assert loaded.model.use_apex_gn is False
    x, img_lr = torch.zeros(2, 2, 16, 16), torch.randn(2, 3, 16, 16)
    torch.testing.assert_close(loaded(x=x, img_lr=img_lr), plain(x=x, img_lr=img_lr),
                               rtol=0, atol=0)


def test_args_naming_another_module_is_refused_before_import(genuine_mdlus, tmp_path,
                                                              monkeypatch):
    marker = tmp_path / "imported"
    (tmp_path / "corrdiff_probe_module.py").write_text(
        f"open({str(marker)!r}, 'w').write('imported')\nclass Net: pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with zipfile.ZipFile(genuine_mdlus) as archive:
        args = json.loads(archive.read("args.json"))
    args.update(__module__="corrdiff_probe_module", __name__="Net")
    crafted = tmp_path / "crafted.mdlus"
    rewrite(genuine_mdlus, crafted, **{"args.json": json.dumps(args).encode()})
    with pytest.raises(CheckpointError, match=r"refusing to load class corrdiff_probe_module\.Net"
                                              r".*CorrDiffRegressionUNet"):
        load_module(crafted, "training.io.regression_checkpoint_path")
    assert not marker.exists() and "corrdiff_probe_module" not in sys.modules
    # An allowed class name in a foreign module is refused too.
    args.update(__module__="os", __name__="UNet")
    rewrite(genuine_mdlus, crafted, **{"args.json": json.dumps(args).encode()})
    with pytest.raises(CheckpointError, match=r"refusing to load class os\.UNet"):
        check_mdlus(crafted, "x")


def test_weights_that_run_code_are_refused(genuine_mdlus, tmp_path):
    marker = tmp_path / "ran"
    buffer = io.BytesIO()
    torch.save({"weight": RunsCode(marker)}, buffer)
    crafted = tmp_path / "crafted.mdlus"
    rewrite(genuine_mdlus, crafted, **{"model.pt": buffer.getvalue()})
    with pytest.raises(CheckpointError, match=r"refusing to load weights that reference "
                                              r"builtins\.exec"):
        load_module(crafted, "generation.io.res_ckpt_filename")
    assert not marker.exists()


def test_training_state_that_runs_code_is_refused(tmp_path):
    marker = tmp_path / "ran"
    state = tmp_path / "training_state.0.16.pt"
    torch.save({"samples": 16, "rng": RunsCode(marker)}, state)
    with pytest.raises(CheckpointError, match=r"refusing to load training state .*references "
                                              r"exec, not only tensors.*crafted to run code"):
        load_plain_state(state, "training state")
    assert not marker.exists()
    plain = tmp_path / "plain.pt"
    torch.save({"samples": 16, "rng": [{"cpu": torch.get_rng_state(), "cuda": None}]}, plain)
    assert load_plain_state(plain, "training state")["samples"] == 16


def test_not_an_archive_is_named(tmp_path):
    bogus = tmp_path / "bogus.mdlus"
    bogus.write_text("{}")
    with pytest.raises(CheckpointError, match=r"bogus\.mdlus' is not a readable physicsnemo "
                                              "checkpoint"):
        check_mdlus(bogus, "x")


def test_old_tar_format_is_checked_too(genuine_mdlus, tmp_path):
    """Older physicsnemo checkpoints are tar archives: the same checks apply."""
    import tarfile

    members = {}
    with zipfile.ZipFile(genuine_mdlus) as archive:
        for name in archive.namelist():
            members[name] = archive.read(name)
    for label, weights in (("genuine", members["model.pt"]), ("crafted", None)):
        if weights is None:
            buffer = io.BytesIO()
            torch.save({"weight": RunsCode(tmp_path / "ran")}, buffer)
            weights = buffer.getvalue()
        path = tmp_path / f"{label}.mdlus"
        with tarfile.open(path, "w") as tar:
            for name, data in {**members, "model.pt": weights}.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        if label == "genuine":
            check_mdlus(path, "x")
        else:
            with pytest.raises(CheckpointError, match="refusing to load weights"):
                check_mdlus(path, "x")
    assert not (tmp_path / "ran").exists()
