"""One init or join at a time per root: runs started together end with one node key and one CSR; the others say
that another run is going on and touch nothing."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path

from tests.support.apiserver import FakeAPIServer
from tests.support.join import NODE, check_joined, flags, join, node_zipapp

BUSY = "error: another init or join is running here; let it end, then run again\n"


def test_simultaneous_joins_make_one_key_and_one_csr(root: Path, cluster: Path, api: FakeAPIServer) -> None:
    cmd = [sys.executable, str(node_zipapp()), "join", *flags(cluster, api), "--root", str(root), "--node-name", NODE]
    cmd += ["--ignore-preflight-errors", "all", "--timeout", "30"]
    runs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(16)]
    results = [(p.wait(timeout=90), *p.communicate()) for p in runs]
    joined = [out for code, out, err in results if code == 0]
    assert joined, results
    for code, out, err in results:  # the others stopped at once, with one line saying why
        assert code == 0 or (code == 1 and err == BUSY and out == ""), (code, out, err)
    keys = sorted(p.name for p in (root / "var/lib/kubelet/pki").iterdir())
    assert len(keys) == 2 and keys[1] == "kubelet-client-current.pem", keys  # one certificate + key, one link
    check_joined(root, cluster, api)  # among others: exactly one CSR reached the API server


def test_a_run_in_progress_keeps_a_second_one_out(root: Path, cluster: Path, api: FakeAPIServer) -> None:
    state = root / "var/lib/kubeseed"
    state.mkdir(parents=True)
    fd = os.open(state, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # as a running init or join holds it
        r = join(root, *flags(cluster, api))
        assert (r.returncode, r.stdout, r.stderr) == (1, "", BUSY)
        assert [p.name for p in root.rglob("*")] == ["var", "lib", "kubeseed"] and api.requests == []
    finally:
        os.close(fd)
    r = join(root, *flags(cluster, api))  # once it has ended
    assert r.returncode == 0, r.stdout + r.stderr
