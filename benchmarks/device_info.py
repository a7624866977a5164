"""What the benchmarks ran on, printed and stored with their figures so runs can be compared."""

from __future__ import annotations

import contextlib
import platform
from pathlib import Path


def device_name(device) -> str:
    """The GPU's name, or the CPU model from /proc/cpuinfo (the platform string elsewhere)."""
    if device.type == "cuda":
        import torch

        return torch.cuda.get_device_name(device)
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"CPU ({line.split(':', 1)[1].strip()})"
    return f"CPU ({platform.processor() or platform.machine()})"
