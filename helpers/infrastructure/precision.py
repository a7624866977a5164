"""Mixed precision on whatever device the run has (``fp32``, ``amp-bf16``, ``amp-fp16``), and
the default of the other GPU-path switches (``null``: on for CUDA)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

AMP_DTYPES = {"amp-bf16": torch.bfloat16, "amp-fp16": torch.float16}


def on_cuda_unless_set(option: bool | None, device: torch.device) -> bool:
    """A GPU-path switch (compile, channels-last, fused Adam, ...): ``None`` means on where the
    run has a CUDA device and off elsewhere; ``True``/``False`` are kept."""
    return device.type == "cuda" if option is None else option


def resolve_precision(fp_optimizations: str, device: torch.device,
                      bf16_supported: bool | None = None) -> str:
    """``auto`` is bf16 autocast on a CUDA device that has bf16, plain fp32 anywhere else; any
    other setting is kept."""
    if fp_optimizations != "auto":
        return fp_optimizations
    if device.type != "cuda":
        return "fp32"
    if bf16_supported is None:
        bf16_supported = torch.cuda.is_bf16_supported()
    return "amp-bf16" if bf16_supported else "fp32"


def amp_dtype(fp_optimizations: str, device: torch.device | None = None) -> torch.dtype | None:
    """The autocast dtype for a ``fp_optimizations`` setting (``auto`` resolved for
    ``device``); ``None`` for plain fp32."""
    if fp_optimizations == "auto":
        fp_optimizations = resolve_precision(fp_optimizations, device or torch.device("cpu"))
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
