"""Issue 13, the workstation's half: `kubeseed upgrade plan|apply CLUSTER`.

The cluster is a master that ran its whole init under --root against the in-test API server (tests/support/master.py:
RBAC on); no kube-apiserver binary is available here, so the API side is that in-test server throughout. `apply`
publishes the full runtime to kube-system/kubeseed-runtime, and a node's own credential (a client certificate of the
cluster CA in group system:nodes) reads it over TLS as a machine's runtime will."""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubeseed.generator.upgradecli import NEWEST_PATCH, machine_commands, rule_broken, targets, with_version
from kubeseed.runtime.init.versions import COREDNS, ETCD, PAUSE, images
from kubeseed.runtime.versions import DEFAULT, MAX_MINOR, MIN_MINOR
from tests.support.helpers import ks
from tests.support.master import MASTER, Cluster
from tests.support.startup import loaded

RUNTIME_CM = "/api/v1/namespaces/kube-system/configmaps/kubeseed-runtime"
RUN = "sudo python3 /opt/kubeseed/kubeseed-runtime.pyz"


def node(name: str, master: bool) -> dict[str, Any]:
    labels = {"kubernetes.io/hostname": name, **({"node-role.kubernetes.io/control-plane": ""} if master else {})}
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels}, "spec": {}}


def set_cluster_version(c: Cluster, version: str) -> None:
    """What kube-system/kubeadm-config says the cluster runs (as after an upgrade kubeseed did not make)."""
    cm = c.api.get_object("v1", "ConfigMap", "kubeadm-config", "kube-system")
    assert cm is not None
    doc = yaml.safe_load(cm["data"]["ClusterConfiguration"])
    doc["kubernetesVersion"] = version
    cm["data"]["ClusterConfiguration"] = yaml.safe_dump(doc)
    c.api.put_object(cm)


def published(c: Cluster) -> list[Any]:
    """What `upgrade apply` puts on the cluster: the ConfigMap and its readers (None where missing)."""
    rbac = "rbac.authorization.k8s.io/v1"
    return [
        c.api.get_object("v1", "ConfigMap", "kubeseed-runtime", "kube-system"),
        c.api.get_object(rbac, "Role", "kubeseed:runtime-reader", "kube-system"),
        c.api.get_object(rbac, "RoleBinding", "kubeseed:runtime-reader", "kube-system"),
    ]


def as_node(c: Cluster, name: str) -> Any:
    """The cluster's API as node ``name``'s kubelet (system:node:NAME, group system:nodes), over TLS."""
    from kubeseed.generator.clusterapi import ClusterAPI
    from kubeseed.generator.secrets import load
    from kubeseed.runtime import pki

    _, secrets = load(c.dir)
    key = pki.new_key("ECDSA-P256")
    cert = pki.sign_leaf(
        secrets.ca_cert, pki.load_key(secrets.pki["ca.key"]), key.public_key(), f"system:node:{name}", ["system:nodes"]
    )
    return ClusterAPI(
        f"https://127.0.0.1:{c.port}", secrets.pki["ca.crt"], name, (pki.cert_pem(cert), pki.key_pem(key))
    )


# -- the rules -------------------------------------------------------------------------------------------------


def test_the_version_table_covers_every_supported_minor() -> None:
    assert sorted(NEWEST_PATCH) == list(range(MIN_MINOR, MAX_MINOR + 1))
    assert set(NEWEST_PATCH) <= set(ETCD) & set(COREDNS) & set(PAUSE)
    minor, patch = (int(x) for x in DEFAULT.split(".")[1:])
    assert NEWEST_PATCH[minor] >= patch
    for m, p in NEWEST_PATCH.items():
        assert len(images(f"v1.{m}.{p}")) == 7


def test_targets_follow_kubeadms_rules() -> None:
    assert targets("v1.35.5") == ["v1.36.1"]  # newest patch already: the next minor only
    assert targets("v1.35.2") == ["v1.35.5", "v1.36.1"]  # a newer patch, and the next minor
    assert targets("v1.36.0") == ["v1.36.1"]
    assert targets("v1.36.1") == []  # the newest this kubeseed knows
    assert targets("v1.29.9") == ["v1.30.14"]  # a kubeadm cluster one minor below the oldest supported
    assert targets("v1.37.0") == []
    assert rule_broken("v1.35.5", "v1.36.1") == rule_broken("v1.35.2", "v1.35.5") == ""
    assert rule_broken("v1.35.5", "v1.35.5") == ""  # the same version: the runtime is published again
    assert rule_broken("v1.35.5", "v1.36.9") == ""  # a patch this kubeseed does not know of
    assert "skips a minor" in rule_broken("v1.34.8", "v1.36.1")
    assert "never downgrades" in rule_broken("v1.35.5", "v1.35.4")
    assert "never downgrades" in rule_broken("v1.35.5", "v1.34.8")


