"""The runtime zipapps that ``zipapp.build_zipapp`` makes, kept on disk between runs: minifying the runtime takes
about half a second per role, reading a cached build a millisecond.

A cached build is found by a key that changes with anything that can change its bytes: every file of the runtime
package (``kubeseed.runtime``), ``generator/zipapp.py`` itself, the installed python-minifier's version, and the
Python that builds it (implementation and version: ``ast.unparse`` output may differ between Pythons). It lives in
``$KUBESEED_ZIPAPP_CACHE``, else ``$XDG_CACHE_HOME/kubeseed/zipapps``, else ``~/.cache/kubeseed/zipapps`` (a 0700
directory of 0600 files, written through a temporary file and a rename), and is never taken on trust: a file that
is not a regular file of this user's, unreadable for others, in the cache format and matching the SHA-256 it
carries is ignored and built again, and a directory that others may write to is not used at all (what this user
writes there is trusted as kubeseed's own installation is). ``KUBESEED_NO_CACHE=1`` turns the cache off. Nothing
about the cache ever fails a command: where it cannot be read or written (no home, a read-only or foreign
directory), the zipapp is built in memory, with one debug-level log note.

Importing this module is cheap: ``zipapp`` (python-minifier, ast work) is imported only on a cache miss."""

from __future__ import annotations

import hashlib
import os
import stat
import sys
from functools import lru_cache
from pathlib import Path

CACHE_ENV = "KUBESEED_ZIPAPP_CACHE"  # the cache directory itself
NO_CACHE_ENV = "KUBESEED_NO_CACHE"  # set (and not "0"): build in memory every time
MAGIC = b"kubeseed-zipapp-cache 1\n"  # then the SHA-256 of the zipapp in hex, a newline, and the zipapp's bytes
KEEP = 4  # cached builds kept per variant (role, minified or not): a few checkouts or versions side by side
STALE_TEMP = 3600  # seconds after which a temporary file left by an interrupted write is removed
MAX_BYTES = 16 << 20  # a cache file larger than this is not one of ours
SUFFIX = ".zipapp"
_GENERATOR = Path(__file__).resolve().parent


def _note(message: str, *args: object) -> None:
    """One debug-level note: the cache is an optimisation, and its problems are no user's business."""
    import logging

    logging.getLogger(__name__).debug(message, *args)


def cache_dir() -> Path | None:
    """Where cached zipapps live: $KUBESEED_ZIPAPP_CACHE, else $XDG_CACHE_HOME/kubeseed/zipapps (an absolute
    XDG_CACHE_HOME only, as the XDG spec says), else ~/.cache/kubeseed/zipapps; None when KUBESEED_NO_CACHE is set
    or there is no home directory."""
    if os.environ.get(NO_CACHE_ENV, "") not in ("", "0"):
        return None
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    if os.path.isabs(xdg):
        return Path(xdg) / "kubeseed" / "zipapps"
    try:
        home = Path.home()
    except (RuntimeError, KeyError):  # no HOME and no password entry
        return None
    return home / ".cache" / "kubeseed" / "zipapps" if home.is_absolute() else None


def minifier_version() -> str:
    """The installed python-minifier's version, read from its metadata beside the package that ``import
    python_minifier`` finds (importlib.metadata would cost more start-up time than the whole cache saves)."""
    for entry in sys.path:
        where = Path(entry or ".")
        if not (where / "python_minifier" / "__init__.py").is_file():
            continue
        try:
            names = os.listdir(where)
        except OSError:
            break
        for name in sorted(names):
            suffix = Path(name).suffix
            meta = {".dist-info": "METADATA", ".egg-info": "PKG-INFO"}.get(suffix)
            if meta and name[: -len(suffix)].split("-", 1)[0].lower() == "python_minifier":
                try:
                    text = (where / name / meta).read_text(encoding="utf-8", errors="replace")
                except OSError:
                    continue
                for line in text.splitlines():
                    if line.startswith("Version:"):
                        return line.split(":", 1)[1].strip()
                    if not line:
                        break
        break
    try:  # installed some other way: ask importlib.metadata (slower)
        from importlib.metadata import PackageNotFoundError, version
    except ImportError:  # pragma: no cover - Python >= 3.8 has it
        return "unknown"
    try:
        return version("python-minifier")
    except PackageNotFoundError:
        return "unknown"


def runtime_root() -> Path:
    """The runtime package's directory (``runtime/`` in a checkout)."""
    import kubeseed.runtime

    return Path(kubeseed.runtime.__file__).resolve().parent


def source_digest(runtime: Path, zipapp_py: Path, minifier: str, python: str) -> str:
    """SHA-256 (hex) of what a build's bytes depend on: every file under ``runtime`` (but ``__pycache__``), by
    relative path and content, ``zipapp_py``'s content, the minifier's version and the Python's."""
    h = hashlib.sha256(MAGIC)
    h.update(f"python {python}\0minifier {minifier}\0".encode())
    files = []
    for top, dirs, names in os.walk(runtime):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        files += [os.path.join(top, n) for n in names]
    for path in sorted(files):
        data = Path(path).read_bytes()
        rel = os.path.relpath(path, runtime).replace(os.sep, "/")
        h.update(f"runtime/{rel}\0{len(data)}\0".encode() + data)
    data = zipapp_py.read_bytes()
    h.update(f"zipapp.py\0{len(data)}\0".encode() + data)
    return h.hexdigest()


