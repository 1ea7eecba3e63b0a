"""Rendered cloud-config checked by Debian's cloud-init: its schema validator and its write_files module."""

from __future__ import annotations

import gzip
import json
import subprocess
from pathlib import Path

import pytest
import yaml

from kubeseed.generator.nodeconfig import parse_doc
from kubeseed.generator.zipapp import build_zipapp
from kubeseed.runtime.config import NODE_CONFIG_PATH, RUNTIME_PATH
from tests.support.helpers import HOSTNAMES, SSH_KEY, need_tool, unavailable

APPLY = Path(__file__).with_name("cloudinit_apply.py")
KINDS = [(role, kind) for role in ("master", "node") for kind in ("cloud-init", "cloud-init-gzip")]


def debian_python() -> str:
    """The interpreter Debian's cloud-init runs on: the one a machine's first boot has."""
    py = need_tool("python3", "/usr/bin/python3", "Debian's python3")
    if subprocess.run([py, "-c", "import cloudinit"], capture_output=True).returncode != 0:
        unavailable(f"{py} cannot import cloudinit (apt-get install cloud-init)")
    return py


@pytest.mark.parametrize("role,kind", KINDS)
def test_cloud_init_schema_accepts_payload(payloads: dict, role: str, kind: str, tmp_path: Path) -> None:
    cloud_init = need_tool("cloud-init", install="apt-get install cloud-init")
    path = payloads[(role, kind)]
    data = path.read_bytes()
    if kind == "cloud-init-gzip":
        # cloud-init un-gzips user-data before it looks at it; `cloud-init schema` reads plain files only.
        assert data[:2] == b"\x1f\x8b"
        path = tmp_path / "user-data"
        path.write_bytes(gzip.decompress(data))
    r = subprocess.run([cloud_init, "schema", "-c", str(path)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Valid cloud-config" in r.stdout
    assert "deprecat" not in (r.stdout + r.stderr).lower()


def test_cloud_init_schema_catches_a_broken_payload(payloads: dict, tmp_path: Path) -> None:
    """The validator is really looking: the same payload with a wrong type in it fails."""
    cloud_init = need_tool("cloud-init", install="apt-get install cloud-init")
    doc = yaml.safe_load(payloads[("node", "cloud-init")].read_bytes())
    doc["runcmd"] = "python3 /opt/kubeseed/kubeseed-runtime.pyz join"
    doc["write_files"][0]["permissions"] = 755
    bad = tmp_path / "bad.yaml"
    bad.write_text("#cloud-config\n" + yaml.safe_dump(doc))
    r = subprocess.run([cloud_init, "schema", "-c", str(bad)], capture_output=True, text=True, timeout=120)
    assert r.returncode != 0
    assert "runcmd" in r.stdout + r.stderr


@pytest.mark.parametrize("role,kind", KINDS)
def test_cloud_init_write_files_lays_out_the_payload(payloads: dict, role: str, kind: str, tmp_path: Path) -> None:
    py = debian_python()
    root = tmp_path / "root"
    r = subprocess.run([py, str(APPLY), str(payloads[(role, kind)]), str(root)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    seen = json.loads(r.stdout)
    assert seen["part_type"] == "text/cloud-config"

    runtime = root / RUNTIME_PATH.lstrip("/")
    assert runtime.read_bytes() == build_zipapp(role)
    assert runtime.stat().st_mode & 0o7777 == 0o755
    config = root / NODE_CONFIG_PATH.lstrip("/")
    assert config.stat().st_mode & 0o7777 == 0o600
    cfg = parse_doc(yaml.safe_load(config.read_text()))
    assert cfg.role == role
    assert cfg.node_name == HOSTNAMES[role]
    written = b"".join(p.read_bytes() for p in root.rglob("*") if p.is_file())
    if role == "node":
        assert b"PRIVATE KEY" not in written
        assert not (root / "etc/kubeseed/addons").exists()
    else:
        assert b"PRIVATE KEY" in config.read_bytes()
        assert (root / "etc/kubeseed/addons/00-ns.yaml").stat().st_mode & 0o7777 == 0o600

    sudoers = root / "etc/sudoers.d/90-kubeseed-ops"
    assert sudoers.read_text() == "ops ALL=(ALL) NOPASSWD:ALL\n" and sudoers.stat().st_mode & 0o7777 == 0o440
    action = "join" if role == "node" else "init"
    assert seen["runcmd"] == [["python3", RUNTIME_PATH, action]]
    assert seen["hostname"] == HOSTNAMES[role] and seen["preserve_hostname"] is False
    users = {u["name"]: u for u in seen["users"] if isinstance(u, dict)}
    assert users["ops"]["ssh_authorized_keys"] == [SSH_KEY]
    assert users["ops"]["passwd"].startswith("$6$") and users["ops"]["lock_passwd"] is False


def test_first_boot_from_cloud_init_tree_runs_preflight(payloads: dict, tmp_path: Path) -> None:
    """What cloud-init's runcmd runs, on the distro's python3, against the tree cloud-init wrote: the runtime
    loads its node config and runs the real preflight, which on this machine reports the missing kubelet
    with the way to install it. The token secret stays out of its output and log."""
    py = debian_python()
    root = tmp_path / "root"
    subprocess.run([py, str(APPLY), str(payloads[("node", "cloud-init")]), str(root)], check=True, capture_output=True)
    runtime = root / RUNTIME_PATH.lstrip("/")
    r = subprocess.run([py, str(runtime), "join", "--root", str(root)], capture_output=True, text=True, timeout=120)
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    assert "[ERROR FileExisting-kubelet]: kubelet not found" in out
    assert "apt-get install kubelet" in out and "pkgs.k8s.io/core:/stable:/v1.35/deb" in out
    assert "Traceback" not in out
    state = json.loads((root / "var/lib/kubeseed/state.json").read_text())
    assert state["phases"]["preflight"]["result"] == "failed"
    secret = yaml.safe_load((root / NODE_CONFIG_PATH.lstrip("/")).read_text())["discovery"]["token"].split(".")[1]
    assert secret not in out
    assert secret not in (root / "var/log/kubeseed.log").read_text()
