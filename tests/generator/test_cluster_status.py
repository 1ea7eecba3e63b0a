"""`kubeseed cluster status`: the masters, their etcd members and quorum, and the nodes, read through the API of a
master that ran init against the in-test API server (the `live` fixture, tests/generator/conftest.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kubeseed.generator.statuscli import quorum_line
from tests.support.helpers import ks
from tests.support.master import Cluster

READY = [{"type": "Ready", "status": "True"}]
NOT_READY = [{"type": "Ready", "status": "False"}]


def node(name: str, master: bool, ready: bool) -> dict[str, Any]:
    labels = {"node-role.kubernetes.io/control-plane": ""} if master else {}
    meta = {"name": name, "labels": labels}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": meta,
        "status": {"conditions": READY if ready else NOT_READY},
    }


def etcd_pod(master: str, ready: bool) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"etcd-{master}", "namespace": "kube-system", "labels": {"component": "etcd"}},
        "spec": {"nodeName": master, "containers": [{"name": "etcd", "image": "registry.k8s.io/etcd:3.6.5-0"}]},
        "status": {"conditions": READY if ready else NOT_READY},
    }


@pytest.mark.parametrize(
    "members,ready,expected",
    [
        (1, 1, "etcd: 1 member, 1 ready; quorum needs 1: kept, it survives no further failure"),
        (3, 3, "etcd: 3 members, 3 ready; quorum needs 2: kept, it survives 1 more failure"),
        (5, 5, "etcd: 5 members, 5 ready; quorum needs 3: kept, it survives 2 more failures"),
        (3, 1, "etcd: 3 members, 1 ready; quorum needs 2: LOST, the API cannot write"),
        (0, 0, "etcd: no member pods seen"),
    ],
)
def test_quorum(members: int, ready: int, expected: str) -> None:
    assert quorum_line(members, ready).startswith(expected)


def test_three_masters_one_down(live: Cluster) -> None:
    api = live.api
    for name, ready in (("cp-1", True), ("cp-2", True), ("cp-3", False)):
        api.put_object(node(name, True, ready))
        api.put_object(etcd_pod(name, ready))
    api.put_object(node("worker-1", False, True))
    r = ks("cluster", "status", "demo", cwd=live.base)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == f"Cluster demo (https://127.0.0.1:{live.port}): the API answers"
    assert [line.split() for line in lines[1:5]] == [
        ["MASTER", "READY", "ETCD", "MEMBER"],
        ["cp-1", "yes", "ready"],
        ["cp-2", "yes", "ready"],
        ["cp-3", "no", "not", "ready"],
    ]
    assert lines[5] == "etcd: 3 members, 2 ready; quorum needs 2: kept, it survives no further failure"
    assert lines[6] == "Nodes: 1 ready of 1"


def test_an_unreachable_cluster_says_what_to_check(dead: Path) -> None:
    r = ks("cluster", "status", "demo", cwd=dead.parent)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.startswith("error: no answer from https://127.0.0.1:")
    assert "check the masters (`status` on each)" in r.stderr
