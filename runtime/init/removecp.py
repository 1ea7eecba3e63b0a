"""``remove-control-plane NODE``, on a healthy master: take a failed master out of the cluster, so that a new one can
join in its place. It removes the failed master's etcd member (found by name: etcd members are named after their
node), refusing when that would lose etcd's quorum, then deletes its Node as the admin. Idempotent: what is gone
already is skipped. A master that works leaves with ``reset`` run on it. Also what ``status`` shows of etcd on a
master: each member and the quorum. A master's command (init's package: it deletes the Node with init's API client)."""

from __future__ import annotations

import argparse
import os
import re
from typing import TYPE_CHECKING, Any, List

from ..config import ConfigError
from ..workflow import Context, PhaseError, Timeout

if TYPE_CHECKING:
    from ..etcd import Health, Member

NODE_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")  # a DNS subdomain, as Node names are
CONTROL_PLANE = "node-role.kubernetes.io/control-plane"
ADMIN = "/etc/kubernetes/admin.conf"
SAY = "[remove-control-plane]"
REPLACE = (
    "To replace it, render the new master's payload on your workstation, `kubeseed render master CLUSTER --hostname "
    "NEW --join`, and boot the new machine with it: it joins etcd as a learner and is promoted once caught up."
)


def add_parser(sub: Any) -> None:
    r = sub.add_parser(
        "remove-control-plane",
        help="on a healthy master: remove a failed master's etcd member and Node, so a new master can replace it",
        description="Remove the etcd member named NODE (refused when etcd would lose its quorum) and delete the Node "
        "NODE. Run it on a healthy master; a master that works leaves with `reset` run on it.",
    )
    r.add_argument(
        "node",
        metavar="NODE",
        help="the failed master's node name (its etcd member's; a learner never started: its ID)",
    )
    r.add_argument("--root", default="", metavar="DIR", help="read and write every path inside DIR")
    r.add_argument("--timeout", type=float, default=60, metavar="SECONDS", help="bound the whole run (60)")
    r.add_argument("-v", "--verbose", action="store_true", help="print the traceback of an unexpected error")


def run(args: argparse.Namespace) -> int:
    if not NODE_NAME.fullmatch(args.node):
        raise ConfigError("NODE", f"{args.node!r} is not a node name (lower-case letters, digits, '-' and '.')")
    if not 0 < args.timeout < float("inf"):
        raise ConfigError("--timeout", f"must be a positive number of seconds, not {args.timeout:g}")
    ctx = Context("remove-control-plane", None, args.root, timeout=args.timeout, verbose=args.verbose)
    remove_control_plane(ctx, args.node)
    return 0


def lost_quorum(node: str, target: Member, health: List[Health]) -> str:
    """Why removing ``target`` would leave etcd without quorum ("" when it would not): the voting members left
    must have a majority of themselves healthy. A learner does not vote: removing one is always safe."""
    from ..etcd import hex_id, quorum

    if target["isLearner"]:
        return ""
    voters = [h for h in health if not h.member["isLearner"]]
    healthy = sum(h.healthy for h in voters)
    rest = [h for h in voters if h.member["ID"] != target["ID"]]
    need, have = quorum(len(rest)), sum(h.healthy for h in rest)
    if rest and have >= need:
        return ""
    down = ", ".join(f"{h.member['name'] or hex_id(h.member['ID'])}: {h.detail}" for h in rest if not h.healthy)
    return (
        f"removing {node} would lose etcd's quorum: {len(voters)} members, {healthy} healthy; after removing it, "
        f"{len(rest)} members need {need} healthy for quorum and {have} are ({down or 'none left'}). Nothing was "
        "changed: start the members that are down first (if they are lost, restore etcd from a snapshot)"
    )


