"""--root confines every write: a planted symlink that leads out of the root is refused, naming the path, and
nothing lands outside; links that stay inside work. Directories the runtime makes get explicit modes whatever the
umask. The addon phase reads no file through a symlink out of /etc/kubeseed/addons."""

from __future__ import annotations

import io
import os
import re
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from kubeseed.runtime import init
from kubeseed.runtime.config import parse_node_config
from kubeseed.runtime.init import addons
from kubeseed.runtime.workflow import Context, PhaseError
from tests.support.apiserver import FakeAPIServer
from tests.support.helpers import cloud_init_files, kubeseed, lay_out
from tests.support.join import NODE, check_joined, flags, join, node_zipapp
from tests.support.master import API_PHASES


def outside_of(root: Path) -> Path:
    out = root.parent / "outside"
    out.mkdir(exist_ok=True)
    return out


@pytest.mark.parametrize(
    "link,target,phase",
    [
        ("var/log/kubeseed.log", "outside/kubeseed.log", "preflight"),  # the log: opened for appending
        ("var/lib/kubeseed", "outside", "lock"),  # state and lock
        ("etc/kubernetes", "outside", "discovery"),  # the bootstrap kubeconfig
        ("var/lib/kubelet", "outside", "tls-bootstrap"),  # the node key
        ("var/lib/kubelet/pki/kubelet-client.key.tmp", "outside/key", "tls-bootstrap"),  # a key file's own name
    ],
)
def test_a_planted_symlink_out_of_the_root_is_refused(
    root: Path, cluster: Path, api: FakeAPIServer, link: str, target: str, phase: str
) -> None:
    outside = outside_of(root)
    (root / link).parent.mkdir(parents=True, exist_ok=True)
    (root / link).symlink_to(root.parent / target)  # absolute: under --root that is the host's path
    r = join(root, *flags(cluster, api), timeout=10)
    assert r.returncode == 1, r.stdout + r.stderr
    named = rf"{re.escape(str(root / link))}\S*: a symlink leads out of {re.escape(str(root.resolve()))}; remove it"
    prefix = "" if phase in ("preflight", "lock") else re.escape(f"[{phase}] ")  # outside a phase: no phase named
    assert re.fullmatch(f"error: {prefix}{named}\n", r.stderr), r.stderr
    assert list(outside.iterdir()) == [], "a write went out of the root"
    assert api.csrs == {}


def test_symlinks_that_stay_in_the_root_are_followed(root: Path, cluster: Path, api: FakeAPIServer) -> None:
    """A machine may keep /var/lib/kubelet on another disk: a relative link inside the root is fine."""
    (root / "srv/kubelet").mkdir(parents=True)
    (root / "var/lib").mkdir(parents=True)
    (root / "var/lib/kubelet").symlink_to("../../srv/kubelet")
    r = join(root, *flags(cluster, api))
    assert r.returncode == 0, r.stdout + r.stderr
    check_joined(root, cluster, api)
    assert (root / "srv/kubelet/pki/kubelet-client-current.pem").is_symlink()


DIRS_JOIN = {  # every directory a join makes in an empty root: 0700, whatever the umask
    d: 0o700
    for d in (
        "etc",
        "etc/kubernetes",
        "etc/kubernetes/pki",
        "etc/systemd",
        "etc/systemd/system",
        "etc/systemd/system/kubelet.service.d",
        "var",
        "var/lib",
        "var/lib/kubelet",
        "var/lib/kubelet/pki",
        "var/lib/kubeseed",
        "var/log",
    )
}


def modes(root: Path, kind: int) -> dict[str, int]:
    return {
        str(p.relative_to(root)): stat.S_IMODE(p.lstat().st_mode)
        for p in root.rglob("*")
        if stat.S_IFMT(p.lstat().st_mode) == kind
    }


