"""Booting an image tree in systemd-nspawn, for the first-boot tests (tests/images/) and bench/bench_image.py
(tests only).

``systemd-nspawn --boot --register=no --keep-unit -D TREE``: real systemd as the container's PID 1 and every
cloud-init stage, in seconds. These machines run no systemd on the host, so nspawn must neither register with
machined nor ask for a scope unit (hence the two flags), and ``machinectl`` cannot reach the container: it runs
as a subprocess, ``nsenter`` runs commands inside it, and SIGTERM to nspawn halts it cleanly (nspawn passes it on
as SIGRTMIN+3, systemd's halt).

No network namespace of its own: the container shares the host's network, so the runtime inside reaches the
in-test API server (tests/support/apiserver/) on the host's loopback.

What a boot adds to its copy of the image tree, and nothing of it is in the product image:

* the seed (``/var/lib/cloud/seed/nocloud``): the payload as ``user-data``, ``meta-data`` with instance-id and
  local-hostname, and a ``network-config`` of ``config: disabled``: the container shares the host's network,
  so cloud-init must not configure (DHCP on) the host's interfaces. That is the seed's business, not the
  payload's; kubeseed's own seeds write network-config only for static addresses.
* a **test stand-in kubelet** (``/usr/bin/kubelet``, a shell script) and the unit the kubelet package would
  ship (``/usr/lib/systemd/system/kubelet.service``): no kubelet binary can be had on these machines
  (pkgs.k8s.io is unreachable, and the image says so). The stand-in answers ``--version`` as kubelet v1.35.5,
  for preflight's FileExisting-kubelet and version checks, and otherwise stays up, so that kubelet-start's
  ``systemctl daemon-reload / enable / restart kubelet`` and ``is-active kubelet`` see a running kubelet (with
  the runtime's own 10-kubeadm.conf drop-in, whose ExecStart runs /usr/bin/kubelet with kubeadm's flags).

containerd is the image's real one: it starts in the container and serves ``/run/containerd/containerd.sock``,
which preflight's CRI check wants; no stand-in for it.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

SEED_DIR = "var/lib/cloud/seed/nocloud"
RESULT = "var/lib/cloud/data/result.json"
STATUS = "var/lib/cloud/data/status.json"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")

KUBELET_STAND_IN = """#!/bin/sh
# TEST STAND-IN, written by tests/support/nspawn.py into a test boot's copy of the image, never into the product
# image: no kubelet binary can be had on these machines. It answers --version as kubelet v1.35.5 does (for the
# runtime's preflight) and otherwise stays up, so systemd sees the kubelet running.
case "$1" in
    --version) echo "Kubernetes v1.35.5" ;;
    *) exec sleep infinity ;;
esac
"""

KUBELET_UNIT_STAND_IN = """# TEST STAND-IN, written by tests/support/nspawn.py: the kubelet.service that the
# kubelet package from pkgs.k8s.io ships, here running the stand-in /usr/bin/kubelet (no kubelet binary can be
# had here). The runtime's 10-kubeadm.conf drop-in replaces ExecStart, as on a real node.
[Unit]
Description=kubelet: The Kubernetes Node Agent (TEST STAND-IN)
Wants=network-online.target
After=network-online.target

[Service]
ExecStart=/usr/bin/kubelet
Restart=always
StartLimitInterval=0
RestartSec=10

[Install]
WantedBy=multi-user.target
"""


SHARED = ("usr", "boot")  # hard-linked into each machine's copy; nothing on a booting machine writes into them


def _cp(*args: str) -> None:
    r = subprocess.run(["cp", *args], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"cp {' '.join(args)}: {r.stderr.strip()}")


def copy_tree(src: Path, dst: Path) -> None:
    """A machine's own copy of the image tree, in under a second: /usr and /boot (840 of its 890 MB) as hard
    links (``cp -al``: the directories are the copy's own, the files shared), everything else copied (``cp -a``:
    owners, modes, links, xattrs). A boot that adds or replaces a file under /usr does so in its own directory;
    only a write *into* an existing /usr file would reach the shared tree, and ``shared_files_changed`` catches
    that (the tests check it after every boot)."""
    _cp("-al", "--", str(src), str(dst))
    for top in sorted(os.listdir(src)):
        path = src / top
        if top in SHARED or path.is_symlink() or not path.is_dir():
            continue
        shutil.rmtree(dst / top)
        _cp("-a", "--", str(path), str(dst / top))


def shared_files_changed(src: Path, since: float) -> list[str]:
    """Files of ``src``'s hard-linked parts written after ``since`` (epoch seconds)."""
    changed = []
    for top in SHARED:
        for dirpath, _dirs, files in os.walk(src / top):
            for name in files:
                p = os.path.join(dirpath, name)
                if os.lstat(p).st_mtime > since:
                    changed.append(p)
    return changed


def write_seed(tree: Path, user_data: bytes | None, hostname: str) -> None:
    """A NoCloud seed directory in the tree (``user_data=None``: no seed at all, cloud-init stays disabled)."""
    if user_data is None:
        return
    seed = tree / SEED_DIR
    seed.mkdir(parents=True, exist_ok=True)
    (seed / "user-data").write_bytes(user_data)
    (seed / "meta-data").write_text(f"instance-id: iid-{hostname}\nlocal-hostname: {hostname}\n")
    # The container shares the host's network: cloud-init must leave it alone.
    (seed / "network-config").write_text("config: disabled\n")
    for f in ("user-data", "meta-data", "network-config"):
        os.chmod(seed / f, 0o600)


