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


# Dense bf16 tensor-core peaks (TFLOP/s, without sparsity) from the vendors' data sheets, for
# model FLOP utilisation; the first name found in the device's name wins.
BF16_PEAK_TFLOPS = (
    ("GB200", 2500.0), ("B200", 2250.0), ("H200", 989.0), ("H100 PCIe", 756.0),
    ("H100", 989.0), ("H800", 989.0), ("A100", 312.0), ("A800", 312.0), ("L40S", 362.0),
    ("L40", 181.0), ("A10G", 70.0), ("L4", 121.0),
)


def bf16_peak_tflops(name: str) -> float | None:
    """The device's bf16 peak, if it is a GPU this table knows (None on CPUs)."""
    for key, peak in BF16_PEAK_TFLOPS:
        if key in name:
            return peak
    return None