def test_with_version_changes_only_that_value(cluster: Path) -> None:
    text = (cluster / "cluster.yaml").read_text()
    new = with_version(text, "v1.36.1")
    changed = [(a, b) for a, b in zip(text.splitlines(), new.splitlines()) if a != b]
    assert len(text.splitlines()) == len(new.splitlines())
    assert changed == [(f"kubernetesVersion: {DEFAULT}", "kubernetesVersion: v1.36.1")]
    quoted = 'apiVersion: kubeseed.io/v1alpha1\nkind: Cluster\nkubernetesVersion: "v1.35.5"   # pinned\n'
    assert with_version(quoted, "v1.36.1") == quoted.replace('"v1.35.5"', '"v1.36.1"')
    missing = "apiVersion: kubeseed.io/v1alpha1\nkind: Cluster\nname: demo\n"
    assert yaml.safe_load(with_version(missing, "v1.36.1")) == {
        **yaml.safe_load(missing),
        "kubernetesVersion": "v1.36.1",
    }
    nested = (
        "apiVersion: kubeseed.io/v1alpha1\nkind: Cluster\nkubelet: {kubernetesVersion: x}\nkubernetesVersion: {a: 1}\n"
    )
    with pytest.raises(ValueError):
        with_version(nested, "v1.36.1")


def test_commands_without_the_nodes_name_each_master_and_node() -> None:
    lines = machine_commands(None, "v1.36.1")
    assert lines == [
        f"  on each master, one at a time: {RUN} upgrade v1.36.1",
        f"  on each node, one at a time: {RUN} upgrade v1.36.1",
    ]


def test_help_loads_nothing_heavy(tmp_path: Path) -> None:
    for action in ("plan", "apply"):
        assert loaded(tmp_path, tmp_path, "upgrade", action, "--help") == set()


# -- plan ------------------------------------------------------------------------------------------------------


def test_plan_reads_the_version_from_the_cluster(live: Cluster) -> None:  # noqa: F811
    set_cluster_version(live, "v1.35.2")
    live.api.put_object(node("worker-1", False))
    before = {p: p.read_bytes() for p in live.dir.rglob("*") if p.is_file()}
    r = ks("upgrade", "plan", "demo", cwd=live.base)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    out = r.stdout
    assert "runs Kubernetes v1.35.2, as kube-system/kubeadm-config says" in out
    assert f"demo/cluster.yaml says {DEFAULT}" in r.stderr  # the two differ: said
    assert "Upgrade to v1.35.5 (a newer patch of v1.35)" in out and "Upgrade to v1.36.1 (the next minor)" in out
    assert out.index("Upgrade to v1.35.5") < out.index("Upgrade to v1.36.1")
    table = out[out.index("Upgrade to v1.36.1") :]
    assert re.search(r"^COMPONENT +WHERE +CURRENT +TARGET$", table, re.M)
    assert re.search(rf"^kube-apiserver +{MASTER} +v1\.35\.2 +v1\.36\.1$", table, re.M)  # the masters by name
    assert re.search(r"^kubelet +worker-1 +unknown +v1\.36\.1$", table, re.M)  # one row per Node
    assert re.search(r"^pause +every machine +3\.10\.1 +3\.10\.2$", table, re.M)
    for ref in images("v1.36.1"):
        assert f"  {ref}\n" in table
    assert "kubeseed upgrade apply demo --to v1.36.1" in out
    assert {p: p.read_bytes() for p in live.dir.rglob("*") if p.is_file()} == before  # plan changes nothing
    assert published(live) == [None, None, None]


def test_plan_without_the_api_says_the_version_is_cluster_yamls(dead: Path) -> None:  # noqa: F811
    r = ks("upgrade", "plan", "demo", cwd=dead.parent)
    assert r.returncode == 0, r.stderr
    assert f"runs Kubernetes {DEFAULT}, as demo/cluster.yaml says (the cluster's API could not tell: no answer" in (
        r.stdout
    )
    assert "needs the cluster's API" in r.stderr
    assert re.search(rf"^kubelet +every machine +{DEFAULT} +v1\.36\.1$", r.stdout, re.M)
    assert "kubeseed upgrade apply demo --to v1.36.1" in r.stdout


# -- apply -----------------------------------------------------------------------------------------------------


