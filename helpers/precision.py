"""Mixed precision on whatever device the run has (``fp32``, ``amp-bf16``, ``amp-fp16``)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

AMP_DTYPES = {"amp-bf16": torch.bfloat16, "amp-fp16": torch.float16}


def amp_dtype(fp_optimizations: str) -> torch.dtype | None:
    """The autocast dtype for a ``fp_optimizations`` setting; ``None`` for plain fp32."""
    return AMP_DTYPES.get(fp_optimizations)


@contextlib.contextmanager
def autocast(device: torch.device, dtype: torch.dtype | None) -> Iterator[None]:
    """``torch.autocast`` on the actual device type (a no-op for ``dtype=None``).

    physicsnemo's UNet wrappers accept half-precision outputs only when
    ``torch.is_autocast_enabled()`` (no device argument, which means CUDA) is true, so on other
    devices that flag is raised too while the context is active. No CUDA op runs there, so it
    changes nothing else.
    """
    if dtype is None:
        yield
        return
    with torch.autocast(device_type=device.type, dtype=dtype):
        if device.type == "cuda":
            yield
            return
        previous = torch.is_autocast_enabled("cuda")
        torch.set_autocast_enabled("cuda", True)
        try:
            yield
        finally:
            torch.set_autocast_enabled("cuda", previous)
