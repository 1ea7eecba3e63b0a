"""``kubeseed seed CLUSTER --inventory hosts.yaml --out DIR``: one seed per host, as ISO images or directories.

Every seed is rendered (and every ISO built) in memory before anything is written; outputs are staged in a
temporary directory inside ``--out`` and renamed into place, so an error leaves ``--out`` as it was."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

from .console import progress
from .errors import UserError
from .inventory import load_inventory
from .plan import RUNTIMES
from .secrets import load
from .seednet import NAME_GLOB
from .seeds import KINDS, LABELS, Seed, build_seeds


def _stage(staging: Path, name: str, seed: Seed, data: bytes | None) -> Path:
    """Write one seed under ``staging`` (files 0600, directories 0700); return what was written."""
    target = staging / name
    if data is not None:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return target
    for rel, content in seed.files.items():
        parent = target
        parent.mkdir(mode=0o700, exist_ok=True)
        for part in rel.split("/")[:-1]:
            parent = parent / part
            parent.mkdir(mode=0o700, exist_ok=True)
        fd = os.open(target / rel, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(content)
    return target


def _install(staged: Path, dest: Path, trash: Path) -> None:
    """Rename ``staged`` to ``dest``; an existing ``dest`` (an older seed) moves to ``trash`` first."""
    if dest.is_symlink() or dest.exists():
        if dest.is_file() and staged.is_file() and not dest.is_symlink():
            os.replace(staged, dest)  # atomic for files
            return
        os.rename(dest, trash / f"old-{dest.name}")
    os.rename(staged, dest)


def write_seeds(out: Path, seeds: list[Seed], as_dir: bool) -> list[tuple[Seed, Path, int]]:
    """Write every seed to ``out`` (created 0700 if missing): ``HOST.iso``, or ``HOST/`` with ``as_dir``.
    Returns (seed, path, bytes) per seed."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out: {out} exists and is not a directory")
    images = [(s, None if as_dir else s.iso()) for s in seeds]  # build every ISO before touching the disk
    if not out.exists():
        out.mkdir(parents=True, mode=0o700)
    staging = Path(tempfile.mkdtemp(prefix=".kubeseed-seed-", dir=out))
    written: list[tuple[Seed, Path, int]] = []
    try:
        new, trash = staging / "new", staging / "old"  # apart: a host may be called "old"
        new.mkdir()
        trash.mkdir()
        staged = []
        for seed, data in images:
            name = seed.host.hostname if as_dir else f"{seed.host.hostname}.iso"
            size = len(data) if data is not None else sum(len(c) for c in seed.files.values())
            staged.append((seed, _stage(new, name, seed, data), out / name, size))
        for seed, src, dest, size in staged:
            _install(src, dest, trash)
            written.append((seed, dest, size))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return written


def cmd_seed(args: argparse.Namespace) -> int:
    cluster, secrets = load(Path(args.cluster))
    inventory = load_inventory(Path(args.inventory))
    seeds = build_seeds(cluster, secrets, inventory, args.kind, args.runtime, args.gzip)
    what = "seed directories" if args.dir else "seed ISOs"
    written = write_seeds(Path(args.out), seeds, args.dir)
    progress(f"Writing {len(written)} {args.kind} {what} to {args.out}")
    print(f"{'seed':<40} {'role':<7} {'label':<9} {'bytes':>9}  files")
    for seed, path, size in written:
        files = ", ".join(seed.files)
        print(f"{str(path) + ('/' if args.dir else ''):<40} {seed.host.role:<7} {seed.label:<9} {size:>9,}  {files}")
    for h in inventory.hosts:
        if args.kind == "nocloud" and h.static and h.mac is None:
            print(
                f"note: {h.hostname} has static addresses but no MAC: its network-config matches the NIC by "
                f'name ("{NAME_GLOB}"), which netplan honours but the ifupdown and networkd renderers do not; '
                "add mac: to be sure",
                file=sys.stderr,
            )
    if any(s.host.role == "master" for s in seeds):
        print("The master's seed holds the cluster's CA keys: hand it only to that machine.", file=sys.stderr)
    return 0


def add_seed_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``kubeseed seed`` on the top-level subcommands."""
    s = sub.add_parser(
        "seed",
        help="write a NoCloud or config-drive seed (ISO or directory) per host of an inventory",
        description="One seed per host of an inventory (hosts.yaml): NoCloud ISOs (label cidata) by default, "
        "config-drive ISOs (label config-2) with --kind configdrive, or the same files as directories with --dir.",
    )
    s.add_argument("cluster", metavar="CLUSTER", help="cluster directory (demo is ./demo)")
    s.add_argument("--inventory", "-i", required=True, metavar="FILE", help="hosts.yaml (kind: Inventory)")
    s.add_argument("--out", "-o", required=True, metavar="DIR", help="where to write HOST.iso or HOST/ (0600/0700)")
    s.add_argument(
        "--kind",
        default="nocloud",
        choices=KINDS,
        help=f"nocloud ({LABELS['nocloud']}: user-data, meta-data, network-config; default) or configdrive "
        f"({LABELS['configdrive']}: openstack/latest/...)",
    )
    s.add_argument("--dir", action="store_true", help="write seed directories instead of ISO images")
    s.add_argument(
        "--runtime",
        choices=RUNTIMES,
        default="embedded",
        help="preinstalled: leave the runtime out (a kubeseed golden image has it); default embedded",
    )
    s.add_argument("--gzip", action="store_true", help="gzip each user-data (cloud-init decodes it)")
    s.set_defaults(func=cmd_seed)