def add_kubelet_stand_in(tree: Path) -> None:
    """The TEST STAND-IN kubelet binary and unit (see the module's docstring)."""
    binary, unit = tree / "usr/bin/kubelet", tree / "usr/lib/systemd/system/kubelet.service"
    assert not binary.exists() and not unit.exists(), "the image has a kubelet of its own: no stand-in needed"
    binary.write_text(KUBELET_STAND_IN)  # new files in the copy's own directories: the shared tree is untouched
    binary.chmod(0o755)
    unit.write_text(KUBELET_UNIT_STAND_IN)


class Container:
    """One ``systemd-nspawn --boot`` of ``tree``; its console goes to ``console``."""

    def __init__(self, tree: Path, console: Path) -> None:
        self.tree, self.console = tree, console
        self.proc: subprocess.Popen[bytes] | None = None
        self._init: int | None = None
        self.started = 0.0

    def __enter__(self) -> Container:
        return self.start()

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def start(self) -> Container:
        nspawn = shutil.which("systemd-nspawn") or "systemd-nspawn"
        cmd = [nspawn, "--boot", "--register=no", "--keep-unit", "--directory", str(self.tree)]
        cmd += ["--setenv=SYSTEMD_COLORS=0"]
        with open(self.console, "wb") as out:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        self.started = time.monotonic()
        return self

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _find_init(self) -> int | None:
        if self._init is not None or not self.running():
            return self._init
        assert self.proc is not None
        try:
            for task in Path(f"/proc/{self.proc.pid}/task").iterdir():
                for child in (task / "children").read_text().split():
                    if Path(f"/proc/{child}/comm").read_text().strip() == "systemd":  # not a helper of nspawn's
                        self._init = int(child)
        except OSError:
            pass
        return self._init

    def init_pid(self, timeout: float = 15) -> int:
        """The container's PID 1 (systemd), as the host sees it: nspawn's child (waits for nspawn to fork it)."""
        deadline = time.monotonic() + timeout
        while self.running() and time.monotonic() < deadline:
            pid = self._find_init()
            if pid is not None:
                return pid
            time.sleep(0.05)
        raise AssertionError("systemd-nspawn has no child: the container is not running\n" + self.tail())

    def run(self, *cmd: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """A command inside the running container (all its namespaces), like machinectl shell would."""
        enter = ["nsenter", "--target", str(self.init_pid()), "--all", *cmd]
        return subprocess.run(enter, capture_output=True, text=True, timeout=timeout)

    def wait_until(self, what: str, ready: Callable[[], bool], timeout: float) -> float:
        """Poll ``ready`` until it holds (seconds since start); fail with the console's tail when the container
        stops first or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        while True:
            if ready():
                return self.elapsed()
            if not self.running():
                rc = self.proc.returncode if self.proc else None
                raise AssertionError(f"the container stopped (exit {rc}) before {what}\n{self.tail()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: not within {timeout:.0f} s of boot\n{self.tail()}")
            time.sleep(0.1)

    def stop(self, timeout: float = 60) -> None:
        """A clean halt (SIGTERM to nspawn: SIGRTMIN+3 to the container's systemd). If it hangs, SIGKILL to the
        container's PID 1, which takes every process of its PID namespace along, then to nspawn: with no systemd on
        the host to clean up after it, a killed nspawn alone would leave the container running."""
        if self.proc is None:
            return
        init = self._find_init()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._kill_container(init)
                self.proc.kill()
                self.proc.wait(30)
        self._kill_container(init)  # in case nspawn went away without it

    @staticmethod
    def _kill_container(pid: int | None) -> None:
        if pid is None:
            return
        try:  # still that container's PID 1 (its own PID namespace), not a reused number
            if os.readlink(f"/proc/{pid}/ns/pid") != os.readlink("/proc/self/ns/pid"):
                os.kill(pid, signal.SIGKILL)
        except OSError:
            pass

    def tail(self, lines: int = 60) -> str:
        """The console's last lines, and the journal's last lines of the runtime and cloud-init."""
        text = ANSI.sub("", self.console.read_bytes().decode(errors="replace")) if self.console.exists() else ""
        out = ["--- nspawn console (tail) ---", *text.splitlines()[-lines:]]
        journal = self.tree / "var/log/journal"
        if journal.is_dir() and shutil.which("journalctl"):
            r = subprocess.run(
                ["journalctl", "-D", str(journal), "--no-pager", "-o", "short-monotonic", "-n", "40"]
                + ["-t", "kubeseed", "-t", "cloud-init"],
                capture_output=True,
                text=True,
            )
            out += ["--- journal: kubeseed, cloud-init (tail) ---", *r.stdout.splitlines()]
        log = self.tree / "var/log/cloud-init-output.log"
        if log.is_file():
            out += [
                "--- /var/log/cloud-init-output.log (tail) ---",
                *log.read_text(errors="replace").splitlines()[-30:],
            ]
        return "\n".join(out)
