from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from kubeseed.generator.nodeconfig import node_config, to_doc
from kubeseed.generator.secrets import load


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
