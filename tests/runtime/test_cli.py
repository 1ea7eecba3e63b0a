"""The runtime as a program: python3 -m kubeseed.runtime and the zipapp, with --root."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubeseed.generator.zipapp import build_zipapp


def runtime(*args: str, pyz: Path | None = None) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, str(pyz)] if pyz else [sys.executable, "-m", "kubeseed.runtime"]
    return subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=60)


def materialize(root: Path, doc: dict[str, Any]) -> Path:
    """A payload's files under ``root``, as cloud-init or Ignition would lay them out."""
    cfg = root / "etc/kubeseed/config.yaml"
    cfg.parent.mkdir(parents=True)
    cfg.write_text(yaml.safe_dump(doc))
    cfg.chmod(0o600)
    pyz = root / "opt/kubeseed/kubeseed-runtime.pyz"
    pyz.parent.mkdir(parents=True)
    pyz.write_bytes(build_zipapp(doc["role"]))
    return pyz


def files_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def test_help_lists_commands() -> None:
    r = runtime("--help")
    assert r.returncode == 0
    for command in ("preflight", "init", "join", "status"):
        assert command in r.stdout
    r = runtime("join", "--help")
    for flag in ("--root", "--config", "--node-name", "--ignore-preflight-errors", "--phase", "--skip-phases"):
        assert flag in r.stdout


def test_join_under_root_reports_missing_kubelet_and_records_state(tmp_path: Path, node_doc: dict) -> None:
    pyz = materialize(tmp_path, node_doc)
    r = runtime("join", "--root", str(tmp_path), pyz=pyz)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "[ERROR FileExisting-kubelet]: kubelet not found in system path" in r.stdout
    assert r.stdout.splitlines()[-1] == "[preflight] Running pre-flight checks... [failed]"
    assert r.stderr.startswith("error: [preflight] ") and "Traceback" not in r.stderr
    state = json.loads((tmp_path / "var/lib/kubeseed/state.json").read_text())
    assert state["command"] == "join" and state["phases"]["preflight"]["result"] == "failed"
    assert (tmp_path / "var/lib/kubeseed/state.json").stat().st_mode & 0o777 == 0o600
    log = (tmp_path / "var/log/kubeseed.log").read_text().splitlines()
    assert json.loads(log[-1])["phase"] == "preflight"
    assert (tmp_path / "var/log/kubeseed.log").stat().st_mode & 0o777 == 0o600
    secret = node_doc["discovery"]["token"].split(".")[1]
    assert secret not in r.stdout + r.stderr + "\n".join(log)


def test_join_rerun_skips_done_phases_and_status_reports(tmp_path: Path, node_doc: dict) -> None:
    pyz = materialize(tmp_path, node_doc)
    rest = ["--skip-phases", "discovery,tls-bootstrap,kubelet-config,kubelet-start,runtime"]
    first = runtime("join", "--root", str(tmp_path), "--ignore-preflight-errors", "all", *rest, pyz=pyz)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "[preflight] Running pre-flight checks... [done]" in first.stdout
    assert "[WARNING FileExisting-kubelet]" in first.stdout
    assert "discovery" not in first.stdout
    second = runtime("join", "--root", str(tmp_path), *rest, pyz=pyz)
    assert second.returncode == 0
    assert "[preflight] already done, skipping" in second.stdout
    again = runtime("join", "--root", str(tmp_path), "--phase", "preflight", pyz=pyz)
    assert again.returncode == 1 and "[ERROR FileExisting-kubelet]" in again.stdout  # --phase runs it again
    st = runtime("status", "--root", str(tmp_path), pyz=pyz)
    assert st.returncode == 1
    assert "preflight" in st.stdout and "failed" in st.stdout and "--ignore-preflight-errors=" in st.stdout


def test_node_name_flag_overrides_config(tmp_path: Path, node_doc: dict) -> None:
    pyz = materialize(tmp_path, node_doc)
    r = runtime("join", "--root", str(tmp_path), "--node-name", "flag-node.invalid", "--phase", "preflight", pyz=pyz)
    assert '[WARNING Hostname]: hostname "flag-node.invalid" could not be reached' in r.stdout
    r = runtime("join", "--root", str(tmp_path), "--node-name", "Not_Valid", pyz=pyz)  # checked before anything runs
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr == 'error: --node-name: "Not_Valid" is not a valid node name (lower-case DNS name)\n'


@pytest.mark.parametrize(
    "change,args,expected",
    [
        ({"apiVersion": "kubeseed.io/v2"}, ["join"], 'apiVersion: unknown version "kubeseed.io/v2"'),
        ({"networking": {"podSubnet": "10.0.0/8"}}, ["join"], 'networking.podSubnet: "10.0.0/8" is not a CIDR'),
        ({}, ["init"], "role: this node config is for a node; run `join`"),
        (
            {},
            ["join", "--phase", "bogus"],
            'unknown phase "bogus"; join has: preflight, discovery, tls-bootstrap, kubelet-config, kubelet-start',
        ),
        ({}, ["join", "--skip-phases", "nope"], '--skip-phases: unknown phase "nope"'),
    ],
)
def test_bad_config_or_flags_exit_2_and_write_nothing(
    tmp_path: Path, node_doc: dict, change: dict, args: list[str], expected: str
) -> None:
    node_doc.update(change)
    pyz = materialize(tmp_path, node_doc)
    before = files_under(tmp_path)
    r = runtime(*args, "--root", str(tmp_path), pyz=pyz)
    assert r.returncode == 2, r.stdout + r.stderr
    assert expected in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert files_under(tmp_path) == before


def test_missing_config_and_missing_root(tmp_path: Path) -> None:
    r = runtime("join", "--root", str(tmp_path))
    assert r.returncode == 2
    assert "etc/kubeseed/config.yaml: no node config here; pass --config FILE, or --root DIR" in r.stderr
    r = runtime("join", "--root", str(tmp_path / "nope"))
    assert r.returncode == 2 and "no such directory" in r.stderr
    assert files_under(tmp_path) == set()


def test_config_flag_reads_another_file(tmp_path: Path, node_doc: dict) -> None:
    cfg = tmp_path / "elsewhere.yaml"
    cfg.write_text(yaml.safe_dump(dict(node_doc, kubernetesVersion="v1.31.0")))
    root = tmp_path / "root"
    root.mkdir()
    r = runtime("preflight", "--root", str(root), "--config", str(cfg))
    assert "Install kubelet v1.31 from" in r.stdout  # the version came from --config
    assert "FileExisting-crictl" in r.stdout  # a v1.31 check
