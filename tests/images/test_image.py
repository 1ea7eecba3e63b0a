"""The golden image recipes: what the built tree holds, the raw disk `kubeseed image build` writes (read back with
sfdisk, debugfs and e2fsck, never mounted), the builder's errors, provision.sh, and the Packer template."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from kubeseed.generator import cli
from kubeseed.generator.errors import UserError
from kubeseed.generator.goldenimage.apt import DEFAULT_SECURITY, host_mirrors
from kubeseed.generator.goldenimage.build import DEFAULT_MINOR, TREE_TOOLS, TreeInfo, check_host, package_list
from kubeseed.generator.goldenimage.disk import (
    DISK_TOOLS,
    GRUB_DIR,
    PART_START,
    ROOT_LABEL,
    default_fs_size,
    parse_size,
)
from kubeseed.generator.zipapp import build_zipapp
from kubeseed.runtime.config import RUNTIME_PATH
from kubeseed.runtime.versions import DEFAULT
from tests.support.helpers import need_tool, unavailable

REPO = Path(__file__).resolve().parents[2]
PROVISION = REPO / "images/provision.sh"
PACKER = REPO / "images/kubeseed.pkr.hcl"


def image_cmd(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kubeseed.generator.imagecli", *args],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
        cwd=cwd or REPO,
    )


# -- the tree ---------------------------------------------------------------------------------------------------
def test_the_tree_holds_what_kubernetes_and_the_runtime_need(image_tree: TreeInfo) -> None:
    root = image_tree.path
    pyz = root / RUNTIME_PATH.lstrip("/")
    assert pyz.read_bytes() == build_zipapp(None)  # the full runtime, as build_zipapp() makes it
    assert pyz.stat().st_mode & 0o777 == 0o755 and pyz.stat().st_uid == 0

    status = (root / "var/lib/dpkg/status").read_text()
    installed = {
        m.group(1)
        for stanza in status.split("\n\n")
        if "\nStatus: install ok installed" in stanza and (m := re.match(r"Package: (\S+)", stanza))
    }
    for pkg in package_list(PROVISION.read_text()):
        assert pkg in installed, pkg
    assert "python3-cffi-backend" in installed  # python3-cryptography imports it; debootstrap'd trees lack it

    assert (root / "etc/modules-load.d/k8s.conf").read_text().split() == ["overlay", "br_netfilter"]
    sysctl = (root / "etc/sysctl.d/k8s.conf").read_text()
    for line in ("net.ipv4.ip_forward = 1", "net.bridge.bridge-nf-call-iptables = 1"):
        assert line in sysctl
    assert "SystemdCgroup = true" in (root / "etc/containerd/config.toml").read_text()
    assert (root / "etc/systemd/system/multi-user.target.wants/containerd.service").is_symlink()
    bridge = root / "opt/cni/bin/bridge"  # Debian's CNI plugins, where containerd and CNI add-ons look
    assert bridge.is_symlink() and (root / os.readlink(bridge).lstrip("/")).is_file()
    assert not [line for line in (root / "etc/fstab").read_text().splitlines() if " swap " in line and line[0] != "#"]

    # This build machine cannot reach pkgs.k8s.io: the image has no kubelet, and nothing stands in for one.
    if not image_tree.kubelet:
        assert (
            not (root / "usr/bin/kubelet").exists() and not (root / "usr/lib/systemd/system/kubelet.service").exists()
        )
        assert "NO KUBELET" in image_tree.kubelet_note and "pkgs.k8s.io" in image_tree.kubelet_note

    # Nothing of the build machine or of one instance: every machine makes its own identity at first boot.
    assert (root / "etc/machine-id").read_text() == ""
    assert not list((root / "etc/ssh").glob("ssh_host_*"))
    assert not (root / "usr/sbin/policy-rc.d").exists() and not (root / "var/tmp/kubeseed-build").exists()
    assert not (root / "etc/resolv.conf").exists()
    assert (root / "etc/hostname").read_text() == "localhost\n"
    assert not (root / "var/lib/cloud").exists() or not any((root / "var/lib/cloud").iterdir())
    assert not list((root / "var/lib/apt/lists").glob("*_Packages"))
    sources = (root / "etc/apt/sources.list.d/debian.sources").read_text()
    assert image_tree.mirrors.archive in sources and "bookworm-security" in sources


def test_the_runtime_in_the_tree_runs_on_the_images_python(image_tree: TreeInfo) -> None:
    """Debian 12's own python3 with the image's PyYAML and cryptography (through python3-cffi-backend)."""
    need_tool("chroot")
    check = "import yaml, cryptography.hazmat.primitives.asymmetric.ec as ec; ec.generate_private_key(ec.SECP256R1())"
    r = subprocess.run(["chroot", str(image_tree.path), "python3", "-c", check], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(
        ["chroot", str(image_tree.path), "python3", RUNTIME_PATH, "--version"], capture_output=True, text=True
    )
    assert r.returncode == 0 and r.stdout.startswith("kubeseed-runtime "), r.stderr


# -- the disk ---------------------------------------------------------------------------------------------------
def debugfs(fs: str, request: str) -> str:
    r = subprocess.run(["debugfs", "-R", request, fs], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_image_build_writes_a_bootable_raw_disk(image_tree: TreeInfo, tmp_path: Path) -> None:
    """`kubeseed image build` as a user runs it (the session already warmed the cache, so this is the cached
    path). The disk is read back without mounting it: sfdisk, debugfs and e2fsck on the partition's offset."""
    for tool, package in DISK_TOOLS.items():
        need_tool(tool, install=f"apt-get install {package}")
    need_tool("debugfs", install="apt-get install e2fsprogs")
    if not (GRUB_DIR / "boot.img").is_file():
        unavailable("GRUB for BIOS is not installed (apt-get install grub-pc-bin)")
    out = tmp_path / "out" / "node.img"
    r = image_cmd("build", "--out", str(out), "--role", "node")
    try:
        assert r.returncode == 0, r.stderr
        assert "Using the cached provisioned tree" in r.stderr and "[done]" in r.stderr
        assert f"Image: {out}" in r.stdout and "qemu-system-x86_64" in r.stdout
        if not image_tree.kubelet:
            assert "NO KUBELET in the image" in r.stdout and "NO KUBELET" in r.stderr
        kernel, initrd = out.with_name("node.vmlinuz"), out.with_name("node.initrd")
        assert sorted(p.name for p in out.parent.iterdir()) == ["node.img", "node.initrd", "node.vmlinuz"]

        table = subprocess.run(["sfdisk", "--json", str(out)], capture_output=True, text=True, check=True).stdout
        part = json.loads(table)["partitiontable"]
        assert part["label"] == "dos" and len(part["partitions"]) == 1
        (p1,) = part["partitions"]
        assert p1["start"] * 512 == PART_START and p1["type"] == "83" and p1.get("bootable") is True
        assert (p1["start"] + p1["size"]) * 512 == out.stat().st_size
        assert out.stat().st_blocks * 512 < out.stat().st_size  # sparse

        with open(out, "rb") as f:
            mbr = f.read(512)
            core = f.read(PART_START - 512)
        assert mbr[:440] == (GRUB_DIR / "boot.img").read_bytes()[:440] and mbr[510:] == b"\x55\xaa"
        start, length = struct.unpack_from("<QH", core, 512 - 12)  # core.img's own blocklist: the rest of it
        assert start == 2 and 0 < length < PART_START // 512

        fs = f"{out}?offset={PART_START}"
        fsck = subprocess.run(["e2fsck", "-fn", fs], capture_output=True, text=True)
        assert fsck.returncode == 0, fsck.stdout + fsck.stderr
        assert (
            f"Filesystem volume name:   {ROOT_LABEL}"
            in subprocess.run(["dumpe2fs", "-h", fs], capture_output=True, text=True).stdout
        )
        stat = debugfs(fs, f"stat {RUNTIME_PATH}")
        assert "Mode:  0755" in stat and "User:     0" in stat
        dumped = tmp_path / "runtime.pyz"
        debugfs(fs, f"dump {RUNTIME_PATH} {dumped}")
        assert dumped.read_bytes() == build_zipapp(None)
        debugfs(fs, f"dump /boot/grub/grub.cfg {tmp_path / 'grub.cfg'}")
        grub = (tmp_path / "grub.cfg").read_text()
        assert f"root=LABEL={ROOT_LABEL}" in grub and "linux /vmlinuz" in grub
        assert "normal.mod" in debugfs(fs, "ls -l /boot/grub/i386-pc")
        debugfs(fs, f"dump /etc/fstab {tmp_path / 'fstab'}")
        assert f"LABEL={ROOT_LABEL} / ext4" in (tmp_path / "fstab").read_text()
        link = debugfs(fs, "stat /vmlinuz")
        target = re.search(r'Fast link dest: "([^"]+)"', link)
        assert target, link
        debugfs(fs, f"dump /{target.group(1)} {tmp_path / 'vmlinuz'}")
        assert (tmp_path / "vmlinuz").read_bytes() == kernel.read_bytes()
        assert initrd.stat().st_size > 1 << 20 and kernel.read_bytes()[0x202:0x206] == b"HdrS"  # a bzImage
    finally:
        shutil.rmtree(tmp_path / "out", ignore_errors=True)


