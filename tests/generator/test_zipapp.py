"""The runtime zipapp: reproducible, small, and runnable by the target's own Python."""

from __future__ import annotations

import ast
import io
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from kubeseed.generator.zipapp import build_zipapp, runtime_sources, shrink, unpack_sources


def test_zipapp_is_reproducible_and_complete() -> None:
    a = build_zipapp.__wrapped__()  # bypass the cache: two real builds
    b = build_zipapp.__wrapped__()
    assert a == b
    assert a.startswith(b"#!/usr/bin/env python3\n")
    assert zipfile.ZipFile(io.BytesIO(a)).namelist() == ["__main__.py", "kubeseed-runtime.lzma"]
    modules = unpack_sources(a)
    assert set(modules) == {"kubeseed", "kubeseed.runtime"} | {
        "kubeseed.runtime." + Path(n).stem for n in runtime_sources() if not n.endswith("__init__.py")
    }


@pytest.mark.parametrize("role", ["node", "master"])
def test_role_zipapps_carry_only_their_modules(role: str) -> None:
    modules = set(unpack_sources(build_zipapp(role)))
    assert "kubeseed.runtime.preflight" in modules and "kubeseed.runtime.cli" in modules
    assert ("kubeseed.runtime.join" in modules) == (role == "node")
    assert ("kubeseed.runtime.master" in modules) == (role == "master")
    assert ("kubeseed.runtime.pki" in modules) == (role == "master")  # a node never signs anything


def test_shrink_keeps_behaviour_and_drops_text() -> None:
    for name, source in runtime_sources().items():
        small = shrink(source)
        ast.parse(small)
        assert len(small) <= len(source), name
    sample = '''def greet(name: str) -> str:
    """Say hello."""
    # a comment
    message = "hello " + name
    return message
'''
    small = shrink(sample)
    assert "Say hello" not in small and "comment" not in small and ": str" not in small
    scope: dict = {}
    exec(small, scope)
    assert scope["greet"]("node") == "hello node"


def test_zipapp_runs_help(tmp_path: Path) -> None:
    pyz = tmp_path / "kubeseed-runtime.pyz"
    pyz.write_bytes(build_zipapp())
    r = subprocess.run([sys.executable, str(pyz), "--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    for command in ("preflight", "init", "join", "status"):
        assert command in r.stdout
