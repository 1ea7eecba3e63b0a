"""A second master joins the control plane (`join --control-plane`, from `kubeseed render master --join`): against
the in-test API server (RBAC on, cluster-info signed by its bootstrapsigner) and a real etcd (Debian's 3.4): the
first master's runs from its manifest at 127.0.0.1; the joining master's is started from the manifest the runtime
writes, at 127.0.0.2, as its kubelet would (no kubelet can run here; the stand-in kubelet keeps both masters' Nodes
and mirror pods in the API)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kubeseed.generator.tokens import load_tokens
from kubeseed.generator.zipapp import build_zipapp
from kubeseed.runtime.tokens import ca_pin
from tests.support.cpjoin import SECOND, Etcds, first_master, second_master
from tests.support.etcd import etcdctl
from tests.support.helpers import cloud_init_files, kubeseed, lay_out
from tests.support.master import KILLER, MASTER, Cluster, flags, manifest, run
from tests.support.standin_kubelet import StandinKubelet


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[Cluster, Etcds]]:
    with first_master(tmp_path) as made:
        yield made


def members(root: Path) -> list[dict[str, Any]]:
    import json

    r = etcdctl(root, "member", "list", "-w", "json", endpoint="https://127.0.0.2:2379")
    assert r.returncode == 0, r.stderr
    return list(json.loads(r.stdout)["members"])


def test_a_second_master_joins_etcd_and_the_control_plane(cluster: tuple[Cluster, Etcds]) -> None:
    c, etcds = cluster
    root, args, kubelet = second_master(c, etcds)
    try:
        r = run(root / "opt/kubeseed/kubeseed-runtime.pyz", *args)
    finally:
        kubelet.stop()
    assert r.returncode == 0, r.stdout + r.stderr
    for phase in ("discovery", "control-plane-prepare", "kubelet-start", "control-plane-join", "mark-control-plane"):
        assert f"[{phase}]" in r.stdout and f"[{phase}] " in r.stdout
    assert f"[etcd] {SECOND} is a voting member" in r.stdout
    assert "This node has joined the cluster and a new control plane instance was created" in r.stdout

    # etcd: two voting members, one data
    found = {m["name"]: m for m in members(root)}
    assert set(found) == {MASTER, SECOND} and not any(m.get("isLearner") for m in found.values())
    assert etcdctl(c.root, "put", "/kubeseed/test", "written-on-cp-1").returncode == 0
    got = etcdctl(root, "get", "/kubeseed/test", "--print-value-only", endpoint="https://127.0.0.2:2379")
    assert got.stdout.strip() == "written-on-cp-1"

    # its manifests: etcd joins the existing members; the API server advertises this machine's address
    etcd = flags(manifest(root, "etcd"))
    assert etcd["initial-cluster-state"] == "existing"
    assert etcd["initial-cluster"] == f"{MASTER}=https://127.0.0.1:2380,{SECOND}=https://127.0.0.2:2380"
    assert flags(manifest(root, "kube-apiserver"))["advertise-address"] == "127.0.0.2"
    # the CA is the cluster's, its own leaves are its own; the token is off the disk
    assert (root / "etc/kubernetes/pki/ca.crt").read_bytes() == (c.root / "etc/kubernetes/pki/ca.crt").read_bytes()
    assert (root / "etc/kubernetes/pki/apiserver.key").read_bytes() != (
        c.root / "etc/kubernetes/pki/apiserver.key"
    ).read_bytes()
    assert not (root / "etc/kubernetes/bootstrap-kubelet.conf").exists()
    node = c.api.get_object("v1", "Node", SECOND)
    assert node is not None and "node-role.kubernetes.io/control-plane" in node["metadata"]["labels"]
    assert {"effect": "NoSchedule", "key": "node-role.kubernetes.io/control-plane"} in node["spec"]["taints"]

    again = run(root / "opt/kubeseed/kubeseed-runtime.pyz", *args)
    assert again.returncode == 0 and again.stdout.count("already done, skipping") == 6


# (function the killer wraps, its call to die after): a point in every phase of a control-plane join
KILLS = [
    ("workflow.write_atomic", 1),  # discovery: the bootstrap kubeconfig written
    ("workflow.write_atomic", 4),  # control-plane-prepare: among the certificates
    ("workflow.write_atomic", 25),  # control-plane-prepare: kubeconfigs and static pods
    ("kubelet.start_phase", 1),  # kubelet-start
    ("etcd.Etcd.add_learner", 1),  # control-plane-join: etcd added the learner, nothing written yet
    ("etcd.Etcd.promote", 1),  # control-plane-join: promoted, the phase not recorded
    ("init.apiclient.Client.call", 3),  # mark-control-plane: its Node patched, the phase not recorded
]


@pytest.mark.parametrize("function,nth", KILLS, ids=[f"{f}-{n}" for f, n in KILLS])
def test_killed_anywhere_then_run_again_joins_once(cluster: tuple[Cluster, Etcds], function: str, nth: int) -> None:
    """A power cut at a point of each phase: the re-run finishes, with one member for this machine (never a second),
    and the keys the first run made kept."""
    c, etcds = cluster
    root, args, kubelet = second_master(c, etcds)
    try:
        cmd = [sys.executable, str(KILLER), function, str(nth), "after", "--", *args]
        killed = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
        assert killed.returncode == -9, killed.stdout + killed.stderr
        keys = {p.name: p.read_bytes() for p in (root / "etc/kubernetes/pki").rglob("*.key")}
        r = run(root / "opt/kubeseed/kubeseed-runtime.pyz", *args)
    finally:
        kubelet.stop()
    assert r.returncode == 0, r.stdout + r.stderr
    assert sorted(m["name"] for m in members(root)) == [MASTER, SECOND]
    after = {p.name: p.read_bytes() for p in (root / "etc/kubernetes/pki").rglob("*.key")}
    assert all(after[name] == data for name, data in keys.items())  # nothing regenerated
    node = c.api.get_object("v1", "Node", SECOND)
    assert node is not None and "node-role.kubernetes.io/control-plane" in node["metadata"]["labels"]


def test_a_payload_of_another_cluster_is_refused(cluster: tuple[Cluster, Etcds], tmp_path: Path) -> None:
    """The join payload's CA keys must be the cluster's: one rendered from another cluster directory (with a token
    this cluster holds) stops at discovery, before anything is written."""
    c, _ = cluster
    other = tmp_path / "other"
    other.mkdir()
    r = kubeseed("cluster", "create", "demo", "--endpoint", f"127.0.0.1:{c.port}", cwd=other)
    assert r.returncode == 0, r.stderr
    (other / "demo/tokens.yaml").write_bytes((c.dir / "tokens.yaml").read_bytes())  # a token this cluster holds
    r = kubeseed("render", "master", "demo", "--hostname", SECOND, "--join", "-o", "cp2.yaml", cwd=other)
    assert r.returncode == 0, r.stderr
    root = other / SECOND
    pyz = lay_out(cloud_init_files((other / "cp2.yaml").read_bytes()), root)
    r = run(pyz, "join", "--control-plane", "--root", str(root), "--ignore-preflight-errors", "all", "--timeout", "10")
    assert r.returncode == 1 and "[discovery]" in r.stderr, r.stdout + r.stderr
    assert "none of the public keys" in r.stderr and "are pinned" in r.stderr
    assert not (root / "etc/kubernetes/pki").exists()


def test_a_kubeadm_style_join_with_a_certificate_key(tmp_path: Path) -> None:
    """`join ENDPOINT --token ... --discovery-token-ca-cert-hash ... --control-plane --certificate-key KEY`, no node
    config, as kubeadm's join against a control plane that ran `init --upload-certs` (kubeadm's kubeadm-certs
    format): the keys come from that Secret, the Kubernetes version and networking from kubeadm-config. A wrong key
    stops at discovery, before anything else is written."""
    with first_master(tmp_path, "--upload-certs", version="v1.34.2") as (c, etcds):
        key = (c.root / "var/lib/kubeseed/certificate-key").read_text().strip()
        token = load_tokens(c.dir)[0].token
        pin = ca_pin((c.root / "etc/kubernetes/pki/ca.crt").read_bytes())
        pyz = tmp_path / "kubeseed-runtime.pyz"
        pyz.write_bytes(build_zipapp(None))  # the full runtime, as `kubeseed image runtime` writes it
        root = tmp_path / SECOND
        root.mkdir()

        def join(k: str) -> subprocess.CompletedProcess[str]:
            args = ["join", f"127.0.0.1:{c.port}", "--token", token, "--discovery-token-ca-cert-hash", pin]
            args += ["--control-plane", "--certificate-key", k, "--root", str(root), "--node-name", SECOND]
            args += ["--ignore-preflight-errors", "all", "--advertise-address", "127.0.0.2", "--timeout", "60"]
            return run(pyz, *args)

        wrong = join("0" * 64)
        assert wrong.returncode == 1 and "does not decrypt kube-system/kubeadm-certs" in wrong.stderr, wrong.stderr
        assert not (root / "etc/kubernetes/pki").exists() and key not in wrong.stdout + wrong.stderr
        etcds.start_when_written(root, "127.0.0.2")
        kubelet = StandinKubelet(c.api, root, SECOND, kubelet_version="v1.34.2", address="127.0.0.2").start()
        try:
            r = join(key)
        finally:
            kubelet.stop()
        assert r.returncode == 0, r.stdout + r.stderr
        assert f"[etcd] {SECOND} is a voting member" in r.stdout and key not in r.stdout + r.stderr
        for f in ("ca.crt", "ca.key", "sa.key", "sa.pub", "front-proxy-ca.key", "etcd/ca.key"):
            assert (root / "etc/kubernetes/pki" / f).read_bytes() == (c.root / "etc/kubernetes/pki" / f).read_bytes()
        image = manifest(root, "kube-apiserver")["spec"]["containers"][0]["image"]
        assert image == "registry.k8s.io/kube-apiserver:v1.34.2"  # the cluster's version, not the runtime's default
        assert sorted(m["name"] for m in members(root)) == [MASTER, SECOND]
