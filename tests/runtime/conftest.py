from __future__ import annotations

import copy
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kubeseed.generator.nodeconfig import node_config, to_doc
from kubeseed.generator.secrets import load
from tests.support.apiserver import FakeAPIServer
from tests.support.etcd import running_etcd
from tests.support.join import server_tokens


@pytest.fixture(scope="session")
def node_configs(cluster_template: Path) -> dict[str, dict[str, Any]]:
    """The node configs the generator writes into master and node payloads."""
    cluster, secrets = load(cluster_template)
    return {role: to_doc(node_config(cluster, secrets, role, f"{role}-1")) for role in ("master", "node")}


@pytest.fixture
def node_doc(node_configs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return copy.deepcopy(node_configs["node"])


@pytest.fixture
def master_doc(node_configs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return copy.deepcopy(node_configs["master"])


@pytest.fixture
def cluster(cluster_template: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "operator" / "demo"
    shutil.copytree(cluster_template, dst)
    return dst


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """The machine's file system (--root)."""
    path = tmp_path / "machine"
    path.mkdir()
    return path


@pytest.fixture
def api(cluster: Path) -> Iterator[FakeAPIServer]:
    with FakeAPIServer(
        (cluster / "pki/ca.crt").read_bytes(), (cluster / "pki/ca.key").read_bytes(), server_tokens(cluster)
    ) as server:
        yield server


@pytest.fixture
def etcd(master: Path, tmp_path: Path) -> Iterator[Path]:
    """A real etcd started from the ``master`` fixture's manifest and certificates (the test module's master);
    its log file."""
    with running_etcd(master, tmp_path) as log:
        yield log
