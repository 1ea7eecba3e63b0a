"""Masters joining a control plane under --root (tests and benchmarks only): the first master (init against the
in-test API server, its real etcd started from its manifest at 127.0.0.1, a stand-in kubelet) and a second one's
join payload, whose etcd is started from the manifest the runtime writes, at 127.0.0.2, as its kubelet would. Used by
tests/runtime/test_cpjoin.py and bench/bench_cpjoin.py."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from tests.support.etcd import check_ports_free, etcd_command
from tests.support.helpers import cloud_init_files, kubeseed, lay_out
from tests.support.master import MASTER, Cluster
from tests.support.standin_kubelet import StandinKubelet

SECOND = "cp-2"


class Etcds:
    """The members' etcd processes: the first master's now, the joining one's once its manifest appears."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []

    def start(self, root: Path, ip: str) -> None:
        check_ports_free(ip)
        with open(root / "etcd.log", "ab") as log:
            self.procs.append(subprocess.Popen(etcd_command(root, root / "var/lib/etcd", ip=ip), stderr=log))

    def start_when_written(self, root: Path, ip: str) -> None:
        """What the kubelet does with a new static pod: run it (here: etcd, from the manifest's flags)."""

        def watch() -> None:
            while not self.stop.is_set():
                if (root / "etc/kubernetes/manifests/etcd.yaml").exists():
                    time.sleep(0.2)  # written by rename: whole
                    self.start(root, ip)
                    return
                time.sleep(0.1)

        t = threading.Thread(target=watch, daemon=True)
        t.start()
        self.threads.append(t)

    def close(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=5)
        for p in self.procs:
            p.send_signal(signal.SIGTERM)
            p.wait(timeout=30)


@contextlib.contextmanager
def first_master(tmp_path: Path, *init_args: str, version: str = "") -> Iterator[tuple[Cluster, Etcds]]:
    """The first master: init done (file phases, its etcd started, then the API phases with ``init_args``), its
    kubelet stand-in running; ``version``: the cluster's Kubernetes version (kubeseed's default without)."""
    c = Cluster(tmp_path, None, *(("--kubernetes-version", version) if version else ()))
    etcds = Etcds()
    kubelets: list[StandinKubelet] = []
    try:
        etcds.start(c.root, "127.0.0.1")
        c.api.start()
        kubelets.append(StandinKubelet(c.api, c.root, MASTER, kubelet_version=version or "v1.35.5").start())
        r = c.init(*init_args)
        assert r.returncode == 0, r.stdout + r.stderr
        yield c, etcds
    finally:
        for k in kubelets:
            k.stop()
        c.api.stop()
        etcds.close()


def second_master(c: Cluster, etcds: Etcds) -> tuple[Path, list[str], StandinKubelet]:
    """The join payload for SECOND laid out under its root, the kubelet stand-ins (its etcd among them) ready."""
    r = kubeseed("render", "master", "demo", "--hostname", SECOND, "--join", "-o", "cp2.yaml", cwd=c.base)
    assert r.returncode == 0, r.stderr
    root = c.base / SECOND
    lay_out(cloud_init_files((c.base / "cp2.yaml").read_bytes()), root)
    etcds.start_when_written(root, "127.0.0.2")
    kubelet = StandinKubelet(c.api, root, SECOND, kubelet_version="v1.35.5", address="127.0.0.2").start()
    args = ["join", "--control-plane", "--root", str(root), "--ignore-preflight-errors", "all"]
    return root, [*args, "--advertise-address", "127.0.0.2", "--timeout", "60"], kubelet
