"""The runtime zipapp: reproducible, small, and runnable by the target's own Python."""

from __future__ import annotations

import ast
import io
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from kubeseed.generator.zipapp import (
    build_zipapp,
    imports,
    prune,
    role_modules,
    runtime_sources,
    shrink,
    unpack_sources,
)


def test_zipapp_is_reproducible_and_complete() -> None:
    a = build_zipapp.__wrapped__()  # bypass the cache: two real builds
    b = build_zipapp.__wrapped__()
    assert a == b
    assert a.startswith(b"#!/usr/bin/env python3\n")
    assert zipfile.ZipFile(io.BytesIO(a)).namelist() == ["__main__.py"]
    modules = unpack_sources(a)
    expected = {"kubeseed"} | {
        n.removesuffix(".py").removesuffix("/__init__").replace("/", ".") for n in runtime_sources()
    }
    assert set(modules) == expected
    assert {"kubeseed.runtime.init.certs", "kubeseed.runtime.join.discovery"} <= expected


@pytest.mark.parametrize("role", ["node", "master"])
def test_role_zipapps_carry_their_import_closure(role: str) -> None:
    """Each role's modules are computed from what its first boot imports; the node's never reach init or pki."""
    closure = role_modules(role)
    modules = set(unpack_sources(build_zipapp(role)))
    assert modules == {"kubeseed"} | set(closure)
    assert {"kubeseed.runtime.preflight", "kubeseed.runtime.cli", "kubeseed.runtime.config"} <= modules
    own, other = ("join", "init") if role == "node" else ("init", "join")
    assert f"kubeseed.runtime.{own}" in modules
    assert not any(m == f"kubeseed.runtime.{other}" or m.startswith(f"kubeseed.runtime.{other}.") for m in modules)
    assert ("kubeseed.runtime.pki" in modules) == (role == "master")  # a node never signs anything


def test_closure_follows_lazy_and_relative_imports() -> None:
    source = "from . import api\nfrom ..tokens import ca_pin\ndef f():\n    from .discovery import x\n    import json\n"
    found = imports("kubeseed.runtime.join.tlsbootstrap", source, is_package=False)
    assert {"kubeseed.runtime.join.api", "kubeseed.runtime.tokens.ca_pin", "kubeseed.runtime.tokens"} <= found
    assert {"kubeseed.runtime.join.discovery", "json"} <= found
    source = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..pki import PrivateKey\n"
    assert "kubeseed.runtime.pki" not in imports("kubeseed.runtime.keys", source, is_package=False)


def test_prune_drops_only_what_nothing_uses() -> None:
    sources = {
        "a.py": "X = 1\nUNUSED = 'x'\ndef used(): return X\ndef unused(): return used()\n"
        "class C:\n    def __repr__(self): return 'c'\n    def m(self): return 1\n    def gone(self): return 2\n",
        "b.py": "from a import used, C\nprint(used(), C().m(), repr(C()))\n",
        "c.py": "import json\nclass Hook(json.JSONEncoder):\n    def default(self, o): return 1\nprint(Hook())\n",
    }
    pruned = prune(sources)
    assert "UNUSED" not in pruned["a.py"] and "def unused" not in pruned["a.py"] and "gone" not in pruned["a.py"]
    assert "def used" in pruned["a.py"] and "__repr__" in pruned["a.py"] and "def m" in pruned["a.py"]
    assert "def default" in pruned["c.py"]  # a subclass's method may be a hook its base calls by name
    scope: dict = {}
    exec(pruned["a.py"], scope)
    assert scope["used"]() == 1 and repr(scope["C"]()) == "c"


def test_shrink_keeps_behaviour_and_drops_text() -> None:
    for name, source in runtime_sources().items():
        small = shrink(source)
        ast.parse(small)
        assert len(small) <= len(source), name
    sample = '''from __future__ import annotations
from typing import Dict, List
def helper_with_a_long_name(name: str) -> List[str]:
    """Say hello."""
    # a comment
    message = "hello " + name
    return [message]
def main(name: str) -> Dict[str, str]:
    return {name: helper_with_a_long_name(name)[0]}
'''
    small = shrink(sample)
    assert "Say hello" not in small and "comment" not in small and ": str" not in small
    assert "helper_with_a_long_name" not in small  # private globals are shortened, shared ones (main) kept
    assert "typing" not in small and "__future__" not in small  # only annotations needed them
    scope: dict = {}
    exec(small, scope)
    assert scope["main"]("node") == {"node": "hello node"}


def test_zipapp_runs_help(tmp_path: Path) -> None:
    pyz = tmp_path / "kubeseed-runtime.pyz"
    pyz.write_bytes(build_zipapp())
    r = subprocess.run([sys.executable, str(pyz), "--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    for command in ("preflight", "init", "join", "status"):
        assert command in r.stdout
