"""A master machine for init's tests (tests only): an operator's cluster directory and its master payload laid out
under a root (make_master), and a master that ran init's file phases with the in-test API server that plays its
kube-apiserver (Cluster). Used by tests/runtime/test_init_files.py, test_init_interop.py, test_init_api.py and
test_init_admin_keys.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from tests.support.apiserver import FakeAPIServer
from tests.support.helpers import cloud_init_files, free_port, kubeseed, lay_out

MASTER, WORKER = "cp-1", "worker-1"
API_PHASES = (
    "wait-control-plane,upload-config,upload-certs,mark-control-plane,bootstrap-token,kubelet-finalize,addon,"
    "show-join-command"
)
KILLER = Path(__file__).resolve().parents[1] / "runtime/killer.py"

ADDON = """apiVersion: v1
kind: Namespace
metadata:
  name: demo-net
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: net-config
  namespace: demo-net
data:
  backend: vxlan
"""


def run(pyz: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(pyz), *args], capture_output=True, text=True, timeout=180, env=env)


def make_master(base: Path, *create_args: str, endpoint: str = "10.0.0.10:6443") -> Path:
    """A cluster made by the CLI and its master payload laid out under base/machine; returns the root."""
    r = kubeseed("cluster", "create", "demo", "--endpoint", endpoint, *create_args, cwd=base)
    assert r.returncode == 0, r.stderr
    r = kubeseed("render", "master", "demo", "--hostname", MASTER, "-o", "master.yaml", cwd=base)
    assert r.returncode == 0, r.stderr
    root = base / "machine"
    lay_out(cloud_init_files((base / "master.yaml").read_bytes()), root)
    return root


def manifest(root: Path, name: str) -> dict[str, Any]:
    """The static pod manifest init wrote for ``name`` (etcd, kube-apiserver, ...) under ``root``."""
    pod: dict[str, Any] = yaml.safe_load((root / "etc/kubernetes/manifests" / f"{name}.yaml").read_text())
    return pod


def flags(pod: dict[str, Any]) -> dict[str, str]:
    """A static pod's command-line flags (--name=value) as a mapping."""
    return dict(arg[2:].split("=", 1) for arg in pod["spec"]["containers"][0]["command"][1:])


def init_file_phases(root: Path, advertise: str = "127.0.0.2") -> None:
    """init's phases that need no API server, under --root (``advertise``: a loopback address for a real etcd)."""
    pyz = root / "opt/kubeseed/kubeseed-runtime.pyz"
    args = ["init", "--root", str(root), "--ignore-preflight-errors", "all", "--advertise-address", advertise]
    r = run(pyz, *args, "--skip-phases", API_PHASES)
    assert r.returncode == 0, r.stdout + r.stderr


class Cluster:
    """An operator's cluster directory, a master machine that ran init's file phases, and the API server that
    plays its kube-apiserver: serving with the apiserver certificate init wrote, on the endpoint's port."""

    def __init__(self, base: Path, tmpdir: Path | None = None, *create_args: str) -> None:
        """``tmpdir``: the TMPDIR init runs with (default: the test process's); ``create_args``: more flags for
        ``kubeseed cluster create``."""
        self.base, self.port, self.tmpdir = base, free_port(), tmpdir
        self.env = dict(os.environ, TMPDIR=str(tmpdir)) if tmpdir else None
        r = kubeseed("cluster", "create", "demo", "--endpoint", f"127.0.0.1:{self.port}", *create_args, cwd=base)
        assert r.returncode == 0, r.stderr
        self.dir = base / "demo"
        (self.dir / "addons").mkdir()
        (self.dir / "addons/net.yaml").write_text(ADDON)
        cfg = self.dir / "cluster.yaml"
        cfg.write_text(cfg.read_text().replace("addons: []\n", "addons:\n  - addons/net.yaml\n"))
        r = kubeseed("render", "master", "demo", "--hostname", MASTER, "-o", "master.yaml", cwd=base)
        assert r.returncode == 0, r.stderr
        self.root = base / "master"
        self.pyz = lay_out(cloud_init_files((base / "master.yaml").read_bytes()), self.root)
        r = self.init("--skip-phases", API_PHASES)
        assert r.returncode == 0, r.stdout + r.stderr
        pki_dir = self.root / "etc/kubernetes/pki"
        self.api = FakeAPIServer(
            (pki_dir / "ca.crt").read_bytes(),
            (pki_dir / "ca.key").read_bytes(),
            [],
            serving_cert=((pki_dir / "apiserver.crt").read_bytes(), (pki_dir / "apiserver.key").read_bytes()),
            rbac=True,
            cluster_info_from_store=True,
            port=self.port,
        )

    def init_args(self, *args: str) -> list[str]:
        """The runtime's ``init`` arguments for this master (under --root, this test's advertise address)."""
        return [
            "init",
            "--root",
            str(self.root),
            "--ignore-preflight-errors",
            "all",
            "--advertise-address",
            "127.0.0.1",
            "--timeout",
            "20",
            *args,
        ]

    def init(self, *args: str, kill: tuple[str, int, str] | None = None) -> subprocess.CompletedProcess[str]:
        """init under --root; ``kill`` (FUNCTION, N, before|after) runs it under tests/runtime/killer.py."""
        if kill:
            cmd = [sys.executable, str(KILLER), kill[0], str(kill[1]), kill[2], "--", *self.init_args(*args)]
            return subprocess.run(cmd, capture_output=True, text=True, timeout=180, env=self.env)
        return run(self.pyz, *self.init_args(*args), env=self.env)

    def join_node(self, root: Path) -> subprocess.CompletedProcess[str]:
        """A worker joins this cluster as a user would: its node payload rendered, laid out under ``root``, and
        the first-boot command run there."""
        r = kubeseed("render", "node", "demo", "--hostname", WORKER, "-o", "node.yaml", cwd=self.base)
        assert r.returncode == 0, r.stderr
        pyz = lay_out(cloud_init_files((self.base / "node.yaml").read_bytes()), root)
        return run(pyz, "join", "--root", str(root), "--ignore-preflight-errors", "all", "--timeout", "30")

    def register_node(self) -> None:
        """What the master's kubelet does once it runs: register its Node object."""
        self.api.put_object(
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {"name": MASTER, "labels": {"kubernetes.io/hostname": MASTER}},
                "spec": {},
            }
        )
