"""upgrade time under --root, split by phase: a master made at kubeseed's default version and upgraded one minor,
against the in-test API server (tests/support/apiserver/, RBAC on) with the stand-in kubelet that keeps its mirror
pods (tests/support/standin_kubelet.py; changed pods are Ready after --ready-delay seconds, as a restarted
component would be).

Run from the repository root: .venv/bin/python -m bench.bench_upgrade
(prints figures; it asserts nothing and is not a test)

Each run makes the cluster and runs init (not timed), publishes the full runtime and the target as
`kubeseed upgrade apply` does, then runs the master payload's own zipapp: `upgrade --root DIR`, which installs the
published runtime and runs it. Phase times come from /var/lib/kubeseed/upgrade.json; "self-update" is the rest of
the command's time (fetching and installing the runtime, starting it again).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from kubeseed.generator.zipapp import build_zipapp
from kubeseed.runtime.cli import VERSION
from kubeseed.runtime.upgrade.phases import phases
from kubeseed.runtime.upgrade.publish import objects
from tests.support.master import MASTER, Cluster
from tests.support.standin_kubelet import StandinKubelet

TARGET = "v1.36.1"
NAMES = [p.name for p in phases("master")]
REPO = "deb [signed-by=/etc/apt/keyrings/kubernetes-apt-keyring.gpg] https://pkgs.k8s.io/core:/stable:/v1.35/deb/ /\n"


def one_run(tmp: Path, ready_delay: float) -> dict[str, float]:
    c = Cluster(tmp)
    with c.api, StandinKubelet(c.api, c.root, MASTER, kubelet_version="v1.35.5") as kubelet:
        r = c.init()
        if r.returncode != 0:
            raise SystemExit(r.stdout + r.stderr)
        repo = c.root / "etc/apt/sources.list.d/kubernetes.list"
        repo.parent.mkdir(parents=True, exist_ok=True)
        repo.write_text(REPO)
        for obj in objects(build_zipapp(None), TARGET, VERSION):
            c.api.put_object(obj)
        kubelet.ready_delay = ready_delay
        cmd = [sys.executable, str(c.pyz), "upgrade", "--root", str(c.root), "--timeout", "120"]
        started = time.monotonic()
        r = subprocess.run(cmd, capture_output=True, text=True)
        total = time.monotonic() - started
        if r.returncode != 0:
            raise SystemExit(r.stdout + r.stderr)
    state = json.loads((c.root / "var/lib/kubeseed/upgrade.json").read_text())
    times = {p: state["phases"][p]["duration"] for p in NAMES}
    times["self-update"] = total - sum(times.values())
    times["total"] = total
    return times


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--ready-delay", type=float, default=0.0, metavar="SECONDS")
    args = ap.parse_args()
    runs = []
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory() as d:
            runs.append(one_run(Path(d), args.ready_delay))
    print(f"upgrade of a master v1.35.5 -> {TARGET} under --root, median of {args.runs} run(s), seconds:")
    for name in ["self-update"] + NAMES + ["total"]:
        print(f"  {name:<18}{statistics.median(r[name] for r in runs):8.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
