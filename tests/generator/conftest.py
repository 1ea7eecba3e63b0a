from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from .helpers import kubeseed


@pytest.fixture(scope="session")
def cluster_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One ECDSA cluster made by the real CLI, copied per test (key generation is the slow part)."""
    base = tmp_path_factory.mktemp("template")
    r = kubeseed("cluster", "create", "demo", "--endpoint", "10.0.0.10:6443", cwd=base)
    assert r.returncode == 0, r.stderr
    return base / "demo"


@pytest.fixture
def cluster(cluster_template: Path, tmp_path: Path) -> Path:
    """A fresh copy of the template cluster at tmp_path/demo (modes preserved)."""
    dst = tmp_path / "demo"
    shutil.copytree(cluster_template, dst)
    return dst
