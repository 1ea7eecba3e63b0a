"""join's kubelet phases as kubeadm's join (issue 12, items 1, 5 and 6): the node takes the cluster's kubelet
configuration and version from kube-system/kubelet-config and kubeadm-config (read with its own credentials, by
kubeadm's RBAC), keeps its own CRI socket (instance-config.yaml from v1.34, the Node annotation before), and points
the kubelet at systemd-resolved's resolv.conf when that runs. Against the in-test API server (real TLS); the master
side against a kubeseed master that ran init."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.apiserver import FakeAPIServer
from tests.support.join import NODE, check_joined, flags, join
from tests.support.master import MASTER, Cluster

CRI = "unix:///run/containerd/containerd.sock"
ANNOTATION = "kubeadm.alpha.kubernetes.io/cri-socket"
RESOLVED = "run/systemd/resolve/resolv.conf"


def configmap(name: str, key: str, doc: dict[str, Any]) -> dict[str, Any]:
    meta = {"name": name, "namespace": "kube-system"}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {key: yaml.safe_dump(doc)}}


def cluster_config(api: FakeAPIServer, version: str, **kubelet: Any) -> None:
    """What kubeadm (or a kubeseed master) uploads: kubeadm-config and kubelet-config."""
    api.put_object(configmap("kubeadm-config", "ClusterConfiguration", {"kubernetesVersion": version}))
    kc = {"apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration", **kubelet}
    api.put_object(configmap("kubelet-config", "kubelet", kc))


def node_state(root: Path) -> tuple[dict[str, Any], str]:
    return yaml.safe_load((root / "var/lib/kubelet/config.yaml").read_text()), (
        root / "var/lib/kubelet/kubeadm-flags.env"
    ).read_text()


def test_node_takes_the_clusters_kubelet_configuration(root: Path, cluster: Path, api: FakeAPIServer) -> None:
    """Joined by flags alone, the node writes the cluster's settings (kubeadm's join does), not its defaults;
    its CRI socket stays its own and, at v1.34 and later, is in instance-config.yaml as kubeadm writes it."""
    cluster_config(
        api,
        "v1.35.2",
        clusterDNS=["10.100.0.10"],
        clusterDomain="corp.example",
        cgroupDriver="cgroupfs",
        maxPods=150,
        containerRuntimeEndpoint="unix:///run/other.sock",
    )
    r = join(root, *flags(cluster, api))
    assert r.returncode == 0, r.stdout + r.stderr
    cfg, env = node_state(root)
    assert cfg["clusterDNS"] == ["10.100.0.10"] and cfg["clusterDomain"] == "corp.example"
    assert cfg["cgroupDriver"] == "cgroupfs" and cfg["maxPods"] == 150
    assert cfg["containerRuntimeEndpoint"] == CRI and "resolvConf" not in cfg
    assert (root / "var/lib/kubelet/instance-config.yaml").read_text() == f'containerRuntimeEndpoint: "{CRI}"\n'
    assert "--hostname-override=worker-1" in env
    assert "cannot read" not in r.stdout
    reads = [q["path"] for q in api.requests if "/configmaps/" in q["path"] and "kube-system" in q["path"]]
    assert reads == [
        "/api/v1/namespaces/kube-system/configmaps/kubeadm-config",
        "/api/v1/namespaces/kube-system/configmaps/kubelet-config",
        "/api/v1/namespaces/kube-system/configmaps/kubeseed-runtime",  # the runtime phase: none published here
    ]
    assert api.get_object("v1", "Node", NODE) is None  # from v1.34 kubelet-start waits for no Node


def test_before_v1_34_the_node_is_annotated_with_its_cri_socket(root: Path, cluster: Path, api: FakeAPIServer) -> None:
    """A v1.33 cluster (the node config says v1.35: joined by flags, it assumes the default): no instance config,
    and once the kubelet registers the Node, the annotation `kubeadm upgrade node` reads."""
    cluster_config(api, "v1.33.4", clusterDNS=["10.96.0.10"], clusterDomain="cluster.local")

    def kubelet_registers() -> None:  # what the kubelet does a little after it starts
        time.sleep(1.5)
        api.put_object({"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE}, "spec": {}})

    registrar = threading.Thread(target=kubelet_registers)
    registrar.start()
    r = join(root, *flags(cluster, api))
    registrar.join()
    assert r.returncode == 0, r.stdout + r.stderr
    assert not (root / "var/lib/kubelet/instance-config.yaml").exists()
    node = api.get_object("v1", "Node", NODE)
    assert node and node["metadata"]["annotations"] == {ANNOTATION: CRI}
    assert f"waiting for node {NODE} to register" in r.stdout
    # the kubelet is checked against the cluster's version (kubeadm-config), not the node config's v1.35
    assert "[WARNING FileExisting-kubelet]: kubelet not found in system path. Install kubelet v1.33" in r.stdout
    _, env = node_state(root)
    assert f"--container-runtime-endpoint={CRI}" in env


def test_a_node_that_never_registers_times_out_naming_it(root: Path, cluster: Path, api: FakeAPIServer) -> None:
    cluster_config(api, "v1.32.0")
    r = join(root, *flags(cluster, api), timeout=4)
    assert r.returncode == 1
    assert f"[kubelet-start] timed out after 4s waiting for node {NODE} to register (last attempt: HTTP 404" in (
        r.stderr
    )
    state = json.loads((root / "var/lib/kubeseed/state.json").read_text())
    assert state["phases"]["kubelet-config"]["result"] == "done"


def test_a_cluster_version_this_runtime_does_not_know_is_refused(root: Path, cluster: Path, api: FakeAPIServer) -> None:
    cluster_config(api, "v1.29.9")
    r = join(root, *flags(cluster, api))
    assert r.returncode == 1
    assert '[kubelet-config] ValueError: "v1.29.9" is not supported: kubeseed supports v1.30 to v1.36' in r.stderr
    assert not (root / "var/lib/kubelet/config.yaml").exists()


def test_without_the_configmaps_the_node_config_decides_with_a_warning(
    root: Path, cluster: Path, api: FakeAPIServer
) -> None:
    """A server without kubeadm's ConfigMaps (not kubeadm's, not kubeseed's): the node config's own settings."""
    r = join(root, *flags(cluster, api))
    assert r.returncode == 0, r.stdout + r.stderr
    for name in ("kubeadm-config", "kubelet-config"):
        assert f"[WARNING] cannot read kube-system/{name} (HTTP 404): taking the node config's" in r.stdout
    check_joined(root, cluster, api)  # the defaults: clusterDNS 10.96.0.10, cluster.local, systemd
    assert (root / "var/lib/kubelet/instance-config.yaml").exists()  # the node config's v1.35


def test_systemd_resolved_on_the_node(root: Path, cluster: Path, api: FakeAPIServer) -> None:
    """Where systemd-resolved runs (its resolv.conf exists), the kubelet reads that, not 127.0.0.53's stub."""
    (root / RESOLVED).parent.mkdir(parents=True)
    (root / RESOLVED).write_text("nameserver 192.0.2.53\n")
    cluster_config(api, "v1.35.0", clusterDNS=["10.96.0.10"])
    r = join(root, *flags(cluster, api))
    assert r.returncode == 0, r.stdout + r.stderr
    cfg, _ = node_state(root)
    assert cfg["resolvConf"] == "/run/systemd/resolve/resolv.conf"


