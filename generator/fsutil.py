"""Atomic, permission-aware file writes: a reader never sees half a file, and every directory kubeseed makes
has the mode it asks for (0700), whatever the umask."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from .errors import UserError, shown


def make_private_dir(path: Path) -> None:
    """Create ``path`` and any missing parents, each 0700 whatever the umask; existing ones stay as they are."""
    if path.is_dir():
        return
    make_private_dir(path.parent)
    path.mkdir()
    os.chmod(path, 0o700)  # mkdir's mode is filtered by the umask; chmod's is not


def atomic_write(path: Path, data: bytes | str, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same directory, then rename; missing parent
    directories are made 0700."""
    from kubeseed.runtime.workflow import write_atomic

    make_private_dir(path.parent)
    write_atomic(str(path), data, mode)


def check_output(path: str, flag: str, devices: bool = True) -> bool:
    """Refuse an output path a write cannot take: empty, a directory, or (unless ``devices``) anything but a
    regular file. True when ``path`` is an existing regular file, which a write replaces."""
    if not path:
        raise UserError(f"{flag}: the path is empty; name a file")
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    if stat.S_ISREG(st.st_mode):
        return True
    if stat.S_ISDIR(st.st_mode):
        raise UserError(f"{flag}: {shown(path)} is a directory; name a file (in it, say)")
    if not (devices and (stat.S_ISCHR(st.st_mode) or stat.S_ISFIFO(st.st_mode))):
        allowed = "a regular file, a character device or a pipe" if devices else "a regular file"
        raise UserError(f"{flag}: {shown(path)} is not {allowed}")
    return False


def write_output(path: str, data: bytes | str, mode: int, flag: str) -> None:
    """Write a command's output to ``path`` (``--out``): a new path, or the regular file it names (through any
    links: ``/dev/stdout`` redirected to a file replaces that file, not the link), atomically with ``mode``; a
    character device, a pipe or ``/dev/fd/N`` as it is, in place (its mode and type stay)."""
    if check_output(path, flag):
        atomic_write(Path(os.path.realpath(path)), data, mode)
        return
    if not os.path.exists(path):
        atomic_write(Path(path), data, mode)
        return
    fd = os.open(path, os.O_WRONLY)  # no O_CREAT: never make a file here by accident
    with os.fdopen(fd, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)