def test_apply_publishes_the_runtime_sets_the_version_and_lists_masters_first(live: Cluster, tmp_path: Path) -> None:  # noqa: F811
    from kubeseed.generator.zipapp import build_zipapp, module_name, runtime_sources, unpack_sources
    from kubeseed.runtime.cli import VERSION

    for name, master in (("a-worker", False), ("cp-2", True), ("worker-1", False)):
        live.api.put_object(node(name, master))
    cfg = live.dir / "cluster.yaml"
    text, cfg_mode = cfg.read_text(), cfg.stat().st_mode
    r = ks("upgrade", "apply", "demo", "--to", "v1.36.1", cwd=live.base)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr and "kubeseed-admin" in r.stderr
    assert f"kubernetesVersion {DEFAULT} -> v1.36.1" in r.stderr

    # the ConfigMap: the full runtime, its sha256, the target
    cm, role, binding = published(live)
    pyz = base64.b64decode(cm["binaryData"]["kubeseed-runtime.pyz"])
    assert hashlib.sha256(pyz).hexdigest() == cm["data"]["sha256"]
    assert cm["data"]["kubernetesVersion"] == "v1.36.1" and cm["data"]["runtimeVersion"] == VERSION
    assert pyz == build_zipapp(None)
    modules = {module_name(path) for path in runtime_sources(None)}  # every module of the runtime: the full one
    assert modules <= set(unpack_sources(pyz)) and "kubeseed.runtime.upgrade.publish" in modules
    # readable by a node's own credential, and nothing else through it
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"], "resourceNames": ["kubeseed-runtime"]}
    ]
    assert {"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": "system:nodes"} in binding["subjects"]
    with as_node(live, "worker-1") as kubelet:
        status, got = kubelet.request("GET", RUNTIME_CM)
        assert status == 200 and base64.b64decode(got["binaryData"]["kubeseed-runtime.pyz"]) == pyz
        assert kubelet.request("GET", "/api/v1/namespaces/kube-system/configmaps/kube-proxy")[0] == 403
        assert kubelet.request("GET", "/api/v1/namespaces/kube-system/configmaps")[0] == 403
    assert live.api.get_object("v1", "ConfigMap", "kube-proxy", "kube-system") is not None  # it exists: refused

    # cluster.yaml: that one value changed, its comments and mode kept
    new = cfg.read_text()
    assert new == text.replace(f"kubernetesVersion: {DEFAULT}\n", "kubernetesVersion: v1.36.1\n")
    assert "# Kubernetes version the machines run" in new and cfg.stat().st_mode == cfg_mode

    # one command per machine, masters first (by name), then nodes
    lines = r.stdout.splitlines()
    assert (
        lines[0] == f"Upgrade from {DEFAULT} to v1.36.1: run one command on each machine, one at a time, masters first:"
    )
    machines = [line.split(":")[0].strip() for line in lines if line.startswith("  on ")]
    assert machines == ["on cp-1 (master)", "on cp-2 (master)", "on a-worker (node)", "on worker-1 (node)"]
    assert f"  on cp-1 (master): {RUN} upgrade v1.36.1" in lines
    assert f"  on worker-1 (node): {RUN} upgrade v1.36.1" in lines

    # plan says what is published, while the cluster still runs its version (no machine has upgraded)
    r = ks("upgrade", "plan", "demo", cwd=live.base)
    assert r.returncode == 0, r.stderr
    assert f"runs Kubernetes {DEFAULT}, as kube-system/kubeadm-config says" in r.stdout
    assert f"target v1.36.1, runtime {VERSION} (kube-system/kubeseed-runtime)" in r.stdout
    assert "demo/cluster.yaml says v1.36.1" in r.stderr

    # payloads rendered from now on carry the new version
    r = ks("render", "node", "demo", "-o", "node.yaml", cwd=live.base)
    assert r.returncode == 0, r.stderr
    from tests.support.helpers import cloud_init_files

    files = cloud_init_files((live.base / "node.yaml").read_bytes())
    assert yaml.safe_load(files["/etc/kubeseed/config.yaml"][0])["kubernetesVersion"] == "v1.36.1"


def test_apply_to_the_current_version_publishes_the_runtime_again(live: Cluster) -> None:  # noqa: F811
    text = (live.dir / "cluster.yaml").read_bytes()
    r = ks("upgrade", "apply", "demo", "--to", DEFAULT, cwd=live.base)
    assert r.returncode == 0, r.stderr
    assert f"The cluster runs {DEFAULT} already: nothing to upgrade; the runtime was published again" in r.stdout
    assert f"  on {MASTER} (master): {RUN} upgrade {DEFAULT}" in r.stdout.splitlines()
    assert published(live)[0]["data"]["kubernetesVersion"] == DEFAULT
    assert (live.dir / "cluster.yaml").read_bytes() == text


