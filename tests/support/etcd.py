"""A real etcd started from a master's etcd manifest and certificates (tests only), and etcdctl as one of its
clients. Used by tests/runtime/test_init_files.py and test_certs.py, and (etcd_command, etcdctl) by
tests/support/etcd_cluster.py."""

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
    "initial-cluster-state",  # a joining member's (existing)
}


def check_ports_free(ip: str = "127.0.0.1") -> None:
    """Fail the test when something listens on etcd's ports at ``ip`` already."""
    for port in (2379, 2380, 2381):
        with socket.socket() as s:
            if s.connect_ex((ip, port)) == 0:
                pytest.fail(f"port {ip}:{port} is taken: something else runs etcd here")


def etcd_command(master: Path, data_dir: Path, ip: str = "") -> list[str]:
    """Debian's etcd with the manifest's TLS, URL and identity flags, paths moved under --root and the data in
    ``data_dir``. With ``ip`` (a loopback address of its own), it listens on that address only, so that several
    members can run on one machine (every manifest also listens on 127.0.0.1)."""
    binary = need_tool("etcd", install="apt-get install etcd-server")
    args = [binary]
    for key, value in flags(manifest(master, "etcd")).items():
        if key in TLS_FLAGS | URL_FLAGS:
            value = value.replace("/etc/kubernetes/pki", str(master / PKI))
            value = value.replace("/var/lib/etcd", str(data_dir))
            if ip and key == "listen-client-urls":
                value = f"https://{ip}:2379"
            elif ip and key == "listen-metrics-urls":
                value = f"http://{ip}:2381"
            args.append(f"--{key}={value}")
    return args


@contextlib.contextmanager
def running_etcd(master: Path, tmp_path: Path) -> Iterator[Path]:
    """Debian's etcd started with the manifest's TLS, URL and identity flags, paths moved under --root.
    (Debian ships etcd 3.4; the manifest's other flags are for the 3.5/3.6 images and stay out.)"""
    command = etcd_command(master, tmp_path / "etcd-data")
    check_ports_free()
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=open(tmp_path / "etcd.log", "wb"))
    try:
        yield tmp_path / "etcd.log"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def etcdctl(
    master: Path, *args: str, client: str | None = "apiserver-etcd-client", endpoint: str = "https://127.0.0.1:2379"
) -> subprocess.CompletedProcess[str]:
    binary = need_tool("etcdctl", install="apt-get install etcd-client")
    tls = ["--cacert", str(master / PKI / "etcd/ca.crt")]
    if client:
        tls += ["--cert", str(master / PKI / f"{client}.crt"), "--key", str(master / PKI / f"{client}.key")]
    cmd = [binary, "--endpoints", endpoint, "--dial-timeout", "3s", *tls, *args]
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