def python_id() -> str:
    """The building Python, as far as the bytes may depend on it: implementation and full version."""
    return f"{sys.implementation.name} {'.'.join(map(str, sys.version_info[:3]))}"


def source_key() -> str:
    """source_digest of this installation: the runtime it would build, this zipapp.py, python-minifier, Python."""
    return source_digest(runtime_root(), _GENERATOR / "zipapp.py", minifier_version(), python_id())


def variant(role: str | None, minify: bool) -> str:
    """The part of a cache file's name that says which build it holds: ``node``, ``master``, ``full`` (the whole
    runtime), with ``-plain`` for an unminified build."""
    return f"{role or 'full'}{'' if minify else '-plain'}"


def _private_dir(path: Path) -> bool:
    """Whether ``path`` is (or links to) a directory that this user owns and nobody else can write to, made (0700,
    with any missing parents) if missing. False, never an exception, when it cannot be had, or where the OS has no
    user ids to check (the cache is for POSIX systems)."""
    if not hasattr(os, "getuid"):
        return False
    try:
        if not os.path.lexists(path):
            from .fsutil import make_private_dir

            make_private_dir(path)
        st = os.stat(path)
    except OSError as e:
        _note("zipapp cache %s unusable: %s", path, e)
        return False
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o022:
        _note("zipapp cache %s ignored: not a directory of this user's that only it can write to", path)
        return False
    return True


def read_cached(path: Path) -> bytes | None:
    """The zipapp in cache file ``path``, or None when there is none or it is not to be trusted: not a regular file
    (links are not followed), not this user's, readable or writable by others, not in the cache format, or not
    matching the SHA-256 it carries."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return None
    except OSError as e:
        _note("zipapp cache file %s unreadable: %s", path, e)
        return None
    try:
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
                _note("zipapp cache file %s ignored: not a private regular file of this user's", path)
                return None
            blob = f.read(MAX_BYTES + 1)
    except OSError as e:
        _note("zipapp cache file %s unreadable: %s", path, e)
        return None
    head = len(MAGIC) + 65
    digest, data = blob[len(MAGIC) : head - 1], blob[head:]
    if (
        len(blob) > MAX_BYTES
        or not blob.startswith(MAGIC)
        or blob[head - 1 : head] != b"\n"
        or hashlib.sha256(data).hexdigest().encode() != digest
    ):
        _note("zipapp cache file %s is damaged; building it again", path)
        return None
    return data


def write_cached(path: Path, data: bytes) -> None:
    """Write ``data`` to cache file ``path`` (0600) through a temporary file and a rename; then remove older builds
    of the same variant beyond KEEP, and stale temporary files. Errors are noted, never raised."""
    import tempfile

    blob = MAGIC + hashlib.sha256(data).hexdigest().encode() + b"\n" + data
    tmp = ""
    try:
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)  # 0600
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
        os.replace(tmp, path)
        tmp = ""
    except OSError as e:
        _note("zipapp cache file %s not written: %s", path, e)
        return
    finally:
        if tmp:
            try:
                os.unlink(tmp)
            except OSError:
                pass
    _prune(path)


def _prune(kept: Path) -> None:
    """Remove the builds of ``kept``'s variant but the KEEP newest (``kept`` among them), and stale temporary
    files."""
    import re
    import time

    same_variant = re.compile(re.escape(kept.name[: -len(SUFFIX) - 65]) + r"-[0-9a-f]{64}" + re.escape(SUFFIX))
    try:
        entries = [(e.stat().st_mtime, e.name) for e in os.scandir(kept.parent) if e.is_file(follow_symlinks=False)]
    except OSError:
        return
    now = time.time()
    same = sorted((e for e in entries if same_variant.fullmatch(e[1]) and e[1] != kept.name), reverse=True)
    old = [name for _, name in same[KEEP - 1 :]]
    old += [name for mtime, name in entries if name.startswith(".tmp-") and now - mtime > STALE_TEMP]
    for name in old:
        try:
            os.unlink(kept.parent / name)
        except OSError:
            pass


def build(role: str | None, minify: bool) -> bytes:
    """A fresh build by zipapp.build_zipapp, from the sources as they are now (not one that build_zipapp's own
    in-process cache kept from before they changed: that would be cached under the new sources' key)."""
    from .zipapp import build_zipapp

    return bytes(getattr(build_zipapp, "__wrapped__", build_zipapp)(role, minify))


def load_or_build(role: str | None = None, minify: bool = True, directory: Path | None = None) -> bytes:
    """``build_zipapp(role, minify)``'s bytes: from the cache in ``directory`` (default cache_dir()) when it holds
    them, else built, and then cached unless the sources changed during the build."""
    if directory is None:
        directory = cache_dir()
    if directory is None or not _private_dir(directory):
        return build(role, minify)
    try:
        key = source_key()
    except OSError as e:  # a runtime file vanished under us: no key, no cache
        _note("zipapp cache key not computed: %s", e)
        return build(role, minify)
    path = directory / f"{variant(role, minify)}-{key}{SUFFIX}"
    data = read_cached(path)
    if data is not None:
        return data
    data = build(role, minify)
    try:
        unchanged = source_key() == key
    except OSError:
        unchanged = False
    if unchanged:
        write_cached(path, data)
    return data


@lru_cache(maxsize=8)
def cached_zipapp(role: str | None = None, minify: bool = True) -> bytes:
    """The runtime zipapp for ``role`` (None: the complete runtime), as ``zipapp.build_zipapp`` builds it, through
    the on-disk cache; once per process."""
    return load_or_build(role, minify)
