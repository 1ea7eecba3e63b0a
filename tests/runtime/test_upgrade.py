"""The runtime's ``upgrade`` under --root, against the in-test API server (tests/support/apiserver) and a stand-in
kubelet (tests/support/standin_kubelet.py) that keeps the master's mirror pods as a kubelet would: no kube-apiserver
or kubelet can run here. A master and a node upgraded one minor; the manifests compared with init's at the new
version (init's are checked against kubeadm's in test_init_files.py); a component that never gets healthy rolled
back; a kill in every phase resumed; kubeadm's version rules; the published runtime installed, and refused when
tampered with."""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubeseed.generator.zipapp import build_zipapp
from kubeseed.runtime.cli import VERSION
from kubeseed.runtime.upgrade.publish import objects
from tests.support.helpers import ks
from tests.support.master import KILLER, MASTER, WORKER, Cluster, init_file_phases, make_master, run
from tests.support.standin_kubelet import StandinKubelet

NEW = "v1.36.1"  # the clusters here are made at kubeseed's default, v1.35.5
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")
APT_LIST = "etc/apt/sources.list.d/kubernetes.list"
REPO_LINE = (
    "deb [signed-by=/etc/apt/keyrings/kubernetes-apt-keyring.gpg] https://pkgs.k8s.io/core:/stable:/v1.{}/deb/ /\n"
)


