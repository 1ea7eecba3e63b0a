"""A real etcd started from a master's etcd manifest and certificates (tests only), and etcdctl as one of its
clients. Used by tests/runtime/test_init_files.py and test_certs.py."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.helpers import need_tool
from tests.support.master import flags, manifest

PKI = "etc/kubernetes/pki"


TLS_FLAGS = {
    "cert-file",
    "key-file",
    "trusted-ca-file",
    "client-cert-auth",
    "peer-cert-file",
    "peer-key-file",
    "peer-trusted-ca-file",
    "peer-client-cert-auth",
}
URL_FLAGS = {
    "name",
    "data-dir",
    "listen-client-urls",
    "advertise-client-urls",
    "listen-peer-urls",
    "initial-advertise-peer-urls",
    "initial-cluster",
    "listen-metrics-urls",
    "snapshot-count",
}


@contextlib.contextmanager
def running_etcd(master: Path, tmp_path: Path) -> Iterator[Path]:
    """Debian's etcd started with the manifest's TLS, URL and identity flags, paths moved under --root.
    (Debian ships etcd 3.4; the manifest's other flags are for the 3.5/3.6 images and stay out.)"""
    binary = need_tool("etcd", install="apt-get install etcd-server")
    for port in (2379, 2380, 2381):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                pytest.fail(f"port {port} is taken: something else runs etcd here")
    args = []
    for key, value in flags(manifest(master, "etcd")).items():
        if key in TLS_FLAGS | URL_FLAGS:
            value = value.replace("/etc/kubernetes/pki", str(master / PKI))
            value = value.replace("/var/lib/etcd", str(tmp_path / "etcd-data"))
            args.append(f"--{key}={value}")
    proc = subprocess.Popen([binary, *args], stdout=subprocess.DEVNULL, stderr=open(tmp_path / "etcd.log", "wb"))
    try:
        yield tmp_path / "etcd.log"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def etcdctl(master: Path, *args: str, client: str | None = "apiserver-etcd-client") -> subprocess.CompletedProcess[str]:
    binary = need_tool("etcdctl", install="apt-get install etcd-client")
    tls = ["--cacert", str(master / PKI / "etcd/ca.crt")]
    if client:
        tls += ["--cert", str(master / PKI / f"{client}.crt"), "--key", str(master / PKI / f"{client}.key")]
    cmd = [binary, "--endpoints", "https://127.0.0.1:2379", "--dial-timeout", "3s", *tls, *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, env={**os.environ, "ETCDCTL_API": "3"})


def wait_healthy(master: Path, log: Path, client: str = "apiserver-etcd-client") -> None:
    deadline = time.monotonic() + 30
    while True:
        r = etcdctl(master, "endpoint", "health", client=client)
        if r.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert r.returncode == 0, r.stdout + r.stderr + log.read_text()[-2000:]
    assert "is healthy" in r.stdout + r.stderr
