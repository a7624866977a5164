"""Training behaviour on tiny models: learning, resume, accumulation, checkpoints, errors."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from helpers.checkpoints import CheckpointStore
from helpers.config_schema import ConfigError, validate_training_config
from helpers.distributed import init_distributed
from helpers.models import CheckpointError
from helpers.training_loop import Trainer, TrainingDiverged
from tests.training_fixtures import tiny_config


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("tiny_synthetic")


def make_trainer(config: dict) -> Trainer:
    return Trainer(validate_training_config(copy.deepcopy(config)), init_distributed())


def regression_checkpoint(data_dir, tmp_path, steps: int = 8):
    run = make_trainer(tiny_config(data_dir, tmp_path / "reg", training_duration=4 * steps))
    run.run()
    return str(run.store.directory)


def weights(trainer: Trainer) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in trainer.net.state_dict().items()}


def assert_same_weights(a: dict, b: dict, atol: float = 1e-6) -> None:
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=atol, rtol=1e-5, msg=name)


def test_regression_loss_falls(data_dir, tmp_path):
    trainer = make_trainer(tiny_config(data_dir, tmp_path, training_duration=10_000))
    losses = [trainer.train_step() for _ in range(30)]
    assert sum(losses[-5:]) / 5 < 0.6 * sum(losses[:5]) / 5, losses


@pytest.mark.parametrize("name,extra", [
    ("diffusion", {}),
    ("patched_diffusion", {"patch_shape_x": 16, "patch_shape_y": 16, "patch_num": 3}),
])
def test_diffusion_loss_falls(data_dir, tmp_path, name, extra):
    config = tiny_config(data_dir, tmp_path / name, name=name, training_duration=10_000, **extra)
    config["training"]["io"]["regression_checkpoint_path"] = regression_checkpoint(
        data_dir, tmp_path)
    trainer = make_trainer(config)
    # The EDM loss of one batch is noisy (random noise levels): compare the validation loss,
    # which uses the same noise draws every time it is computed.
    before = trainer.validate()
    assert trainer.validate() == pytest.approx(before)
    for _ in range(100):
        trainer.train_step()
    after = trainer.validate()
    assert after < 0.85 * before, (before, after)
    assert trainer.patching is None or trainer.patching.patch_num == extra["patch_num"]


def test_checkpoints_layout_resume_and_pruning(data_dir, tmp_path):
    config = tiny_config(data_dir, tmp_path, training_duration=48)
    config["training"]["io"]["save_n_recent_checkpoints"] = 2
    trainer = make_trainer(config)
    trainer.run()
    directory = tmp_path / "checkpoints_regression"
    names = sorted(p.name for p in directory.iterdir())
    assert names == ["CorrDiffRegressionUNet.0.32.mdlus", "CorrDiffRegressionUNet.0.48.mdlus",
                     "training_state.0.32.pt", "training_state.0.48.pt"]
    import physicsnemo

    loaded = physicsnemo.Module.from_checkpoint(str(directory / names[1]))
    assert_same_weights(weights(trainer), loaded.state_dict())
    # Rerunning the same command finds the run complete and trains no further.
    again = make_trainer(config)
    assert again.samples == 48
    again.run()
    assert sorted(p.name for p in directory.iterdir()) == names


def test_tensorboard_scalars_written(data_dir, tmp_path):
    make_trainer(tiny_config(data_dir, tmp_path, training_duration=16)).run()
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"training/loss", "training/learning_rate", "training/samples_per_second",
            "validation/loss"} <= tags
    assert [e.step for e in events.Scalars("training/loss")] == [8, 16]


def test_resume_reproduces_uninterrupted_diffusion_run(data_dir, tmp_path):
    regression = regression_checkpoint(data_dir, tmp_path)
    configs = {}
    for run in ("straight", "resumed"):
        config = tiny_config(data_dir, tmp_path / run, name="diffusion", training_duration=32)
        config["training"]["io"]["regression_checkpoint_path"] = regression
        configs[run] = config
    straight = make_trainer(configs["straight"])
    straight.run()
    interrupted = copy.deepcopy(configs["resumed"])
    interrupted["training"]["hp"]["training_duration"] = 16  # stands in for a kill at 16
    make_trainer(interrupted).run()
    resumed = make_trainer(configs["resumed"])
    assert resumed.samples == 16
    resumed.run()
    assert_same_weights(weights(straight), weights(resumed))
    assert resumed.optimizer.state_dict()["state"].keys() == (
        straight.optimizer.state_dict()["state"].keys())


def test_accumulation_matches_one_big_batch(data_dir, tmp_path):
    one = make_trainer(tiny_config(data_dir, tmp_path / "one", total_batch_size=8,
                                   batch_size_per_gpu=8))
    four = make_trainer(tiny_config(data_dir, tmp_path / "four", total_batch_size=8,
                                    batch_size_per_gpu=2))
    assert (one.rounds, four.rounds) == (1, 4)
    for _ in range(3):
        loss_one, loss_four = one.train_step(), four.train_step()
        assert loss_one == pytest.approx(loss_four, rel=1e-5)
    assert_same_weights(weights(one), weights(four), atol=1e-5)


def test_nonfinite_loss_skips_steps_then_stops(data_dir, tmp_path):
    config = tiny_config(data_dir, tmp_path, training_duration=64)
    config["training"]["hp"]["max_consecutive_nonfinite"] = 3
    trainer = make_trainer(config)
    before = weights(trainer)
    original = trainer.loss_fn

    def nan_loss(**kwargs):
        return original(**kwargs) * float("nan")

    trainer.loss_fn = nan_loss
    trainer.train_step()
    trainer.train_step()
    assert trainer.nonfinite_streak == 2
    assert_same_weights(before, weights(trainer))  # skipped steps leave the weights alone
    with pytest.raises(TrainingDiverged, match="non-finite for 3 steps in a row"):
        trainer.train_step()
    trainer.loss_fn = original
    trainer.train_step()
    assert trainer.nonfinite_streak == 0


def test_never_saves_a_nonfinite_checkpoint(data_dir, tmp_path):
    trainer = make_trainer(tiny_config(data_dir, tmp_path))
    with torch.no_grad():
        next(trainer.net.parameters()).fill_(float("inf"))
    with pytest.raises(CheckpointError, match=r"refusing to save.*is not finite"):
        trainer.save()
    assert trainer.store.latest() is None


def test_corrupt_checkpoint_is_named(data_dir, tmp_path):
    config = tiny_config(data_dir, tmp_path, training_duration=16)
    make_trainer(config).run()
    state = tmp_path / "checkpoints_regression/training_state.0.16.pt"
    state.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match=r"training_state.0.16.pt.* is corrupt"):
        make_trainer(config)


def test_partial_checkpoint_is_ignored(data_dir, tmp_path):
    config = tiny_config(data_dir, tmp_path, training_duration=16)
    make_trainer(config).run()
    store = CheckpointStore(tmp_path / "checkpoints_regression", "CorrDiffRegressionUNet")
    # A kill while writing step 32: the model file exists, the state file does not.
    (tmp_path / "checkpoints_regression/CorrDiffRegressionUNet.0.32.mdlus").write_bytes(b"x")
    assert store.latest().samples == 16
    assert make_trainer(config).samples == 16


def test_mismatched_checkpoint_is_refused(data_dir, tmp_path):
    config = tiny_config(data_dir, tmp_path, training_duration=16)
    make_trainer(config).run()
    wider = copy.deepcopy(config)
    wider["model"]["model_args"]["model_channels"] = 16
    with pytest.raises(CheckpointError, match="different model or dataset"):
        make_trainer(wider)


def test_regression_checkpoint_with_wrong_channels(data_dir, tmp_path):
    regression = regression_checkpoint(data_dir, tmp_path, steps=1)
    config = tiny_config(data_dir, tmp_path / "diff", name="diffusion")
    config["dataset"]["output_variables"] = ["10u", "10v", "2t"]
    config["training"]["io"]["regression_checkpoint_path"] = regression
    with pytest.raises(CheckpointError, match=r"predicts 2 channels.*dataset has 3 output"):
        make_trainer(config)


def test_regression_checkpoint_missing_or_not_a_checkpoint(data_dir, tmp_path):
    config = tiny_config(data_dir, tmp_path, name="diffusion")
    config["training"]["io"]["regression_checkpoint_path"] = str(tmp_path / "nope.mdlus")
    with pytest.raises(CheckpointError, match=r"nope\.mdlus' does not exist"):
        make_trainer(config)
    bogus = tmp_path / "bogus.mdlus"
    bogus.write_text(json.dumps({"not": "a model"}))
    config["training"]["io"]["regression_checkpoint_path"] = str(bogus)
    with pytest.raises(CheckpointError, match="not a readable physicsnemo checkpoint"):
        make_trainer(config)


@pytest.mark.parametrize("patch,message", [
    (48, r"larger than the \(32, 32\) image"),
    (10, r"not supported by a UNet with 2 levels.*multiple of 2"),
])
def test_bad_patch_shapes(data_dir, tmp_path, patch, message):
    config = tiny_config(data_dir, tmp_path / "p", name="patched_diffusion", patch_shape_x=patch,
                         patch_shape_y=patch, patch_num=2)
    config["model"]["model_args"]["channel_mult"] = [1, 2]
    config["training"]["io"]["regression_checkpoint_path"] = regression_checkpoint(
        data_dir, tmp_path, steps=1)
    if patch == 10:
        config["training"]["hp"]["patch_shape_x"] = config["training"]["hp"]["patch_shape_y"] = 9
        message = r"patch_shape_y/x \(9, 9\) is not supported.*multiple of 2"
    with pytest.raises(ConfigError, match=message):
        make_trainer(config)


def test_indivisible_batch_size(data_dir, tmp_path):
    with pytest.raises(ConfigError, match=r"batch_size_per_gpu=3 does not divide"):
        make_trainer(tiny_config(data_dir, tmp_path, total_batch_size=4, batch_size_per_gpu=3))


def test_unwritable_checkpoint_dir(data_dir, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(ConfigError, match=r"checkpoint_dir=.*file/run' is not writable"):
        make_trainer(tiny_config(data_dir, blocker / "run"))


@pytest.mark.parametrize("perf", [
    {"fp_optimizations": "amp-bf16"},
    {"fp_optimizations": "amp-fp16"},
    {"channels_last": True, "songunet_checkpoint_level": 1},
    {"dataloader_workers": 2},
])
def test_performance_options_train_on_cpu(data_dir, tmp_path, perf):
    config = tiny_config(data_dir, tmp_path, name="diffusion", training_duration=12)
    config["training"]["io"]["regression_checkpoint_path"] = regression_checkpoint(
        data_dir, tmp_path, steps=1)
    config["training"]["perf"].update(perf)
    trainer = make_trainer(config)
    assert trainer.net.amp_mode == perf.get("fp_optimizations", "fp32").startswith("amp")
    assert trainer.scaler.is_enabled() == (perf.get("fp_optimizations") == "amp-fp16")
    before = weights(trainer)
    losses = [trainer.train_step() for _ in range(3)]
    assert all(torch.isfinite(torch.tensor(losses)))
    changed = [k for k, v in weights(trainer).items() if not torch.equal(v, before[k])]
    assert changed, "no parameter was updated"


def test_torch_compile_trains_on_cpu(data_dir, tmp_path):
    config = tiny_config(data_dir, tmp_path, training_duration=8)
    config["training"]["perf"]["torch_compile"] = True
    trainer = make_trainer(config)
    assert trainer.loss_net is not trainer.net  # the compiled wrapper is what trains
    losses = [trainer.train_step() for _ in range(2)]
    assert all(torch.isfinite(torch.tensor(losses)))
