"""Joining a node, as the tests do it (tests only): running the node zipapp's join, refusals, the tokens
FakeAPIServer gets from a cluster directory, and the node's end state after a successful join (the fixtures are in
tests/runtime/conftest.py). Used by tests/runtime/test_join.py and
test_hostile.py, the nspawn first boots and bench/bench_image.py."""

from __future__ import annotations

import base64
import functools
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from cryptography.x509.oid import NameOID

from kubeseed.generator.tokens import load_tokens
from kubeseed.generator.zipapp import build_zipapp
from kubeseed.runtime import pki
from kubeseed.runtime.tokens import ca_pin
from tests.support.apiserver import FakeAPIServer

NODE = "worker-1"
KILLER = Path(__file__).resolve().parents[1] / "runtime/killer.py"


def server_tokens(cluster: Path) -> list[dict[str, Any]]:
    return [
        {"token": t.token, "expires": t.expires, "usages": list(t.usages), "groups": list(t.groups)}
        for t in load_tokens(cluster)
    ]


def check_joined(root: Path, cluster: Path, api: FakeAPIServer) -> x509.Certificate:
    """The node's end state after a successful join; returns its client certificate."""
    kubelet_conf = root / "etc/kubernetes/kubelet.conf"
    assert kubelet_conf.stat().st_mode & 0o777 == 0o600
    kc = yaml.safe_load(kubelet_conf.read_text())
    assert kc["current-context"] == "default-context"
    assert kc["clusters"][0]["cluster"]["server"] == f"https://{api.endpoint}"
    ca = (cluster / "pki/ca.crt").read_bytes()
    assert base64.b64decode(kc["clusters"][0]["cluster"]["certificate-authority-data"]) == ca
    current = "/var/lib/kubelet/pki/kubelet-client-current.pem"
    assert kc["users"][0] == {"name": "default-auth", "user": {"client-certificate": current, "client-key": current}}
    pem_path = root / current.lstrip("/")
    assert pem_path.is_symlink() and pem_path.stat().st_mode & 0o777 == 0o600
    pem = pem_path.read_bytes()
    cert = x509.load_pem_x509_certificate(pem)
    key = pki.load_key(pem)
    assert cert.public_key().public_numbers() == key.public_key().public_numbers()
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == f"system:node:{NODE}"
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "system:nodes"
    assert cert.issuer == pki.load_cert(ca).subject
    assert (root / "etc/kubernetes/pki/ca.crt").read_bytes() == ca
    assert not (root / "etc/kubernetes/bootstrap-kubelet.conf").exists()  # the token left the disk
    assert not (root / "var/lib/kubelet/pki/kubelet-client.key.tmp").exists()

    cfg = yaml.safe_load((root / "var/lib/kubelet/config.yaml").read_text())
    assert cfg["kind"] == "KubeletConfiguration" and cfg["apiVersion"] == "kubelet.config.k8s.io/v1beta1"
    assert cfg["clusterDNS"] == ["10.96.0.10"] and cfg["clusterDomain"] == "cluster.local"
    assert cfg["cgroupDriver"] == "systemd" and cfg["rotateCertificates"] is True
    assert cfg["authentication"]["anonymous"]["enabled"] is False
    assert cfg["authentication"]["x509"]["clientCAFile"] == "/etc/kubernetes/pki/ca.crt"
    assert cfg["authorization"]["mode"] == "Webhook"
    flags_env = (root / "var/lib/kubelet/kubeadm-flags.env").read_text()
    assert flags_env.startswith('KUBELET_KUBEADM_ARGS="--container-runtime-endpoint=unix:///run/containerd/')
    assert f"--hostname-override={NODE}" in flags_env
    drop_in = (root / "etc/systemd/system/kubelet.service.d/10-kubeadm.conf").read_text()
    assert "--kubeconfig=/etc/kubernetes/kubelet.conf" in drop_in and "$KUBELET_KUBEADM_ARGS" in drop_in

    state = json.loads((root / "var/lib/kubeseed/state.json").read_text())
    phases = ["preflight", "discovery", "tls-bootstrap", "kubelet-config", "kubelet-start", "runtime"]
    assert [p for p in phases if state["phases"][p]["result"] == "done"] == phases

    (csr,) = api.csrs.values()
    assert csr["spec"]["signerName"] == "kubernetes.io/kube-apiserver-client-kubelet"
    assert csr["spec"]["usages"] == ["digital signature", "client auth"]
    assert csr["spec"]["username"] == "system:bootstrap:" + server_tokens(cluster)[0]["token"].split(".")[0]
    return cert


def token(cluster: Path) -> str:
    return load_tokens(cluster)[0].token


def pin(cluster: Path) -> str:
    return ca_pin((cluster / "pki/ca.crt").read_bytes())


def join(
    root: Path, *args: str, timeout: float = 20, pyz: Path | None = None, kill: tuple[str, int, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The runtime's join under --root (preflight errors ignored: this machine has no kubelet)."""
    if kill:  # the killer patches the installed package's functions
        cmd = [sys.executable, str(KILLER), kill[0], str(kill[1]), kill[2], "--"]
    else:  # everything else runs what ships: the node payload's zipapp
        cmd = [sys.executable, str(pyz or node_zipapp())]
    full = [
        *cmd,
        "join",
        *args,
        "--root",
        str(root),
        "--node-name",
        NODE,
        "--ignore-preflight-errors",
        "all",
        "--timeout",
        str(timeout),
    ]
    return subprocess.run(full, capture_output=True, text=True, timeout=timeout + 60)


@functools.lru_cache(maxsize=1)
def node_zipapp() -> Path:
    path = Path(tempfile.mkdtemp(prefix="kubeseed-pyz-")) / "kubeseed-runtime.pyz"
    path.write_bytes(build_zipapp("node"))
    return path


def flags(cluster: Path, api: FakeAPIServer, **change: str) -> list[str]:
    args = [
        api.endpoint,
        "--token",
        change.get("token", token(cluster)),
        "--discovery-token-ca-cert-hash",
        change.get("pin", pin(cluster)),
    ]
    return args


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under root except the runtime's own record of the attempt (state and log)."""
    own = {"var/lib/kubeseed/state.json", "var/log/kubeseed.log"}
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and str(p.relative_to(root)) not in own
    }


def assert_no_secret(cluster: Path, root: Path, *outputs: str) -> None:
    secret = token(cluster).split(".")[1]
    log = (root / "var/log/kubeseed.log").read_text() if (root / "var/log/kubeseed.log").exists() else ""
    for text in (*outputs, log):
        assert secret not in text


def refused(root: Path, r: subprocess.CompletedProcess[str], code: int, message: str) -> None:
    assert r.returncode == code, r.stdout + r.stderr
    assert message in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    written = snapshot(root)
    assert written == {}, f"a refused join wrote {sorted(written)}"
