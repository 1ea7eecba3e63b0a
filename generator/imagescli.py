"""``kubeseed images list CLUSTER``: the container images a cluster needs, one per line, as
``kubeadm config images list`` prints them (to pull them into a mirror before an air-gapped install)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from .console import run_command
from .errors import UserError, shown


def cmd_images_list(args: argparse.Namespace) -> int:
    from kubeseed.runtime.init.versions import images

    from .model import load_cluster

    name = args.cluster
    if not name or "\n" in name or any("\ud800" <= c <= "\udfff" for c in name):
        raise UserError(f"CLUSTER: {shown(name)} is not a cluster directory name")
    cluster = load_cluster(Path(name))
    refs = images(cluster.kubernetes_version, cluster.image_repository)
    if cluster.virtual_ip:  # every master runs kube-vip for it (runtime/init/kubevip.py)
        from kubeseed.runtime.init.kubevip import image

        refs.append(image(cluster.image_repository))
    for ref in refs:
        print(ref)
    return 0


def _add_actions(p: argparse.ArgumentParser) -> None:
    actions = p.add_subparsers(dest="images_action", metavar="ACTION")
    ls = actions.add_parser(
        "list",
        help="print the images CLUSTER needs, one per line, as `kubeadm config images list` does",
        description="The images of CLUSTER's Kubernetes version from its imageRepository, in kubeadm's order: "
        "kube-apiserver, kube-controller-manager, kube-scheduler, kube-proxy, coredns, pause, etcd; then kube-vip "
        "when cluster.yaml has controlPlane.virtualIP (ghcr.io's, or <imageRepository>/kube-vip from a mirror).",
    )
    ls.add_argument("cluster", metavar="CLUSTER", help="cluster directory (demo is ./demo)")
    ls.set_defaults(func=cmd_images_list)


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """``images list`` under the kubeseed command line's subparsers; ``list`` sets ``func`` (Namespace -> exit
    code); a missing or bad cluster raises UserError (exit code 2)."""
    p = sub.add_parser("images", help="the container images a cluster needs (like kubeadm config images)")
    _add_actions(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m kubeseed.generator.imagescli list CLUSTER`` is ``kubeseed images list CLUSTER``."""
    p = argparse.ArgumentParser(prog="kubeseed images")
    _add_actions(p)
    args = p.parse_args(argv)
    if not hasattr(args, "func"):
        p.print_help(sys.stderr)
        return 2
    return run_command(args.func, args)


if __name__ == "__main__":
    sys.exit(main())
