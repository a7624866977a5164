"""Batch arithmetic, learning-rate schedule and data order: the pure pieces of training."""

import numpy as np
import pytest

from helpers.infrastructure.distributed import batch_layout
from helpers.infrastructure.errors import ConfigError
from helpers.training.data_order import GlobalBatchSampler
from helpers.training.lr_schedule import learning_rate


def test_batch_layout_auto_and_accumulation():
    assert batch_layout(256, "auto", 4) == (64, 1)
    assert batch_layout(256, 16, 4) == (16, 4)
    assert batch_layout(8, 4, 1) == (4, 2)


def test_batch_layout_errors_name_valid_values():
    with pytest.raises(ConfigError, match=r"total_batch_size=10 cannot be split evenly over 4 "
                                          r"processes; use a multiple of 4, e.g. 8 or 12"):
        batch_layout(10, "auto", 4)
    with pytest.raises(ConfigError, match=r"batch_size_per_gpu=5 does not divide the 12 samples"
                                          r".*use one of \[1, 2, 3, 4, 6, 12\] or 'auto'"):
        batch_layout(24, 5, 2)


def test_learning_rate_ramp_and_step_decay_do_not_compound():
    assert learning_rate(0, 1.0, rampup=100) == 0.0
    assert learning_rate(50, 1.0, rampup=100) == pytest.approx(0.5)
    assert learning_rate(100, 1.0, rampup=100, decay=0.5, decay_rate=1000) == 1.0
    assert learning_rate(1099, 1.0, rampup=100, decay=0.5, decay_rate=1000) == 1.0
    assert learning_rate(1100, 1.0, rampup=100, decay=0.5, decay_rate=1000) == 0.5
    assert learning_rate(3100, 2e-4, rampup=100, decay=0.5, decay_rate=1000) == pytest.approx(
        2e-4 / 8)
    # Same answer however often it is evaluated: nothing accumulates between calls.
    assert [learning_rate(1500, 1.0, 0, 0.5, 1000) for _ in range(3)] == [0.5] * 3


def _take(sampler, n):
    out, it = [], iter(sampler)
    for _ in range(n):
        out.append(next(it))
    return out


def test_data_order_ranks_disjoint_and_match_single_process():
    n, total = 10, 8
    single = _take(GlobalBatchSampler(n, total, 4, 1, 0, seed=3), 3 * total)
    rank0 = _take(GlobalBatchSampler(n, total, 2, 2, 0, seed=3), 3 * total // 2)
    rank1 = _take(GlobalBatchSampler(n, total, 2, 2, 1, seed=3), 3 * total // 2)
    for step in range(3):
        # One process with 2 accumulation rounds of 4 = 2 ranks x 2 rounds x 2 samples.
        batch_single = single[step * 8:(step + 1) * 8]
        r0, r1 = rank0[step * 4:(step + 1) * 4], rank1[step * 4:(step + 1) * 4]
        assert sorted(r0 + r1) == sorted(batch_single)
        stream = GlobalBatchSampler(n, total, 4, 1, 0, seed=3).stream(step * total, total)
        assert r0 == list(stream[[0, 1, 4, 5]]) and r1 == list(stream[[2, 3, 6, 7]])
    # Every sample is visited once per pass over the data.
    first_pass = GlobalBatchSampler(n, total, 4, 1, 0, seed=3).stream(0, n)
    assert sorted(first_pass) == list(range(n))


def test_data_order_resumes_exactly():
    full = _take(GlobalBatchSampler(7, 4, 2, 1, 0, seed=1), 20)
    resumed = _take(GlobalBatchSampler(7, 4, 2, 1, 0, seed=1, start_sample=8), 12)
    assert resumed == full[8:]
    other_seed = _take(GlobalBatchSampler(7, 4, 2, 1, 0, seed=2), 20)
    assert not np.array_equal(full, other_seed)


def test_auto_precision_is_bf16_on_cuda_with_bf16_and_fp32_elsewhere():
    import torch

    from helpers.infrastructure.precision import amp_dtype, resolve_precision

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve_precision("auto", cpu) == "fp32" and amp_dtype("auto", cpu) is None
    assert resolve_precision("auto", cuda, bf16_supported=True) == "amp-bf16"
    assert resolve_precision("auto", cuda, bf16_supported=False) == "fp32"
    assert resolve_precision("amp-fp16", cpu) == "amp-fp16"  # explicit settings are kept
    assert amp_dtype("amp-bf16") is torch.bfloat16
