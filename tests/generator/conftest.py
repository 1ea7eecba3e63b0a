"""Fixtures the generator tests share: a cluster whose master runs (through the in-test API server) and one whose
master has not booted."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.helpers import free_port, kubeseed
from tests.support.master import Cluster


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Cluster]:
    """A cluster directory whose master ran its whole init against the in-test API server, which keeps serving."""
    c = Cluster(tmp_path)
    c.api.start()
    try:
        c.register_node()
        r = c.init()
        assert r.returncode == 0, r.stdout + r.stderr
        yield c
    finally:
        c.api.stop()


@pytest.fixture
def dead(tmp_path: Path) -> Path:
    """A cluster directory whose endpoint nothing listens on (a master that has not booted yet)."""
    r = kubeseed("cluster", "create", "demo", "--endpoint", f"127.0.0.1:{free_port()}", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    return tmp_path / "demo"
