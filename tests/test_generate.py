"""Generation: output layout and values, determinism, modes, patching, resume, errors."""

from __future__ import annotations

import copy
import shutil

import netCDF4
import numpy as np
import pytest
import torch
import xarray as xr

from datasets.registry import build_dataset
from helpers.generation.config import validate_generation_config
from helpers.generation.ensemble import EnsembleGenerator
from helpers.infrastructure.distributed import init_distributed
from helpers.infrastructure.errors import CheckpointError, ConfigError
from helpers.training.config import validate_training_config
from helpers.training.loop import Trainer
from tests.generation_fixtures import generation_config, train_tiny_models
from tests.training_fixtures import TINY_ARCH, tiny_config


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("gen_data")


@pytest.fixture(scope="module")
def checkpoints(data_dir, tmp_path_factory):
    return train_tiny_models(data_dir, tmp_path_factory.mktemp("gen_models"))


def generate(config: dict, attributes=None):
    generator = EnsembleGenerator(validate_generation_config(copy.deepcopy(config)),
                                  init_distributed(), attributes)
    return generator.run(), generator


def read(path, group):
    with xr.open_dataset(path, group=group) as ds:
        return ds.load()


def test_output_layout_and_values(data_dir, checkpoints, tmp_path):
    out = tmp_path / "out.nc"
    path, generator = generate(generation_config(data_dir, checkpoints, out),
                               attributes={"config": "dataset: ..."})
    assert path == out and out.is_file() and not out.with_name("out.nc.partial").exists()
    dataset = generator.dataset
    with netCDF4.Dataset(out) as nc:
        assert set(nc.groups) == {"input", "truth", "prediction", "generation_progress"}
        assert {d: len(v) for d, v in nc.dimensions.items()} == {
            "time": len(dataset), "y": 32, "x": 32}
        assert set(nc.variables) == {"time", "lat", "lon"}
        assert len(nc["prediction"].dimensions["ensemble"]) == 3
        assert nc["lat"].standard_name == "latitude" and nc["lon"].units == "degrees_east"
        assert nc["prediction"]["2t"].units == "K" and nc["truth"]["10u"].units == "m s-1"
        assert nc.getncattr("config") == "dataset: ..."
        assert nc.getncattr("diffusion_checkpoint").endswith(".mdlus")
        assert nc.getncattr("inference_mode") == "all"
    truth, inputs, prediction = read(out, "truth"), read(out, "input"), read(out, "prediction")
    root = read(out, None)
    assert list(root.time.values.astype("datetime64[s]").astype(object)) == dataset.time()
    np.testing.assert_allclose(root.lat.values, dataset.latitude(), rtol=1e-6)
    for k in range(len(dataset)):
        img_clean, img_lr = dataset[k]
        np.testing.assert_allclose(truth["2t"].values[k], dataset.denormalize_output(img_clean)[1],
                                   rtol=1e-5)
        np.testing.assert_allclose(inputs["tcwv"].values[k],
                                   dataset.denormalize_input(img_lr)[4], rtol=1e-4, atol=1e-3)
    assert prediction["10u"].dims == ("ensemble", "time", "y", "x")
    assert np.isfinite(prediction["10u"].values).all()
    members = prediction["2t"].values[:, 0]
    assert not np.allclose(members[0], members[1])  # members get different noise
    assert not np.allclose(prediction["2t"].values[0, 0], prediction["2t"].values[0, 1])


def test_same_seed_same_numbers_regardless_of_batching(data_dir, checkpoints, tmp_path):
    base = generation_config(data_dir, checkpoints, tmp_path / "a.nc", times=None)
    generate(base)
    rebatched = copy.deepcopy(base)
    rebatched["generation"].update(seed_batch_size=1)
    rebatched["generation"]["io"]["output_filename"] = str(tmp_path / "b.nc")
    generate(rebatched)
    reseeded = copy.deepcopy(base)
    reseeded["generation"].update(seed=1)
    reseeded["generation"]["io"]["output_filename"] = str(tmp_path / "c.nc")
    generate(reseeded)
    a, b, c = (read(tmp_path / f"{n}.nc", "prediction")["2t"].values for n in "abc")
    # Identical noise; batched convolutions may differ from single ones in the last bits.
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4)
    assert not np.allclose(a, c)


