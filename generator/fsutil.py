"""Atomic, permission-aware file writes: a reader never sees half a file."""

from __future__ import annotations

import os
from pathlib import Path

from kubeseed.runtime.workflow import write_atomic


def atomic_write(path: Path, data: bytes | str, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same directory, then rename."""
    write_atomic(str(path), data, mode)


def make_private_dir(path: Path) -> None:
    """Create ``path`` (and parents) with mode 0700."""
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
