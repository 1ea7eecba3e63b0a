"""First boots of the golden image in systemd-nspawn: real systemd, every cloud-init stage, the payload's runcmd
running the runtime baked into the image, against the in-test API server on the host's loopback.

Each boot gets its own copy of the session's image tree (the product builder's output, see conftest.py), a
NoCloud seed with a payload rendered with ``--runtime preinstalled``, and the TEST STAND-IN kubelet described in
tests/support/nspawn.py (no kubelet binary can be had here; containerd is the image's real one). No
kube-apiserver can be had either: tests/support/apiserver/ plays it, with real TLS, as in tests/runtime/.
"""

from __future__ import annotations

import base64
import json
import socket
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubeseed.generator.goldenimage.build import TreeInfo
from kubeseed.generator.tokens import load_tokens
from kubeseed.generator.zipapp import build_zipapp
from kubeseed.runtime import init as master_runtime
from kubeseed.runtime import pki
from kubeseed.runtime.cli import VERSION
from kubeseed.runtime.config import NODE_CONFIG_PATH, RUNTIME_PATH
from kubeseed.runtime.keys import signed_by
from kubeseed.runtime.upgrade.publish import objects
from kubeseed.runtime.versions import DEFAULT
from tests.support.apiserver import FakeAPIServer
from tests.support.helpers import cloud_init_files, free_port, kubeseed, need_tool
from tests.support.join import check_joined, server_tokens
from tests.support.nspawn import RESULT, STATUS, Container, add_kubelet_stand_in, copy_tree, write_seed

BOOT_TIMEOUT = 180.0
MASTER, WORKER = "cp-1", "worker-1"
JOIN_PHASES = ["preflight", "discovery", "tls-bootstrap", "kubelet-config", "kubelet-start", "runtime"]
INIT_PHASES = ["preflight"] + [p.name for p in master_runtime.phases()]


@pytest.fixture(autouse=True)
def _nspawn() -> None:
    need_tool("systemd-nspawn", install="apt-get install systemd-container")
    need_tool("nsenter", install="apt-get install util-linux")


def make_cluster(base: Path) -> tuple[Path, int]:
    """A cluster whose endpoint is 127.0.0.1:<a free port>, where the in-test API server will listen."""
    port = free_port()
    r = kubeseed("cluster", "create", "demo", "--endpoint", f"127.0.0.1:{port}", cwd=base)
    assert r.returncode == 0, r.stderr
    return base / "demo", port


def render(cluster: Path, role: str, hostname: str) -> bytes:
    """The role's payload for a golden image (``--runtime preinstalled``): node config and secrets, no runtime."""
    out = cluster.parent / f"{role}.yaml"
    r = kubeseed(
        "render", role, "demo", "--hostname", hostname, "--runtime", "preinstalled", "-o", str(out), cwd=cluster.parent
    )
    assert r.returncode == 0, r.stderr
    files = cloud_init_files(out.read_bytes())
    assert RUNTIME_PATH not in files and NODE_CONFIG_PATH in files  # the image brings the runtime
    return out.read_bytes()


def machine(image: TreeInfo, tmp_path: Path, name: str, payload: bytes, hostname: str) -> Path:
    tree = tmp_path / name
    copy_tree(image.path, tree)
    write_seed(tree, payload, hostname)
    add_kubelet_stand_in(tree)
    return tree


def cloud_init_done(tree: Path) -> bool:
    return (tree / RESULT).is_file()


def check_cloud_init(tree: Path, console: str) -> None:
    """cloud-init ran every stage from the NoCloud seed, without an error."""
    result = json.loads((tree / RESULT).read_text())["v1"]
    assert result["errors"] == [], f"{result['errors']}\n{console}"
    assert "DataSourceNoCloud" in result["datasource"]
    status = json.loads((tree / STATUS).read_text())["v1"]
    for stage in ("init-local", "init", "modules-config", "modules-final"):
        assert status[stage]["errors"] == [] and status[stage]["finished"], (stage, status[stage])


