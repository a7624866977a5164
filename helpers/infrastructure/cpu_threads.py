"""How many threads torch uses per process on a CPU.

torch's default is every core it can see, per process. With several processes on one machine
(torchrun, DataLoader workers, another job) they then fight over the same cores and each runs
several times slower than it would alone. So each process gets its share: the cores this
process may use (CPU affinity and the cgroup quota of a container) divided by the processes
launched on this machine. ``OMP_NUM_THREADS``, when set, wins. The choice is logged once.
"""

from __future__ import annotations

import logging
import math
import os
import re
from pathlib import Path

import torch

logger = logging.getLogger("corrdiff")
LOCAL_SIZE_VARIABLES = ("LOCAL_WORLD_SIZE", "SLURM_NTASKS_PER_NODE", "OMPI_COMM_WORLD_LOCAL_SIZE")
_logged = False


def available_cores() -> int:
    """Cores this process may run on: its CPU affinity, capped by a cgroup CPU quota."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    quota = cgroup_cpu_quota()
    return max(1, min(cores, quota) if quota else cores)


def cgroup_cpu_quota(path: Path = Path("/sys/fs/cgroup/cpu.max")) -> int | None:
    """The cgroup v2 CPU limit in whole cores (rounded up), or None when unlimited/unknown."""
    try:
        quota, period = path.read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    try:
        return max(1, math.ceil(int(quota) / int(period)))
    except (ValueError, ZeroDivisionError):
        return None


def local_processes() -> int:
    """Processes launched on this machine (torchrun, SLURM or Open MPI), 1 when unknown."""
    for name in LOCAL_SIZE_VARIABLES:
        match = re.match(r"\s*(\d+)", os.environ.get(name, ""))
        if match and int(match[1]) > 0:
            return int(match[1])
    return 1


def configure_cpu_threads(device: torch.device) -> int | None:
    """Set torch's intra-op threads for a CPU run (nothing on GPUs); returns the number."""
    global _logged
    if torch.device(device).type != "cpu":
        return None
    requested = os.environ.get("OMP_NUM_THREADS", "").strip()
    if requested.isdigit() and int(requested) > 0:
        threads, reason = int(requested), "OMP_NUM_THREADS"
    else:
        cores, processes = available_cores(), local_processes()
        threads = max(1, cores // processes)
        reason = (f"{cores} available core(s) / {processes} process(es) on this machine; set "
                  "OMP_NUM_THREADS to choose")
    torch.set_num_threads(threads)
    if not _logged:
        logger.info("CPU: %d torch thread(s) per process (%s)", threads, reason)
        _logged = True
    return threads
