"""Start-up figures, each a fresh process: the kubeseed command line (--help, every command's --help, render with
the built runtime zipapps cached on disk and without), and the runtime zipapp's ``--help`` on the target's python3.

Run from the repository root: .venv/bin/python -m bench.bench_startup
(prints figures beside their targets; it asserts nothing and is not a test)
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.targets import beside, kubeseed_command, median_wall, process_env
from kubeseed.generator.model import default_cluster_text
from kubeseed.generator.secrets import generate_secrets, write_cluster_dir
from kubeseed.generator.zipapp import unpack_sources
from kubeseed.generator.zipcache import CACHE_ENV, cached_zipapp

HELP_TARGET = 0.100  # seconds: `kubeseed --help` and any command's start-up
RENDER_TARGET = 0.150  # seconds: `kubeseed render node` as a fresh process
RUNTIME_TARGET = 0.150  # seconds: `python3 /opt/kubeseed/kubeseed-runtime.pyz --help` on the target's Python
COMMANDS = [
    ["cluster", "create"],
    ["cluster", "pin"],
    ["cluster", "show"],
    ["render"],
    ["token", "create"],
    ["token", "list"],
    ["token", "delete"],
    ["token", "upload"],
    ["user", "create"],
    ["hash-password"],
    ["quickstart"],
    ["seed"],
    ["image", "build"],
    ["image", "runtime"],
    ["images", "list"],
]
HEAVY = ("cryptography", "jinja2", "pycdlib", "passlib", "python_minifier", "yaml", "urllib.request")


def compiled_modules(python: str, pyz: Path) -> set[str]:
    """The kubeseed modules a ``--help`` run imports (-X importtime lists each; the loader compiles only those)."""
    r = subprocess.run([python, "-X", "importtime", str(pyz), "--help"], capture_output=True, text=True, check=True)
    return {m.group(1) for m in re.finditer(r"\|\s+(kubeseed[\w.]*)\s*$", r.stderr, re.M)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=11, help="runs per figure (the median is printed)")
    ap.add_argument("--python", default="/usr/bin/python3", help="the target's interpreter for the runtime zipapp")
    args = ap.parse_args()
    kubeseed = kubeseed_command()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        os.environ[CACHE_ENV] = str(base / "cache")  # this process's builds too: never the user's own cache
        write_cluster_dir(base / "demo", default_cluster_text("demo", "10.0.0.10:6443"), generate_secrets("ECDSA-P256"))
        env = process_env(base / "cache")

        def wall(*argv: str, stdin: bytes | None = None, warm: bool = True, runs: int = args.runs) -> float:
            return median_wall([*kubeseed, *argv], runs, base, env, stdin, warm)

        print(f"kubeseed as a fresh process ({Path(kubeseed[0]).name}), median of {args.runs} runs, bytecode cached:")
        secs = wall("--help")
        print(f"  kubeseed --help                          {secs:6.3f} s  {beside(secs, HELP_TARGET, True, ' s')}")
        helps = {" ".join(c): wall(*c, "--help") for c in COMMANDS}
        name, secs = max(helps.items(), key=lambda kv: kv[1])
        label = f"slowest COMMAND --help ({name})"
        print(f"  {label:<40} {secs:6.3f} s  {beside(secs, HELP_TARGET, True, ' s')}")
        probe = "import sys, kubeseed.generator.cli; print(' '.join(m for m in sys.argv[1:] if m in sys.modules))"
        loaded = subprocess.run([sys.executable, "-c", probe, *HEAVY], capture_output=True, text=True, env=env).stdout
        print(f"  loaded at start-up, of {', '.join(HEAVY)}: {loaded.split() or 'none'}")

        # the cache filled by the warm-up run, as after any first render; then a cold one in an empty cache
        secs = wall("render", "node", "demo", "-o", "node.yaml")
        print(f"  kubeseed render node (zipapp cached)     {secs:6.3f} s  {beside(secs, RENDER_TARGET, True, ' s')}")
        for label, argv in (
            ("render master", ["master", "demo", "-o", "master.yaml"]),
            ("render node --format ignition", ["node", "demo", "--format", "ignition", "-o", "node.ign"]),
        ):
            print(f"  kubeseed {label:<31} {wall('render', *argv):6.3f} s")
        cold = []
        for _ in range(3):
            shutil.rmtree(base / "cache", ignore_errors=True)
            t0 = time.perf_counter()
            render = [*kubeseed, "render", "node", "demo", "-o", "node.yaml"]
            subprocess.run(render, cwd=base, env=env, check=True, capture_output=True)
            cold.append(time.perf_counter() - t0)
        print(f"  kubeseed render node, empty cache        {sorted(cold)[1]:6.3f} s  (builds, caches the zipapp)")
        for argv in (["cluster", "show", "demo"], ["cluster", "pin", "demo"], ["images", "list", "demo"]):
            print(f"  kubeseed {' '.join(argv):<31} {wall(*argv):6.3f} s")
        secs = wall("hash-password", stdin=b"correct horse\n")
        print(f"  kubeseed hash-password                   {secs:6.3f} s")

        print(f"\nruntime zipapp: python3 kubeseed-runtime.pyz --help on {args.python}, median of {args.runs} runs:")
        if not Path(args.python).is_file():
            print(f"  {args.python}: absent; no figures")
            return 0
        print(f"  {'zipapp':<7} {'bytes':>7} {'seconds':>8}  modules compiled / carried  unpack")
        for role in ("node", "master", None):
            data = cached_zipapp(role)
            pyz = base / f"{role or 'full'}.pyz"
            pyz.write_bytes(data)
            secs = median_wall([args.python, str(pyz), "--help"], args.runs, base, env)
            carried = set(unpack_sources(data))
            compiled = compiled_modules(args.python, pyz) & carried
            t0 = time.perf_counter()
            for _ in range(20):
                unpack_sources(data)
            unpack = (time.perf_counter() - t0) / 20
            print(
                f"  {role or 'full':<7} {len(data):>7,} {secs:8.3f}  {len(compiled):>8} / {len(carried):<16} "
                f"{unpack * 1000:5.1f} ms  {beside(secs, RUNTIME_TARGET, True, ' s')}"
            )
        print("  (unpack: the whole packed bzip2 stream, once at start; a module is compiled only when imported)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
