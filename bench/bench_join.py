"""Join time under --root against the in-test API server (tests/support/apiserver/, real TLS), split by phase.

Run from the repository root: .venv/bin/python -m bench.bench_join
(prints figures; it asserts nothing and is not a test)

Each run renders a node payload, lays its files out under a fresh directory as cloud-init would, and runs
the payload's own zipapp (`join --root DIR`) with the given interpreter; phase times come from the
runtime's state.json. The API server approves CSRs at once, so the figures are the runtime's own cost
(process start, key generation, TLS, two cluster-info fetches, CSR round trips), not a real cluster's.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from kubeseed.generator.model import default_cluster_text
from kubeseed.generator.plan import build_plan
from kubeseed.generator.secrets import generate_secrets, load, write_cluster_dir
from kubeseed.generator.tokens import load_tokens
from tests.support.apiserver import FakeAPIServer
from tests.support.helpers import lay_out

PHASES = ("preflight", "discovery", "tls-bootstrap", "kubelet-config", "kubelet-start")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--python", default="/usr/bin/python3", help="interpreter that runs the zipapp")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cluster_dir = Path(tmp) / "demo"
        write_cluster_dir(cluster_dir, default_cluster_text("demo", "127.0.0.1:6443"), generate_secrets("ECDSA-P256"))
        tokens = [{"token": t.token, "expires": t.expires} for t in load_tokens(cluster_dir)]
        ca, key = (cluster_dir / "pki/ca.crt").read_bytes(), (cluster_dir / "pki/ca.key").read_bytes()
        with FakeAPIServer(ca, key, tokens) as api:
            cfg = cluster_dir / "cluster.yaml"
            cfg.write_text(cfg.read_text().replace("127.0.0.1:6443", api.endpoint))
            cluster, secrets = load(cluster_dir)
            plan = build_plan(cluster, secrets, "node", "worker-1")
            per_phase: dict[str, list[float]] = {p: [] for p in PHASES}
            walls = []
            for i in range(args.runs):
                root = Path(tmp) / f"machine-{i}"
                pyz = lay_out({f.path: (f.content, f.mode) for f in plan.files}, root)
                cmd = [args.python, str(pyz), "join", "--root", str(root)]
                t0 = time.perf_counter()
                r = subprocess.run([*cmd, "--ignore-preflight-errors", "all"], capture_output=True, text=True)
                walls.append(time.perf_counter() - t0)
                if r.returncode != 0:
                    print(r.stdout + r.stderr, file=sys.stderr)
                    return 1
                state = json.loads((root / "var/lib/kubeseed/state.json").read_text())
                for p in PHASES:
                    per_phase[p].append(state["phases"][p]["duration"])
                shutil.rmtree(root)
    print(f"join under --root, {args.runs} runs, zipapp on {args.python} (median / max seconds):")
    for p in PHASES:
        print(f"  {p:<15} {statistics.median(per_phase[p]):7.3f} {max(per_phase[p]):7.3f}")
    print(f"  {'whole process':<15} {statistics.median(walls):7.3f} {max(walls):7.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
