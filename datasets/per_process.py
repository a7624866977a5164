"""A file handle opened lazily, once per process.

DataLoader workers (forked or spawned) must not share open files: HDF5, zarr and netCDF
handles are not safe across processes. Each reader keeps its handles in a `PerProcess`, which
reopens them in a new process and pickles without them.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Generic, TypeVar

Handle = TypeVar("Handle")


class PerProcess(Generic[Handle]):
    """``get()`` returns ``opener()``'s result, called once in each process."""

    def __init__(self, opener: Callable[[], Handle]):
        self._opener = opener
        self._handle: Handle | None = None
        self._pid: int | None = None

    def get(self) -> Handle:
        if self._handle is None or self._pid != os.getpid():
            self._handle = self._opener()
            self._pid = os.getpid()
        return self._handle

    def is_open(self) -> bool:
        """Whether this process holds the handle already."""
        return self._handle is not None and self._pid == os.getpid()

    def __getstate__(self) -> dict:
        return {"_opener": self._opener, "_handle": None, "_pid": None}