def test_apply_refuses_what_the_rules_forbid_and_changes_nothing(live: Cluster) -> None:  # noqa: F811
    cfg = live.dir / "cluster.yaml"
    text = cfg.read_bytes()
    cases = [
        ("v1.34.8", "v1.36.1", "--to: v1.36.1 skips a minor: the cluster runs v1.34.8"),
        ("v1.35.5", "v1.35.4", "--to: v1.35.4 is older than the cluster's v1.35.5: kubeseed never downgrades"),
        ("v1.35.5", "v1.34.8", "--to: v1.34.8 is older than the cluster's v1.35.5"),
        ("v1.35.5", "v1.37.0", '--to: "v1.37.0" is not supported: kubeseed supports v1.30 to v1.36'),
        ("v1.35.5", "v1.29.15", '--to: "v1.29.15" is not supported'),
        ("v1.35.5", "v1.36", '--to: "v1.36" is not a version: give v1.MINOR.PATCH'),
        ("v1.35.5", "latest", '--to: "latest" is not a version'),
    ]
    for running, to, message in cases:
        set_cluster_version(live, running)
        r = ks("upgrade", "apply", "demo", "--to", to, cwd=live.base)
        assert r.returncode == 2, (to, r.stderr)
        assert r.stderr.startswith(f"error: {message}") and len(r.stderr.splitlines()) == 1, r.stderr
        assert r.stdout == ""
        assert cfg.read_bytes() == text
        assert published(live) == [None, None, None]
    assert not [q for q in live.api.requests if q["method"] == "PATCH" and "kubeseed-runtime" in q["path"]]


def test_apply_without_the_api_changes_nothing(dead: Path) -> None:  # noqa: F811
    text = (dead / "cluster.yaml").read_bytes()
    r = ks("upgrade", "apply", "demo", "--to", "v1.36.1", cwd=dead.parent)
    assert r.returncode == 1
    assert r.stderr.startswith("error: the cluster was not changed: no answer from https://127.0.0.1:")
    assert f"demo/cluster.yaml still says {DEFAULT}" in r.stderr and "needs the cluster's API" in r.stderr
    assert len(r.stderr.splitlines()) == 1 and r.stdout == ""
    assert (dead / "cluster.yaml").read_bytes() == text


def test_a_credential_without_the_rights_changes_nothing(live: Cluster) -> None:  # noqa: F811
    """bob may read kubeadm-config and nothing more: plan works from the cluster, apply is refused before any
    object is written; with no rights at all, plan says cluster.yaml's version and why."""
    r = ks("user", "create", "demo", "bob", "-o", "kubeconfig-bob", cwd=live.base)
    assert r.returncode == 0, r.stderr
    text = (live.dir / "cluster.yaml").read_bytes()
    r = ks("upgrade", "plan", "demo", "--kubeconfig", "kubeconfig-bob", cwd=live.base)
    assert r.returncode == 0, r.stderr
    assert f"runs Kubernetes {DEFAULT}, as demo/cluster.yaml says (the cluster's API could not tell: the API " in (
        r.stdout
    )
    assert "refused to read ConfigMap kube-system/kubeadm-config as the first user of --kubeconfig" in r.stdout

    from kubeseed.runtime.init.objects import binding, role, rule

    live.api.put_object(role("Role", "bob", [rule([""], ["configmaps"], ["get"], ["kubeadm-config"])], "kube-system"))
    live.api.put_object(binding("RoleBinding", "bob", "Role", "bob", [("User", "bob")], "kube-system"))
    r = ks("upgrade", "plan", "demo", "--kubeconfig", "kubeconfig-bob", cwd=live.base)
    assert r.returncode == 0 and f"runs Kubernetes {DEFAULT}, as kube-system/kubeadm-config says" in r.stdout
    assert re.search(r"^kube-apiserver +every master ", r.stdout, re.M)  # bob may not list the Nodes
    r = ks("upgrade", "apply", "demo", "--to", "v1.36.1", "--kubeconfig", "kubeconfig-bob", cwd=live.base)
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.startswith("error: the runtime was not published: the API server at https://127.0.0.1:")
    assert "refused to apply Role kubeseed:runtime-reader in namespace kube-system" in r.stderr
    assert f"demo/cluster.yaml still says {DEFAULT}" in r.stderr and len(r.stderr.splitlines()) == 1
    assert (live.dir / "cluster.yaml").read_bytes() == text
    assert published(live) == [None, None, None]
