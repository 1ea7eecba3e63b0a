"""A real first boot in QEMU: the golden image's raw disk, the node's NoCloud seed ISO as a CD-ROM, SSH forwarded
to a host loopback port, checked over SSH with pytest-testinfra. The runtime inside joins the in-test API
server on the host (QEMU's user-mode network shows the host's loopback to the guest as 10.0.2.2).

One case only: it runs under TCG emulation (KVM fails on these machines even where /dev/kvm exists). Every wait
is bounded; on failure the serial console log stays in the artifacts directory and its tail is printed.

The booted disk is made from a copy of the image tree plus the TEST STAND-IN kubelet of tests/support/nspawn.py
(no kubelet binary can be had here); the seed ISO and the payload in it are the product's, unchanged.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import testinfra

from kubeseed.generator.goldenimage.build import TreeInfo
from kubeseed.generator.goldenimage.disk import KERNEL_CMDLINE, boot_files, make_disk, write_boot_config
from kubeseed.generator.goldenimage.proc import remove_tree
from kubeseed.generator.tokens import load_tokens
from kubeseed.runtime import pki
from tests.support.apiserver import FakeAPIServer, cluster_info_kubeconfig, detached_jws
from tests.support.helpers import free_port, kubeseed, need_tool
from tests.support.nspawn import add_kubelet_stand_in, copy_tree

HOSTNAME = "worker-q"
ARTIFACTS = Path(os.environ.get("KUBESEED_ARTIFACTS", "/tmp/kubeseed-artifacts"))
PHASES = ["preflight", "discovery", "tls-bootstrap", "kubelet-config", "kubelet-start", "runtime"]


@pytest.fixture(scope="module")
def disk(image_tree: TreeInfo, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path, Path]]:
    """(raw disk, kernel, initrd) of the image with the test stand-in kubelet, made by the builder's own code."""
    need_tool("mke2fs", install="apt-get install e2fsprogs")
    base = tmp_path_factory.mktemp("qemu-disk")
    tree = base / "tree"
    copy_tree(image_tree.path, tree)
    add_kubelet_stand_in(tree)
    write_boot_config(tree)  # /etc/fstab (the root remounted read-write) and GRUB's files, as build_image does
    image = base / "disk.img"
    make_disk(tree, image, 3 << 30, base / "make-disk.log")
    kernel, initrd = boot_files(tree)
    shutil.copy(kernel, base / "vmlinuz")
    shutil.copy(initrd, base / "initrd")
    remove_tree(tree)
    yield image, base / "vmlinuz", base / "initrd"


class VM:
    def __init__(self, image: Path, kernel: Path, initrd: Path, seed: Path, work: Path) -> None:
        qemu = need_tool("qemu-system-x86_64", install="apt-get install qemu-system-x86")
        need_tool("qemu-img", install="apt-get install qemu-utils")
        overlay = work / "overlay.qcow2"
        subprocess.run(
            ["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(image), "-F", "raw", str(overlay)], check=True
        )
        self.ssh_port = free_port()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.console = ARTIFACTS / f"qemu-{HOSTNAME}-console.log"
        self.console.unlink(missing_ok=True)  # QEMU appends to an existing file
        # TCG: /dev/kvm may exist on these machines, but KVM fails on them (e.g. "failed to set MSR 0x10a").
        self.cmd = [
            qemu,
            "-accel",
            "tcg",
            "-cpu",
            "max",
            "-m",
            "2048",
            "-smp",
            "2",
            "-display",
            "none",
            "-nodefaults",
            "-no-reboot",
            "-serial",
            f"file:{self.console}",
            "-drive",
            f"file={overlay},format=qcow2,if=virtio",
            "-drive",
            f"file={seed},format=raw,media=cdrom,readonly=on",
            "-netdev",
            f"user,id=n0,hostfwd=tcp:127.0.0.1:{self.ssh_port}-:22",
            "-device",
            "virtio-net-pci,netdev=n0",
            "-kernel",
            str(kernel),
            "-initrd",
            str(initrd),
            "-append",
            KERNEL_CMDLINE,
        ]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> VM:
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            self.cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=open(self.console.with_suffix(".qemu.log"), "wb"),
        )
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)

    def tail(self, lines: int = 80) -> str:
        text = self.console.read_bytes().decode(errors="replace") if self.console.exists() else ""
        return f"--- serial console ({self.console}), last {lines} lines ---\n" + "\n".join(text.splitlines()[-lines:])

    def ssh(self, key: Path, *command: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        cmd = [
            "ssh",
            "-i",
            str(key),
            "-p",
            str(self.ssh_port),
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "ConnectTimeout=5",
            "-o",
            "BatchMode=yes",
            "-o",
            "LogLevel=ERROR",
            "ops@127.0.0.1",
            *command,
        ]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)

    def wait_until(self, what: str, ready: Callable[[], bool], timeout: float) -> float:
        deadline = time.monotonic() + timeout
        while True:
            if ready():
                return time.monotonic() - self.started
            if self.proc is None or self.proc.poll() is not None:
                raise AssertionError(f"QEMU exited before {what}\n{self.tail()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: not within {timeout:.0f} s (TCG)\n" + self.tail())
            time.sleep(3)


