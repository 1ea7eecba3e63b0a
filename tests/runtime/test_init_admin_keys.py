"""init's API client never writes the admin's key to a temporary directory: a whole init, and one killed in an API
phase, leave TMPDIR empty (the in-test API server plays kube-apiserver, on 127.0.0.1)."""

from __future__ import annotations

import io
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from kubeseed.runtime.config import load_node_config
from kubeseed.runtime.init import CONFIG, apiclient
from kubeseed.runtime.workflow import Context
from tests.support.master import MASTER, Cluster


class Master(Cluster):
    """The shared master, with init running on a TMPDIR of its own."""

    def __init__(self, base: Path) -> None:
        (base / "tmpdir").mkdir()
        super().__init__(base, tmpdir=base / "tmpdir")

    def leftovers(self) -> list[str]:
        """Whatever the run left in TMPDIR, and any client file left beside the kubeconfigs."""
        assert self.tmpdir is not None
        found = [str(p) for p in self.tmpdir.rglob("*")]
        return found + [str(p) for p in (self.root / "etc/kubernetes").glob(".client-*")]


@pytest.fixture
def master(tmp_path: Path) -> Iterator[Master]:
    m = Master(tmp_path)
    m.api.start()
    m.api.put_object({"apiVersion": "v1", "kind": "Node", "metadata": {"name": MASTER}, "spec": {}})  # the kubelet's
    try:
        yield m
    finally:
        m.api.stop()


def test_init_leaves_no_key_in_tmpdir(master: Master) -> None:
    r = master.init()
    assert r.returncode == 0, r.stdout + r.stderr
    assert master.leftovers() == []


def test_init_killed_in_an_api_phase_leaves_no_key_in_tmpdir(master: Master) -> None:
    """Killed (SIGKILL: no finally runs) after the third API request, in upload-config, while its client is open."""
    r = master.init(kill=("api.call", 3, "after"))
    assert r.returncode == -9, r.stdout + r.stderr
    assert "[upload-config] Uploading the configuration..." in r.stdout
    assert master.leftovers() == []
    r = master.init()  # the re-run resumes
    assert r.returncode == 0, r.stdout + r.stderr
    assert master.leftovers() == []


@pytest.mark.parametrize("memfd", [True, False])
def test_the_client_certificate_lives_in_memory_or_beside_the_kubeconfig(
    master: Master, monkeypatch: pytest.MonkeyPatch, memfd: bool
) -> None:
    """With memfd: /proc/self/fd paths, nothing on disk. Without (another kernel): 0600 files in /etc/kubernetes,
    inside the root, removed on close."""
    if not memfd:

        def refused(*args: object) -> int:
            raise OSError(38, "Function not implemented")

        monkeypatch.setattr(os, "memfd_create", refused)
    cfg = load_node_config(str(master.root / "etc/kubeseed/config.yaml"), CONFIG)
    ctx = Context("init", cfg, str(master.root), out=io.StringIO())
    client = apiclient.Client(ctx, "super-admin.conf")  # system:masters: allowed before any RBAC exists
    try:
        crt, key = client.cert
        assert b"BEGIN CERTIFICATE" in Path(crt).read_bytes() and b"PRIVATE KEY" in Path(key).read_bytes()
        if memfd:
            assert crt.startswith("/proc/self/fd/") and key.startswith("/proc/self/fd/")
            assert master.leftovers() == []
        else:
            assert sorted(master.leftovers()) == sorted([crt, key])
            assert all(stat.S_IMODE(os.stat(p).st_mode) == 0o600 for p in (crt, key))
        status, _ = client.call("GET", "/api/v1/nodes/" + MASTER)  # the TLS client loads them
        assert status == 200
    finally:
        client.close()
    assert master.leftovers() == []
