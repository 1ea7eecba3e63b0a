"""init's API phases against the in-test API server with RBAC on, then the proposal's whole flow: a master
payload's init, a node payload's join against the API that init configured, kubectl as the admin."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubeseed.generator.tokens import load_tokens
from kubeseed.runtime import pki
from kubeseed.runtime.tokens import ca_pin, detached_jws
from tests.support.clientcert_server import kubectl
from tests.support.helpers import cloud_init_files, kubeseed, lay_out, need_tool, venv_tool
from tests.support.master import API_PHASES, MASTER, WORKER, Cluster, run

FILE_PHASES = "certs,kubeconfig,etcd,control-plane,kubelet-start"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    c.api.start()
    try:
        yield c
    finally:
        c.api.stop()


def obj(c: Cluster, version: str, kind: str, name: str, ns: str | None = None) -> dict[str, Any]:
    found = c.api.get_object(version, kind, name, ns)
    assert found is not None, f"{kind} {ns}/{name} was not created"
    return found


def subjects(binding: dict[str, Any]) -> list[tuple[str, str]]:
    return [(s["kind"], s["name"]) for s in binding["subjects"]]


def test_init_configures_a_kubeadm_compatible_control_plane(cluster: Cluster) -> None:
    cluster.register_node()
    r = cluster.init()
    assert r.returncode == 0, r.stdout + r.stderr
    for phase in API_PHASES.split(","):
        assert f"[{phase}]" in r.stdout and "[failed]" not in r.stdout
    c, rbac = cluster, "rbac.authorization.k8s.io/v1"

    tok = load_tokens(c.dir)[0]
    secret = obj(c, "v1", "Secret", f"bootstrap-token-{tok.id}", "kube-system")
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert secret["type"] == "bootstrap.kubernetes.io/token"
    assert data["token-id"] == tok.id and data["token-secret"] == tok.token.split(".")[1]
    assert data["usage-bootstrap-authentication"] == data["usage-bootstrap-signing"] == "true"
    assert data["auth-extra-groups"] == "system:bootstrappers:kubeadm:default-node-token"
    assert data["expiration"].endswith("Z")

    info = obj(c, "v1", "ConfigMap", "cluster-info", "kube-public")["data"]
    ca = (c.root / "etc/kubernetes/pki/ca.crt").read_bytes()
    assert info["kubeconfig"] == (
        "apiVersion: v1\nclusters:\n- cluster:\n"
        f"    certificate-authority-data: {base64.b64encode(ca).decode()}\n"
        f"    server: https://127.0.0.1:{c.port}\n"
        '  name: ""\ncontexts: null\ncurrent-context: ""\nkind: Config\nusers: null\n'  # 1.35: no preferences line
    )
    assert info[f"jws-kubeconfig-{tok.id}"] == detached_jws(tok.id, tok.token.split(".")[1], info["kubeconfig"])
    role = obj(c, rbac, "Role", "kubeadm:bootstrap-signer-clusterinfo", "kube-public")
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"], "resourceNames": ["cluster-info"]}
    ]
    rb = obj(c, rbac, "RoleBinding", "kubeadm:bootstrap-signer-clusterinfo", "kube-public")
    assert subjects(rb) == [("User", "system:anonymous")]

    node_group = [("Group", "system:bootstrappers:kubeadm:default-node-token")]
    expect = {
        "kubeadm:kubelet-bootstrap": ("system:node-bootstrapper", node_group),
        "kubeadm:node-autoapprove-bootstrap": (
            "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
            node_group,
        ),
        "kubeadm:node-autoapprove-certificate-rotation": (
            "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
            [("Group", "system:nodes")],
        ),
        "kubeadm:get-nodes": ("kubeadm:get-nodes", node_group),
        "kubeadm:cluster-admins": ("cluster-admin", [("Group", "kubeadm:cluster-admins")]),
        "kubeadm:apiserver-kubelet-client": ("system:kubelet-api-admin", [("User", "kube-apiserver-kubelet-client")]),
        "kubeadm:node-proxier": ("system:node-proxier", [("ServiceAccount", "kube-proxy")]),
        "system:coredns": ("system:coredns", [("ServiceAccount", "coredns")]),
    }
    for name, (role_name, subs) in expect.items():
        crb = obj(c, rbac, "ClusterRoleBinding", name)
        assert (crb["roleRef"]["kind"], crb["roleRef"]["name"], subjects(crb)) == ("ClusterRole", role_name, subs), name

    kubeadm_config = yaml.safe_load(
        obj(c, "v1", "ConfigMap", "kubeadm-config", "kube-system")["data"]["ClusterConfiguration"]
    )
    assert kubeadm_config["apiVersion"] == "kubeadm.k8s.io/v1beta4" and kubeadm_config["kind"] == "ClusterConfiguration"
    assert kubeadm_config["kubernetesVersion"] == "v1.35.5"
    assert kubeadm_config["controlPlaneEndpoint"] == f"127.0.0.1:{c.port}"
    assert kubeadm_config["networking"] == {
        "dnsDomain": "cluster.local",
        "podSubnet": "10.244.0.0/16",
        "serviceSubnet": "10.96.0.0/12",
    }
    kubelet_config = yaml.safe_load(obj(c, "v1", "ConfigMap", "kubelet-config", "kube-system")["data"]["kubelet"])
    assert kubelet_config == yaml.safe_load((c.root / "var/lib/kubelet/config.yaml").read_text())
    for name in ("kubeadm:nodes-kubeadm-config", "kubeadm:kubelet-config"):
        assert subjects(obj(c, rbac, "RoleBinding", name, "kube-system")) == [
            ("Group", "system:bootstrappers:kubeadm:default-node-token"),
            ("Group", "system:nodes"),
        ]

    node = obj(c, "v1", "Node", MASTER)
    assert node["metadata"]["labels"]["node-role.kubernetes.io/control-plane"] == ""
    assert "node.kubernetes.io/exclude-from-external-load-balancers" in node["metadata"]["labels"]
    assert node["spec"]["taints"] == [{"effect": "NoSchedule", "key": "node-role.kubernetes.io/control-plane"}]

    dns = obj(c, "v1", "Service", "kube-dns", "kube-system")
    assert dns["spec"]["clusterIP"] == "10.96.0.10"
    coredns = obj(c, "apps/v1", "Deployment", "coredns", "kube-system")
    assert coredns["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.k8s.io/coredns/coredns:v1.12.1"
    assert (
        "kubernetes cluster.local in-addr.arpa ip6.arpa"
        in obj(c, "v1", "ConfigMap", "coredns", "kube-system")["data"]["Corefile"]
    )
    proxy = obj(c, "apps/v1", "DaemonSet", "kube-proxy", "kube-system")
    assert proxy["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.k8s.io/kube-proxy:v1.35.5"
    proxy_config = yaml.safe_load(obj(c, "v1", "ConfigMap", "kube-proxy", "kube-system")["data"]["config.conf"])
    assert proxy_config["clusterCIDR"] == "10.244.0.0/16"
    assert obj(c, "v1", "ConfigMap", "net-config", "demo-net")["data"] == {"backend": "vxlan"}  # the cluster's add-on

    assert "kubeadm join 127.0.0.1:" in r.stdout and f"--discovery-token-ca-cert-hash {ca_pin(ca)}" in r.stdout
    assert tok.token.split(".")[1] not in r.stdout  # not a terminal: the secret stays out of the first-boot log

    again = cluster.init()
    assert (
        again.returncode == 0 and again.stdout.count("already done, skipping") == 15
    )  # every phase, kubelet-finalize included


def test_addon_objects_validate_against_the_kubernetes_schema(cluster: Cluster, tmp_path: Path) -> None:
    validate = need_tool("kubernetes-validate", venv_tool("kubernetes-validate"), "pip install kubernetes-validate")
    cluster.register_node()
    assert cluster.init().returncode == 0
    docs = []
    for version, kind, name, ns in [
        ("apps/v1", "Deployment", "coredns", "kube-system"),
        ("apps/v1", "DaemonSet", "kube-proxy", "kube-system"),
        ("v1", "Service", "kube-dns", "kube-system"),
        ("v1", "ConfigMap", "kube-proxy", "kube-system"),
    ]:
        o = obj(cluster, version, kind, name, ns)
        o["metadata"] = {k: v for k, v in o["metadata"].items() if k in ("name", "namespace", "labels", "annotations")}
        o.pop("status", None)
        docs.append(o)
    path = tmp_path / "addons.yaml"
    path.write_text(yaml.safe_dump_all(docs))
    r = subprocess.run([validate, "--strict", "-k", "1.35.0", str(path)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


def test_wait_control_plane_says_what_to_look_at(tmp_path: Path) -> None:
    c = Cluster(tmp_path)  # its API server is never started
    r = c.init("--timeout", "3")
    assert r.returncode == 1
    assert "timed out after 3s waiting for the control plane" in r.stderr
    assert "systemctl status kubelet" in r.stderr and "crictl" in r.stderr and "logs CONTAINERID" in r.stderr


def test_the_whole_flow_init_then_join_then_kubectl(cluster: Cluster, tmp_path: Path) -> None:
    """The proposal end to end: the node joins the API that init configured, with nothing but its payload."""
    cluster.register_node()
    r = cluster.init()
    assert r.returncode == 0, r.stdout + r.stderr
    node_root = tmp_path / "node"
    r = cluster.join_node(node_root)
    assert r.returncode == 0, r.stdout + r.stderr
    pem = (node_root / "var/lib/kubelet/pki/kubelet-client-current.pem").read_bytes()
    cert = pki.load_cert(pem)
    master_ca = pki.load_cert((cluster.root / "etc/kubernetes/pki/ca.crt").read_bytes())
    from kubeseed.runtime.keys import signed_by

    assert signed_by(cert, master_ca)
    (csr,) = [o for o in cluster.api.csrs.values()]
    assert csr["spec"]["username"].startswith("system:bootstrap:")

    admin = cluster.root / "etc/kubernetes/admin.conf"
    out = kubectl("--kubeconfig", str(admin), "get", "configmap", "cluster-info", "-n", "kube-public", "-o", "json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["data"]["kubeconfig"].startswith("apiVersion: v1\n")
    out = kubectl("--kubeconfig", str(admin), "get", "nodes", "-o", "name")
    assert out.returncode == 0 and f"node/{MASTER}" in out.stdout, out.stderr


def test_join_before_init_finished_is_refused_then_works(cluster: Cluster, tmp_path: Path) -> None:
    """RBAC is real here: before init's bootstrap-token phase, anonymous users cannot read cluster-info and a
    node's join waits (it cannot be tricked into anything); once init is done, the same join succeeds."""
    r = kubeseed("render", "node", "demo", "--hostname", WORKER, "-o", "node.yaml", cwd=cluster.base)
    assert r.returncode == 0, r.stderr
    node_root = tmp_path / "node"
    pyz = lay_out(cloud_init_files((cluster.base / "node.yaml").read_bytes()), node_root)
    early = run(pyz, "join", "--root", str(node_root), "--ignore-preflight-errors", "all", "--timeout", "3")
    assert early.returncode == 1 and "HTTP 40" in early.stderr  # 403/404: no cluster-info for anonymous yet
    assert not (node_root / "etc/kubernetes/kubelet.conf").exists()
    cluster.register_node()
    assert cluster.init().returncode == 0
    shutil.rmtree(node_root / "var/lib/kubeseed")  # a fresh first boot of the same machine
    late = run(pyz, "join", "--root", str(node_root), "--ignore-preflight-errors", "all", "--timeout", "30")
    assert late.returncode == 0, late.stdout + late.stderr


@pytest.mark.parametrize("nth", [3, 12, 30])
def test_killed_during_the_api_phases_then_rerun(cluster: Cluster, nth: int) -> None:
    """A power cut after the nth API request of init: the re-run finishes with the same objects (every write
    is a server-side apply) and the same keys."""
    cluster.register_node()
    keys = {p: p.read_bytes() for p in (cluster.root / "etc/kubernetes/pki").rglob("*.key")}
    killer = Path(__file__).with_name("killer.py")
    cmd = [sys.executable, str(killer), "api.call", str(nth), "after", "--", *cluster.init_args()]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == -9, r.stdout + r.stderr
    r = cluster.init()
    assert r.returncode == 0, r.stdout + r.stderr
    assert {p: p.read_bytes() for p in keys} == keys
    assert cluster.api.get_object("apps/v1", "DaemonSet", "kube-proxy", "kube-system") is not None
    tok = load_tokens(cluster.dir)[0]
    assert cluster.api.get_object("v1", "Secret", f"bootstrap-token-{tok.id}", "kube-system") is not None