def test_qemu_first_boot_from_the_seed_iso_joins(disk: tuple[Path, Path, Path], tmp_path: Path) -> None:
    image, kernel, initrd = disk
    need_tool("ssh", install="apt-get install openssh-client")
    port = free_port()
    r = kubeseed("cluster", "create", "demo", "--endpoint", f"10.0.2.2:{port}", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "ops@test", "-f", str(key)], check=True)
    pub = key.with_suffix(".pub").read_text().strip()
    cfg = tmp_path / "demo/cluster.yaml"
    cfg.write_text(
        cfg.read_text().replace(
            "users: []\n",
            f'users:\n  - name: ops\n    sshAuthorizedKeys: ["{pub}"]\n    groups: [adm]\n    sudo: true\n',
        )
    )
    (tmp_path / "hosts.yaml").write_text(
        f"apiVersion: kubeseed.io/v1alpha1\nkind: Inventory\nhosts:\n  - hostname: {HOSTNAME}\n    role: node\n"
    )
    r = kubeseed(
        "seed", "demo", "--inventory", "hosts.yaml", "--runtime", "preinstalled", "--out", "seeds", cwd=tmp_path
    )
    assert r.returncode == 0, r.stderr
    seed = tmp_path / "seeds" / f"{HOSTNAME}.iso"

    ca_pem, ca_key_pem = (tmp_path / "demo/pki/ca.crt").read_bytes(), (tmp_path / "demo/pki/ca.key").read_bytes()
    serving_key = pki.new_key("ECDSA-P256")  # the guest reaches the host's loopback as 10.0.2.2
    serving = pki.sign_leaf(
        pki.load_cert(ca_pem),
        pki.load_key(ca_key_pem),
        serving_key.public_key(),
        "kube-apiserver",
        client=False,
        server=True,
        sans=["10.0.2.2", "127.0.0.1"],
    )
    tokens = [{"token": t.token, "expires": t.expires} for t in load_tokens(tmp_path / "demo")]
    vm = VM(image, kernel, initrd, seed, tmp_path)
    with FakeAPIServer(
        ca_pem, ca_key_pem, tokens, serving_cert=(pki.cert_pem(serving), pki.key_pem(serving_key)), port=port
    ) as api:
        # cluster-info names the server as the cluster's endpoint (the guest's view, 10.0.2.2), as kubeadm's does;
        # the in-test server would name its own loopback address otherwise.
        signing = {t["token"].split(".")[0]: t["token"].split(".")[1] for t in tokens}
        kubeconfig = cluster_info_kubeconfig(ca_pem, f"https://10.0.2.2:{port}", 35)
        api.cluster_info_override = {"kubeconfig": kubeconfig} | {
            f"jws-kubeconfig-{i}": detached_jws(i, secret, kubeconfig) for i, secret in signing.items()
        }
        vm.start()
        try:
            vm.wait_until("SSH with the payload's key", lambda: vm.ssh(key, "true").returncode == 0, 600)

            def joined() -> bool:
                r = vm.ssh(key, "sudo", "cat", "/var/lib/kubeseed/state.json")
                if r.returncode != 0:
                    return False
                state = json.loads(r.stdout)
                return all(state["phases"].get(p, {}).get("result") == "done" for p in PHASES)

            took = vm.wait_until("the runtime's join", joined, 600)
            print(f"QEMU (TCG): boot to join done in {took:.0f} s")
            check_over_ssh(vm, key, pub, ca_pem)
            (csr,) = api.csrs.values()
            assert csr["spec"]["username"].startswith("system:bootstrap:")
        except BaseException:
            print(vm.tail())
            raise
        finally:
            vm.stop()


def check_over_ssh(vm: VM, key: Path, pub: str, ca_pem: bytes) -> None:
    host = testinfra.get_host(
        f"ssh://ops@127.0.0.1:{vm.ssh_port}",
        ssh_identity_file=str(key),
        ssh_extra_args="-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR",
        sudo=True,
    )
    ops = host.user("ops")
    assert ops.exists and "adm" in ops.groups and ops.shell == "/bin/bash"
    assert pub in host.file("/home/ops/.ssh/authorized_keys").content_string
    assert host.run("hostname").stdout.strip() == HOSTNAME
    for path, mode in [
        ("/etc/kubeseed/config.yaml", 0o600),
        ("/etc/kubernetes/kubelet.conf", 0o600),
        ("/var/lib/kubelet/pki/kubelet-client-current.pem", 0o600),
        ("/var/log/kubeseed.log", 0o600),
        ("/opt/kubeseed/kubeseed-runtime.pyz", 0o755),
    ]:
        f = host.file(path)
        assert f.exists and f.mode == mode and f.user == "root", path
    assert host.file("/etc/kubernetes/pki/ca.crt").content == ca_pem
    assert not host.file("/etc/kubernetes/bootstrap-kubelet.conf").exists  # the token left the disk
    log = [json.loads(line) for line in host.file("/var/log/kubeseed.log").content_string.splitlines()]
    assert [e["phase"] for e in log] == PHASES and all(e["result"] == "done" for e in log)
    status = host.run("python3 /opt/kubeseed/kubeseed-runtime.pyz status")
    assert status.rc == 0 and "tls-bootstrap" in status.stdout
    ci = host.run("cloud-init status --long")
    assert "status: done" in ci.stdout, ci.stdout + ci.stderr
    assert json.loads(host.file("/run/cloud-init/result.json").content_string)["v1"]["errors"] == []
    assert host.service("kubelet").is_running
    # First-boot debugging: the phase lines are in the journal too (JSON, as in the log file) ...
    journal = host.run("journalctl -t kubeseed -o cat --no-pager")
    assert [json.loads(line)["phase"] for line in journal.stdout.splitlines()] == PHASES
    # ... and the progress lines on the serial console, where a cloud's console log shows them.
    console = vm.console.read_text(errors="replace")
    assert "[tls-bootstrap] Bootstrapping certificates... [done]" in console
    assert "[kubelet-start] Starting the kubelet... [done]" in console
