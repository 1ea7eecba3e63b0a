"""`reset` (issue 13): what kubeadm reset does, under --root: after init or join nothing of either is left but the
payload's own files, a second reset finds nothing, and init or join runs again; it asks first unless -f; it never
follows a link out of the root. A master's runtime and the full runtime have it; a node payload's does not."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

from kubeseed.generator.zipapp import build_zipapp
from tests.support.apiserver import FakeAPIServer
from tests.support.join import flags, join, node_zipapp
from tests.support.master import init_file_phases, make_master

PAYLOAD = {"opt/kubeseed/kubeseed-runtime.pyz", "etc/kubeseed/config.yaml"}


def files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() or p.is_symlink()}


def reset(pyz: Path, root: Path, *args: str, **kw: object) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, str(pyz), "reset", "--root", str(root), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, **kw)  # type: ignore[call-overload]


@pytest.fixture(scope="module")
def full_runtime(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("full") / "kubeseed-runtime.pyz"
    path.write_bytes(build_zipapp(None))
    return path


def test_reset_after_init_leaves_only_the_payload_and_init_runs_again(tmp_path: Path) -> None:
    root = make_master(tmp_path)
    pyz = root / "opt/kubeseed/kubeseed-runtime.pyz"
    init_file_phases(root)
    assert len(files(root)) > 30
    r = reset(pyz, root, "-f")
    assert r.returncode == 0, r.stdout + r.stderr
    assert files(root) == PAYLOAD, sorted(files(root) - PAYLOAD)
    for line in (
        "[reset] WARNING: could not remove etcd member cp-1 (",  # no etcd runs here: said, and reset goes on
        "If other masters remain, remove it from one of them: kubeseed-runtime remove-control-plane cp-1",
        "/etc/kubernetes/manifests/etcd.yaml, ",
        "[reset] Deleted /root/.kube/config, ",  # init's copy of admin.conf
        "The reset process does not clean CNI configuration. To do so, you must remove /etc/cni/net.d",
        "Please, check the contents of the $HOME/.kube/config file.",
    ):
        assert line in r.stdout
    assert "/etc/kubernetes/pki" in r.stdout and "/var/lib/kubeseed" in r.stdout

    again = reset(pyz, root, "-f")
    assert again.returncode == 0 and "[reset] nothing of init or join was left to delete" in again.stdout
    assert files(root) == PAYLOAD
    init_file_phases(root)  # a clean slate: preflight passes, every phase runs again
    assert (root / "etc/kubernetes/pki/apiserver.crt").exists()


def test_reset_after_join_with_the_full_runtime(
    root: Path, cluster: Path, api: FakeAPIServer, full_runtime: Path
) -> None:
    r = join(root, *flags(cluster, api))
    assert r.returncode == 0, r.stdout + r.stderr
    assert (root / "etc/kubernetes/kubelet.conf").exists()
    r = reset(full_runtime, root, "-f")
    assert r.returncode == 0, r.stdout + r.stderr
    assert files(root) == set(), sorted(files(root))  # joined by flags: no payload files
    assert "etcd" not in r.stdout.split("\n")[0]
    r = join(root, *flags(cluster, api))
    assert r.returncode == 0, r.stdout + r.stderr


def test_reset_asks_first(tmp_path: Path) -> None:
    root = make_master(tmp_path)
    pyz = root / "opt/kubeseed/kubeseed-runtime.pyz"
    init_file_phases(root)
    before = files(root)
    r = reset(pyz, root, stdin=subprocess.DEVNULL)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "there is no terminal to ask on: pass -f" in r.stderr
    assert files(root) == before

    def on_a_terminal(answer: bytes) -> str:
        leader, follower = pty.openpty()
        proc = subprocess.Popen(
            [sys.executable, str(pyz), "reset", "--root", str(root)],
            stdin=follower,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        os.close(follower)
        os.write(leader, answer)
        out, _ = proc.communicate(timeout=60)
        os.close(leader)
        return out.decode()

    assert "aborted: nothing was changed" in on_a_terminal(b"n\n")
    assert files(root) == before
    out = on_a_terminal(b"y\n")
    assert "Are you sure you want to proceed? [y/N]" in out and "[reset] Deleted" in out
    assert files(root) == PAYLOAD


def test_reset_never_follows_a_link_out_of_the_root(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    root = make_master(tmp_path / "m")
    pyz = root / "opt/kubeseed/kubeseed-runtime.pyz"
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious").write_text("keep me")
    (root / "var/lib").mkdir(parents=True, exist_ok=True)
    (root / "var/lib/kubelet").symlink_to(outside)
    r = reset(pyz, root, "-f")
    assert r.returncode == 1 and "a symlink leads out of" in r.stderr and "Traceback" not in r.stderr
    assert (outside / "precious").read_text() == "keep me"


def test_the_node_payload_runtime_has_no_reset() -> None:
    r = subprocess.run([sys.executable, str(node_zipapp()), "reset", "-f"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "invalid choice: 'reset'" in r.stderr
