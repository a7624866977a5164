"""Diffusion training computes each sample's frozen regression output once (see
`helpers.training.regression_cache`), with the losses and weights of the uncached run."""

from __future__ import annotations

import copy
import shutil

import pytest
import torch

from helpers.infrastructure.distributed import init_distributed
from helpers.training.config import validate_training_config
from helpers.training.loop import Trainer
from helpers.training.regression_cache import CACHE_DIR
from tests.test_training import DIFFUSION_CASES, assert_same_weights, record_steps, weights
from tests.training_fixtures import tiny_config


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("tiny_synthetic_cache")


@pytest.fixture(scope="module")
def regression(data_dir, tmp_path_factory):
    run = Trainer(validate_training_config(tiny_config(
        data_dir, tmp_path_factory.mktemp("reg"), training_duration=16)), init_distributed())
    run.run()
    return str(run.store.latest().model_path)


def diffusion_trainer(data_dir, run_dir, regression, name="diffusion", cache=True, **extra):
    config = tiny_config(data_dir, run_dir, name=name, **extra)
    config["validation"] = None  # validation runs the regression on its own samples
    config["training"]["io"]["regression_checkpoint_path"] = regression
    config["training"]["perf"]["cache_regression_mean"] = cache
    return Trainer(validate_training_config(copy.deepcopy(config)), init_distributed())


def count_regression_calls(trainer: Trainer) -> list[int]:
    """Count the images the frozen regression network predicts."""
    calls = []
    net = trainer.loss_fn.regression_net
    forward = net.forward

    def counting(x, img_lr, *args, **kwargs):
        calls.append(x.shape[0])
        return forward(x, img_lr, *args, **kwargs)

    net.forward = counting
    return calls


@pytest.mark.parametrize("name,extra", DIFFUSION_CASES)
def test_cached_run_trains_what_the_uncached_run_trains(data_dir, tmp_path, regression, name,
                                                        extra):
    steps, trainers, calls = {}, {}, {}
    for cache in (False, True):
        trainer = diffusion_trainer(data_dir, tmp_path / str(cache), regression, name=name,
                                    cache=cache, **extra)
        samples = len(trainer.dataset)
        trainer.hp.training_duration = 2 * samples  # two epochs: the second reads the cache
        calls[cache] = count_regression_calls(trainer)
        steps[cache] = record_steps(trainer)
        trainer.run()
        trainers[cache] = trainer
    assert len(steps[True]) == 2 * samples // trainer.hp.total_batch_size
    for (loss, norm, lr), (cached_loss, cached_norm, cached_lr) in zip(
            steps[False], steps[True], strict=True):
        assert cached_loss == pytest.approx(loss, rel=1e-5)
        assert cached_norm == pytest.approx(norm, rel=1e-4)
        assert cached_lr == lr
    assert_same_weights(weights(trainers[False]), weights(trainers[True]), atol=1e-5)
    # Uncached: every sample of every epoch; cached: each sample once.
    assert sum(calls[False]) == 2 * samples
    assert sum(calls[True]) == samples
    cache = trainers[True].regression_cache
    assert (cache.computed, cache.reused) == (samples, samples)
    assert cache.done.all()


def test_a_resumed_run_reads_the_cache_and_a_new_checkpoint_replaces_it(data_dir, tmp_path,
                                                                        regression):
    first = diffusion_trainer(data_dir, tmp_path / "run", regression)
    samples = len(first.dataset)
    first.hp.training_duration = samples
    first.run()
    assert first.regression_cache.computed == samples

    resumed = diffusion_trainer(data_dir, tmp_path / "run", regression)
    resumed.hp.training_duration = 2 * samples
    calls = count_regression_calls(resumed)
    resumed.run()
    assert calls == [] and resumed.regression_cache.reused == samples

    other = tmp_path / "other.mdlus"
    shutil.copyfile(regression, other)
    with torch.no_grad():  # another checkpoint: same class, one weight changed
        from helpers.models.networks import load_module

        net = load_module(other, "test")
        next(net.parameters()).add_(0.01)
        net.save(str(other))
    renewed = diffusion_trainer(data_dir, tmp_path / "run2", str(other))
    stale = tmp_path / "run2" / CACHE_DIR / "0123456789abcdef"
    stale.mkdir(parents=True)
    renewed2 = diffusion_trainer(data_dir, tmp_path / "run2", str(other))
    assert not stale.exists()
    assert renewed.regression_cache.directory == renewed2.regression_cache.directory
    assert renewed.regression_cache.directory.name != first.regression_cache.directory.name


def test_the_cache_can_be_switched_off_and_has_a_size_limit(data_dir, tmp_path, regression,
                                                            caplog):
    off = diffusion_trainer(data_dir, tmp_path / "off", regression, cache=False)
    assert off.regression_cache is None
    assert not (tmp_path / "off" / CACHE_DIR).exists()
    config = tiny_config(data_dir, tmp_path / "big", name="diffusion")
    config["training"]["io"]["regression_checkpoint_path"] = regression
    config["training"]["perf"]["regression_cache_max_gib"] = 1e-6
    with caplog.at_level("INFO", logger="train"):
        big = Trainer(validate_training_config(config), init_distributed())
    assert big.regression_cache is None
    assert "not caching regression means" in caplog.text