def remove_control_plane(ctx: Context, node: str) -> None:
    from ..etcd import MANIFEST, Etcd, hex_id, local_flags

    flags = local_flags(ctx)
    if not flags:
        raise PhaseError(f"{MANIFEST} does not exist: run remove-control-plane on a healthy master (stacked etcd)")
    peer = flags.get("initial-advertise-peer-urls", "")
    cluster = Etcd(ctx, flags.get("advertise-client-urls", "").split(","))
    try:
        members = cluster.members()
    except Timeout as e:
        raise PhaseError(
            f"{e}; is this master's etcd running (crictl ps -a | grep etcd)? Or run this on another healthy master"
        ) from None
    named = [m for m in members if m["name"] == node]
    # a learner that never started has no name yet: it goes by its ID, as status shows it
    target = named or [m for m in members if not m["name"] and hex_id(m["ID"]) == node]
    if node == flags.get("name") or any(peer in m["peerURLs"] for m in target):
        raise PhaseError(
            f"{node} is this machine: a master that works leaves with `kubeseed-runtime reset` run on it; "
            "remove-control-plane removes a failed master, run on a healthy one"
        )
    if target:
        health = cluster.health(members)
        why = lost_quorum(node, target[0], health)
        if why:
            raise PhaseError(why)
        removed = cluster.remove(target[0]["ID"])
        ctx.say(f"{SAY} {'removed' if removed else 'no longer found'} etcd member {node} ({hex_id(target[0]['ID'])})")
    else:
        names = ", ".join(m["name"] or hex_id(m["ID"]) for m in members)
        ctx.say(f"{SAY} etcd has no member named {node} (removed already?); its members: {names}")
    if target and not named:
        ctx.say(f"{SAY} {node} was a learner that never started: it has no Node")
    else:
        ctx.say(f"{SAY} {_delete_node(ctx, node, bool(target))}")
    ctx.say(f"{SAY} etcd now: {cluster.summary()}", f"{SAY} {REPLACE}")


def _delete_node(ctx: Context, node: str, master: bool) -> str:
    """Delete the Node ``node`` as the admin; what happened. Without an etcd member (``master`` False), only a
    control-plane Node is deleted: a worker's is refused with how to remove it."""
    from .apiclient import Client, with_client

    if not os.path.exists(ctx.path(ADMIN)):
        raise PhaseError(f"{ADMIN} does not exist: run remove-control-plane on a healthy master")

    def work(api: Client) -> str:
        status, obj = api.call("GET", f"/api/v1/nodes/{node}")
        if status == 404:
            return f"the Node {node} is gone already"
        if status != 200:
            raise PhaseError(f"cannot read the Node {node} (HTTP {status}): {obj.get('message', '')}")
        if not master and CONTROL_PLANE not in ((obj.get("metadata") or {}).get("labels") or {}):
            raise PhaseError(
                f"{node} is not a control-plane node (no etcd member, no {CONTROL_PLANE} label); to remove a worker: "
                f"kubectl drain {node} --ignore-daemonsets && kubectl delete node {node}"
            )
        status, obj = api.call("DELETE", f"/api/v1/nodes/{node}")
        if status not in (200, 202, 404):
            raise PhaseError(f"the API server refused to delete the Node {node} (HTTP {status}): {obj.get('message')}")
        return f"deleted the Node {node}"

    return with_client(ctx, "admin.conf", work)


def status(ctx: Context) -> None:
    """What ``status`` adds on a master with stacked etcd: each member (name, ID, started or learner, health) and
    the quorum. Bounded to a few seconds; an etcd that does not answer is reported, not waited for."""
    from ..etcd import Etcd, hex_id, local_flags, summary

    try:
        flags = local_flags(ctx)
        if not flags:
            return
        quick = Context("status", None, ctx.root, out=ctx.out, timeout=5)
        health = Etcd(quick, flags.get("advertise-client-urls", "").split(",")).health()
    except PhaseError as e:
        ctx.say(f"etcd: {e}")
        return
    rows = [("MEMBER", "ID", "STATE", "HEALTH")]
    for h in sorted(health, key=lambda h: h.member["name"] or "~"):  # by name; the unnamed (not started) last
        m = h.member
        state = "not started" if not m["name"] else "learner" if m["isLearner"] else "started"
        name = m["name"] or ",".join(m["peerURLs"])  # a member that never started is known by its peer URL
        rows.append((name, hex_id(m["ID"]), state, "-" if not m["name"] else h.detail))
    width = max(len(r[0]) for r in rows) + 2
    ctx.say(f"etcd: {summary(health)}", *(f"{a:<{width}}{b:<18}{c:<13}{d}" for a, b, c, d in rows))
