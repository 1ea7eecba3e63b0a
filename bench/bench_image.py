"""Golden image figures: build time (cold and cached), and first boots in systemd-nspawn with and without the payload.

Run as root, from the repository root: .venv/bin/python -m bench.bench_image [--runs 3] [--skip-cold]
(prints figures; it asserts nothing and is not a test)

* build, cold: ``kubeseed image build`` with an empty cache in a temporary directory (debootstrap from the mirror
  this machine's apt uses, provision.sh in systemd-nspawn, mke2fs -d); deleted afterwards.
* build, cached: the same with the default cache ($KUBESEED_IMAGE_CACHE or ~/.cache/kubeseed/images), warmed first.
* nspawn first boot: a copy of the image tree (the copy is timed apart), a NoCloud seed, ``systemd-nspawn --boot
  --register=no --keep-unit``; from start to the runtime's state.json saying every join phase is done (the
  in-test API server answers at once) and to cloud-init's result.json (its final stage done).
* the same boot with a seed whose user-data has no runtime (only the host name), to cloud-init's final stage;
  and with no seed at all (cloud-init disabled by its generator), to ``systemctl is-system-running``. The
  difference between the first two is what the payload's runcmd, i.e. the runtime's join, costs at boot.

The boots use the TEST STAND-IN kubelet of tests/support/nspawn.py (no kubelet binary can be had here).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from kubeseed.generator.goldenimage.build import Builder, Options, default_cache
from kubeseed.generator.goldenimage.proc import remove_tree
from tests.support.apiserver import FakeAPIServer
from tests.support.helpers import kubeseed
from tests.support.join import server_tokens
from tests.support.nspawn import RESULT, Container, add_kubelet_stand_in, copy_tree, write_seed

JOIN_PHASES = ("preflight", "discovery", "tls-bootstrap", "kubelet-config", "kubelet-start")


def build(cache: Path, out: Path) -> float:
    t0 = time.monotonic()
    with open(os.devnull, "w") as null:
        saved, sys.stderr = sys.stderr, null  # the builder's progress lines
        try:
            Builder(Options(role="node", cache=cache)).build_image(out)
        finally:
            sys.stderr = saved
    return time.monotonic() - t0


def phases_done(tree: Path) -> bool:
    try:
        phases = json.loads((tree / "var/lib/kubeseed/state.json").read_text())["phases"]
    except (OSError, ValueError):
        return False
    return all(phases.get(p, {}).get("result") == "done" for p in JOIN_PHASES)


def runtime_seconds(tree: Path) -> float:
    phases = json.loads((tree / "var/lib/kubeseed/state.json").read_text())["phases"]
    return float(sum(phases[p]["duration"] for p in JOIN_PHASES))


def boot(
    image: Path, work: Path, name: str, user_data: bytes | None, marks: dict[str, Callable[[Container, Path], bool]]
) -> tuple[float, dict[str, float], Path]:
    """Copy, seed, boot; seconds from start to each mark. Returns (copy seconds, marks, tree)."""
    tree = work / name
    t0 = time.monotonic()
    copy_tree(image, tree)
    copied = time.monotonic() - t0
    write_seed(tree, user_data, "worker-1")
    add_kubelet_stand_in(tree)
    seen: dict[str, float] = {}
    with Container(tree, work / f"{name}.console") as c:
        for mark, ready in marks.items():
            seen[mark] = c.wait_until(mark, functools.partial(ready, c, tree), 300)
    return copied, seen, tree


def system_running(c: Container, _tree: Path) -> bool:
    return c.run("systemctl", "is-system-running").stdout.strip() in ("running", "degraded")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3, help="boots of each kind (median and max reported)")
    ap.add_argument("--skip-cold", action="store_true", help="do not time a build from an empty cache")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench_image: needs root (debootstrap, systemd-nspawn)", file=sys.stderr)
        return 2
    ip_forward = Path("/proc/sys/net/ipv4/ip_forward")
    before = ip_forward.read_text().strip()
    ip_forward.write_text("1\n")  # the container shares the host's network: preflight reads the host's value
    try:
        with tempfile.TemporaryDirectory(prefix="bench-image-", dir="/var/tmp") as tmp:
            run(Path(tmp), args)
    finally:
        ip_forward.write_text(before + "\n")
    return 0


def run(tmp: Path, args: argparse.Namespace) -> None:
    cache = default_cache()
    print(f"golden image (Debian 12, {os.cpu_count()} CPUs), cache {cache}:")
    if not args.skip_cold:
        cold_cache = tmp / "cold-cache"
        seconds = build(cold_cache, tmp / "cold" / "node.img")
        print(f"  build, cold (empty cache)       {seconds:7.1f} s")
        shutil.rmtree(cold_cache)
        shutil.rmtree(tmp / "cold")
    build(cache, tmp / "warm" / "node.img")  # warm the default cache
    seconds = build(cache, tmp / "cached" / "node.img")
    img = tmp / "cached" / "node.img"
    print(f"  build, cached                   {seconds:7.1f} s")
    mib = 1 << 20
    print(
        f"  node.img {img.stat().st_size / (1 << 30):.1f} GiB raw, {img.stat().st_blocks * 512 / mib:,.0f} MiB "
        f"on disk; kernel {img.with_name('node.vmlinuz').stat().st_size / mib:.1f} MiB, "
        f"initrd {img.with_name('node.initrd').stat().st_size / mib:.1f} MiB"
    )
    for f in sorted(cache.glob("*.tar.zst")):
        print(f"  cache: {f.name:<34} {f.stat().st_size / (1 << 20):7.0f} MiB")
    shutil.rmtree(tmp / "warm")
    shutil.rmtree(tmp / "cached")

    image = tmp / "image"
    with open(os.devnull, "w") as null:
        saved, sys.stderr = sys.stderr, null
        try:
            Builder(Options(role="node", cache=cache)).build_tree(image)
        finally:
            sys.stderr = saved
    size = subprocess.run(["du", "-sm", str(image)], capture_output=True, text=True).stdout.split()[0]
    print(f"  image tree {size} MiB")

    base = tmp / "cluster"
    base.mkdir()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    r = kubeseed("cluster", "create", "demo", "--endpoint", f"127.0.0.1:{port}", cwd=base)
    assert r.returncode == 0, r.stderr
    r = kubeseed("render", "node", "demo", "--hostname", "worker-1", "--runtime", "preinstalled", cwd=base)
    assert r.returncode == 0, r.stderr
    payload = r.stdout.encode()
    empty = b"#cloud-config\nhostname: worker-1\npreserve_hostname: false\n"
    cluster = base / "demo"
    ca, ca_key = (cluster / "pki/ca.crt").read_bytes(), (cluster / "pki/ca.key").read_bytes()
    api = FakeAPIServer(ca, ca_key, server_tokens(cluster), port=port)
    rows: dict[str, list[float]] = {}

    def add(key: str, value: float) -> None:
        rows.setdefault(key, []).append(value)

    with api:
        for i in range(args.runs):
            copied, seen, tree = boot(
                image,
                tmp,
                f"payload{i}",
                payload,
                {
                    "runtime done": lambda c, t: phases_done(t),
                    "cloud-init done": lambda c, t: (t / RESULT).is_file(),
                },
            )
            add("copy of the image tree (cp -al /usr, cp -a the rest)", copied)
            add("payload: start -> runtime done", seen["runtime done"])
            add("payload: start -> cloud-init final done", seen["cloud-init done"])
            add("  the runtime's own phases (state.json)", runtime_seconds(tree))
            remove_tree(tree)
            _, seen, tree = boot(
                image, tmp, f"empty{i}", empty, {"cloud-init done": lambda c, t: (t / RESULT).is_file()}
            )
            add("no runtime (hostname only): -> cloud-init final done", seen["cloud-init done"])
            remove_tree(tree)
            _, seen, tree = boot(image, tmp, f"bare{i}", None, {"system running": system_running})
            add("no seed (cloud-init disabled): -> system running", seen["system running"])
            remove_tree(tree)
    remove_tree(image)

    print(f"\nnspawn first boots, {args.runs} runs each (median / max seconds):")
    for key, values in rows.items():
        print(f"  {key:<54} {statistics.median(values):6.2f} {max(values):6.2f}")
    cost = statistics.median(rows["payload: start -> cloud-init final done"]) - statistics.median(
        rows["no runtime (hostname only): -> cloud-init final done"]
    )
    print(f"  the payload's cost at boot (difference of the medians)  {cost:6.2f}")


if __name__ == "__main__":
    sys.exit(main())