def test_several_times_per_network_call_give_the_same_members(data_dir, checkpoints, tmp_path,
                                                              monkeypatch):
    calls = {"regression": [], "residuals": []}
    regression, residuals = EnsembleGenerator._regression_mean, EnsembleGenerator._residuals
    monkeypatch.setattr(EnsembleGenerator, "_regression_mean", lambda self, lr, labels: calls[
        "regression"].append(lr.shape[0]) or regression(self, lr, labels))
    monkeypatch.setattr(EnsembleGenerator, "_residuals", lambda self, lr, mean, seeds, labels:
                        calls["residuals"].append(len(seeds))
                        or residuals(self, lr, mean, seeds, labels))
    values = {}
    for per_batch in (1, 3):
        for mode in ("all", "regression"):
            config = generation_config(data_dir, checkpoints, tmp_path / f"{per_batch}{mode}.nc",
                                       times_per_batch=per_batch, inference_mode=mode)
            calls["regression"].clear(), calls["residuals"].clear()
            generate(config)
            values[per_batch, mode] = read(tmp_path / f"{per_batch}{mode}.nc",
                                           "prediction")["2t"].values
            times = values[per_batch, mode].shape[1]
            groups = -(-times // per_batch)
            assert calls["regression"] == [per_batch] * (times // per_batch) + (
                [times % per_batch] if times % per_batch else [])
            if mode == "all":  # 3 members in seed batches of 2: rows of several times share
                sizes = [min(per_batch, times - g * per_batch) for g in range(groups)]
                rows = [min(2 * n, 3 * n - start) for n in sizes
                        for start in range(0, 3 * n, 2 * n)]
                assert calls["residuals"] == rows
                assert sum(rows) == 3 * times
    assert values[3, "all"].shape == values[1, "all"].shape
    np.testing.assert_allclose(values[3, "all"], values[1, "all"], rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(values[3, "regression"], values[1, "regression"], rtol=1e-5,
                               atol=1e-5)


def test_time_selection_and_noise_per_time(data_dir, checkpoints, tmp_path):
    dataset_times = build_dataset(
        generation_config(data_dir, checkpoints, tmp_path / "x.nc")["dataset"]).time()
    one = generation_config(data_dir, checkpoints, tmp_path / "one.nc",
                            times=[f"{dataset_times[2]:%Y-%m-%dT%H:%M}"])
    generate(one)
    all_times = generation_config(data_dir, checkpoints, tmp_path / "all.nc")
    generate(all_times)
    single, full = read(tmp_path / "one.nc", "prediction"), read(tmp_path / "all.nc", "prediction")
    assert single.sizes["time"] == 1
    # A time's members do not depend on which other times are generated.
    np.testing.assert_array_equal(single["2t"].values[:, 0], full["2t"].values[:, 2])
    step_hours = round((dataset_times[1] - dataset_times[0]).total_seconds() / 3600)
    ranged = generation_config(data_dir, checkpoints, tmp_path / "r.nc", times_range=[
        f"{dataset_times[0]:%Y-%m-%dT%H:%M}", f"{dataset_times[1]:%Y-%m-%dT%H:%M}",
        f"{step_hours}h"])
    generate(ranged)
    assert read(tmp_path / "r.nc", None).sizes["time"] == 2


def test_regression_mode_writes_the_mean_once(data_dir, checkpoints, tmp_path):
    config = generation_config(data_dir, checkpoints, tmp_path / "reg.nc",
                               inference_mode="regression")
    config["generation"]["io"]["res_ckpt_filename"] = None
    generate(config)
    regression = read(tmp_path / "reg.nc", "prediction")
    assert regression.sizes["ensemble"] == 1
    full = generation_config(data_dir, checkpoints, tmp_path / "all.nc",
                             sampler={"num_steps": 4, "sigma_max": 1e-3, "sigma_min": 1e-4})
    generate(full)
    # With (almost) no noise to remove, CorrDiff's members collapse onto the regression mean.
    members = read(tmp_path / "all.nc", "prediction")["2t"].values
    np.testing.assert_allclose(members, np.broadcast_to(regression["2t"].values, members.shape),
                               atol=0.05)


def test_diffusion_only_mode_needs_no_regression(data_dir, tmp_path):
    training = tiny_config(data_dir, tmp_path / "plain", name="diffusion", training_duration=8)
    training["model"]["hr_mean_conditioning"] = False
    training["validation"] = None
    # A diffusion model trained on the residual of a regression still samples without it.
    regression = tiny_config(data_dir, tmp_path / "plain", training_duration=4)
    Trainer(validate_training_config(regression), init_distributed()).run()
    training["training"]["io"]["regression_checkpoint_path"] = str(
        tmp_path / "plain/checkpoints_regression")
    Trainer(validate_training_config(training), init_distributed()).run()
    checkpoints = {"regression": None,
                   "diffusion": str(tmp_path / "plain/checkpoints_diffusion")}
    config = generation_config(data_dir, checkpoints, tmp_path / "diff.nc",
                               inference_mode="diffusion", hr_mean_conditioning=False)
    generate(config)
    assert read(tmp_path / "diff.nc", "prediction").sizes["ensemble"] == 3


def test_patch_based_generation(data_dir, tmp_path):
    checkpoints = train_tiny_models(data_dir, tmp_path / "patched", patched=True)
    config = generation_config(data_dir, checkpoints, tmp_path / "patched.nc", patching=True,
                               patch_shape_x=16, patch_shape_y=16, overlap_pix=4,
                               boundary_pix=2)
    generate(config)
    prediction = read(tmp_path / "patched.nc", "prediction")
    assert prediction["2t"].shape == (3, 4, 32, 32)
    assert np.isfinite(prediction["2t"].values).all()
    unpatched = copy.deepcopy(config)
    unpatched["generation"]["patching"] = False
    with pytest.raises(CheckpointError, match=r"expects .* conditioning channels.*fits "
                                              r"generation.hr_mean_conditioning=True and "
                                              r"generation.patching=True"):
        generate(unpatched)


def test_resume_after_interruption(data_dir, checkpoints, tmp_path, monkeypatch):
    config = generation_config(data_dir, checkpoints, tmp_path / "res.nc")
    reference = copy.deepcopy(config)
    reference["generation"]["io"]["output_filename"] = str(tmp_path / "ref.nc")
    generate(reference)
    calls = {"n": 0}
    original = EnsembleGenerator.predict

    def flaky(self, indices, samples):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return original(self, indices, samples)

    monkeypatch.setattr(EnsembleGenerator, "predict", flaky)
    with pytest.raises(KeyboardInterrupt):
        generate(config)
    assert not (tmp_path / "res.nc").exists()
    assert (tmp_path / "res.nc.partial").exists()
    monkeypatch.setattr(EnsembleGenerator, "predict", original)
    resumed = copy.deepcopy(config)
    resumed["generation"]["resume"] = True
    seen = []
    monkeypatch.setattr(EnsembleGenerator, "predict",
                        lambda self, indices, samples: seen.extend(indices)
                        or original(self, indices, samples))
    generate(resumed)
    assert seen == [2, 3]  # only the times not yet written
    np.testing.assert_array_equal(read(tmp_path / "res.nc", "prediction")["2t"].values,
                                  read(tmp_path / "ref.nc", "prediction")["2t"].values)


def test_legacy_checkpoint_classes_load(data_dir, tmp_path):
    import warnings

    from physicsnemo.diffusion.preconditioners import EDMPrecondSR
    from physicsnemo.models.diffusion_unets import UNet

    arch = dict(TINY_ARCH)
    n_in, n_out, grid = 8, 2, 4
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        regression = UNet(img_resolution=[32, 32], img_in_channels=n_in + grid,
                          img_out_channels=n_out, **arch)
        diffusion = EDMPrecondSR(img_resolution=[32, 32], img_channels=n_out,
                                 img_in_channels=n_in + grid + n_out, img_out_channels=n_out,
                                 scale_cond_input=False, **arch)
    paths = {"regression": str(tmp_path / "UNet.0.0.mdlus"),
             "diffusion": str(tmp_path / "EDMPrecondSR.0.0.mdlus")}
    regression.save(paths["regression"])
    diffusion.save(paths["diffusion"])
    generate(generation_config(data_dir, paths, tmp_path / "legacy.nc", num_ensembles=2))
    assert read(tmp_path / "legacy.nc", "prediction").sizes["ensemble"] == 2


# ------------------------------------------------------------------------------ bad input
def test_missing_checkpoint_says_which_training_to_run(data_dir, checkpoints, tmp_path):
    config = generation_config(data_dir, checkpoints, tmp_path / "o.nc")
    config["generation"]["io"]["res_ckpt_filename"] = str(tmp_path / "nothing")
    with pytest.raises(CheckpointError, match=r"res_ckpt_filename=.*nothing' has no diffusion "
                                              r"checkpoint.*config_training_synthetic_diffusion"):
        generate(config)


def test_output_is_checked_before_checkpoints_and_data(data_dir, tmp_path):
    """Called from Python (no Hydra callback): the output path is still checked first."""
    (tmp_path / "taken").mkdir()
    config = generation_config(data_dir, {"regression": str(tmp_path / "none.mdlus"),
                                          "diffusion": str(tmp_path / "none.mdlus")},
                               tmp_path / "taken")
    config["dataset"]["data_path"] = str(tmp_path / "missing.nc")
    with pytest.raises(ConfigError, match=r"output_filename=.*taken' is an existing directory"):
        generate(config)


def test_not_a_checkpoint(data_dir, checkpoints, tmp_path):
    bogus = tmp_path / "bogus.mdlus"
    bogus.write_bytes(b"\x00" * 64)
    config = generation_config(data_dir, checkpoints, tmp_path / "o.nc")
    config["generation"]["io"]["reg_ckpt_filename"] = str(bogus)
    with pytest.raises(CheckpointError, match=r"bogus.mdlus' is not a readable physicsnemo"):
        generate(config)


def test_checkpoint_channels_must_match_dataset(data_dir, checkpoints, tmp_path):
    config = generation_config(data_dir, checkpoints, tmp_path / "o.nc")
    config["dataset"]["output_variables"] = ["10u", "10v", "2t"]
    with pytest.raises(CheckpointError, match=r"predicts 2 channels.*dataset has 3 output"):
        generate(config)


def test_resolution_must_match(data_dir, checkpoints, tmp_path):
    config = generation_config(data_dir, checkpoints, tmp_path / "o.nc",
                               inference_mode="diffusion", hr_mean_conditioning=False)
    config["generation"]["io"]["reg_ckpt_filename"] = None
    big = tmp_path / "big"
    from datasets.synthetic import generate_synthetic_dataset
    from tests.training_fixtures import TINY

    generate_synthetic_dataset(big, **{**TINY, "window_size": 64, "domain_size": 96})
    config["dataset"].update(data_path=str(big / "valid.nc"), stats_path=str(big / "stats.json"))
    with pytest.raises(CheckpointError, match=r"trained on \(32, 32\) images, the dataset has "
                                              r"\(64, 64\)"):
        generate(config)


def test_unknown_time_lists_nearest(data_dir, checkpoints, tmp_path):
    config = generation_config(data_dir, checkpoints, tmp_path / "o.nc",
                               times=["1999-01-01T00:00"])
    with pytest.raises(ConfigError, match=r"1999-01-01T00:00 is not in the dataset.*nearest "
                                          r"available: "):
        generate(config)


def test_times_and_range_are_exclusive(data_dir, checkpoints, tmp_path):
    config = generation_config(data_dir, checkpoints, tmp_path / "o.nc", times=["2023-01-01"],
                               times_range=["2023-01-01", "2023-01-02", "1h"])
    with pytest.raises(ConfigError, match="mutually exclusive"):
        validate_generation_config(config)


def test_mode_needs_its_checkpoint(data_dir, checkpoints, tmp_path):
    config = generation_config(data_dir, checkpoints, tmp_path / "o.nc")
    config["generation"]["io"]["res_ckpt_filename"] = None
    with pytest.raises(ConfigError, match=r"inference_mode=all needs the diffusion checkpoint"):
        validate_generation_config(config)


def test_patches_fuse_without_seams(data_dir, tmp_path):
    """With a network whose learned part is zero, the EDM denoiser is pointwise
    (D = c_skip * x), so overlapping patches with discarded borders must fuse into exactly the
    field that one whole-image patch gives: any seam is a bookkeeping error."""
    import physicsnemo
    import torch

    checkpoints = train_tiny_models(data_dir, tmp_path / "patched", patched=True)
    net = physicsnemo.Module.from_checkpoint(checkpoints["patched_diffusion"])
    with torch.no_grad():
        for parameter in net.parameters():
            parameter.zero_()
    zeroed = tmp_path / "EDMPrecondSuperResolution.0.0.mdlus"
    net.save(str(zeroed))
    checkpoints["patched_diffusion"] = str(zeroed)
    outputs = {}
    for name, patch in (("tiles", 16), ("whole", 32)):
        config = generation_config(
            data_dir, checkpoints, tmp_path / f"{name}.nc", patching=True, patch_shape_x=patch,
            patch_shape_y=patch, overlap_pix=4 if patch < 32 else 0,
            boundary_pix=2 if patch < 32 else 0, num_ensembles=2,
            sampler={"type": "deterministic", "num_steps": 6})
        generate(config)
        outputs[name] = read(tmp_path / f"{name}.nc", "prediction")["2t"].values
    assert outputs["tiles"].shape == outputs["whole"].shape == (2, 4, 32, 32)
    np.testing.assert_allclose(outputs["tiles"], outputs["whole"], rtol=1e-5, atol=1e-4)


# Same noise: lower precision moves values slightly relative to their spread; memory layout and
# compilation (of both networks) only by rounding.
@pytest.mark.parametrize("perf,tolerance", [({"fp_optimizations": "amp-bf16"}, 0.1),
                                            ({"channels_last": True}, 1e-4),
                                            ({"torch_compile": True}, 1e-4)])
def test_generation_performance_options(data_dir, checkpoints, tmp_path, perf, tolerance,
                                        monkeypatch):
    if perf.get("torch_compile"):
        # The wiring (both networks compiled, same members) without inductor's code
        # generation, which is torch's to test and would cost ~45 s here.
        compile_ = torch.compile
        monkeypatch.setattr(torch, "compile", lambda net: compile_(net, backend="aot_eager"))
    config = generation_config(data_dir, checkpoints, tmp_path / "p.nc", perf=perf,
                               num_ensembles=2, times=None)
    _, generator = generate(config)
    compiled = {type(net).__name__ == "OptimizedModule"
                for net in (generator.regression, generator.diffusion)}
    assert compiled == {perf.get("torch_compile", False)}
    reference = generation_config(data_dir, checkpoints, tmp_path / "ref.nc", num_ensembles=2)
    generate(reference)
    fast, exact = (read(tmp_path / n, "prediction")["2t"].values for n in ("p.nc", "ref.nc"))
    assert np.isfinite(fast).all()
    assert np.abs(fast - exact).mean() < tolerance * exact.std()


def test_patch_larger_than_image_is_refused(data_dir, tmp_path):
    checkpoints = train_tiny_models(data_dir, tmp_path / "patched", patched=True)
    config = generation_config(data_dir, checkpoints, tmp_path / "o.nc", patching=True,
                               patch_shape_x=48, patch_shape_y=48)
    with pytest.raises(ConfigError, match=r"generation.patch_shape_y/x=\(48, 48\) is larger "
                                          r"than the \(32, 32\) image"):
        generate(config)


# ------------------------------------------------------------------------------ model facts
def test_hr_mean_conditioning_comes_from_the_checkpoint(data_dir, checkpoints, tmp_path):
    config = generation_config(data_dir, checkpoints, tmp_path / "o.nc", num_ensembles=1,
                               seed_batch_size=1)
    config["generation"]["hr_mean_conditioning"] = None
    config["generation"]["times"] = None
    generator = EnsembleGenerator(validate_generation_config(copy.deepcopy(config)),
                                  init_distributed())
    assert generator.hr_mean_conditioning is True  # the tiny diffusion model was trained so
    config["generation"]["hr_mean_conditioning"] = False
    with pytest.raises(CheckpointError, match=r"generation.hr_mean_conditioning=False "
                                              r"contradicts diffusion checkpoint .* trained with "
                                              r"hr_mean_conditioning=True"):
        EnsembleGenerator(validate_generation_config(config), init_distributed())


def test_without_facts_the_channels_decide(data_dir, checkpoints, tmp_path):
    """A published checkpoint has no facts file: what its input channels fit is used."""
    copied = shutil.copy(checkpoints["diffusion"], tmp_path / "published.mdlus")
    config = generation_config(data_dir, {**checkpoints, "diffusion": str(copied)},
                               tmp_path / "o.nc")
    config["generation"]["hr_mean_conditioning"] = None
    generator = EnsembleGenerator(validate_generation_config(config), init_distributed())
    assert generator.hr_mean_conditioning is True


def test_dataset_channels_must_be_the_models(data_dir, checkpoints, tmp_path):
    config = generation_config(data_dir, checkpoints, tmp_path / "o.nc")
    config["dataset"]["output_variables"] = ["2t", "10u"]  # trained as ["10u", "2t"]
    with pytest.raises(CheckpointError, match=r"trained with output channels \['10u', '2t'\], "
                                              r"the dataset gives \['2t', '10u'\]; set "
                                              r"dataset.output_variables"):
        EnsembleGenerator(validate_generation_config(config), init_distributed())
