"""``kubeseed cluster status CLUSTER``: what the cluster's API says of its masters, their etcd members and quorum,
and its nodes, from the operator's machine. etcd itself is not reachable from here (its port is the masters'):
each member's state is its static pod's, as the kubelet on that master reports it (Ready: etcd's readiness probe
passes), one member per master's etcd pod, as kubeadm finds the members."""

from __future__ import annotations

import argparse
from typing import Any

from .args import CLUSTER_HELP, cluster_dir_arg
from .tokencli import KUBECONFIG_HELP, connect_args, table
from .upgradecli import CONTROL_PLANE_LABEL

ETCD_PODS = "/api/v1/namespaces/kube-system/pods?labelSelector=component%3Detcd"


def _ready(obj: dict[str, Any]) -> bool:
    conditions = (obj.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def quorum_line(members: int, ready: int) -> str:
    """What ``ready`` of ``members`` etcd members mean for the cluster."""
    if not members:
        return "etcd: no member pods seen (an external etcd, or the kubelet has not reported them yet)"
    need = members // 2 + 1
    head = f"etcd: {members} member{'s' if members > 1 else ''}, {ready} ready; quorum needs {need}"
    if ready < need:
        return f"{head}: LOST, the API cannot write; bring members back (or restore etcd from a backup)"
    spare = ready - need
    more = "no further failure" if not spare else f"{spare} more failure{'s' if spare > 1 else ''}"
    return f"{head}: kept, it survives {more}"


def cmd_cluster_status(args: argparse.Namespace) -> int:
    from .clusterapi import NotReached, Refused
    from .console import say
    from .secrets import load

    cluster_dir = cluster_dir_arg(args.cluster)
    cluster, secrets = load(cluster_dir)
    try:
        with connect_args(args, cluster, secrets) as api:
            nodes = (api.get("/api/v1/nodes", "the Nodes") or {}).get("items") or []
            pods = (api.get(ETCD_PODS, "the etcd pods") or {}).get("items") or []
            server = api.server
    except (NotReached, Refused) as e:
        say(f"error: {e}")
        say(
            f"With several masters, the endpoint {cluster.control_plane_endpoint} should answer while a quorum of "
            "them runs: check the masters (`status` on each) and the endpoint (load balancer or virtual IP)"
        )
        return 1
    etcd = {(p.get("spec") or {}).get("nodeName"): _ready(p) for p in pods}
    masters = [n for n in nodes if CONTROL_PLANE_LABEL in ((n.get("metadata") or {}).get("labels") or {})]
    rows = [("MASTER", "READY", "ETCD MEMBER")]
    for node in sorted(masters, key=lambda n: n["metadata"]["name"]):
        name = node["metadata"]["name"]
        member = "ready" if etcd.get(name) else ("not ready" if name in etcd else "none seen")
        rows.append((name, "yes" if _ready(node) else "no", member))
    workers = [n for n in nodes if n not in masters]
    print(f"Cluster {cluster.name} ({server}): the API answers")
    print(table(rows))
    print(quorum_line(len(etcd), sum(etcd.values())))
    print(f"Nodes: {sum(_ready(n) for n in workers)} ready of {len(workers)}")
    return 0


def add_cluster_status(clsub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    st = clsub.add_parser(
        "status",
        help="the running cluster's masters, their etcd members and quorum, and its nodes (through its API)",
    )
    st.add_argument("cluster", metavar="CLUSTER", help=CLUSTER_HELP)
    st.add_argument("--kubeconfig", metavar="FILE", help=KUBECONFIG_HELP)
    st.set_defaults(func=cmd_cluster_status)
