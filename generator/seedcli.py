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
from .errors import UserError, shown
from .fsutil import make_private_dir
from .plan import RUNTIMES
from .seeds import KINDS, LABELS, SEED_FILES, Seed


def _write_new(path: Path, data: bytes) -> None:
    """A new file, 0600 whatever the umask."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _stage(staging: Path, name: str, seed: Seed, data: bytes | None) -> Path:
    """Write one seed under ``staging`` (files 0600, directories 0700); return what was written."""
    target = staging / name
    if data is not None:
        _write_new(target, data)
        return target
    for rel, content in seed.files.items():
        make_private_dir((target / rel).parent)
        _write_new(target / rel, content)
    return target


def _stray(seed_dir: Path) -> str:
    """The first entry of ``seed_dir`` that no seed of kubeseed's holds ('' if none): a link, or another name."""
    dirs = {parent.as_posix() for rel in SEED_FILES for parent in Path(rel).parents if parent != Path(".")}
    for p in sorted(seed_dir.rglob("*")):
        rel = p.relative_to(seed_dir).as_posix()
        if p.is_symlink() or not ((rel in SEED_FILES and p.is_file()) or (rel in dirs and p.is_dir())):
            return rel
    return ""


def _iso_label(path: Path) -> str:
    """The volume label of the ISO 9660 image at ``path``, '' if it is none."""
    with open(path, "rb") as f:
        f.seek(16 * 2048)  # the primary volume descriptor
        pvd = f.read(72)
    return pvd[40:72].decode("ascii", "replace").rstrip() if pvd[1:6] == b"CD001" else ""


def _check_replaceable(dest: Path, as_dir: bool) -> None:
    """Refuse to replace ``dest`` unless it is absent or a seed kubeseed wrote: a directory holding only seed
    files (``--dir``), or an ISO labelled cidata or config-2. Anything else may be someone's data."""
    if not (dest.is_symlink() or dest.exists()):
        return
    fix = "move it away, or write the seeds to another --out"
    if dest.is_symlink() or dest.is_dir() != as_dir or not (dest.is_dir() or dest.is_file()):
        raise UserError(f"--out: {dest} exists and is not a seed {'directory' if as_dir else 'ISO'}; {fix}")
    stray = _stray(dest) if as_dir else ""
    if stray:
        raise UserError(
            f"--out: {dest} holds {shown(stray)}, which is no seed file (kubeseed replaces only its own); {fix}"
        )
    if not as_dir and _iso_label(dest) not in LABELS.values():
        raise UserError(f"--out: {dest} is not a seed ISO (its label is not {' or '.join(LABELS.values())}); {fix}")


def _install(staged: Path, dest: Path, trash: Path) -> None:
    """Rename ``staged`` to ``dest``; an existing ``dest`` (an older seed, checked by _check_replaceable) moves
    to ``trash`` first."""
    if dest.exists():
        if dest.is_file() and staged.is_file():
            os.replace(staged, dest)  # atomic for files
            return
        os.rename(dest, trash / f"old-{dest.name}")
    os.rename(staged, dest)


def write_seeds(out: Path, seeds: list[Seed], as_dir: bool) -> list[tuple[Seed, Path, int]]:
    """Write every seed to ``out`` (created 0700 if missing): ``HOST.iso``, or ``HOST/`` with ``as_dir``.
    Returns (seed, path, bytes) per seed. What is in the way and is not a seed of kubeseed's stops the run before
    anything is written."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out: {out} exists and is not a directory")
    names = [s.host.hostname if as_dir else f"{s.host.hostname}.iso" for s in seeds]
    for name in names:
        _check_replaceable(out / name, as_dir)
    images = [(s, None if as_dir else s.iso()) for s in seeds]  # build every ISO before touching the disk
    make_private_dir(out)
    staging = Path(tempfile.mkdtemp(prefix=".kubeseed-seed-", dir=out))
    written: list[tuple[Seed, Path, int]] = []
    try:
        new, trash = staging / "new", staging / "old"  # apart: a host may be called "old"
        make_private_dir(new)
        make_private_dir(trash)
        staged = []
        for (seed, data), name in zip(images, names):
            size = len(data) if data is not None else sum(len(c) for c in seed.files.values())
            staged.append((seed, _stage(new, name, seed, data), out / name, size))
        for seed, src, dest, size in staged:
            _install(src, dest, trash)
            written.append((seed, dest, size))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return written


def cmd_seed(args: argparse.Namespace) -> int:
    from .inventory import load_inventory
    from .secrets import load
    from .seednet import NAME_GLOB
    from .seeds import build_seeds
    from .tokens import now_utc, record_master_payload

    if not args.out:
        raise UserError("--out: the path is empty; name a directory")
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
        record_master_payload(Path(args.cluster), secrets.tokens, now_utc())  # its init creates their Secrets
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
