"""Training behaviour on tiny models: learning, resume, accumulation, checkpoints, errors."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch

from helpers.infrastructure.distributed import init_distributed
from helpers.infrastructure.errors import CheckpointError, ConfigError, TrainingDiverged
from helpers.models.checkpoints import CheckpointStore
from helpers.training.config import validate_training_config
from helpers.training.loop import Trainer
from tests.conftest import read_only_directory
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
    assert names == ["CorrDiffRegressionUNet.0.32.json", "CorrDiffRegressionUNet.0.32.mdlus",
                     "CorrDiffRegressionUNet.0.48.json", "CorrDiffRegressionUNet.0.48.mdlus",
                     "training_state.0.32.pt", "training_state.0.48.pt"]
    import physicsnemo

    loaded = physicsnemo.Module.from_checkpoint(str(directory / names[3]))
    facts = json.loads((directory / names[2]).read_text())
    assert facts["samples"] == 48 and facts["model"]["name"] == "regression"
    assert [c["label"] for c in facts["output_channels"]] == ["10u", "2t"]
    assert facts["output_channels"][1]["units"] == "K" and facts["image_shape"] == [32, 32]
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


def record_steps(trainer: Trainer) -> list[tuple[float, float, float]]:
    """Make ``trainer`` record (loss, gradient norm, learning rate) of every step it takes, as
    the losses are read back from the device."""
    steps, rates = [], []
    step, sync = trainer.step, trainer.sync

    def recording_step() -> None:
        step()
        rates.append(trainer.lr)

    def recording_sync() -> list[tuple[float, float]]:
        values = sync()
        steps.extend((loss, norm, rates[len(steps)]) for loss, norm in values)
        return values

    trainer.step, trainer.sync = recording_step, recording_sync
    return steps


DIFFUSION_CASES = [
    ("diffusion", {}),
    ("patched_diffusion", {"patch_shape_x": 16, "patch_shape_y": 16, "patch_num": 3}),
]
# A schedule that changes at every step (ramp, then decay) and clipping that bites.
SCHEDULE = {"lr_rampup": 12, "lr_decay": 0.7, "lr_decay_rate": 4, "grad_clip_threshold": 0.05}


@pytest.mark.parametrize("name,extra", DIFFUSION_CASES)
def test_resume_reproduces_uninterrupted_run(data_dir, tmp_path, name, extra):
    regression = regression_checkpoint(data_dir, tmp_path)
    configs = {}
    for run in ("straight", "resumed"):
        config = tiny_config(data_dir, tmp_path / run, name=name, training_duration=32,
                             **SCHEDULE, **extra)
        config["training"]["io"]["regression_checkpoint_path"] = regression
        configs[run] = config
    straight = make_trainer(configs["straight"])
    straight_steps = record_steps(straight)
    straight.run()
    interrupted = copy.deepcopy(configs["resumed"])
    interrupted["training"]["hp"]["training_duration"] = 16  # stands in for a kill at 16
    first = make_trainer(interrupted)
    first_steps = record_steps(first)
    first.run()
    resumed = make_trainer(configs["resumed"])
    assert resumed.samples == 16
    resumed_steps = record_steps(resumed)
    resumed.run()
    assert len(straight_steps) == len(first_steps) + len(resumed_steps) == 8
    # The learning rate changed at every step and clipping was active in every step.
    assert len({lr for _, _, lr in straight_steps}) == 8
    assert min(norm for _, norm, _ in straight_steps) > SCHEDULE["grad_clip_threshold"]
    assert first_steps + resumed_steps == straight_steps  # exactly: same numbers, same order
    assert_same_weights(weights(straight), weights(resumed), atol=0)
    assert resumed.optimizer.state_dict()["state"].keys() == (
        straight.optimizer.state_dict()["state"].keys())


@pytest.mark.parametrize("name,extra", [("regression", {}), *DIFFUSION_CASES])
def test_accumulation_matches_one_big_batch(data_dir, tmp_path, name, extra):
    regression = None if name == "regression" else regression_checkpoint(data_dir, tmp_path, 2)
    trainers = []
    for per_gpu in (8, 2):
        config = tiny_config(data_dir, tmp_path / str(per_gpu), name=name, total_batch_size=8,
                             batch_size_per_gpu=per_gpu, **extra)
        config["training"]["io"]["regression_checkpoint_path"] = regression
        trainers.append(make_trainer(config))
    one, four = trainers
    assert (one.rounds, four.rounds) == (1, 4)
    for _ in range(3):
        loss_one, loss_four = one.train_step(), four.train_step()
        assert loss_one == pytest.approx(loss_four, rel=1e-5)
        assert one.grad_norm == pytest.approx(four.grad_norm, rel=1e-4)
    assert_same_weights(weights(one), weights(four), atol=1e-5)


def test_patch_groups_match_all_patches_at_once(data_dir, tmp_path):
    """max_patch_per_gpu: the patches of a step in groups (here 2 images x 1 patch, so three
    groups for patch_num 3) give the losses, gradients and weights of all at once."""
    regression = regression_checkpoint(data_dir, tmp_path, 2)
    trainers = []
    for limit in (None, 2, 5):
        config = tiny_config(data_dir, tmp_path / str(limit), name="patched_diffusion",
                             total_batch_size=4, batch_size_per_gpu=2, patch_shape_x=16,
                             patch_shape_y=16, patch_num=3, max_patch_per_gpu=limit)
        config["training"]["io"]["regression_checkpoint_path"] = regression
        trainers.append(make_trainer(config))
    assert [t.patch_groups for t in trainers] == [[(0, 3)], [(0, 1), (1, 2), (2, 3)],
                                                  [(0, 2), (2, 3)]]
    for _ in range(3):
        losses = [t.train_step() for t in trainers]
        norms = [t.grad_norm for t in trainers]
        assert losses[1] == pytest.approx(losses[0], rel=1e-5)
        assert losses[2] == pytest.approx(losses[0], rel=1e-5)
        assert norms[1] == pytest.approx(norms[0], rel=1e-4)
    assert_same_weights(weights(trainers[0]), weights(trainers[1]), atol=1e-5)
    assert_same_weights(weights(trainers[0]), weights(trainers[2]), atol=1e-5)
    assert trainers[1].validate() == pytest.approx(trainers[0].validate(), rel=1e-5)
    too_small = tiny_config(data_dir, tmp_path / "small", name="patched_diffusion",
                            total_batch_size=4, batch_size_per_gpu=2, patch_shape_x=16,
                            patch_shape_y=16, patch_num=3, max_patch_per_gpu=1)
    too_small["training"]["io"]["regression_checkpoint_path"] = regression
    with pytest.raises(ConfigError, match=r"max_patch_per_gpu=1 is below batch_size_per_gpu=2"):
        make_trainer(too_small)


def test_noise_depends_on_the_sample_not_the_batch(data_dir, tmp_path):
    """Each sample's sigma and noise come from its own key: drawing a batch at once or sample
    by sample gives the same values, and different keys give different draws."""
    config = tiny_config(data_dir, tmp_path / "d", name="diffusion")
    config["training"]["io"]["regression_checkpoint_path"] = regression_checkpoint(
        data_dir, tmp_path, steps=1)
    loss_fn = make_trainer(config).loss_fn
    y = torch.zeros(4, 2, 8, 8)
    loss_fn.sample_keys = [10, 11, 12, 13]
    batch = loss_fn.get_noise_params(y)
    singles = []
    for key in loss_fn.sample_keys:
        loss_fn.sample_keys = [key]
        singles.append(loss_fn.get_noise_params(y[:1]))
    for part, whole in enumerate(batch):
        torch.testing.assert_close(torch.cat([s[part] for s in singles]), whole, rtol=0, atol=0)
    noise, sigma, _ = batch
    assert len(set(sigma.flatten().tolist())) == 4
    assert not torch.equal(noise[0] / sigma[0], noise[1] / sigma[1])


def test_learning_rate_schedule_drives_the_optimizer(data_dir, tmp_path):
    config = tiny_config(data_dir, tmp_path, training_duration=64, total_batch_size=4,
                         lr=1e-2, lr_rampup=8, lr_decay=0.5, lr_decay_rate=8)
    trainer = make_trainer(config)
    seen = []
    for _ in range(6):
        trainer.train_step()
        seen.append(trainer.optimizer.param_groups[0]["lr"])
    # samples after each step: 4, 8 (ramp), 12, 16, 20, 24 (halved every 8 samples after 8)
    assert seen == pytest.approx([5e-3, 1e-2, 1e-2, 5e-3, 5e-3, 2.5e-3])


@pytest.mark.parametrize("threshold", [None, 1e-3])
def test_gradient_clipping(data_dir, tmp_path, threshold):
    trainer = make_trainer(tiny_config(data_dir, tmp_path, grad_clip_threshold=threshold))
    applied = []
    step = trainer.optimizer.step

    def step_recording_norm(*args, **kwargs):
        applied.append(float(torch.nn.utils.get_total_norm(
            [p.grad for p in trainer.net.parameters() if p.grad is not None])))
        return step(*args, **kwargs)

    trainer.optimizer.step = step_recording_norm
    for _ in range(2):
        trainer.train_step()
        reported = trainer.grad_norm  # the norm before clipping, as logged
        if threshold is None:
            assert applied[-1] == pytest.approx(reported, rel=1e-5)
        else:
            assert reported > 10 * threshold
            assert applied[-1] == pytest.approx(threshold, rel=1e-4)


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


def nan_on(trainer: Trainer, bad_steps: set[int]):
    """Make the loss NaN on the given steps (counted from 0)."""
    original, calls = trainer.loss_fn, []

    def loss(**kwargs):
        calls.append(None)
        value = original(**kwargs)
        return value * float("nan") if len(calls) - 1 in bad_steps else value

    trainer.loss_fn = loss


def test_deferred_host_reads_skip_nonfinite_steps_on_the_device(data_dir, tmp_path):
    """Reading the loss every 4 steps (non-finite steps skipped by the fused kernel on the
    device) trains exactly as reading it every step (skipped on the host)."""
    runs = {}
    for every in (1, 4):
        config = tiny_config(data_dir, tmp_path / str(every), training_duration=64)
        config["training"]["perf"].update(fused_optimizer=True, host_sync_steps=every)
        trainer = make_trainer(config)
        assert trainer.host_sync_steps == every
        nan_on(trainer, {2, 3})
        losses, streaks = [], []
        for step in range(8):
            trainer.step()
            if (step + 1) % every == 0:
                losses += [loss for loss, _ in trainer.sync()]
                streaks.append(trainer.nonfinite_streak)
        runs[every] = (trainer, losses, streaks)
    (one, losses_one, streaks_one), (four, losses_four, streaks_four) = runs[1], runs[4]
    assert [math.isnan(v) for v in losses_one] == [False, False, True, True] + [False] * 4
    torch.testing.assert_close(torch.tensor(losses_four), torch.tensor(losses_one),
                               rtol=0, atol=0, equal_nan=True)
    assert streaks_one == [0, 0, 1, 2, 0, 0, 0, 0] and streaks_four == [2, 0]
    assert_same_weights(weights(four), weights(one), atol=0)
    steps = {int(state["step"]) for state in four.optimizer.state_dict()["state"].values()}
    assert steps == {6}  # the two skipped steps are not counted by Adam either


def test_deferred_host_reads_still_stop_a_diverged_run(data_dir, tmp_path):
    config = tiny_config(data_dir, tmp_path, training_duration=64)
    config["training"]["hp"]["max_consecutive_nonfinite"] = 3
    config["training"]["perf"].update(fused_optimizer=True, host_sync_steps=4)
    trainer = make_trainer(config)
    before = weights(trainer)
    nan_on(trainer, set(range(8)))
    for _ in range(3):
        trainer.step()  # no host read: nothing raised yet
    assert_same_weights(before, weights(trainer), atol=0)
    with pytest.raises(TrainingDiverged, match="non-finite for 3 steps in a row"):
        trainer.sync()


def test_the_loop_reads_the_device_every_host_sync_steps(data_dir, tmp_path):
    config = tiny_config(data_dir, tmp_path, training_duration=48)  # 12 steps of 4
    config["training"]["perf"].update(fused_optimizer=True, host_sync_steps=5)
    config["training"]["io"].update(print_progress_freq=10_000, save_checkpoint_freq=10_000,
                                    validation_freq=10_000)
    trainer = make_trainer(config)
    reads, sync = [], trainer.sync
    trainer.sync = lambda: reads.append(len(trainer._pending)) or sync()
    trainer.run()
    assert reads == [5, 5, 2]  # every 5 steps, and at the end (report, validation, save)


def test_apex_group_norm_without_a_gpu_is_refused(data_dir, tmp_path):
    config = tiny_config(data_dir, tmp_path)
    config["training"]["perf"]["use_apex_gn"] = True
    with pytest.raises(ConfigError, match=r"training\.perf\.use_apex_gn=true needs NVIDIA Apex "
                                          r"on a CUDA GPU and this run has no CUDA device"):
        make_trainer(config)


def test_host_sync_defaults_and_refusal(data_dir, tmp_path):
    config = tiny_config(data_dir, tmp_path, training_duration=8)
    assert make_trainer(config).host_sync_steps == 1  # CPU: plain Adam, reads are free
    config["training"]["perf"]["fused_optimizer"] = True
    assert make_trainer(config).host_sync_steps == 8
    config["training"]["perf"].update(fused_optimizer=False, host_sync_steps=4)
    with pytest.raises(ConfigError, match=r"host_sync_steps=4 needs the fused optimizer"):
        make_trainer(config)


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
    (9, r"patch_shape_y/x \(9, 9\) is not supported by a UNet with 2 levels.*multiple of 2"),
])
def test_bad_patch_shapes(data_dir, tmp_path, patch, message):
    config = tiny_config(data_dir, tmp_path / "p", name="patched_diffusion", patch_shape_x=patch,
                         patch_shape_y=patch, patch_num=2)
    config["model"]["model_args"]["channel_mult"] = [1, 2]
    config["training"]["io"]["regression_checkpoint_path"] = regression_checkpoint(
        data_dir, tmp_path, steps=1)
    with pytest.raises(ConfigError, match=message):
        make_trainer(config)


def test_indivisible_batch_size(data_dir, tmp_path):
    with pytest.raises(ConfigError, match=r"batch_size_per_gpu=3 does not divide"):
        make_trainer(tiny_config(data_dir, tmp_path, total_batch_size=4, batch_size_per_gpu=3))


def test_unwritable_checkpoint_dir(data_dir, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(ConfigError, match=r"checkpoint_dir=.*file/run' cannot be created: "
                                          r".*file' is a file, not a directory"):
        make_trainer(tiny_config(data_dir, blocker / "run"))
    with pytest.raises(ConfigError, match=r"checkpoint_dir=.*/run' is not writable"):
        make_trainer(tiny_config(data_dir, read_only_directory(tmp_path) / "run"))


def update_difference(trained: dict, reference: dict, start: dict) -> float:
    """|trained - reference| / |reference - start| over all weights: how far two runs' weight
    updates differ, relative to the size of the update."""
    def norm(a, b):
        return sum(float(((a[k] - b[k]) ** 2).sum()) for k in a) ** 0.5

    return norm(trained, reference) / norm(reference, start)


# Each option against the plain fp32 run, same data and noise: the losses of 3 steps and the
# weight updates agree within what the option changes (reduced precision: a few percent of the
# loss, a quarter of the update; layout, recomputation, workers and compilation: rounding).
@pytest.mark.parametrize("perf,rel", [
    ({"fp_optimizations": "amp-bf16"}, 5e-2),
    ({"fp_optimizations": "amp-fp16"}, 5e-2),
    ({"channels_last": True, "songunet_checkpoint_level": 1}, 1e-4),
    ({"dataloader_workers": 2}, 1e-6),
    ({"torch_compile": True}, 1e-4),
    ({"fused_optimizer": True}, 1e-5),
])
def test_performance_options_match_the_plain_run(data_dir, tmp_path, perf, rel, monkeypatch):
    if perf.get("torch_compile"):
        # Dynamo's graphs and AOT autograd's backward, without inductor's code generation:
        # that is torch's own to test, and costs over two minutes here with a cold cache.
        compile_ = torch.compile
        monkeypatch.setattr(torch, "compile", lambda net: compile_(net, backend="aot_eager"))
    regression = regression_checkpoint(data_dir, tmp_path, steps=1)
    runs = {}
    for label, options in (("plain", {}), ("option", perf)):
        config = tiny_config(data_dir, tmp_path / label, name="diffusion", training_duration=12)
        config["training"]["io"]["regression_checkpoint_path"] = regression
        config["training"]["perf"].update(options)
        trainer = make_trainer(config)
        start = weights(trainer)
        runs[label] = (trainer, [trainer.train_step() for _ in range(3)])
    trainer, losses = runs["option"]
    assert trainer.net.amp_mode == perf.get("fp_optimizations", "fp32").startswith("amp")
    assert trainer.scaler.is_enabled() == (perf.get("fp_optimizations") == "amp-fp16")
    assert (trainer.loss_net is not trainer.net) == perf.get("torch_compile", False)
    compiled_regression = type(trainer.loss_fn.regression_net).__name__ == "OptimizedModule"
    assert compiled_regression == perf.get("torch_compile", False)
    assert bool(trainer.optimizer.defaults["fused"]) == perf.get("fused_optimizer", False)
    assert losses == pytest.approx(runs["plain"][1], rel=rel)
    difference = update_difference(weights(trainer), weights(runs["plain"][0]), start)
    assert difference < (0.25 if rel > 1e-3 else 1e-3), difference


# ------------------------------------------------------------------------------ fine-tuning
def test_fine_tuning_starts_from_the_weights_not_from_the_run(data_dir, tmp_path, caplog):
    source = regression_checkpoint(data_dir, tmp_path, steps=2)
    trained = CheckpointStore(source, "CorrDiffRegressionUNet").latest()
    import physicsnemo

    expected = physicsnemo.Module.from_checkpoint(str(trained.model_path)).state_dict()
    config = tiny_config(data_dir, tmp_path / "fine", training_duration=8)
    config["training"]["io"]["initial_weights"] = source
    with caplog.at_level("INFO", logger="train"):
        trainer = make_trainer(config)
    assert_same_weights(weights(trainer), expected, atol=0)
    assert trainer.samples == 0 and not trainer.optimizer.state_dict()["state"]
    total = len(expected)
    assert f"{total} of {total} tensors" in caplog.text
    trainer.run()
    # Rerunning resumes the fine-tuned run; the initial weights are not applied again.
    again = make_trainer(config)
    assert again.samples == 8
    assert_same_weights(weights(again), weights(trainer), atol=0)


def test_fine_tuning_with_other_channels_reinitialises_only_what_differs(data_dir, tmp_path,
                                                                        caplog):
    source = regression_checkpoint(data_dir, tmp_path, steps=1)
    config = tiny_config(data_dir, tmp_path / "fine")
    config["dataset"]["output_variables"] = ["10u", "10v", "2t"]  # 3 outputs instead of 2
    config["training"]["io"]["initial_weights"] = source
    fresh = weights(make_trainer(tiny_config(data_dir, tmp_path / "fresh")))
    with caplog.at_level("INFO", logger="train"):
        trainer = make_trainer(config)
    summary = next(r.message for r in caplog.records if "initial weights from" in r.message)
    reshaped = summary.split("re-initialised (shape differs): ")[1].split("; ")[0].split(", ")
    assert reshaped and all(name in weights(trainer) for name in reshaped)
    copied = [n for n in weights(trainer) if n not in reshaped]
    source_weights = physicsnemo_weights(source)
    for name in copied:
        torch.testing.assert_close(weights(trainer)[name], source_weights[name], rtol=0, atol=0)
    # The channel-dependent layers are the output layers: the rest of the UNet carries over.
    assert len(copied) > 5 * len(reshaped)
    assert fresh.keys() == source_weights.keys()


def physicsnemo_weights(directory) -> dict[str, torch.Tensor]:
    import physicsnemo

    latest = CheckpointStore(directory, "CorrDiffRegressionUNet").latest()
    return physicsnemo.Module.from_checkpoint(str(latest.model_path)).state_dict()


def test_fine_tuning_from_a_legacy_checkpoint_and_a_wrong_kind(data_dir, tmp_path):
    import warnings

    from physicsnemo.models.diffusion_unets import UNet

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        legacy = UNet(img_resolution=[32, 32], img_in_channels=8 + 4, img_out_channels=2,
                      **tiny_config(data_dir, tmp_path)["model"]["model_args"])
    legacy.save(str(tmp_path / "UNet.0.2000000.mdlus"))
    config = tiny_config(data_dir, tmp_path / "fine")
    config["training"]["io"]["initial_weights"] = str(tmp_path / "UNet.0.2000000.mdlus")
    trainer = make_trainer(config)
    assert_same_weights(weights(trainer), legacy.state_dict(), atol=0)
    # A bare SongUNet (no wrapper, so no "model." prefix) shares no tensor name with it.
    bogus = tmp_path / "other.mdlus"
    from physicsnemo.models.diffusion_unets import SongUNet

    SongUNet(img_resolution=16, in_channels=1, out_channels=1, model_channels=8,
             channel_mult=[1], num_blocks=1, attn_resolutions=[]).save(str(bogus))
    config["training"]["io"]["initial_weights"] = str(bogus)
    config["training"]["io"]["checkpoint_dir"] = str(tmp_path / "other_run")
    with pytest.raises(CheckpointError, match=r"no tensor matches this run's "
                                              r"CorrDiffRegressionUNet"):
        make_trainer(config)
