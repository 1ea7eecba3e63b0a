"""Reproducible ISO 9660 images with Rock Ridge and Joliet names, written in Python (pycdlib).

cloud-init finds seed files only through Rock Ridge or Joliet names (the kernel shows those when it mounts
the image), so every file carries all three: an ISO 9660 level-2 name (``USER_DATA.;1``), its Rock Ridge
name and its Joliet path. pycdlib stamps volume descriptors, directory records and Rock Ridge TF entries
with the current local time; here it sees a fixed UTC clock instead (``SOURCE_DATE_EPOCH`` when set, else
1980-01-01), so the same files give the same bytes on any machine, in any time zone, at any time.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import re
import sys
import threading
import time
import types
from collections.abc import Collection, Iterator, Mapping

import pycdlib

DEFAULT_EPOCH = 315532800  # 1980-01-01T00:00:00Z, the usual fixed date of reproducible builds
APPLICATION = "kubeseed"
_clock_lock = threading.Lock()


def build_epoch() -> int:
    """The time stamped into images: ``SOURCE_DATE_EPOCH`` (reproducible-builds.org) or 1980-01-01."""
    value = os.environ.get("SOURCE_DATE_EPOCH", "")
    return int(value) if value.isdigit() else DEFAULT_EPOCH


@functools.lru_cache(maxsize=4)
def _frozen_time(epoch: int) -> types.SimpleNamespace:
    """The ``time`` module as pycdlib sees it in _fixed_clock (made once per epoch: a seed run makes many ISOs)."""
    frozen = types.SimpleNamespace(**{n: getattr(time, n) for n in dir(time) if not n.startswith("__")})
    frozen.time = lambda: float(epoch)
    frozen.localtime = lambda secs=None: time.gmtime(epoch if secs is None else secs)
    return frozen


@contextlib.contextmanager
def _fixed_clock(epoch: int) -> Iterator[None]:
    """While active, every pycdlib module sees a ``time`` whose now is ``epoch`` and whose local time is UTC.

    pycdlib calls ``time.time()`` and ``time.localtime()`` through its modules' ``time`` global; only those
    globals are swapped, so nothing outside pycdlib sees a changed clock."""
    frozen = _frozen_time(epoch)
    with _clock_lock:
        patched = [
            m
            for name, m in list(sys.modules.items())
            if (name == "pycdlib" or name.startswith("pycdlib.")) and getattr(m, "time", None) is time
        ]
        for m in patched:
            setattr(m, "time", frozen)  # noqa: B010 - module attribute, not a typed field
        try:
            yield
        finally:
            for m in patched:
                setattr(m, "time", time)  # noqa: B010


def iso9660_name(component: str, is_dir: bool) -> str:
    """The ISO 9660 level-2 identifier for one path component: upper case, A-Z 0-9 _ only, ``;1`` for files."""
    if is_dir:
        return re.sub(r"[^A-Z0-9_]", "_", component.upper())[:31]
    stem, dot, ext = component.upper().rpartition(".")
    if not dot:
        stem, ext = ext, ""
    stem = re.sub(r"[^A-Z0-9_]", "_", stem)
    ext = re.sub(r"[^A-Z0-9_]", "_", ext)
    return f"{stem[: 30 - len(ext[:8])]}.{ext[:8]};1"


def _directories(paths: Collection[str]) -> list[str]:
    dirs: set[str] = set()
    for p in paths:
        parts = p.split("/")[:-1]
        dirs.update("/".join(parts[: i + 1]) for i in range(len(parts)))
    return sorted(dirs, key=lambda d: (d.count("/"), d))


def build_iso(label: str, files: Mapping[str, bytes], private: Collection[str] = ()) -> bytes:
    """An ISO image with volume label ``label`` holding ``files`` (relative POSIX path -> bytes).

    Rock Ridge modes: 0400 for paths in ``private``, 0444 for other files, 0555 for directories. Equal
    arguments give equal bytes."""
    iso_paths: dict[str, str] = {}

    def iso_path(rel: str, is_dir: bool) -> str:
        parent, _, leaf = rel.rpartition("/")
        full = (iso_paths[parent] if parent else "") + "/" + iso9660_name(leaf, is_dir)
        if full in iso_paths.values():
            raise ValueError(f"{rel}: its ISO 9660 name {full} clashes with another file's")
        iso_paths[rel] = full
        return full

    out = io.BytesIO()
    with _fixed_clock(build_epoch()):
        iso = pycdlib.PyCdlib()
        iso.new(interchange_level=2, vol_ident=label, app_ident_str=APPLICATION, joliet=3, rock_ridge="1.09")
        for d in _directories(files):
            iso.add_directory(
                iso_path=iso_path(d, True), rr_name=d.rpartition("/")[2], joliet_path="/" + d, file_mode=0o040555
            )
        for rel, data in files.items():
            mode = 0o100400 if rel in private else 0o100444
            iso.add_fp(
                io.BytesIO(data),
                len(data),
                iso_path=iso_path(rel, False),
                rr_name=rel.rpartition("/")[2],
                joliet_path="/" + rel,
                file_mode=mode,
            )
        iso.write_fp(out)
        iso.close()
    return out.getvalue()