def test_kubeseed_master_and_node_by_kubeadms_rbac(tmp_path: Path) -> None:
    """A kubeseed master (v1.35, systemd-resolved running on it) and a node joined by its payload: the master's
    own kubelet config reads resolved's file, the uploaded cluster-wide one does not (nodes differ), the node
    reads both ConfigMaps with its own credential under RBAC, and both keep their CRI socket in
    instance-config.yaml; no Node is annotated."""
    c = Cluster(tmp_path)
    (c.root / RESOLVED).parent.mkdir(parents=True)
    (c.root / RESOLVED).write_text("nameserver 192.0.2.53\n")
    with c.api:
        c.register_node()
        r = c.init("--phase", "kubelet-start")
        assert r.returncode == 0, r.stdout + r.stderr
        r = c.init()
        assert r.returncode == 0, r.stdout + r.stderr
        master_cfg = yaml.safe_load((c.root / "var/lib/kubelet/config.yaml").read_text())
        assert master_cfg["resolvConf"] == "/run/systemd/resolve/resolv.conf"
        cm = c.api.get_object("v1", "ConfigMap", "kubelet-config", "kube-system")
        assert cm
        uploaded = cm["data"]["kubelet"]
        assert "resolvConf" not in yaml.safe_load(uploaded)
        assert (c.root / "var/lib/kubelet/instance-config.yaml").read_text() == f'containerRuntimeEndpoint: "{CRI}"\n'
        master = c.api.get_object("v1", "Node", MASTER)
        assert master and ANNOTATION not in (master["metadata"].get("annotations") or {})

        node_root = tmp_path / "node"
        r = c.join_node(node_root)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "[WARNING] cannot read" not in r.stdout  # kubeadm's Roles let system:nodes read both
        node_cfg = yaml.safe_load((node_root / "var/lib/kubelet/config.yaml").read_text())
        assert node_cfg == {**yaml.safe_load(uploaded), "containerRuntimeEndpoint": CRI}
        assert (node_root / "var/lib/kubelet/instance-config.yaml").exists()


@pytest.mark.parametrize("version", ["v1.33.4"])
def test_a_master_before_v1_34_annotates_its_node(tmp_path: Path, version: str) -> None:
    """kubeadm's upload-config annotates the control-plane Node with its CRI socket before NodeLocalCRISocket."""
    c = Cluster(tmp_path, None, "--kubernetes-version", version)
    with c.api:
        c.register_node()
        r = c.init()
        assert r.returncode == 0, r.stdout + r.stderr
    master = c.api.get_object("v1", "Node", MASTER)
    assert master and master["metadata"]["annotations"] == {ANNOTATION: CRI}
    assert not (c.root / "var/lib/kubelet/instance-config.yaml").exists()
