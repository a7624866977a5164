"""Write-then-rename: a file at its final name is always whole.

Every output (statistics, facts, scores, plots, summaries) is written under a temporary name
next to its destination and renamed only when complete, so an interrupted or failed write
never leaves a file that looks finished, nor destroys the previous one. Torch-free.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[Path]:
    """A temporary path beside ``path`` (same folder, so the rename is atomic; the suffix keeps
    the extension for tools that need it, e.g. ``.tmp.png``) to write to; renamed to ``path``
    when the block ends without error, removed otherwise."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}{suffix}")
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """``text`` to ``path``, whole or not at all."""
    with atomic_path(path) as temporary:
        temporary.write_text(text)
    return Path(path)
