"""Payload figures: bytes per role and format (raw and gzip), payloads rendered per second, cluster create time.

Run from the repository root: .venv/bin/python -m bench.bench_payloads
(prints figures, the render rates beside their targets; it asserts nothing and is not a test)
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.targets import beside
from kubeseed.generator.model import default_cluster_text
from kubeseed.generator.plan import build_plan
from kubeseed.generator.platforms import PLATFORMS
from kubeseed.generator.render import gzip_bytes, render
from kubeseed.generator.secrets import generate_secrets, load, write_cluster_dir
from kubeseed.generator.zipcache import CACHE_ENV, cached_zipapp

BUDGET = 512  # bytes a node's gzipped cloud-config keeps free under EC2's limit (tests/generator/test_cli.py)
RATE_TARGETS = {("master", "cloud-init"): 500, ("node", "cloud-init"): 1000}  # payloads/s, in process


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=2.0, help="time spent measuring render rate per case")
    ap.add_argument("--creates", type=int, default=5, help="cluster create repetitions per key algorithm")
    args = ap.parse_args()
    ec2 = PLATFORMS["aws"].limit
    assert ec2 is not None
    with tempfile.TemporaryDirectory() as tmp:
        os.environ[CACHE_ENV] = str(Path(tmp) / "cache")  # built zipapps: never in the user's own cache
        print("cluster create (CAs + SA key + token, written to disk), median of runs:")
        for alg in ("ECDSA-P256", "RSA-2048", "RSA-3072"):
            times = []
            for i in range(args.creates):
                d = Path(tmp) / f"{alg.lower()}-{i}"
                t0 = time.perf_counter()
                write_cluster_dir(
                    d, default_cluster_text(d.name, "10.0.0.10:6443", key_algorithm=alg), generate_secrets(alg)
                )
                times.append(time.perf_counter() - t0)
            print(f"  {alg:<11} {statistics.median(times) * 1000:8.1f} ms")

        print("\nruntime zipapp carried by each payload:")
        for role in ("master", "node"):
            zipapp = cached_zipapp(role)
            print(f"  {role:<7} {len(zipapp):8,} bytes, {len(gzip_bytes(zipapp)):7,} gzipped")
        cluster, secrets = load(Path(tmp) / "ecdsa-p256-0")
        print(f"\npayload bytes (ECDSA-P256, no login users; EC2 limit {ec2:,}):")
        print(f"  {'role':<7} {'format':<11} {'raw':>8} {'gzip':>8}  fits EC2")
        margin = 0
        for role in ("master", "node"):
            plan = build_plan(cluster, secrets, role, f"{role}-1")
            for fmt in ("cloud-init", "ignition"):
                data = render(plan, fmt)
                packed = gzip_bytes(data)
                gzip_ok = fmt == "cloud-init" and len(packed) <= ec2  # only cloud-init user-data is gzip-decoded
                fits = "raw" if len(data) <= ec2 else ("with --gzip" if gzip_ok else "no")
                print(f"  {role:<7} {fmt:<11} {len(data):>8,} {len(packed):>8,}  {fits}")
                if (role, fmt) == ("node", "cloud-init"):
                    margin = ec2 - len(packed)
        print(f"\nnode cloud-init --gzip: {margin:,} bytes to spare under EC2's limit (budget: at least {BUDGET:,})")

        print("\nrender rate, in process (plan + encode; the runtime zipapp built once, as in any one process):")
        for role in ("master", "node"):
            for fmt in ("cloud-init", "ignition"):
                n, t0 = 0, time.perf_counter()
                while time.perf_counter() - t0 < args.seconds:
                    render(build_plan(cluster, secrets, role, f"{role}-{n}"), fmt)
                    n += 1
                rate = n / (time.perf_counter() - t0)
                target = RATE_TARGETS.get((role, fmt))
                goal = beside(rate, target, at_most=False) if target else ""
                print(f"  {role:<7} {fmt:<11} {rate:8.0f} payloads/s  {goal}".rstrip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