class Master:
    """A kubeseed master that ran init against the in-test API server, its stand-in kubelet running."""

    def __init__(self, base: Path, *create_args: str) -> None:
        self.c = Cluster(base, None, *create_args)
        self.c.api.start()
        version = yaml.safe_load((self.c.dir / "cluster.yaml").read_text())["kubernetesVersion"]
        self.kubelet = StandinKubelet(self.c.api, self.c.root, MASTER, kubelet_version=version).start()
        r = self.c.init()
        assert r.returncode == 0, r.stdout + r.stderr
        apt_repo(self.c.root, version)
        self.root = self.c.root

    def close(self) -> None:
        self.kubelet.stop()
        self.c.api.stop()

    def publish(self, target: str = NEW) -> bytes:
        """What `kubeseed upgrade apply` puts in the cluster (the full runtime and the target); the runtime."""
        pyz = build_zipapp(None)
        for obj in objects(pyz, target, VERSION):
            self.c.api.put_object(obj)
        return pyz

    def upgrade(
        self, *args: str, pyz: Path | None = None, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """The master's `upgrade` under --root: its payload's runtime (or ``pyz``), or with ``pyz`` = Path("-m")
        the runtime's source (the full runtime, as the published one is)."""
        argv = ["upgrade", "--root", str(self.root), "--timeout", "60", *args]
        if pyz == Path("-m"):
            cmd = [sys.executable, "-m", "kubeseed.runtime", *argv]
            return subprocess.run(cmd, capture_output=True, text=True, timeout=180, env=env)
        return run(pyz or self.c.pyz, *argv, env=env)


def apt_repo(root: Path, version: str) -> None:
    """The pkgs.k8s.io source list a machine made from the golden image has (the kubelet package's minor)."""
    path = root / APT_LIST
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(REPO_LINE.format(version.split(".")[1]))


@pytest.fixture
def master(tmp_path: Path) -> Iterator[Master]:
    m = Master(tmp_path)
    try:
        yield m
    finally:
        m.close()


def manifests(root: Path) -> dict[str, str]:
    return {c: (root / f"etc/kubernetes/manifests/{c}.yaml").read_text() for c in COMPONENTS}


def tree(root: Path) -> dict[str, str]:
    """Every file under ``root`` with the SHA-256 of its content: what 'nothing changed' compares."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def init_manifests(base: Path, port: int, version: str) -> dict[str, str]:
    """The manifests init writes for the same master at ``version``: what the upgrade must have written."""
    base.mkdir()
    root = make_master(base, "--kubernetes-version", version, endpoint=f"127.0.0.1:{port}")
    init_file_phases(root, advertise="127.0.0.1")
    return manifests(root)


def configmap_doc(m: Master, name: str, key: str) -> dict[str, Any]:
    cm = m.c.api.get_object("v1", "ConfigMap", name, "kube-system")
    assert cm is not None
    doc: dict[str, Any] = yaml.safe_load(cm["data"][key])
    return doc


def image(m: Master, kind: str, name: str) -> str:
    obj = m.c.api.get_object("apps/v1", kind, name, "kube-system")
    assert obj is not None
    return str(obj["spec"]["template"]["spec"]["containers"][0]["image"])


def pod(name: str, node: str, owner: str = "ReplicaSet", labels: dict[str, str] | None = None) -> dict[str, Any]:
    ref = {"apiVersion": "apps/v1", "kind": owner, "name": f"{name}-owner", "uid": f"uid-{name}", "controller": True}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": labels or {"app": name}, "ownerReferences": [ref]},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10.1"}]},
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]},
    }


def test_master_then_node_one_minor_up(master: Master, tmp_path: Path) -> None:
    m, api = master, master.c.api
    old = manifests(m.root)
    keys = {p: (m.root / "etc/kubernetes/pki" / p).read_bytes() for p in ("apiserver.key", "sa.key", "etcd/peer.key")}
    hashes = {c: m.kubelet.mirror_pod(c)["metadata"]["annotations"]["kubernetes.io/config.hash"] for c in COMPONENTS}
    (m.root / "var/lib/etcd/member").mkdir(parents=True, exist_ok=True)
    (m.root / "var/lib/etcd/member/snap.db").write_bytes(b"etcd data")
    api.put_object(pod("web", MASTER))
    api.put_object(pod("ds", MASTER, owner="DaemonSet"))
    applied = ks("upgrade", "apply", "demo", "--to", NEW, cwd=m.c.base)  # on the workstation, as a user would
    assert applied.returncode == 0, applied.stderr
    assert f"on {MASTER} (master): sudo python3 /opt/kubeseed/kubeseed-runtime.pyz upgrade {NEW}" in applied.stdout
    cm = api.get_object("v1", "ConfigMap", "kubeseed-runtime", "kube-system")
    assert cm is not None and cm["data"]["kubernetesVersion"] == NEW
    published = base64.b64decode(cm["binaryData"]["kubeseed-runtime.pyz"])
    assert published == build_zipapp(None)

    r = m.upgrade()  # no version: the cluster's published target
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"installed the cluster's runtime {VERSION}" in r.stdout and f"v1.35.5 -> {NEW}" in r.stdout
    assert (m.root / "opt/kubeseed/kubeseed-runtime.pyz").read_bytes() == published
    assert f"SUCCESS! {MASTER} runs Kubernetes {NEW}" in r.stdout

    # the static pods are init's at the new version, each rolled out (its mirror pod's hash changed)
    assert manifests(m.root) == init_manifests(tmp_path / "expected", m.c.port, NEW)
    for c in COMPONENTS:
        now = m.kubelet.mirror_pod(c)["metadata"]["annotations"]["kubernetes.io/config.hash"]
        assert (now != hashes[c]) == (old[c] != manifests(m.root)[c]), c
    backups = m.root / f"etc/kubernetes/tmp/kubeseed-backup-manifests-{NEW}"
    changed = [c for c in COMPONENTS if old[c] != manifests(m.root)[c]]
    assert changed and sorted(p.stem for p in backups.iterdir()) == sorted(changed)
    assert all((backups / f"{c}.yaml").read_text() == old[c] for c in changed)
    # certificates renewed with the same keys
    assert "[renew] apiserver renewed" in r.stdout
    assert keys == {p: (m.root / "etc/kubernetes/pki" / p).read_bytes() for p in keys}

    # the cluster's configuration and add-ons at the new version, under kubeadm's names
    assert configmap_doc(m, "kubeadm-config", "ClusterConfiguration")["kubernetesVersion"] == NEW
    assert configmap_doc(m, "kubelet-config", "kubelet")["kind"] == "KubeletConfiguration"
    assert image(m, "Deployment", "coredns") == "registry.k8s.io/coredns/coredns:v1.12.1"
    assert image(m, "DaemonSet", "kube-proxy") == f"registry.k8s.io/kube-proxy:{NEW}"

    # drained around the kubelet: the ReplicaSet's pod evicted, the DaemonSet's kept, uncordoned at the end
    assert api.get_object("v1", "Pod", "web", "default") is None
    assert api.get_object("v1", "Pod", "ds", "default") is not None
    assert not (api.get_object("v1", "Node", MASTER) or {})["spec"].get("unschedulable")
    assert "node/cp-1 cordoned" in r.stdout and "node/cp-1 uncordoned" in r.stdout
    assert f"v1.{NEW.split('.')[1]}/deb/" in (m.root / APT_LIST).read_text()
    assert f"kubernetesVersion: {NEW}" in (m.root / "etc/kubeseed/config.yaml").read_text()
    assert (m.root / "etc/kubeseed/config.yaml").stat().st_mode & 0o777 == 0o600

    again = m.upgrade()
    assert again.returncode == 0 and "already done, skipping" in again.stdout
    assert "installed the cluster's runtime" not in again.stdout  # the runtime there is the published one

    # a node joined now gets the published runtime with join, and upgrades itself: drained with its own credentials
    node = tmp_path / "node"
    j = m.c.join_node(node)
    assert j.returncode == 0, j.stdout + j.stderr
    assert "[runtime] Installing the cluster's runtime... [done]" in j.stdout
    pyz = node / "opt/kubeseed/kubeseed-runtime.pyz"
    assert pyz.read_bytes() == published
    apt_repo(node, "v1.35.5")
    api.put_object({"apiVersion": "v1", "kind": "Node", "metadata": {"name": WORKER}, "spec": {}})
    api.put_object(pod("batch", WORKER))
    node_args = ["upgrade", "--root", str(node), "--timeout", "30", "--ignore-preflight-errors", "all"]
    done = run(pyz, *node_args)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"node/{WORKER} cordoned" in done.stdout and f"node/{WORKER} uncordoned" in done.stdout
    assert api.get_object("v1", "Pod", "batch", "default") is None
    assert f"SUCCESS! {WORKER} runs Kubernetes {NEW}" in done.stdout
    assert f"kubernetesVersion: {NEW}" in (node / "etc/kubeseed/config.yaml").read_text()
    assert yaml.safe_load((node / "var/lib/kubelet/config.yaml").read_text())["clusterDNS"] == ["10.96.0.10"]
    assert f"v1.{NEW.split('.')[1]}/deb/" in (node / APT_LIST).read_text()


def test_a_master_drains_a_node_and_uncordons_it_once_its_kubelet_runs_the_target(master: Master) -> None:
    m, api = master, master.c.api
    m.publish()
    assert m.upgrade().returncode == 0
    api.put_object({"apiVersion": "v1", "kind": "Node", "metadata": {"name": WORKER}, "spec": {}, "status": {}})
    api.put_object(pod("app", WORKER, labels={"app": "guarded"}))
    api.put_object(pod("agent", WORKER, owner="DaemonSet"))
    pdb = {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": "guard", "namespace": "default"},
        "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "guarded"}}},
        "status": {"disruptionsAllowed": 0, "currentHealthy": 1, "desiredHealthy": 1, "expectedPods": 1},
    }
    api.put_object(pdb)

    def the_node_upgrades() -> None:  # what the node's `upgrade --no-drain` and its new kubelet do meanwhile
        time.sleep(3)
        api.put_object(dict(pdb, status=dict(pdb["status"], disruptionsAllowed=1)))  # a replica came up elsewhere
        time.sleep(1)
        node = api.get_object("v1", "Node", WORKER)
        assert node is not None and node["spec"].get("unschedulable") is True  # cordoned meanwhile
        ready = [{"type": "Ready", "status": "True"}]
        api.put_object(dict(node, status={"nodeInfo": {"kubeletVersion": NEW}, "conditions": ready}))

    t = threading.Thread(target=the_node_upgrades)
    t.start()
    r = m.upgrade("--drain", WORKER)
    t.join()
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Cannot evict pod as it would violate the pod's disruption budget." in r.stdout
    assert api.get_object("v1", "Pod", "app", "default") is None
    assert api.get_object("v1", "Pod", "agent", "default") is not None
    assert not (api.get_object("v1", "Node", WORKER) or {})["spec"].get("unschedulable")
    assert f"node/{WORKER} runs kubelet {NEW}" in r.stdout and f"node/{WORKER} uncordoned" in r.stdout
    assert "SUCCESS" not in r.stdout  # this run upgraded nothing here


def test_a_component_that_never_gets_healthy_is_rolled_back(master: Master) -> None:
    m = master
    old = manifests(m.root)
    m.kubelet.never_ready("kube-apiserver", f"*:{NEW}")
    r = m.upgrade(NEW, "--component-timeout", "3", pyz=Path("-m"))
    assert r.returncode == 1
    assert "[control-plane]" in r.stderr and "kube-apiserver was not healthy within 3s" in r.stderr
    assert "rolled it back to the old one" in r.stderr
    assert manifests(m.root)["kube-apiserver"] == old["kube-apiserver"]
    assert "kubernetesVersion: v1.35.5" in (m.root / "etc/kubeseed/config.yaml").read_text()
    m.kubelet.heal("kube-apiserver")
    m.c.api.put_object(pod("web", MASTER))
    r = m.upgrade(NEW, "--no-drain", pyz=Path("-m"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "[preflight] already done" in r.stdout
    assert f"--no-drain: {MASTER} stays schedulable" in r.stdout and "cordoned" not in r.stdout
    assert m.c.api.get_object("v1", "Pod", "web", "default") is not None
    assert f"kubernetesVersion: {NEW}" in (m.root / "etc/kubeseed/config.yaml").read_text()


# (function the killer wraps, its call to die after): points in every phase of a master's upgrade
KILLS = [
    ("workflow.write_atomic", 2),  # control-plane: renewing certificates
    ("workflow.write_atomic", 14),  # control-plane: between manifests
    ("workflow.write_atomic", 16),
    ("api.call", 12),  # upload-config, bootstrap-token
    ("api.call", 30),  # addon
    ("workflow.write_atomic", 24),  # kubelet-config
    ("workflow.write_atomic", 30),  # drain, kubelet-package, post-upgrade
]


@pytest.mark.parametrize("function,nth", KILLS, ids=[f"{f}-{n}" for f, n in KILLS])
def test_killed_anywhere_then_run_again_finishes_the_same(
    master: Master, tmp_path: Path, function: str, nth: int
) -> None:
    m = master
    keys = {p.name: p.read_bytes() for p in (m.root / "etc/kubernetes/pki").rglob("*.key")}
    cmd = [sys.executable, str(KILLER), function, str(nth), "after", "--", "upgrade", NEW, "--root", str(m.root)]
    killed = subprocess.run([*cmd, "--timeout", "60"], capture_output=True, text=True, timeout=180)
    assert killed.returncode == -9, killed.stdout + killed.stderr
    r = m.upgrade(NEW, pyz=Path("-m"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert manifests(m.root) == init_manifests(tmp_path / "expected", m.c.port, NEW)
    assert keys == {p.name: p.read_bytes() for p in (m.root / "etc/kubernetes/pki").rglob("*.key")}
    assert f"kubernetesVersion: {NEW}" in (m.root / "etc/kubeseed/config.yaml").read_text()
    assert not (m.c.api.get_object("v1", "Node", MASTER) or {})["spec"].get("unschedulable")


@pytest.mark.parametrize(
    "version,rule",
    [
        ("v1.35.4", "is older than v1.35.5, which this machine runs: no downgrades"),
        ("v1.34.9", "no downgrades"),
        ("v1.37.0", "kubeseed supports v1.30 to v1.36"),
        ("1.36.1", "is not a version like"),
    ],
)
def test_downgrades_and_unsupported_versions_are_refused_and_change_nothing(
    master: Master, version: str, rule: str
) -> None:
    before = tree(master.root)
    r = master.upgrade(version, pyz=Path("-m"))
    assert r.returncode == 2 and rule in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert tree(master.root) == before


def test_skipping_a_minor_is_refused(tmp_path: Path) -> None:
    m = Master(tmp_path, "--kubernetes-version", "v1.34.2")
    try:
        before = tree(m.root)
        r = m.upgrade(NEW, pyz=Path("-m"))
        assert r.returncode == 2
        assert "skips a minor: upgrade one minor at a time (kubeadm's rule), to v1.35.x first" in r.stderr
        assert tree(m.root) == before
    finally:
        m.close()


def test_an_etcd_upgrade_backs_its_data_up_first(tmp_path: Path) -> None:
    """v1.33 -> v1.34 moves etcd from 3.5 to 3.6: its data is copied under /etc/kubernetes/tmp before."""
    m = Master(tmp_path, "--kubernetes-version", "v1.33.5")
    try:
        (m.root / "var/lib/etcd/member").mkdir(parents=True, exist_ok=True)
        (m.root / "var/lib/etcd/member/snap.db").write_bytes(b"etcd data")
        r = m.upgrade("v1.34.2", pyz=Path("-m"))
        assert r.returncode == 0, r.stdout + r.stderr
        backup = m.root / "etc/kubernetes/tmp/kubeseed-backup-etcd-v1.34.2/etcd/member/snap.db"
        assert backup.read_bytes() == b"etcd data"
        etcd = yaml.safe_load(manifests(m.root)["etcd"])
        assert etcd["spec"]["containers"][0]["image"] == "registry.k8s.io/etcd:3.6.5-0"
        assert manifests(m.root) == init_manifests(tmp_path / "expected", m.c.port, "v1.34.2")
    finally:
        m.close()


def test_a_tampered_runtime_is_refused_and_the_old_one_kept(master: Master, tmp_path: Path) -> None:
    m = master
    m.publish()
    cm = m.c.api.get_object("v1", "ConfigMap", "kubeseed-runtime", "kube-system")
    assert cm is not None
    pyz = base64.b64decode(cm["binaryData"]["kubeseed-runtime.pyz"])
    evil = pyz[:1000] + bytes([pyz[1000] ^ 1]) + pyz[1001:]  # one bit changed in transit or by someone
    cm["binaryData"]["kubeseed-runtime.pyz"] = base64.b64encode(evil).decode()
    m.c.api.put_object(cm)
    before = tree(m.root)
    r = m.upgrade()
    assert r.returncode == 1 and "kube-system/kubeseed-runtime does not match its sha256" in r.stderr
    assert tree(m.root) == before
    node = tmp_path / "node"
    j = m.c.join_node(node)
    assert j.returncode == 1 and "[runtime]" in j.stderr and "does not match its sha256" in j.stderr
    shipped = node / "opt/kubeseed/kubeseed-runtime.pyz"
    assert shipped.read_bytes() == build_zipapp("node")  # the node payload's own runtime is still there
    assert os.access(shipped, os.X_OK)