def port_busy(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def allowed_failures() -> set[str]:
    """Units that cannot start in a container sharing this host's network: sshd when the host's port 22 is taken."""
    return {"ssh.service"} if port_busy(22) else set()


def failed_units(boot: Container) -> set[str]:
    out = boot.run("systemctl", "list-units", "--failed", "--plain", "--no-legend").stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def check_inside(boot: Container, hostname: str) -> None:
    """What the running machine says about itself (nsenter into the container)."""
    for unit in ("kubelet", "containerd"):
        r = boot.run("systemctl", "is-active", unit)
        assert r.stdout.strip() == "active", f"{unit}: {r.stdout}{r.stderr}\n{boot.tail()}"
    assert boot.run("hostname").stdout.strip() == hostname
    status = boot.run("python3", RUNTIME_PATH, "status")
    assert status.returncode == 0, status.stdout + status.stderr
    assert failed_units(boot) <= allowed_failures(), boot.run("systemctl", "--failed").stdout


def log_phases(tree: Path) -> list[str]:
    log = tree / "var/log/kubeseed.log"
    assert log.stat().st_mode & 0o777 == 0o600
    return [json.loads(line)["phase"] for line in log.read_text().splitlines()]


def states(tree: Path) -> dict[str, Any]:
    state = tree / "var/lib/kubeseed/state.json"
    assert state.stat().st_mode & 0o777 == 0o600
    return dict(json.loads(state.read_text())["phases"])


def join_done(tree: Path) -> bool:
    try:
        phases = states(tree)
    except (OSError, ValueError):
        return False
    return all(phases.get(p, {}).get("result") == "done" for p in JOIN_PHASES)


def boot_node(image: TreeInfo, tmp_path: Path, cluster: Path, api: FakeAPIServer, name: str) -> Path:
    """A node's first boot with its payload; returns its tree after a clean halt, its joins checked."""
    tree = machine(image, tmp_path, name, render(cluster, "node", WORKER), WORKER)
    console = tmp_path / f"{name}-console.log"
    with Container(tree, console) as boot:
        boot.wait_until("the runtime's join finished", lambda: join_done(tree), BOOT_TIMEOUT)
        boot.wait_until("cloud-init's final stage finished", lambda: cloud_init_done(tree), 60)
        check_inside(boot, WORKER)
        tail = boot.tail()
    check_cloud_init(tree, tail)
    assert log_phases(tree) == JOIN_PHASES
    check_joined(tree, cluster, api)  # kubelet.conf, the client certificate from the cluster CA, kubelet config
    config = tree / NODE_CONFIG_PATH.lstrip("/")
    assert config.stat().st_mode & 0o777 == 0o600
    assert (tree / RUNTIME_PATH.lstrip("/")).stat().st_mode & 0o777 == 0o755
    return tree


def test_node_first_boot_joins(image_tree: TreeInfo, machines: Path, ip_forward: None) -> None:
    cluster, port = make_cluster(machines)
    ca, ca_key = (cluster / "pki/ca.crt").read_bytes(), (cluster / "pki/ca.key").read_bytes()
    with FakeAPIServer(ca, ca_key, server_tokens(cluster), port=port) as api:
        published = build_zipapp(None)  # as `kubeseed upgrade apply` publishes it: join installs it
        for obj in objects(published, DEFAULT, VERSION):
            api.put_object(obj)
        tree = boot_node(image_tree, machines, cluster, api, "worker")
    assert (tree / RUNTIME_PATH.lstrip("/")).read_bytes() == published
    secret = load_tokens(cluster)[0].token.split(".")[1]
    for f in ("var/log/kubeseed.log", "var/log/cloud-init-output.log"):
        assert secret not in (tree / f).read_text()


def test_master_first_boot_then_a_node_joins_it(image_tree: TreeInfo, machines: Path, ip_forward: None) -> None:
    """A master's first boot through every init phase: the file phases, then (once the apiserver certificate that
    init wrote appears in the tree) the in-test API server plays kube-apiserver with it, as in
    tests/runtime/test_init_api.py, for wait-control-plane and the API phases. Then a node boots and joins the API
    that init configured (RBAC, bootstrap token Secret, cluster-info signed by the bootstrap signer)."""
    cluster, port = make_cluster(machines)
    tree = machine(image_tree, machines, "master", render(cluster, "master", MASTER), MASTER)
    pki_dir = tree / "etc/kubernetes/pki"
    api: FakeAPIServer | None = None
    try:
        with Container(tree, machines / "master-console.log") as boot:
            boot.wait_until(
                "init wrote the apiserver certificate",
                lambda: (pki_dir / "apiserver.crt").is_file() and (pki_dir / "apiserver.key").is_file(),
                BOOT_TIMEOUT,
            )
            api = FakeAPIServer(
                (pki_dir / "ca.crt").read_bytes(),
                (pki_dir / "ca.key").read_bytes(),
                [],
                serving_cert=((pki_dir / "apiserver.crt").read_bytes(), (pki_dir / "apiserver.key").read_bytes()),
                rbac=True,
                cluster_info_from_store=True,
                port=port,
            )
            # What the master's kubelet would do once it runs: register its Node.
            meta = {"name": MASTER, "labels": {"kubernetes.io/hostname": MASTER}}
            api.put_object({"apiVersion": "v1", "kind": "Node", "metadata": meta, "spec": {}})
            api.start()
            boot.wait_until("cloud-init's final stage (init) finished", lambda: cloud_init_done(tree), BOOT_TIMEOUT)
            check_inside(boot, MASTER)
            # the certificate timer init installed, as systemd runs it: enabled, waiting, with a next run
            timer = boot.run("systemctl", "show", "kubeseed-certs.timer", "--property=UnitFileState,ActiveState")
            assert "UnitFileState=enabled" in timer.stdout and "ActiveState=active" in timer.stdout, timer.stdout
            status = boot.run("python3", RUNTIME_PATH, "status").stdout
            assert "Renewal timer: kubeseed-certs.timer renews what expires within 30 days; next run " in status
            expiry = boot.run("python3", RUNTIME_PATH, "certs", "check-expiration")
            assert expiry.returncode == 0 and "apiserver " in expiry.stdout, expiry.stdout + expiry.stderr
            tail = boot.tail()
        check_cloud_init(tree, tail)
        phases = states(tree)
        assert {p: phases[p]["result"] for p in INIT_PHASES} == {p: "done" for p in INIT_PHASES}, tail
        assert log_phases(tree) == INIT_PHASES

        ca = pki.load_cert((cluster / "pki/ca.crt").read_bytes())
        assert (pki_dir / "ca.crt").read_bytes() == (cluster / "pki/ca.crt").read_bytes()
        assert signed_by(pki.load_cert((pki_dir / "apiserver.crt").read_bytes()), ca)
        for pod in ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"):
            manifest = yaml.safe_load((tree / f"etc/kubernetes/manifests/{pod}.yaml").read_text())
            assert manifest["kind"] == "Pod" and manifest["metadata"]["name"] == pod
        admin = yaml.safe_load((tree / "root/.kube/config").read_text())
        assert admin["clusters"][0]["cluster"]["server"] == f"https://127.0.0.1:{port}"
        assert yaml.safe_load((tree / "var/lib/kubelet/config.yaml").read_text())["kind"] == "KubeletConfiguration"

        assert api is not None
        tok = load_tokens(cluster)[0]
        secret = api.get_object("v1", "Secret", f"bootstrap-token-{tok.id}", "kube-system")
        assert secret is not None and base64.b64decode(secret["data"]["token-id"]).decode() == tok.id
        info = api.get_object("v1", "ConfigMap", "cluster-info", "kube-public")
        assert info is not None and f"jws-kubeconfig-{tok.id}" in info["data"]
        registered = api.get_object("v1", "Node", MASTER)
        assert registered is not None and "node-role.kubernetes.io/control-plane" in registered["metadata"]["labels"]
        assert api.get_object("apps/v1", "Deployment", "coredns", "kube-system") is not None

        # The proposal's second step: a node's payload, any time; it joins the API that init configured.
        node_tree = boot_node(image_tree, machines, cluster, api, "worker")
        client = pki.load_cert((node_tree / "var/lib/kubelet/pki/kubelet-client-current.pem").read_bytes())
        assert signed_by(client, ca)
        assert (node_tree / "etc/kubernetes/pki/ca.crt").read_bytes() == (cluster / "pki/ca.crt").read_bytes()
    finally:
        if api is not None:
            api.stop()


def test_the_image_boots_without_a_seed(image_tree: TreeInfo, machines: Path) -> None:
    """Without a seed, cloud-init stands aside and the machine still comes up whole: no failed unit, containerd
    running, SSH host keys made at start (the image carries none)."""
    tree = machines / "bare"
    copy_tree(image_tree.path, tree)
    port_busy_before = port_busy(22)
    with Container(tree, machines / "bare-console.log") as boot:

        def up() -> bool:
            r = boot.run("systemctl", "is-system-running")
            return r.stdout.strip() in ("running", "degraded")

        boot.wait_until("the system finished starting", up, BOOT_TIMEOUT)
        assert failed_units(boot) <= allowed_failures(), boot.run("systemctl", "--failed").stdout
        assert boot.run("systemctl", "is-active", "containerd").stdout.strip() == "active"
        if not port_busy_before:
            assert boot.run("systemctl", "is-active", "ssh").stdout.strip() == "active"
        assert "disabled" in boot.run("cloud-init", "status").stdout  # no datasource: cloud-init stands aside
    if not port_busy_before:
        assert list((tree / "etc/ssh").glob("ssh_host_*_key"))
    assert not (tree / RESULT).exists()
