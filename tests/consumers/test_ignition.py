"""Rendered Ignition configs checked by Debian's ignition: ignition-validate, and Ignition's own
fetch-offline and files stages applied to a temporary root."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from kubeseed.generator.nodeconfig import parse_doc
from kubeseed.generator.zipapp import build_zipapp
from kubeseed.runtime.config import NODE_CONFIG_PATH, RUNTIME_PATH
from tests.support.helpers import HOSTNAMES, SSH_KEY, need_tool

# Debian's ignition package ships the stage binary inside its dracut module, not on PATH.
IGNITION = "/usr/lib/dracut/modules.d/30ignition/ignition"
INSTALL = "apt-get install ignition"


@pytest.mark.parametrize("role", ["master", "node"])
def test_ignition_validate_accepts_payload(payloads: dict, role: str) -> None:
    validate = need_tool("ignition-validate", install=INSTALL)
    r = subprocess.run([validate, str(payloads[(role, "ignition")])], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout + r.stderr == ""  # no warnings either


def test_ignition_validate_catches_a_broken_payload(payloads: dict, tmp_path: Path) -> None:
    validate = need_tool("ignition-validate", install=INSTALL)
    doc = json.loads(payloads[("node", "ignition")].read_bytes())
    doc["storage"]["files"][0]["path"] = "opt/kubeseed/kubeseed-runtime.pyz"  # relative: invalid
    bad = tmp_path / "bad.ign"
    bad.write_text(json.dumps(doc))
    r = subprocess.run([validate, str(bad)], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert "path" in (r.stdout + r.stderr).lower()


def run_ignition(config: Path, root: Path, work: Path) -> None:
    """Ignition's fetch-offline then files stage, as the initramfs runs them, with ``-root`` = ``root``."""
    ignition = need_tool("ignition", IGNITION, INSTALL)
    root.mkdir()
    (root / "etc").mkdir()
    for name in ("passwd", "group", "shadow", "gshadow"):  # useradd --root edits these
        shutil.copy(f"/etc/{name}", root / "etc" / name)
    # Debian builds Ignition with SELinux relabeling, which runs `setfiles` after the files stage has written
    # everything. This machine has no SELinux: a disabled policy config and a no-op setfiles stand-in
    # (test scaffolding only, recording its call) let the stage finish.
    (root / "etc/selinux").mkdir()
    (root / "etc/selinux/config").write_text("SELINUX=disabled\nSELINUXTYPE=targeted\n")
    shim = work / "bin"
    shim.mkdir()
    (shim / "setfiles").write_text(f'#!/bin/sh\necho "$@" >> {work}/setfiles.calls\n')
    (shim / "setfiles").chmod(0o755)
    env = {**os.environ, "IGNITION_CONFIG_FILE": str(config), "PATH": f"{shim}:{os.environ['PATH']}"}
    common = ["-platform", "file", "-root", str(root), "-config-cache", str(work / "config.json")]
    common += ["-state-file", str(work / "state"), "-log-to-stdout"]
    for stage in ("fetch-offline", "files"):
        r = subprocess.run([ignition, "-stage", stage, *common], env=env, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, f"ignition {stage} failed:\n{r.stdout}{r.stderr}"
        assert "Ignition finished successfully" in r.stdout + r.stderr


@pytest.fixture
def open_tmp() -> Iterator[Path]:
    """A scratch directory every user can traverse: Ignition writes a user's SSH keys with that user's
    file-system uid, and pytest's own tmp_path sits below a 0700 directory."""
    path = Path(tempfile.mkdtemp(prefix="kubeseed-ignition-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


@pytest.mark.parametrize("role", ["master", "node"])
def test_ignition_files_stage_writes_the_payload(payloads: dict, role: str, open_tmp: Path) -> None:
    root = open_tmp / "root"
    run_ignition(payloads[(role, "ignition")], root, open_tmp)

    runtime = root / RUNTIME_PATH.lstrip("/")
    assert runtime.read_bytes() == build_zipapp(role)
    assert runtime.stat().st_mode & 0o7777 == 0o755
    config = root / NODE_CONFIG_PATH.lstrip("/")
    assert config.stat().st_mode & 0o7777 == 0o600
    assert (config.stat().st_uid, config.stat().st_gid) == (0, 0)
    cfg = parse_doc(yaml.safe_load(config.read_text()))
    assert (cfg.role, cfg.node_name) == (role, HOSTNAMES[role])
    assert (root / "etc/hostname").read_text() == HOSTNAMES[role] + "\n"
    if role == "node":
        written = b"".join(p.read_bytes() for p in (root / "etc/kubeseed").rglob("*") if p.is_file())
        assert b"PRIVATE KEY" not in written + runtime.read_bytes()
    else:
        assert (root / "etc/kubeseed/addons/00-ns.yaml").read_text().startswith("apiVersion: v1\n")

    # The first-boot hook: a oneshot unit running the runtime, enabled through Ignition's preset file.
    unit = (root / "etc/systemd/system/kubeseed-firstboot.service").read_text()
    action = "join" if role == "node" else "init"
    assert f"ExecStart=/usr/bin/env python3 {RUNTIME_PATH} {action}\n" in unit
    assert "Type=oneshot" in unit
    presets = "".join(p.read_text() for p in (root / "etc/systemd/system-preset").iterdir())
    assert "enable kubeseed-firstboot.service" in presets

    # The login user, created by Ignition with useradd --root: password hash in shadow, groups, SSH key.
    passwd = {line.split(":")[0]: line.split(":") for line in (root / "etc/passwd").read_text().splitlines()}
    assert passwd["ops"][6] == "/bin/bash"
    shadow = {line.split(":")[0]: line.split(":") for line in (root / "etc/shadow").read_text().splitlines()}
    assert shadow["ops"][1].startswith("$6$")
    groups = {
        line.split(":")[0]: line.split(":")[3].split(",") for line in (root / "etc/group").read_text().splitlines()
    }
    assert "ops" in groups["sudo"] and "ops" in groups["adm"]
    keys = "".join(p.read_text() for p in (root / "home/ops/.ssh").rglob("*") if p.is_file())
    assert SSH_KEY in keys
    sudoers = root / "etc/sudoers.d/90-kubeseed-ops"
    assert sudoers.read_text() == "ops ALL=(ALL) NOPASSWD:ALL\n" and sudoers.stat().st_mode & 0o7777 == 0o440