# -- errors -----------------------------------------------------------------------------------------------------
def test_not_root_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(UserError, match="needs root .* run it as root"):
        check_host()


def test_missing_debootstrap_names_the_package(tmp_path: Path) -> None:
    """A PATH with every tool the builder uses except debootstrap."""
    if os.geteuid() != 0:
        unavailable("the builder's checks start with root")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in [*TREE_TOOLS, *DISK_TOOLS]:
        found = shutil.which(tool)
        if tool != "debootstrap" and found:
            (bin_dir / tool).symlink_to(found)
    out = tmp_path / "node.img"
    r = image_cmd("build", "--out", str(out), env={**os.environ, "PATH": str(bin_dir)})
    assert r.returncode == 2
    assert "missing debootstrap" in r.stderr and "apt-get install debootstrap" in r.stderr
    assert "Traceback" not in r.stderr and not out.exists()


def test_unreachable_mirror_is_one_clear_error(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        unavailable("the builder's checks start with root")
    with socket.socket() as s:  # a port on this machine where nothing listens
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "out" / "node.img"
    cache = tmp_path / "cache"
    r = image_cmd("build", "--out", str(out), "--mirror", f"http://127.0.0.1:{port}/debian", "--cache", str(cache))
    assert r.returncode == 3, r.stderr
    assert f"the Debian mirror http://127.0.0.1:{port}/debian is unreachable" in r.stderr
    assert "--mirror" in r.stderr and "Traceback" not in r.stderr
    assert not out.parent.exists() and not list(cache.glob("*.tar.zst"))


def test_a_failed_build_exits_3_through_cli_main(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A BuildError (here: the mirror does not answer) is a UserError with its own exit code, 3, which cli.main
    returns; bad options stay 2. check_host is stubbed (root and the tools taken as present): runs anywhere."""

    def unreachable(url: str, timeout: float) -> None:
        raise OSError("no route to host")

    monkeypatch.setattr("kubeseed.generator.goldenimage.build.check_host", lambda disk=True: None)
    monkeypatch.setattr("kubeseed.generator.goldenimage.apt._fetch", unreachable)
    out = tmp_path / "out" / "node.img"
    argv = ["image", "build", "--out", str(out), "--mirror", "http://mirror.invalid/debian"]
    assert cli.main([*argv, "--cache", str(tmp_path / "cache")]) == 3
    err = capsys.readouterr().err
    assert "error: the Debian mirror http://mirror.invalid/debian is unreachable (" in err and "no route" in err
    assert not out.parent.exists()
    assert cli.main([*argv, "--size", "lots"]) == 2


def test_bad_options_are_usage_errors(tmp_path: Path) -> None:
    r = image_cmd("build", "--out", str(tmp_path / "x.img"), "--kubernetes-version", "1.x")
    assert r.returncode == 2 and "--kubernetes-version" in r.stderr
    r = image_cmd("build", "--out", str(tmp_path / "x.img"), "--size", "lots")
    assert r.returncode == 2 and "--size" in r.stderr
    r = image_cmd("build", "--out", str(tmp_path / "x.img"), "--role", "etcd")
    assert r.returncode == 2 and "invalid choice" in r.stderr


def test_the_mirror_comes_from_the_machines_apt(tmp_path: Path) -> None:
    apt = tmp_path / "apt"
    (apt / "sources.list.d").mkdir(parents=True)
    (apt / "sources.list.d/debian.sources").write_text(
        "Types: deb\n# a comment\nURIs: http://mirror.example/debian/\nSuites: bookworm bookworm-updates\n"
        "Components: main\n\nTypes: deb\nURIs: http://security.example/debian-security\n"
        "Suites: bookworm-security\nComponents: main\n"
    )
    found = host_mirrors(apt)
    assert (found.archive, found.security) == (
        "http://mirror.example/debian",
        "http://security.example/debian-security",
    )
    (apt / "sources.list.d/debian.sources").unlink()
    (apt / "sources.list").write_text("# old style\ndeb [arch=amd64] http://old.example/debian bookworm main\n")
    found = host_mirrors(apt)
    assert (found.archive, found.security) == ("http://old.example/debian", DEFAULT_SECURITY)
    (apt / "sources.list").write_text("deb-src http://old.example/debian bookworm main\n")
    with pytest.raises(UserError, match="no Debian mirror found .* --mirror"):
        host_mirrors(apt)


def test_sizes_and_versions() -> None:
    assert parse_size("4G") == 4 << 30 and parse_size("2048M") == 2 << 30
    assert default_fs_size(100 << 20) == 2 << 30
    assert default_fs_size(3 << 30) % (64 << 20) == 0 and default_fs_size(3 << 30) > (4 << 30)


# -- the recipes ------------------------------------------------------------------------------------------------
def test_provision_script_is_valid_sh_and_installs_the_runtime_where_payloads_expect_it() -> None:
    r = subprocess.run(["sh", "-n", str(PROVISION)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    text = PROVISION.read_text()
    assert f"RUNTIME_DST={RUNTIME_PATH}" in text and 'install -D -m 0755 -o root -g root "$RUNTIME_SRC"' in text
    pkgs = package_list(text)
    for pkg in ("cloud-init", "python3", "python3-yaml", "python3-cryptography", "python3-cffi-backend"):
        assert pkg in pkgs
    for pkg in ("containerd", "runc", "linux-image-amd64", "util-linux", "mount", "openssh-server"):
        assert pkg in pkgs
    if shutil.which("shellcheck"):
        r = subprocess.run(["shellcheck", "-s", "sh", str(PROVISION)], capture_output=True, text=True)
        assert r.returncode == 0, r.stdout


def _unquote(value: Any) -> Any:
    """python-hcl2 keeps string literals' quotes."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def test_packer_template_is_hcl2_with_both_sources_running_the_same_script() -> None:
    try:
        import hcl2
    except ImportError:
        unavailable("python-hcl2 is not installed (pip install python-hcl2)")
    doc = hcl2.loads(PACKER.read_text())
    sources = {(_unquote(kind), _unquote(name)) for s in doc["source"] for kind, named in s.items() for name in named}
    assert sources == {("qemu", "debian12"), ("amazon-ebs", "debian12")}
    (build,) = doc["build"]
    assert [_unquote(s) for s in build["sources"]] == ["source.qemu.debian12", "source.amazon-ebs.debian12"]
    provisioners = [(_unquote(kind), body) for p in build["provisioner"] for kind, body in p.items()]
    kinds = [k for k, _ in provisioners]
    assert kinds[:2] == ["file", "shell"]
    upload, shell = provisioners[0][1], provisioners[1][1]
    assert _unquote(shell["script"]) == "${path.root}/provision.sh"  # images/provision.sh, the local builder's
    assert _unquote(shell["execute_command"]).endswith("{{ .Path }} all")
    env = dict(_unquote(e).split("=", 1) for e in shell["environment_vars"])
    assert env["KUBESEED_RUNTIME"] == _unquote(upload["destination"]) == "/tmp/kubeseed-runtime.pyz"
    assert env["KUBESEED_ROLE"] == "${var.role}" and env["KUBESEED_KUBELET"] == "${var.kubelet}"
    variables = {_unquote(k) for v in doc["variable"] for k in v}
    assert {"role", "kubernetes_minor", "kubelet", "runtime_zipapp", "aws_region"} <= variables
    minor = next(body for v in doc["variable"] for k, body in v.items() if _unquote(k) == "kubernetes_minor")
    assert _unquote(minor["default"]) == DEFAULT_MINOR  # the version contract's default stream, as the builder's


def test_provision_script_defaults_to_the_contracts_stream() -> None:
    assert f"MINOR=${{KUBERNETES_MINOR:-{DEFAULT_MINOR}}}" in PROVISION.read_text()
    assert DEFAULT_MINOR == DEFAULT[1:].rsplit(".", 1)[0]
