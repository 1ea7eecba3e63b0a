"""upgrade's drain and uncordon phases, as ``kubectl drain`` and ``kubectl uncordon`` do them: cordon the node,
evict its pods through the Eviction API (so PodDisruptionBudgets hold; a refused eviction is retried until the
run's deadline), skipping mirror pods and DaemonSet pods, and wait until they are gone. A master drains itself with
its admin credentials; a node drains itself with its kubelet's, which the Node authorizer and NodeRestriction allow
for the node's own pods (system:node's pods/eviction rule); where a cluster refuses them, the node's upgrade says
how to drain it from a master instead (``upgrade --drain NODE`` there)."""

from __future__ import annotations

import time
import urllib.parse
from typing import Any, Dict, List, cast

from ..workflow import Context, PhaseError
from .machine import Upgrade, machine_api, ready, target

MIRROR = "kubernetes.io/config.mirror"


def _node(ctx: Context) -> str:
    """The node this run drains: --drain NODE, else this machine."""
    return cast(Upgrade, ctx).drain or ctx.name()


def _is_master(ctx: Context) -> bool:
    return ctx.config is not None and ctx.config.role == "master"


def drain_phase(ctx: Context) -> None:
    up, name = cast(Upgrade, ctx), _node(ctx)
    if up.no_drain:
        ctx.say(f"\t--no-drain: {name} stays schedulable; its pods keep running through the kubelet's restart")
        return
    drain(ctx, name)


def _refused(ctx: Context, status: int, what: str, out: Dict[str, Any]) -> PhaseError:
    """The error for an API answer ``status`` to ``what``: on a node whose credentials the cluster refuses, how to
    drain it from a master instead."""
    if status == 403 and not _is_master(ctx):
        name, v = ctx.name(), target(ctx)
        return PhaseError(
            f"this cluster does not let the node {what} ({out.get('message')}): drain {name} from a master, `upgrade "
            f"{v} --drain {name}` there (it uncordons {name} once its kubelet runs {v}), or `kubectl drain {name} "
            f"--ignore-daemonsets --delete-emptydir-data`; then here: upgrade {v} --no-drain"
        )
    return PhaseError(f"cannot {what} (HTTP {status}): {out.get('message')}")


def cordon(ctx: Context, name: str, on: bool) -> None:
    what = f"{'cordon' if on else 'uncordon'} node {name}"
    body = {"spec": {"unschedulable": True if on else None}}
    status, out = machine_api(ctx)("PATCH", f"/api/v1/nodes/{name}", body, "application/merge-patch+json")
    if status != 200:
        raise _refused(ctx, status, what, out)
    ctx.say(f"\tnode/{name} {'cordoned' if on else 'uncordoned'}")


def _evictable(pod: Dict[str, Any]) -> bool:
    meta = pod.get("metadata") or {}
    if MIRROR in (meta.get("annotations") or {}):
        return False  # a static pod: the kubelet runs it whatever the API says
    if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
        return True
    return not any(ref.get("kind") == "DaemonSet" for ref in meta.get("ownerReferences") or [])


def drain(ctx: Context, name: str) -> None:
    """Cordon ``name`` and evict its pods (not mirror or DaemonSet pods); wait until they are gone."""
    call = machine_api(ctx)
    cordon(ctx, name, True)
    query = urllib.parse.urlencode({"fieldSelector": f"spec.nodeName={name}"})
    status, listed = call("GET", f"/api/v1/pods?{query}")
    if status != 200:
        raise _refused(ctx, status, f"list the pods on {name}", listed)
    pods: List[Dict[str, Any]] = [p for p in listed.get("items") or [] if _evictable(p)]
    waiting: Dict[str, str] = {}  # pod -> why its eviction is not allowed yet (said once)
    left = list(pods)
    while left:
        for pod in list(left):
            meta = pod["metadata"]
            ref = f"{meta.get('namespace')}/{meta['name']}"
            body = {
                "apiVersion": "policy/v1",
                "kind": "Eviction",
                "metadata": {"name": meta["name"], "namespace": meta.get("namespace")},
            }
            status, out = call("POST", f"/api/v1/namespaces/{meta.get('namespace')}/pods/{meta['name']}/eviction", body)
            if status in (200, 201, 404):
                left.remove(pod)
                ctx.say(f"\tevicting pod {ref}")
            elif status == 429:
                if ref not in waiting:
                    ctx.say(f"\tpod {ref}: {out.get('message')} Retrying.")
                waiting[ref] = str(out.get("message"))
            else:
                raise _refused(ctx, status, f"evict pod {ref}", out)
        if left and time.monotonic() > ctx.deadline:
            refs = ", ".join(f"{p['metadata'].get('namespace')}/{p['metadata']['name']}" for p in left)
            raise PhaseError(
                f"{name} stays cordoned: the disruption budgets never allowed evicting {refs} ({waiting}). "
                "Scale those workloads or relax their PodDisruptionBudgets, then run upgrade again"
            )
        if left:
            time.sleep(2)
    for pod in pods:  # gone: not found, or a new pod of the same name
        meta = pod["metadata"]
        path = f"/api/v1/namespaces/{meta.get('namespace')}/pods/{meta['name']}"
        while True:
            status, now = call("GET", path)
            if status == 404 or (now.get("metadata") or {}).get("uid") != meta.get("uid"):
                break
            if time.monotonic() > ctx.deadline:
                raise PhaseError(f"pod {meta.get('namespace')}/{meta['name']} was evicted but is still terminating")
            time.sleep(1)
    ctx.say(f"\tnode/{name} drained ({len(pods)} pod(s) evicted)")


def uncordon_phase(ctx: Context) -> None:
    """Uncordon what the drain phase cordoned: this machine once its kubelet restarted, or (a master's --drain
    NODE) NODE once its kubelet reports the target version (run ``upgrade --no-drain`` there meanwhile)."""
    up, name = cast(Upgrade, ctx), _node(ctx)
    if up.no_drain:
        return
    if up.drain:
        wait_kubelet(ctx, name)
    cordon(ctx, name, False)


def wait_kubelet(ctx: Context, name: str) -> None:
    """Until node ``name`` is Ready with a kubelet of the target version, saying so once a minute."""
    call, want, said = machine_api(ctx), target(ctx), 0.0
    while True:
        status, node = call("GET", f"/api/v1/nodes/{name}")
        info = (node.get("status") or {}) if status == 200 else {}
        have = (info.get("nodeInfo") or {}).get("kubeletVersion", "")
        up = status == 200 and ready(node)
        if have == want and up:
            ctx.say(f"\tnode/{name} runs kubelet {want}")
            return
        if time.monotonic() > ctx.deadline:
            raise PhaseError(
                f"node {name} still runs kubelet {have or '?'}{'' if up else ' (not Ready)'}: run `upgrade {want} "
                f"--no-drain` on {name}, then `upgrade {want} --drain {name} --phase uncordon` here"
            )
        if time.monotonic() - said > 60:
            ctx.say(f"\twaiting for {name} to run kubelet {want}: run `upgrade {want} --no-drain` there")
            said = time.monotonic()
        time.sleep(2)
