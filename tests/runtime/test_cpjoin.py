"""A second master joins the control plane (`join --control-plane`, from `kubeseed render master --join`): against
the in-test API server (RBAC on, cluster-info signed by its bootstrapsigner) and a real etcd (Debian's 3.4): the
first master's runs from its manifest at 127.0.0.1; the joining master's is started from the manifest the runtime
writes, at 127.0.0.2, as its kubelet would (no kubelet can run here; the stand-in kubelet keeps both masters' Nodes
and mirror pods in the API)."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kubeseed.generator.tokens import load_tokens
from kubeseed.generator.zipapp import build_zipapp
from kubeseed.runtime.tokens import ca_pin
from tests.support.etcd import check_ports_free, etcd_command, etcdctl
from tests.support.helpers import cloud_init_files, kubeseed, lay_out
from tests.support.master import KILLER, MASTER, Cluster, flags, manifest, run
from tests.support.standin_kubelet import StandinKubelet

SECOND = "cp-2"


class Etcds:
    """The members' etcd processes: the first master's now, the joining one's once its manifest appears."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []

    def start(self, root: Path, ip: str) -> None:
        check_ports_free(ip)
        with open(root / "etcd.log", "ab") as log:
            self.procs.append(subprocess.Popen(etcd_command(root, root / "var/lib/etcd", ip=ip), stderr=log))

    def start_when_written(self, root: Path, ip: str) -> None:
        """What the kubelet does with a new static pod: run it (here: etcd, from the manifest's flags)."""

        def watch() -> None:
            while not self.stop.is_set():
                if (root / "etc/kubernetes/manifests/etcd.yaml").exists():
                    time.sleep(0.2)  # written by rename: whole
                    self.start(root, ip)
                    return
                time.sleep(0.1)

        t = threading.Thread(target=watch, daemon=True)
        t.start()
        self.threads.append(t)

    def close(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=5)
        for p in self.procs:
            p.send_signal(signal.SIGTERM)
            p.wait(timeout=30)


@contextlib.contextmanager
def first_master(tmp_path: Path, *init_args: str, version: str = "") -> Iterator[tuple[Cluster, Etcds]]:
    """The first master: init done (file phases, its etcd started, then the API phases with ``init_args``), its
    kubelet stand-in running; ``version``: the cluster's Kubernetes version (kubeseed's default without)."""
    c = Cluster(tmp_path, None, *(("--kubernetes-version", version) if version else ()))
    etcds = Etcds()
    kubelets: list[StandinKubelet] = []
    try:
        etcds.start(c.root, "127.0.0.1")
        c.api.start()
        kubelets.append(StandinKubelet(c.api, c.root, MASTER, kubelet_version=version or "v1.35.5").start())
        r = c.init(*init_args)
        assert r.returncode == 0, r.stdout + r.stderr
        yield c, etcds
    finally:
        for k in kubelets:
            k.stop()
        c.api.stop()
        etcds.close()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[Cluster, Etcds]]:
    with first_master(tmp_path) as made:
        yield made


def second_master(c: Cluster, etcds: Etcds) -> tuple[Path, list[str], StandinKubelet]:
    """The join payload for SECOND laid out under its root, the kubelet stand-ins (its etcd among them) ready."""
    r = kubeseed("render", "master", "demo", "--hostname", SECOND, "--join", "-o", "cp2.yaml", cwd=c.base)
    assert r.returncode == 0, r.stderr
    root = c.base / SECOND
    lay_out(cloud_init_files((c.base / "cp2.yaml").read_bytes()), root)
    etcds.start_when_written(root, "127.0.0.2")
    kubelet = StandinKubelet(c.api, root, SECOND, kubelet_version="v1.35.5", address="127.0.0.2").start()
    args = ["join", "--control-plane", "--root", str(root), "--ignore-preflight-errors", "all"]
    return root, [*args, "--advertise-address", "127.0.0.2", "--timeout", "60"], kubelet


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


def test_killed_after_joining_etcd_then_run_again_adds_no_second_member(cluster: tuple[Cluster, Etcds]) -> None:
    """A power cut right after etcd added the learner: the re-run finds it (no second member) and finishes."""
    c, etcds = cluster
    root, args, kubelet = second_master(c, etcds)
    try:
        cmd = [sys.executable, str(KILLER), "etcd.Etcd.add_learner", "1", "after", "--", *args]
        killed = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
        assert killed.returncode == -9, killed.stdout + killed.stderr
        r = run(root / "opt/kubeseed/kubeseed-runtime.pyz", *args)
    finally:
        kubelet.stop()
    assert r.returncode == 0, r.stdout + r.stderr
    assert sorted(m["name"] for m in members(root)) == [MASTER, SECOND]


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
