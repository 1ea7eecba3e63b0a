"""The on-disk cache of built runtime zipapps (generator/zipcache.py): the same bytes as a fresh build, never trusted
blindly, keyed by everything the bytes depend on, and never a reason for a command to fail."""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from kubeseed.generator import zipcache
from kubeseed.generator.zipapp import build_zipapp
from kubeseed.generator.zipcache import (
    CACHE_ENV,
    MAGIC,
    NO_CACHE_ENV,
    SUFFIX,
    cache_dir,
    load_or_build,
    minifier_version,
    python_id,
    read_cached,
    runtime_root,
    source_digest,
    source_key,
    variant,
)

ZIPAPP_PY = Path(zipcache.__file__).with_name("zipapp.py")
ROLES = ["node", "master", None]


@functools.lru_cache(maxsize=None)
def fresh(role: str | None, minify: bool = True) -> bytes:
    """A real build (build_zipapp's own lru_cache bypassed), once per test session."""
    return build_zipapp.__wrapped__(role, minify)


def cache_file(directory: Path, role: str | None, minify: bool = True) -> Path:
    return directory / f"{variant(role, minify)}-{source_key()}{SUFFIX}"


@pytest.mark.parametrize("role", ROLES, ids=lambda r: r or "full")
def test_cached_bytes_are_a_fresh_builds(tmp_path: Path, role: str | None) -> None:
    """Built, written, then read back: each time exactly what a fresh build gives, in a 0600 file in a 0700 dir."""
    directory = tmp_path / "cache" / "zipapps"
    expected = fresh(role)
    assert load_or_build(role, directory=directory) == expected  # a miss: built and written
    path = cache_file(directory, role)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "cache").stat().st_mode) == 0o700  # missing parents made private too
    assert read_cached(path) == expected
    assert load_or_build(role, directory=directory) == expected  # a hit
    assert [p.name for p in directory.iterdir()] == [path.name]  # no temporary file left behind


def test_unminified_builds_are_cached_apart(tmp_path: Path) -> None:
    plain = load_or_build("node", minify=False, directory=tmp_path)
    assert plain == fresh("node", minify=False) != load_or_build("node", directory=tmp_path)
    assert cache_file(tmp_path, "node", minify=False).name.startswith("node-plain-")
    assert read_cached(cache_file(tmp_path, "node", minify=False)) == plain


