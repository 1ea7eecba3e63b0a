"""The runtime's shape: shared core below, one package per role above, one place that picks the role."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from kubeseed.generator.zipapp import FULL_ONLY, build_zipapp
from kubeseed.runtime import init, join
from kubeseed.runtime.cli import COMMANDS, load_role
from tests.support.importgraph import find_cycle, import_graph

RUNTIME = Path(__file__).resolve().parents[2] / "runtime"
ROLES = ("kubeseed.runtime.init", "kubeseed.runtime.join")
UPGRADE = "kubeseed.runtime.upgrade"


def test_no_import_cycle_in_the_runtime() -> None:
    graph = import_graph(RUNTIME, "kubeseed.runtime")
    assert {"kubeseed.runtime.init.apiphases", "kubeseed.runtime.join.discovery"} <= set(graph)
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_shared_core_never_imports_a_role() -> None:
    """...but for upgrade's phases, which only the full runtime carries (zipapp.FULL_ONLY), and upgrade's start,
    which a master's runtime carries (cli.DAY2): the master's role and never the node's."""
    graph = import_graph(RUNTIME, "kubeseed.runtime")
    assert set(FULL_ONLY) < set(graph)
    for module, deps in graph.items():
        if module in FULL_ONLY:
            continue
        own = next((r for r in ROLES if module == r or module.startswith(r + ".")), None)
        if module == UPGRADE or module.startswith(UPGRADE + "."):
            own = ROLES[0]
        reached = {d for d in deps for r in ROLES if r != own and (d == r or d.startswith(r + "."))}
        assert not reached, f"{module} imports {sorted(reached)}"


def test_each_role_package_exports_the_interface() -> None:
    assert COMMANDS == {"master": "init", "node": "join"}
    assert load_role("master") is init and load_role("node") is join
    assert [p.name for p in init.phases()] == [
        "certs",
        "kubeconfig",
        "etcd",
        "control-plane",
        "kubelet-start",
        "wait-control-plane",
        "upload-config",
        "upload-certs",
        "mark-control-plane",
        "bootstrap-token",
        "kubelet-finalize",
        "addon",
        "certs-timer",
        "show-join-command",
    ]
    assert [p.name for p in join.phases()] == [
        "discovery",
        "tls-bootstrap",
        "kubelet-config",
        "kubelet-start",
        "runtime",
    ]
    assert init.CONFIG is not None and init.CONFIG[0] == (
        "pki",
        "bootstrapTokens",
        "addons",
        "advertiseAddress",
        "virtualIP",
        "virtualIPInterface",
        "uploadCerts",
        "certificateKey",
    )
    assert join.CONFIG is None and "joined the cluster" in join.DONE
    names = {name for name, _ in init.checks()}
    assert {"NumCPU", "Mem", "Port-6443", "DirAvailable--var-lib-etcd"} <= names
    assert {name for name, _ in join.checks()} == {
        "DirAvailable--etc-kubernetes-manifests",
        "FileAvailable--etc-kubernetes-kubelet.conf",
        "FileAvailable--etc-kubernetes-bootstrap-kubelet.conf",
        "FileAvailable--etc-kubernetes-pki-ca.crt",
    }


@pytest.mark.parametrize(
    "built,args",
    [
        ("node", ["init"]),
        ("node", ["preflight", "--role", "master"]),
        (
            "master",
            [
                "join",
                "10.0.0.10:6443",
                "--token",
                "abcdef.0123456789abcdef",
                "--discovery-token-unsafe-skip-ca-verification",
            ],
        ),
        ("master", ["preflight", "--role", "node"]),
    ],
)
def test_the_other_roles_runtime_says_so_once(tmp_path: Path, built: str, args: list[str]) -> None:
    """Whatever the command, a zipapp built for the other role gives one message and exit code 2, and writes
    nothing."""
    pyz = tmp_path / "kubeseed-runtime.pyz"
    pyz.write_bytes(build_zipapp(built))
    root = tmp_path / "root"
    root.mkdir()
    r = subprocess.run([sys.executable, str(pyz), *args, "--root", str(root)], capture_output=True, text=True)
    wanted = "master" if built == "node" else "node"
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stderr == f"error: runtime: built for the other role: render this machine's {wanted} payload\n"
    assert list(root.iterdir()) == []


@pytest.mark.parametrize("built", ["master", "node"])
def test_without_config_or_role_preflight_checks_this_runtimes_role(tmp_path: Path, built: str) -> None:
    pyz = tmp_path / "kubeseed-runtime.pyz"
    pyz.write_bytes(build_zipapp(built))
    root = tmp_path / "root"
    (root / "var/lib/etcd").mkdir(parents=True)  # left by another cluster: only a master's checks look
    (root / "var/lib/etcd/member").write_text("")
    (root / "etc/kubernetes/manifests").mkdir(parents=True)  # only a node's checks look
    (root / "etc/kubernetes/manifests/x.yaml").write_text("")
    r = subprocess.run([sys.executable, str(pyz), "preflight", "--root", str(root)], capture_output=True, text=True)
    assert r.returncode == 1, r.stdout + r.stderr
    assert ("[ERROR DirAvailable--var-lib-etcd]" in r.stdout) == (built == "master"), r.stdout
    assert ("[ERROR DirAvailable--etc-kubernetes-manifests]" in r.stdout) == (built == "node"), r.stdout