def test_umask_0_makes_nothing_world_writable_on_join(root: Path, cluster: Path, api: FakeAPIServer) -> None:
    cmd = [sys.executable, str(node_zipapp()), "join", *flags(cluster, api), "--root", str(root), "--node-name", NODE]
    cmd += ["--ignore-preflight-errors", "all", "--timeout", "20"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=80, umask=0)
    assert r.returncode == 0, r.stdout + r.stderr
    assert modes(root, stat.S_IFDIR) == DIRS_JOIN
    files = modes(root, stat.S_IFREG)
    assert files and all(mode & 0o022 == 0 for mode in files.values()), files
    for private in ("etc/kubernetes/kubelet.conf", "var/lib/kubeseed/state.json", "var/log/kubeseed.log"):
        assert files[private] == 0o600


def test_umask_0_makes_nothing_world_writable_on_init(tmp_path: Path) -> None:
    r = kubeseed("cluster", "create", "demo", "--endpoint", "10.0.0.10:6443", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    r = kubeseed("render", "master", "demo", "--hostname", "cp-1", "-o", "master.yaml", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    root = tmp_path / "machine"
    pyz = lay_out(cloud_init_files((tmp_path / "master.yaml").read_bytes()), root)
    laid_out = modes(root, stat.S_IFDIR)
    cmd = [sys.executable, str(pyz), "init", "--root", str(root), "--ignore-preflight-errors", "all"]
    cmd += ["--advertise-address", "127.0.0.2", "--skip-phases", API_PHASES]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, umask=0)
    assert r.returncode == 0, r.stdout + r.stderr
    made = {d: m for d, m in modes(root, stat.S_IFDIR).items() if d not in laid_out}
    assert {"etc/kubernetes/pki/etcd", "etc/kubernetes/manifests", "root/.kube", "var/lib/kubelet"} <= set(made)
    assert all(m == 0o700 for m in made.values()), made
    files = modes(root, stat.S_IFREG)
    assert all(mode & 0o022 == 0 for mode in files.values()), files
    assert all(files[str(k.relative_to(root))] == 0o600 for k in (root / "etc/kubernetes/pki").rglob("*.key"))


def test_the_addon_phase_reads_no_file_through_a_symlink_out_of_the_addon_dir(
    tmp_path: Path, master_doc: dict[str, Any]
) -> None:
    master_doc["addons"] = ["/etc/kubeseed/addons/00-net.yaml"]
    cfg = parse_node_config(master_doc, init.CONFIG)
    addon_dir = tmp_path / "etc/kubeseed/addons"
    addon_dir.mkdir(parents=True)
    secret = tmp_path / "etc/kubernetes/admin.conf"  # inside the root, outside the add-on directory
    secret.parent.mkdir(parents=True)
    secret.write_text("apiVersion: v1\nkind: Secret\nmetadata: {name: admin}\n")
    (addon_dir / "00-net.yaml").symlink_to("../../kubernetes/admin.conf")
    ctx = Context("init", cfg, str(tmp_path), out=io.StringIO())
    with pytest.raises(PhaseError) as e:
        addons.addon(ctx)
    assert str(e.value) == (f"{addon_dir}/00-net.yaml: a symlink leads out of {os.path.realpath(addon_dir)}; remove it")


def test_the_addon_phase_refuses_yaml_aliases(tmp_path: Path, master_doc: dict[str, Any]) -> None:
    """Nested aliases expand to gigabytes: refused before anything is applied (no API server is needed)."""
    master_doc["addons"] = ["/etc/kubeseed/addons/00-net.yaml"]
    cfg = parse_node_config(master_doc, init.CONFIG)
    addon_dir = tmp_path / "etc/kubeseed/addons"
    addon_dir.mkdir(parents=True)
    (addon_dir / "00-net.yaml").write_text("a: &a [x, x]\nb: &b [*a, *a]\n---\nkind: X\nmetadata: {name: *b}\n")
    with pytest.raises(PhaseError) as e:
        addons.addon(Context("init", cfg, str(tmp_path), out=io.StringIO()))
    assert str(e.value) == "add-on /etc/kubeseed/addons/00-net.yaml: aliases (*name) are not accepted"
