"""torch's CPU threads: each process gets its share of the cores it may use."""

from __future__ import annotations

import logging

import pytest
import torch

from helpers.infrastructure import cpu_threads


@pytest.fixture(autouse=True)
def restore_threads():
    before = torch.get_num_threads()
    cpu_threads._logged = False
    yield
    torch.set_num_threads(before)
    cpu_threads._logged = False


@pytest.mark.parametrize("env, cores, expected", [
    ({}, 8, 8),
    ({"LOCAL_WORLD_SIZE": "2"}, 8, 4),
    ({"LOCAL_WORLD_SIZE": "4"}, 2, 1),
    ({"SLURM_NTASKS_PER_NODE": "3(x2)"}, 12, 4),
    ({"OMP_NUM_THREADS": "3", "LOCAL_WORLD_SIZE": "4"}, 8, 3),
])
def test_threads_are_cores_over_local_processes(monkeypatch, env, cores, expected, caplog):
    for name in ("OMP_NUM_THREADS", *cpu_threads.LOCAL_SIZE_VARIABLES):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(cpu_threads, "available_cores", lambda: cores)
    with caplog.at_level(logging.INFO, logger="corrdiff"):
        assert cpu_threads.configure_cpu_threads(torch.device("cpu")) == expected
        cpu_threads.configure_cpu_threads(torch.device("cpu"))
    assert torch.get_num_threads() == expected
    assert caplog.text.count("torch thread(s) per process") == 1  # logged once
    reason = "OMP_NUM_THREADS" if "OMP_NUM_THREADS" in env else f"{cores} available core(s)"
    assert reason in caplog.text


def test_nothing_changes_on_a_gpu(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    assert cpu_threads.configure_cpu_threads(torch.device("cuda", 0)) is None
    assert torch.get_num_threads() == before


def test_cgroup_quota(tmp_path):
    limit = tmp_path / "cpu.max"
    limit.write_text("250000 100000\n")
    assert cpu_threads.cgroup_cpu_quota(limit) == 3
    limit.write_text("max 100000\n")
    assert cpu_threads.cgroup_cpu_quota(limit) is None
    assert cpu_threads.cgroup_cpu_quota(tmp_path / "absent") is None
    assert cpu_threads.available_cores() >= 1
