"""init time under --root, split by phase, for ECDSA and RSA clusters; the API phases run against the in-test
API server (tests/support/apiserver/, RBAC on) serving with the certificate init wrote.

Run from the repository root: .venv/bin/python -m bench.bench_init
(prints figures; it asserts nothing and is not a test)

Each run renders a master payload, lays its files out under a fresh directory, and runs the payload's own
zipapp (`init --root DIR`) with the given interpreter: first the file phases, then (with the API server up
and the master's Node registered, as its kubelet would) the API phases. Phase times come from state.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from kubeseed.generator.model import default_cluster_text
from kubeseed.generator.plan import build_plan
from kubeseed.generator.secrets import generate_secrets, load, write_cluster_dir
from kubeseed.runtime import init
from tests.support.apiserver import FakeAPIServer
from tests.support.helpers import free_port, lay_out

NAMES = ["preflight"] + [p.name for p in init.phases()]
FILE_PHASES = NAMES[: NAMES.index("wait-control-plane")]  # up to the first that needs the API server
API_PHASES = NAMES[len(FILE_PHASES) :]


def one_run(tmp: Path, alg: str, python: str) -> dict[str, float]:
    port = free_port()
    cluster_dir = tmp / "demo"
    text = default_cluster_text("demo", f"127.0.0.1:{port}", key_algorithm=alg)
    write_cluster_dir(cluster_dir, text, generate_secrets(alg))
    cluster, secrets = load(cluster_dir)
    root = tmp / "machine"
    pyz = lay_out({f.path: (f.content, f.mode) for f in build_plan(cluster, secrets, "master", "cp-1").files}, root)
    cmd = [
        python,
        str(pyz),
        "init",
        "--root",
        str(root),
        "--ignore-preflight-errors",
        "all",
        "--advertise-address",
        "127.0.0.1",
    ]
    r = subprocess.run([*cmd, "--skip-phases", ",".join(API_PHASES)], capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(r.stdout + r.stderr)
    pki = root / "etc/kubernetes/pki"
    serving = ((pki / "apiserver.crt").read_bytes(), (pki / "apiserver.key").read_bytes())
    with FakeAPIServer(
        (pki / "ca.crt").read_bytes(),
        (pki / "ca.key").read_bytes(),
        [],
        serving_cert=serving,
        rbac=True,
        cluster_info_from_store=True,
        port=port,
    ) as api:
        api.put_object({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "cp-1"}, "spec": {}})
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            raise SystemExit(r.stdout + r.stderr)
    state = json.loads((root / "var/lib/kubeseed/state.json").read_text())
    shutil.rmtree(cluster_dir)
    shutil.rmtree(root)
    return {p: state["phases"][p]["duration"] for p in FILE_PHASES + API_PHASES}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--python", default="/usr/bin/python3", help="interpreter that runs the zipapp")
    args = ap.parse_args()
    print(f"init under --root, {args.runs} runs each, zipapp on {args.python} (median seconds per phase):")
    print(f"  {'phase':<20} {'ECDSA-P256':>10} {'RSA-2048':>10}")
    results = {}
    for alg in ("ECDSA-P256", "RSA-2048"):
        runs = []
        for _ in range(args.runs):
            with tempfile.TemporaryDirectory() as tmp:
                runs.append(one_run(Path(tmp), alg, args.python))
        results[alg] = {p: statistics.median(r[p] for r in runs) for p in runs[0]}
    for phase in FILE_PHASES + API_PHASES:
        print(f"  {phase:<20} {results['ECDSA-P256'][phase]:10.3f} {results['RSA-2048'][phase]:10.3f}")
    totals = {alg: sum(results[alg].values()) for alg in results}
    print(f"  {'all phases':<20} {totals['ECDSA-P256']:10.3f} {totals['RSA-2048']:10.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
