"""Control-plane join time under --root, split by phase: a second master joins a first one with real etcd
(Debian's 3.4 at 127.0.0.1 and 127.0.0.2) and the in-test API server playing kube-apiserver (tests/support/cpjoin.py;
the joining member's etcd is started from the manifest the runtime writes, as its kubelet would).

Run from the repository root: .venv/bin/python -m bench.bench_cpjoin
(prints figures; it asserts nothing and is not a test; it needs etcd's ports on those addresses free)

Each run makes the cluster and runs the first master's init (not timed), renders the second master's payload with
`kubeseed render master --join`, and runs that payload's runtime: `join --control-plane --root DIR`. Phase times
come from its state.json; "total" is the command's wall time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from kubeseed.runtime.init.cpjoin import phases
from tests.support.cpjoin import first_master, second_master
from tests.support.master import run

NAMES = ["preflight"] + [p.name for p in phases()]


def one_run(tmp: Path) -> dict[str, float]:
    with first_master(tmp) as (c, etcds):
        root, args, kubelet = second_master(c, etcds)
        try:
            started = time.monotonic()
            r = run(root / "opt/kubeseed/kubeseed-runtime.pyz", *args)
            total = time.monotonic() - started
        finally:
            kubelet.stop()
        if r.returncode != 0:
            raise SystemExit(r.stdout + r.stderr)
    state = json.loads((root / "var/lib/kubeseed/state.json").read_text())
    times = {p: state["phases"][p]["duration"] for p in NAMES}
    times["total"] = total
    return times


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    runs = []
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory() as d:
            runs.append(one_run(Path(d)))
    print(f"control-plane join of a second master under --root, real etcd, median of {args.runs} run(s), seconds:")
    for name in NAMES + ["total"]:
        print(f"  {name:<24}{statistics.median(r[name] for r in runs):8.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
