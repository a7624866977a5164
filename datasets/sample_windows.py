"""Where samples are cut: window sizes, their positions on the fine grid, and which times go to
the training and the validation split."""

from __future__ import annotations

import datetime
import math
from collections.abc import Sequence

import numpy as np

from helpers.infrastructure.errors import DataError


def parse_window(value: str | int | Sequence[int], grid: tuple[int, int]) -> tuple[int, int]:
    """``64`` (square), ``64x96`` (rows x columns) or ``full`` (the whole cropped grid)."""
    if isinstance(value, int | np.integer):
        return int(value), int(value)
    if not isinstance(value, str):
        rows, cols = value
        return int(rows), int(cols)
    text = value.strip().lower()
    if text == "full":
        return tuple(grid)  # type: ignore[return-value]
    try:
        parts = [int(p) for p in text.split("x")]
    except ValueError:
        parts = []
    if len(parts) not in (1, 2):
        raise DataError(f"--window {value!r} is not a size such as 64, 64x96 or full")
    return (parts[0], parts[-1])


def window_positions(shape: tuple[int, int], window: tuple[int, int] | int,
                     stride: tuple[int, int] | int) -> np.ndarray:
    """Top-left ``(row, col)`` of every window, row-major, ``(n, 2)``."""
    window = (window, window) if isinstance(window, int) else tuple(window)
    stride = (stride, stride) if isinstance(stride, int) else tuple(stride)
    if window[0] > shape[0] or window[1] > shape[1]:
        raise DataError(f"window {window[0]}x{window[1]} is larger than the (cropped) fine grid "
                        f"{shape[0]}x{shape[1]}; use a smaller --window or --window full")
    rows = range(0, shape[0] - window[0] + 1, stride[0])
    cols = range(0, shape[1] - window[1] + 1, stride[1])
    return np.array([(r, c) for r in rows for c in cols], dtype=np.int64)


def split_times(
    times: Sequence[datetime.datetime],
    valid_fraction: float | None,
    valid_start: str | datetime.datetime | None,
) -> tuple[list[int], list[int]]:
    """Indices of train and valid times: a contiguous final fraction, or all times from a date."""
    if valid_start is not None and valid_fraction is not None:
        raise DataError("give either a valid fraction or a valid start time, not both")
    n = len(times)
    if valid_start is not None:
        start = valid_start
        if not isinstance(start, datetime.datetime):
            try:
                start = datetime.datetime.fromisoformat(str(start))
            except ValueError as err:
                raise DataError(f"valid start {valid_start!r} is not an ISO date") from err
        valid = [i for i, t in enumerate(times) if t >= start]
    else:
        fraction = 0.1 if valid_fraction is None else float(valid_fraction)
        if not 0 <= fraction < 1:
            raise DataError(f"valid fraction must be in [0, 1), got {fraction}")
        valid = list(range(n - math.ceil(fraction * n), n)) if fraction > 0 else []
    in_valid = set(valid)
    train = [i for i in range(n) if i not in in_valid]
    if not train:
        raise DataError(f"no training times left: all {n} common times fall in the validation "
                        "set; use a smaller --valid-fraction or a later --valid-start")
    return train, valid


def check_multiple(name: str, value: tuple[int, int], factor: int) -> tuple[int, int]:
    """A window or stride must be whole coarse cells in both directions."""
    if any(v < 1 or v % factor for v in value):
        lower = [max(factor, v - v % factor) for v in value]
        raise DataError(f"{name} {value[0]}x{value[1]} must be a positive multiple of the grid "
                        f"factor {factor} in both directions, e.g. {lower[0]}x{lower[1]}")
    return value
