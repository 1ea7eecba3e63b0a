"""Seed figures: NoCloud seed ISOs per second for a 100-host inventory, kubeseed (pycdlib, in Python) against
cloud-localds (Debian's cloud-image-utils, which runs genisoimage) making the same 100 seeds in the same run.

Run from the repository root: .venv/bin/python -m bench.bench_seeds
(prints figures, the ratios beside their targets; it asserts nothing and is not a test)

The ``kubeseed seed`` command is timed as users run it, a fresh process with Python's bytecode cached and the built
runtime zipapps in its cache (a temporary one here), after one untimed run that fills both; the first run, which
builds the zipapps, is printed apart.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from bench.targets import beside, kubeseed_command, process_env
from kubeseed.generator.inventory import load_inventory
from kubeseed.generator.model import default_cluster_text
from kubeseed.generator.secrets import generate_secrets, load, write_cluster_dir
from kubeseed.generator.seedcli import write_seeds
from kubeseed.generator.seeds import build_seeds
from kubeseed.generator.zipcache import CACHE_ENV

CLI_TARGET = 5.0  # the seed command's rate, at least this many times cloud-localds' making the ISOs alone
ISO_TARGET = 20.0  # kubeseed's ISO making alone, at least this many times cloud-localds'


def inventory(hosts: int) -> dict:
    entries = [
        {
            "hostname": "cp-1" if i == 0 else f"worker-{i}",
            "role": "master" if i == 0 else "node",
            "mac": f"52:54:00:00:{i // 256:02x}:{i % 256:02x}",
            "addresses": [f"10.0.{i // 200}.{10 + i % 200}/16"],
            "gateway": "10.0.255.254",
            "nameservers": ["10.0.255.253"],
        }
        for i in range(hosts)
    ]
    return {"apiVersion": "kubeseed.io/v1alpha1", "kind": "Inventory", "hosts": entries}


def median_seconds(fn: Callable[[int], object], repeats: int) -> float:
    times = []
    for i in range(repeats):
        t0 = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--hosts", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=3, help="runs per measurement (the median is printed)")
    args = ap.parse_args()
    n = args.hosts
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        os.environ[CACHE_ENV] = str(base / "cache")  # this process's builds too: never the user's own cache
        write_cluster_dir(base / "demo", default_cluster_text("demo", "10.0.0.10:6443"), generate_secrets("ECDSA-P256"))
        (base / "hosts.yaml").write_text(yaml.safe_dump(inventory(n), sort_keys=False))
        cluster, secrets = load(base / "demo")
        inv = load_inventory(base / "hosts.yaml")
        seeds = build_seeds(cluster, secrets, inv)  # warms the runtime zipapp cache, as a long CLI run would

        print(
            f"NoCloud seeds for a {n}-host inventory (1 master, {n - 1} nodes, static addressing), median of "
            f"{args.repeats} runs:"
        )
        rows: list[tuple[str, float]] = []
        render = median_seconds(lambda i: build_seeds(cluster, secrets, inv), args.repeats)
        rows.append(("kubeseed: render the payloads and seed files", render))
        isos = median_seconds(lambda i: [s.iso() for s in seeds], args.repeats)
        rows.append(("kubeseed: ISOs from rendered files (pycdlib)", isos))
        whole = median_seconds(
            lambda i: write_seeds(base / f"out-{i}", build_seeds(cluster, secrets, inv), False), args.repeats
        )
        rows.append(("kubeseed: render + ISOs + write to disk", whole))
        cli_out = base / "cli-out"
        env = process_env(base / "cli-cache")

        def run_cli(out: str) -> None:
            seed = [*kubeseed_command(), "seed", "demo", "--inventory", "hosts.yaml", "--out", str(cli_out / out)]
            subprocess.run(seed, cwd=base, env=env, check=True, capture_output=True)

        first = median_seconds(lambda i: run_cli("first"), 1)  # builds and caches the zipapps, writes bytecode
        cli = median_seconds(lambda i: run_cli(str(i)), args.repeats)
        rows.append(("kubeseed seed (the CLI, a fresh process)", cli))

        # cloud-localds gets the very files kubeseed rendered, already on disk: only ISO making is timed.
        files = base / "files"
        for s in seeds:
            for name, data in s.files.items():
                (files / s.host.hostname).mkdir(parents=True, exist_ok=True)
                (files / s.host.hostname / name).write_bytes(data)
        localds = shutil.which("cloud-localds")
        theirs = None
        if localds and shutil.which("genisoimage"):

            def run_localds(i: int) -> None:
                out = base / f"localds-{i}"
                out.mkdir()
                for s in seeds:
                    d = files / s.host.hostname
                    net = ["-N", str(d / "network-config")] if "network-config" in s.files else []
                    subprocess.run(
                        [
                            localds,
                            *net,
                            str(out / f"{s.host.hostname}.iso"),
                            str(d / "user-data"),
                            str(d / "meta-data"),
                        ],
                        check=True,
                        capture_output=True,
                    )

            theirs = median_seconds(run_localds, args.repeats)
            rows.append(("cloud-localds: ISOs from the same files", theirs))

        for label, secs in rows:
            print(f"  {label:<46} {secs:7.3f} s  {n / secs:8.1f} seeds/s")
        print(f"  {'kubeseed seed, first run (builds the zipapps)':<46} {first:7.3f} s  {n / first:8.1f} seeds/s")
        sizes = [len(s.iso()) for s in seeds]
        print(f"  ISO size (kubeseed): median {statistics.median(sizes):,.0f} bytes, max {max(sizes):,}")
        if theirs is None:
            print("  cloud-localds: absent (apt-get install cloud-image-utils genisoimage); no ratio")
        else:
            theirs_sizes = [p.stat().st_size for p in (base / "localds-0").iterdir()]
            print(f"  ISO size (cloud-localds): median {statistics.median(theirs_sizes):,.0f} bytes")
            iso_ratio, cli_ratio = theirs / isos, theirs / cli
            print(
                f"  ratio, ISO making alone: kubeseed {iso_ratio:.1f}x the rate of cloud-localds "
                f"{beside(iso_ratio, ISO_TARGET, False, 'x')}"
            )
            print(f"  ratio, render + ISOs + write vs cloud-localds' ISOs alone: {theirs / whole:.1f}x")
            print(
                f"  ratio, the kubeseed seed CLI vs cloud-localds' ISOs alone: {cli_ratio:.1f}x "
                f"{beside(cli_ratio, CLI_TARGET, False, 'x')}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