def damage(path: Path, how: str) -> None:
    blob = path.read_bytes()
    if how == "flipped":
        path.write_bytes(blob[:-100] + bytes([blob[-100] ^ 1]) + blob[-99:])
    elif how == "truncated":
        path.write_bytes(blob[: len(blob) // 2])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "other format":
        path.write_bytes(blob.replace(MAGIC, b"kubeseed-zipapp-cache 0\n", 1))
    elif how == "digest of nothing":
        path.write_bytes(MAGIC + b"0" * 64 + b"\n" + blob[len(MAGIC) + 65 :])
    elif how == "readable by others":
        path.chmod(0o644)
    elif how == "a directory":
        path.unlink()
        path.mkdir()
    else:
        raise AssertionError(how)


@pytest.mark.parametrize(
    "how",
    ["flipped", "truncated", "empty", "other format", "digest of nothing", "readable by others", "a directory"],
)
def test_a_damaged_or_untrusted_cache_file_is_rebuilt(tmp_path: Path, how: str) -> None:
    expected = load_or_build("node", directory=tmp_path)
    path = cache_file(tmp_path, "node")
    damage(path, how)
    assert read_cached(path) is None
    assert load_or_build("node", directory=tmp_path) == expected == fresh("node")
    if how != "a directory":  # a directory in the way stays (the new build is not written over it), else replaced
        assert read_cached(path) == expected and stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_link_is_not_followed(tmp_path: Path) -> None:
    """A cache file that is a symbolic link (to a genuine cache file, even) is not read, and is replaced."""
    expected = load_or_build("node", directory=tmp_path / "elsewhere")
    link = cache_file(tmp_path / "cache", "node")
    link.parent.mkdir(mode=0o700)
    link.symlink_to(cache_file(tmp_path / "elsewhere", "node"))
    assert read_cached(link) is None
    assert load_or_build("node", directory=tmp_path / "cache") == expected
    assert not link.is_symlink() and read_cached(link) == expected


def test_a_foreign_or_open_directory_is_not_used(tmp_path: Path) -> None:
    """A cache directory that others may write to is never read from or written to: built in memory instead."""
    open_dir = tmp_path / "open"
    load_or_build("node", directory=open_dir)
    open_dir.chmod(0o777)
    planted = cache_file(open_dir, "node")
    data = b"#!/usr/bin/env python3\nprint('planted')\n"
    planted.write_bytes(MAGIC + hashlib.sha256(data).hexdigest().encode() + b"\n" + data)
    planted.chmod(0o600)
    assert load_or_build("node", directory=open_dir) == fresh("node")
    assert read_cached(planted) == data  # untouched: kubeseed neither trusted nor rewrote it


@pytest.mark.parametrize("where", ["under a file", "a file"])
def test_an_unusable_cache_location_still_builds(tmp_path: Path, where: str) -> None:
    (tmp_path / "file").write_text("not a directory\n")
    directory = tmp_path / "file" / "zipapps" if where == "under a file" else tmp_path / "file"
    assert load_or_build("node", directory=directory) == fresh("node")
    assert (tmp_path / "file").read_text() == "not a directory\n"


def test_a_linked_cache_directory_is_used(tmp_path: Path) -> None:
    """A cache directory reached through a link (~/.cache on another disk, say) is used when it is private."""
    (tmp_path / "real").mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(tmp_path / "real")
    assert load_or_build("node", directory=tmp_path / "link") == fresh("node")
    assert read_cached(cache_file(tmp_path / "real", "node")) == fresh("node")


def test_a_read_only_cache_directory_still_builds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Writes that fail (a read-only file system, a full disk; root ignores a directory's mode, so the failure is
    made here) leave the command working and no temporary file behind."""
    directory = tmp_path / "cache"
    directory.mkdir(mode=0o700)

    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(os, "replace", refuse)
    assert load_or_build("node", directory=directory) == fresh("node")
    assert list(directory.iterdir()) == []


def test_the_cli_renders_with_an_unwritable_cache(cluster: Path, tmp_path: Path) -> None:
    """`kubeseed render` with its cache where none can be: the same payload, the same messages, exit code 0."""
    (tmp_path / "file").write_text("")
    outputs = []
    for cache in (tmp_path / "file" / "zipapps", tmp_path / "good"):
        env = {**os.environ, CACHE_ENV: str(cache)}
        out = tmp_path / f"node-{cache.name}.yaml"
        r = subprocess.run(
            [sys.executable, "-m", "kubeseed.generator.cli", "render", "node", "demo", "-o", str(out)],
            cwd=cluster.parent,
            env=env,
            capture_output=True,
            text=True,
        )
        assert r.returncode == 0, r.stderr
        outputs.append((out.read_bytes(), r.stderr.replace(str(out), "OUT")))
    assert outputs[0] == outputs[1]


def copy_sources(tmp_path: Path) -> tuple[Path, Path]:
    runtime = tmp_path / "runtime"
    shutil.copytree(runtime_root(), runtime, ignore=shutil.ignore_patterns("__pycache__"))
    zipapp_py = tmp_path / "zipapp.py"
    shutil.copy(ZIPAPP_PY, zipapp_py)
    return runtime, zipapp_py


def test_the_key_covers_everything_the_bytes_depend_on(tmp_path: Path) -> None:
    runtime, zipapp_py = copy_sources(tmp_path)
    key = source_digest(runtime, zipapp_py, "3.4.0", "cpython 3.11.7")
    assert key == source_digest(runtime_root(), ZIPAPP_PY, "3.4.0", "cpython 3.11.7")  # where they are: no matter
    assert source_key() == source_digest(runtime_root(), ZIPAPP_PY, minifier_version(), python_id())
    (runtime / "__pycache__").mkdir(exist_ok=True)
    (runtime / "__pycache__" / "cli.cpython-311.pyc").write_bytes(b"\0")
    assert source_digest(runtime, zipapp_py, "3.4.0", "cpython 3.11.7") == key  # bytecode is not source

    changed = set()
    cli = runtime / "cli.py"
    text = cli.read_text()
    cli.write_text(text + "\n")
    changed.add(source_digest(runtime, zipapp_py, "3.4.0", "cpython 3.11.7"))
    cli.write_text(text)
    (runtime / "join" / "extra.py").write_text("")
    changed.add(source_digest(runtime, zipapp_py, "3.4.0", "cpython 3.11.7"))
    (runtime / "join" / "extra.py").unlink()
    (runtime / "notes.txt").write_text("any file of the package counts\n")
    changed.add(source_digest(runtime, zipapp_py, "3.4.0", "cpython 3.11.7"))
    (runtime / "notes.txt").unlink()
    assert source_digest(runtime, zipapp_py, "3.4.0", "cpython 3.11.7") == key  # back as it was
    zipapp_py.write_text(zipapp_py.read_text().replace("hoist_literals=False", "hoist_literals=True"))
    changed.add(source_digest(runtime, zipapp_py, "3.4.0", "cpython 3.11.7"))
    shutil.copy(ZIPAPP_PY, zipapp_py)
    changed.add(source_digest(runtime, zipapp_py, "3.4.1", "cpython 3.11.7"))
    changed.add(source_digest(runtime, zipapp_py, "3.4.0", "cpython 3.12.0"))
    changed.add(source_digest(runtime, zipapp_py, "3.4.0", "cpython 3.11.8"))
    assert key not in changed and len(changed) == 7


def test_a_changed_source_is_a_new_cache_entry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A build cached under another key (other sources) is never taken for this one."""
    runtime, zipapp_py = copy_sources(tmp_path)
    monkeypatch.setattr(zipcache, "runtime_root", lambda: runtime)
    monkeypatch.setattr(zipcache, "_GENERATOR", tmp_path)  # zipapp.py from the copy
    directory = tmp_path / "cache"
    old_key = source_key()
    data = b"#!/usr/bin/env python3\nprint('built from other sources')\n"
    load_or_build("node", directory=directory)
    old = cache_file(directory, "node")
    old.write_bytes(MAGIC + hashlib.sha256(data).hexdigest().encode() + b"\n" + data)  # stands for the old build
    (runtime / "versions.py").write_text((runtime / "versions.py").read_text() + "\n# changed\n")
    assert source_key() != old_key
    assert load_or_build("node", directory=directory) == build_zipapp("node")
    assert read_cached(old) == data and cache_file(directory, "node") != old


def test_old_builds_are_pruned_per_variant(tmp_path: Path) -> None:
    directory = tmp_path / "cache"
    directory.mkdir(mode=0o700)
    for i in range(6):
        for name in (f"node-{i:064x}{SUFFIX}", f"node-plain-{i:064x}{SUFFIX}"):
            (directory / name).write_bytes(b"")
            os.utime(directory / name, (1_000_000 + i, 1_000_000 + i))
    (directory / ".tmp-stale").write_bytes(b"")
    os.utime(directory / ".tmp-stale", (1_000_000, 1_000_000))
    load_or_build("node", directory=directory)
    names = sorted(p.name for p in directory.iterdir())
    kept_old = [f"node-{i:064x}{SUFFIX}" for i in (3, 4, 5)]  # with the new one, KEEP of the variant
    plain = [f"node-plain-{i:064x}{SUFFIX}" for i in range(6)]  # another variant: not pruned with node's
    assert names == sorted([*kept_old, cache_file(directory, "node").name, *plain])


def test_minifier_version_is_the_installed_one() -> None:
    assert minifier_version() == importlib.metadata.version("python-minifier")


def test_the_cache_location(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """$KUBESEED_ZIPAPP_CACHE, else $XDG_CACHE_HOME/kubeseed/zipapps (absolute only), else
    ~/.cache/kubeseed/zipapps; KUBESEED_NO_CACHE turns the cache off."""
    monkeypatch.delenv(CACHE_ENV)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "kubeseed" / "zipapps"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/cache")  # not absolute: ignored, as the XDG spec says
    assert cache_dir() == tmp_path / "home" / ".cache" / "kubeseed" / "zipapps"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "kubeseed" / "zipapps"
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "own"))
    assert cache_dir() == tmp_path / "own"
    monkeypatch.setenv(NO_CACHE_ENV, "0")
    assert cache_dir() == tmp_path / "own"
    monkeypatch.setenv(NO_CACHE_ENV, "1")
    assert cache_dir() is None


def test_a_render_caches_in_the_home_directory(cluster: Path, tmp_path: Path) -> None:
    """The default location, as a user's kubeseed finds it: a fresh process with only HOME set caches there (and a
    second one reads it without importing the minifier); with KUBESEED_NO_CACHE=1 nothing is written."""
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in (CACHE_ENV, NO_CACHE_ENV, "XDG_CACHE_HOME")}
    env["HOME"] = str(home)
    render = [sys.executable, "-m", "kubeseed.generator.cli", "render", "node", "demo"]
    r = subprocess.run([*render, "-o", str(tmp_path / "a.yaml")], cwd=cluster.parent, env=env, capture_output=True)
    assert r.returncode == 0, r.stderr
    directory = home / ".cache" / "kubeseed" / "zipapps"
    (path,) = directory.iterdir()
    assert path.name == f"node-{source_key()}{SUFFIX}" and read_cached(path) == fresh("node")
    for d in (home / ".cache", home / ".cache" / "kubeseed", directory):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700
    probe = (
        "import sys; from kubeseed.generator.zipcache import cached_zipapp; cached_zipapp('node'); "
        "print(sorted(m for m in ('python_minifier', 'kubeseed.generator.zipapp') if m in sys.modules))"
    )
    r = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True)
    assert r.stdout.strip() == "[]", r.stderr  # a hit needs neither

    shutil.rmtree(home / ".cache")
    r = subprocess.run(
        [*render, "-o", str(tmp_path / "b.yaml")],
        cwd=cluster.parent,
        env={**env, NO_CACHE_ENV: "1"},
        capture_output=True,
    )
    assert r.returncode == 0, r.stderr
    assert not (home / ".cache").exists()
    assert (tmp_path / "a.yaml").read_bytes() == (tmp_path / "b.yaml").read_bytes()
