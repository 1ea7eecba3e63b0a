"""``kubeseed image build`` and ``kubeseed image runtime``: the command line of the golden image builder
(``kubeseed.generator.goldenimage``). ``python -m kubeseed.generator.imagecli build ...`` is
``kubeseed image build ...``."""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from kubeseed.runtime.config import RUNTIME_PATH

from .console import run_command
from .errors import UserError, shown
from .fsutil import check_output, write_output
from .goldenimage import CACHE_ENV, DEFAULT_MINOR, KUBELET_MODES, ROLES


def _minor(version: str) -> str:
    m = re.fullmatch(r"v?(1\.\d+)(\.\d+)?", version)
    if not m:
        raise UserError(f"--kubernetes-version: {shown(version)} is not a version like v1.35")
    return m.group(1)


def cmd_image_build(args: argparse.Namespace) -> int:
    from .goldenimage.build import Builder, Options, default_cache
    from .goldenimage.disk import parse_size

    check_output(args.out, "--out", devices=False)  # a disk image, with its kernel and initrd beside it
    os.umask(0o022)  # what the build writes into the image gets Debian's usual modes, whatever the caller's umask
    opts = Options(
        role=args.role,
        cache=Path(args.cache) if args.cache else default_cache(),
        mirror=args.mirror,
        kubelet=args.kubelet,
        kubernetes_minor=_minor(args.kubernetes_version),
        provision=args.provision,
        size=parse_size(args.size) if args.size else None,
        rebuild=args.rebuild,
    )
    info = Builder(opts).build_image(Path(args.out))  # a BuildError reaches run_command: exit code 3
    t = info.tree
    print(f"Image: {info.image} ({info.size / (1 << 30):.1f} GiB raw, sparse; MBR, GRUB for BIOS, ext4 root)")
    print(f"Kernel: {info.kernel}\nInitrd: {info.initrd}")
    print(f"Runtime: {RUNTIME_PATH} (full runtime, 0755); role: {opts.role}")
    print(("Kubelet: " if t.kubelet else "") + t.kubelet_note)
    print("Boot it (direct kernel boot; or drop -kernel, -initrd and -append to boot the disk's own GRUB):")
    print(f"  qemu-system-x86_64 -m 2048 -nographic -drive file={info.image},format=raw,if=virtio \\")
    print(f"    -kernel {info.kernel} -initrd {info.initrd} -append '{info.cmdline}'")
    return 0


def cmd_image_runtime(args: argparse.Namespace) -> int:
    """The full runtime zipapp, for the Packer template's file provisioner."""
    from .zipcache import cached_zipapp

    data = cached_zipapp(None)
    write_output(args.out, data, 0o755, "--out")
    print(f"{args.out}: the full kubeseed runtime ({len(data):,} bytes) for images/kubeseed.pkr.hcl")
    return 0


def _add_actions(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    b = sub.add_parser(
        "build",
        help="build a bootable Debian 12 raw disk image (debootstrap, mke2fs -d; root, no loop devices)",
        description="Build a bootable Debian 12 (bookworm, amd64) raw disk image with the kubeseed runtime at "
        f"{RUNTIME_PATH}, plus its kernel and initrd beside it for direct boot. Needs root.",
    )
    b.add_argument("--out", "-o", required=True, help="the raw image to write, e.g. images/out/node.img")
    b.add_argument("--role", default="node", choices=ROLES, help="node (default) or master (adds kubectl)")
    b.add_argument("--cache", help=f"cache of base trees (default ${CACHE_ENV} or ~/.cache/kubeseed/images)")
    b.add_argument("--mirror", help="Debian mirror (default: the one this machine's apt uses)")
    b.add_argument(
        "--kubelet",
        default="auto",
        choices=KUBELET_MODES,
        help="auto: from pkgs.k8s.io when reachable (default); skip; require: fail without it",
    )
    b.add_argument(
        "--kubernetes-version", default=f"v{DEFAULT_MINOR}", help=f"the kubelet's stream (default v{DEFAULT_MINOR})"
    )
    b.add_argument("--size", help="root file system size, e.g. 4G (default: the files + 1 GiB, at least 2 GiB)")
    b.add_argument("--rebuild", action="store_true", help="ignore the cached trees and build them again")
    b.add_argument("--provision", metavar="FILE", help="the provisioning script (default images/provision.sh)")
    b.set_defaults(func=cmd_image_build)
    r = sub.add_parser("runtime", help="write the full runtime zipapp (for the Packer template)")
    r.add_argument(
        "--out", "-o", default="images/out/kubeseed-runtime.pyz", help="default images/out/kubeseed-runtime.pyz"
    )
    r.set_defaults(func=cmd_image_runtime)


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """``image build`` and ``image runtime`` under the kubeseed command line's ``subparsers``; each sets ``func``
    (Namespace -> exit code). Bad options raise UserError (exit code 2), a failed build BuildError (3)."""
    p = subparsers.add_parser("image", help="golden images: a Debian 12 disk image with the runtime baked in")
    _add_actions(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m kubeseed.generator.imagecli build ...`` is ``kubeseed image build ...``."""
    p = argparse.ArgumentParser(prog="kubeseed image")
    _add_actions(p)
    args = p.parse_args(argv)
    return run_command(args.func, args)


if __name__ == "__main__":
    sys.exit(main())
