"""Shared test helpers (tests only): run the CLI in a subprocess, decode payload files and lay them out, find
or skip for real tools, pick a free port."""

from __future__ import annotations

import base64
import gzip
import json
import os
import shutil
import socket
import subprocess
import sys
import urllib.parse
from pathlib import Path
from typing import Any, NoReturn

import pytest
import yaml

SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGn4kubeseedtestkey ops@example"  # the full_cluster login user's key
HOSTNAMES = {"master": "cp-1", "node": "worker-1"}  # the host names of the consumer tests' payloads, by role


def kubeseed(*args: str, cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``kubeseed ARGS`` as a user would (a fresh interpreter), capturing output as text."""
    return subprocess.run(
        [sys.executable, "-m", "kubeseed.generator.cli", *args],
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def ks(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``kubeseed ARGS`` in a fresh interpreter, with ``env`` added to the environment."""
    return subprocess.run(
        [sys.executable, "-m", "kubeseed.generator.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def kubeseed_bytes(*args: str, cwd: Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "kubeseed.generator.cli", *args], cwd=cwd, capture_output=True, timeout=120
    )


def cloud_init_files(userdata: bytes) -> dict[str, tuple[bytes, int]]:
    """path -> (content, mode) of every write_files entry, decoded as cloud-init decodes them."""
    if userdata[:2] == b"\x1f\x8b":
        userdata = gzip.decompress(userdata)
    assert userdata.startswith(b"#cloud-config\n")
    doc = yaml.safe_load(userdata)
    out = {}
    for f in doc["write_files"]:
        enc = f.get("encoding", "text")
        raw = f["content"].encode() if enc == "text" else base64.b64decode(f["content"])
        if enc == "gz+b64":
            raw = gzip.decompress(raw)
        out[f["path"]] = (raw, int(f["permissions"], 8))
    return out


def ignition_files(config: bytes) -> dict[str, tuple[bytes, int]]:
    """path -> (content, mode) of every storage.files entry, decoded as Ignition decodes data URLs."""
    doc = json.loads(config)
    out = {}
    for f in doc["storage"]["files"]:
        src = f["contents"]["source"]
        head, _, body = src.partition(",")
        raw = base64.b64decode(body) if head.endswith(";base64") else urllib.parse.unquote_to_bytes(body)
        if f["contents"].get("compression") == "gzip":
            raw = gzip.decompress(raw)
        out[f["path"]] = (raw, f["mode"])
    return out


def in_ci() -> bool:
    """True under ``.ci/run``, which installs every tool the tests use: there a missing tool is a failure."""
    return os.environ.get("KUBESEED_CI") == "1"


def need_tool(name: str, path: str | None = None, install: str = "") -> str:
    """The path of a real consumer (cloud-init, ignition-validate, ...); skip with the reason when this
    machine lacks it, but fail under CI, where ``.ci/run`` must have installed it."""
    found = path if path and os.access(path, os.X_OK) else shutil.which(name)
    if found:
        return found
    unavailable(f"{name} is not installed ({install or 'see .ci/run'})")


def unavailable(reason: str) -> NoReturn:
    """Skip for ``reason`` on a developer machine; fail under CI, where ``.ci/run`` installs everything."""
    if in_ci():
        pytest.fail(reason + "; .ci/run should have installed it")
    pytest.skip(reason)


def venv_tool(name: str) -> str | None:
    """A console script installed beside the running interpreter (the venv's kubectl, vermin)."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else None


def lay_out(files: dict[str, tuple[bytes, int]], root: Path) -> Path:
    """Write decoded payload files (path -> (content, mode), as cloud_init_files or ignition_files give them)
    under ``root``, as the first boot would; returns the runtime zipapp's path there."""
    for path, (content, mode) in files.items():
        dst = root / path.lstrip("/")
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(content)
        dst.chmod(mode)
    return root / "opt/kubeseed/kubeseed-runtime.pyz"


def free_port() -> int:
    """A TCP port on the loopback that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def kubeseed_with(*args: str, cwd: Path, **run: Any) -> subprocess.CompletedProcess[bytes]:
    """``kubeseed ARGS`` with more of subprocess.run's arguments (``pass_fds``, a ``preexec_fn`` that sets the
    umask), capturing output as bytes."""
    return subprocess.run(
        [sys.executable, "-m", "kubeseed.generator.cli", *args], cwd=cwd, capture_output=True, timeout=120, **run
    )
