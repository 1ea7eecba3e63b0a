"""The runtime runs on the Python a target's cloud-init brings: Python >= 3.9, the standard library and the
four modules cloud-init pulls in on Debian and Ubuntu (yaml, jinja2, cryptography, jwt), nothing else."""

from __future__ import annotations

import ast
import subprocess
import sys
import zipfile
from io import BytesIO
from pathlib import Path

import pytest

from kubeseed.generator.zipapp import build_zipapp, unpack_sources
from tests.support.helpers import need_tool, venv_tool

RUNTIME = Path(__file__).resolve().parents[2] / "runtime"
ALLOWED_THIRD_PARTY = {"yaml", "jinja2", "cryptography", "jwt"}


def vermin(*args: str) -> subprocess.CompletedProcess[str]:
    exe = need_tool("vermin", venv_tool("vermin"), "pip install vermin")
    cmd = [exe, "-t=3.9-", "--violations", "--eval-annotations", "--no-tips", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def test_runtime_sources_need_no_python_newer_than_3_9() -> None:
    r = vermin(str(RUNTIME))
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("role", ["master", "node"])
def test_zipapp_contents_need_no_python_newer_than_3_9(role: str, tmp_path: Path) -> None:
    """What ships is the minified source packed in the zipapp, and its loader; check those, not only the tree."""
    zipapp = build_zipapp(role)
    for name, source in unpack_sources(zipapp).items():
        (tmp_path / f"{name}.py").write_text(source)
    with zipfile.ZipFile(BytesIO(zipapp)) as z:
        (tmp_path / "__main__.py").write_bytes(z.read("__main__.py"))
    r = vermin(str(tmp_path))
    assert r.returncode == 0, r.stdout + r.stderr


def test_vermin_catches_newer_features(tmp_path: Path) -> None:
    """The check has teeth: 3.10 syntax and a 3.10 standard-library call are both reported."""
    (tmp_path / "new.py").write_text(
        "import bisect\nmatch 1:\n    case 1:\n        pass\nbisect.bisect([], 1, key=abs)\n"
    )
    r = vermin(str(tmp_path))
    assert r.returncode != 0
    assert "3.10" in r.stdout


def imported_modules(source: str) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_runtime_imports_only_stdlib_and_cloud_init_dependencies() -> None:
    used = set()
    for path in RUNTIME.glob("*.py"):
        used |= imported_modules(path.read_text())
    outside = used - set(sys.stdlib_module_names) - ALLOWED_THIRD_PARTY - {"__future__"}
    assert not outside, f"the runtime imports {sorted(outside)}, which a target's python3 may not have"


def test_zipapp_runs_on_debian_python_with_distro_packages_only(tmp_path: Path) -> None:
    """Debian 12's own python3, isolated from any venv or user site (-I): the zipapp starts and lists its
    commands."""
    py = need_tool("python3", "/usr/bin/python3", "Debian's python3")
    pyz = tmp_path / "kubeseed-runtime.pyz"
    for role in ("master", "node"):
        pyz.write_bytes(build_zipapp(role))
        r = subprocess.run([py, "-I", str(pyz), "--help"], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        for command in ("preflight", "init", "join", "status"):
            assert command in r.stdout
