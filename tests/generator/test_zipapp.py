"""The runtime zipapp: reproducible, small, and runnable by the target's own Python."""

from __future__ import annotations

import ast
import io
import subprocess
import sys
import zipfile
from pathlib import Path

from kubeseed.generator.zipapp import build_zipapp, runtime_sources, shrink


def test_zipapp_is_reproducible_and_complete() -> None:
    a = build_zipapp.__wrapped__()  # bypass the cache: two real builds
    b = build_zipapp.__wrapped__()
    assert a == b
    assert a.startswith(b"#!/usr/bin/env python3\n")
    names = zipfile.ZipFile(io.BytesIO(a)).namelist()
    assert names[:2] == ["__main__.py", "kubeseed/__init__.py"]
    assert set(names[2:]) == set(runtime_sources())
    assert "kubeseed/runtime/cli.py" in names and "kubeseed/runtime/config.py" in names


def test_shrink_keeps_code_and_drops_docstrings() -> None:
    for name, source in runtime_sources().items():
        small = shrink(source)
        tree = ast.parse(small)
        assert ast.dump(tree) == ast.dump(ast.parse(shrink(small))), name
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.Module)) and node.body:
                first = node.body[0]
                assert not (
                    isinstance(first, ast.Expr)
                    and isinstance(first.value, ast.Constant)
                    and isinstance(first.value.value, str)
                ), name
    total = sum(len(s) for s in runtime_sources().values())
    assert sum(len(shrink(s)) for s in runtime_sources().values()) < total


def test_zipapp_runs_help(tmp_path: Path) -> None:
    pyz = tmp_path / "kubeseed-runtime.pyz"
    pyz.write_bytes(build_zipapp())
    r = subprocess.run([sys.executable, str(pyz), "--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    for command in ("preflight", "init", "join", "status"):
        assert command in r.stdout
