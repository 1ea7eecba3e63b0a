"""``upgrade [VERSION]``: one command per machine, masters first. It first installs the cluster's published runtime
(kube-system/kubeseed-runtime, which ``kubeseed upgrade apply`` writes with the target version) and runs that;
then, as phases like init's (resumable, ``--phase``/``--skip-phases``): on a master what ``kubeadm upgrade apply``
does (the first master) or ``kubeadm upgrade node`` does (the others), on a node what ``kubeadm upgrade node``
does, and on every machine the rest: drain, the kubelet package, restart, uncordon."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from ..config import DNS_NAME, NODE_CONFIG_PATH, RUNTIME_PATH, ConfigError, parse_node_config, read_node_config
from ..workflow import Context, PhaseError
from ..workflow import status as show_phases
from .machine import STATE, machine_api

REEXEC = "KUBESEED_UPGRADE_REEXEC"  # set when upgrade runs the runtime it just installed: it installs no other


def add_parser(sub: Any) -> None:
    u = sub.add_parser(
        "upgrade",
        help="upgrade this machine to the cluster's target version (kubeseed upgrade apply publishes it)",
        description="Install the cluster's published runtime, then upgrade this machine: on a master the static "
        "pods (one at a time, rolled back when unhealthy), the cluster's configuration and add-ons; on every "
        "machine the kubelet configuration and package, with the node drained around it.",
    )
    u.add_argument("version", nargs="?", metavar="VERSION", help="vX.Y.Z (default: the cluster's published target)")
    u.add_argument("--root", default="", metavar="DIR", help="read and write every path inside DIR")
    u.add_argument("--config", metavar="FILE", help=f"node config (default: [DIR]{NODE_CONFIG_PATH})")
    u.add_argument("--node-name", default="", help="node name (default: nodeName from the config, else hostname)")
    g = u.add_mutually_exclusive_group()
    g.add_argument("--phase", metavar="NAME", help="run only this phase (again)")
    g.add_argument("--skip-phases", default="", metavar="NAME,...", help="skip these phases")
    u.add_argument(
        "--drain",
        default="",
        metavar="NODE",
        help="on a master, once it is upgraded: drain NODE (not this machine), uncordon it once its kubelet runs "
        "VERSION (for a node whose cluster does not let it drain itself)",
    )
    u.add_argument("--no-drain", action="store_true", help="upgrade the kubelet without draining this machine")
    u.add_argument("--ignore-preflight-errors", default="", metavar="all|CHECK,...", help="report as warnings")
    u.add_argument(
        "--component-timeout",
        type=float,
        default=300,
        metavar="SECONDS",
        help="how long each control-plane component may take to come back healthy (300)",
    )
    u.add_argument("--timeout", type=float, default=1800, metavar="SECONDS", help="bound the whole run (1800)")
    u.add_argument("-v", "--verbose", action="store_true", help="print the traceback of an unexpected error")


def run(args: argparse.Namespace) -> int:
    """Install the cluster's published runtime and run it (once); then upgrade by the phases (phases.py), which
    only the full runtime carries."""
    from ..cli import ignored_checks, load_role

    if not 0 < args.timeout < float("inf") or not 0 < args.component_timeout < float("inf"):
        raise ConfigError("--timeout", "must be a positive number of seconds")
    path = args.config or os.path.join(args.root or "/", NODE_CONFIG_PATH.lstrip("/"))
    doc = read_node_config(path)
    role = doc.get("role") if isinstance(doc, dict) else None
    try:
        cfg = parse_node_config(doc, load_role(role).CONFIG if role in ("master", "node") else None)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e.path}", e.message) from None
    if args.drain and (cfg.role != "master" or not DNS_NAME.fullmatch(args.drain)):
        raise ConfigError("--drain", "takes another node's name, on a master (which holds admin credentials)")
    ignore = ignored_checks(args)
    ctx = Context("upgrade", cfg, args.root, args.node_name, ignore, timeout=args.timeout, verbose=args.verbose)
    published = self_update(ctx)
    try:
        from .phases import main
    except ImportError as e:  # a role's runtime: the phases come with the published one
        if not (e.name or "").startswith(__package__):
            raise
        raise PhaseError(
            "this runtime has upgrade's first step only (installing the cluster's published runtime), and the "
            "cluster has none: publish it from the workstation, kubeseed upgrade apply CLUSTER --to vX.Y.Z"
        ) from None
    return main(args, ctx, published, path)


def self_update(ctx: Context) -> str:
    """Install the cluster's published runtime when it differs from this one, and run it instead (once); the
    published target version ('' when none is published)."""
    import hashlib

    from ..published import PATH, install

    status, cm = machine_api(ctx)("GET", PATH)
    if status in (403, 404):
        ctx.say(f"[upgrade] the cluster has no published runtime (HTTP {status}): using this one")
        return ""
    if status != 200:
        raise PhaseError(f"cannot read kube-system/kubeseed-runtime (HTTP {status}): {cm.get('message', '')}")
    data = cm.get("data") or {}
    here = ctx.path(RUNTIME_PATH)
    try:
        with open(here, "rb") as f:
            same = hashlib.sha256(f.read()).hexdigest() == data.get("sha256")
    except OSError:
        same = False
    running = os.path.realpath(sys.argv[0]) == os.path.realpath(here)
    if (same and running) or os.environ.get(REEXEC):
        return str(data.get("kubernetesVersion") or "")
    if not same:
        install(ctx, cm)
        ctx.say(f"[upgrade] installed the cluster's runtime {data.get('runtimeVersion', '?')} at {RUNTIME_PATH}")
    sys.stdout.flush()
    os.execve(sys.executable, [sys.executable, here] + sys.argv[1:], dict(os.environ, **{REEXEC: "1"}))
    return ""  # not reached


def status(ctx: Context) -> None:
    """What ``status`` adds: the last upgrade's phases."""
    if os.path.exists(ctx.path(STATE)):
        ctx.say("")
        up = Context("upgrade", None, ctx.root, out=ctx.out)
        up.state = STATE
        show_phases(up)
