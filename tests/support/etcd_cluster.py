"""Several masters with stacked etcd on one machine (tests only): each a root where one master payload ran init's
file phases under its own node name and loopback address (127.0.0.N), with a real etcd (Debian's 3.4) started from
the etcd manifest init wrote there (tests/support/etcd.py's etcd_command), listening on that address only. A member
that joins gets the flags a control-plane join writes: every member in --initial-cluster and
--initial-cluster-state=existing. Used by tests/runtime/test_etcd_members.py."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

from tests.support.etcd import check_ports_free, etcd_command
from tests.support.helpers import cloud_init_files, lay_out
from tests.support.master import API_PHASES, MASTER, make_master, run


class Machine:
    """One master: its root, name, address, and its etcd process when it runs."""

    def __init__(self, root: Path, name: str, ip: str) -> None:
        self.root, self.name, self.ip = root, name, ip
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = root / "etcd.log"

    @property
    def client_url(self) -> str:
        return f"https://{self.ip}:2379"

    @property
    def peer_url(self) -> str:
        return f"https://{self.ip}:2380"


class Masters:
    """The masters of one cluster, made by the CLI with its API endpoint at ``endpoint``; ``masters[name]``."""

    def __init__(self, base: Path, endpoint: str) -> None:
        self.base = base
        first = make_master(base, endpoint=endpoint)  # the payload rendered for MASTER, laid out under base/machine
        self.payload = cloud_init_files((base / "master.yaml").read_bytes())
        self.machines: dict[str, Machine] = {MASTER: self._init(first, MASTER, "127.0.0.1")}

    def __getitem__(self, name: str) -> Machine:
        return self.machines[name]

    def _init(self, root: Path, name: str, ip: str) -> Machine:
        pyz = root / "opt/kubeseed/kubeseed-runtime.pyz"
        args = ["init", "--root", str(root), "--ignore-preflight-errors", "all", "--node-name", name]
        r = run(pyz, *args, "--advertise-address", ip, "--skip-phases", API_PHASES)
        assert r.returncode == 0, r.stdout + r.stderr
        return Machine(root, name, ip)

    def add(self, name: str, ip: str) -> Machine:
        """Another master machine: the same master payload, its own name and address (its own certificates)."""
        root = self.base / name
        lay_out(self.payload, root)
        self.machines[name] = self._init(root, name, ip)
        return self.machines[name]

    def start(self, m: Machine, join: bool = False) -> None:
        """Start ``m``'s etcd; ``join``: as a member joining the running ones (all machines with an etcd running,
        and ``m``)."""
        check_ports_free(m.ip)
        command = etcd_command(m.root, m.root / "var/lib/etcd", ip=m.ip)
        if join:
            peers = [x for x in self.machines.values() if x.proc] + [m]
            cluster = ",".join(f"{x.name}={x.peer_url}" for x in peers)
            command = [a for a in command if not a.startswith("--initial-cluster=")]
            command += [f"--initial-cluster={cluster}", "--initial-cluster-state=existing"]
        with open(m.log, "ab") as log:  # the child has its own copy of the descriptor
            m.proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log)

    def kill(self, m: Machine) -> None:
        """What a failed machine does: its etcd stops at once."""
        if m.proc:
            m.proc.send_signal(signal.SIGKILL)
            m.proc.wait(timeout=30)
            m.proc = None

    def close(self) -> None:
        for m in self.machines.values():
            self.kill(m)

    def logs(self) -> str:
        """The tail of every member's log, for an assertion's message."""
        return "".join(
            f"\n--- {m.name}\n" + m.log.read_text()[-1500:] for m in self.machines.values() if m.log.exists()
        )
