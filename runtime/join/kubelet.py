"""join's kubelet phases, as kubeadm's join: the cluster's version and kubelet configuration (read with the
credentials tls-bootstrap wrote), then the kubelet started and, where kubeadm keeps the CRI socket there (before
v1.34), its Node annotated with it."""

from __future__ import annotations

import os
from typing import Any, Callable, Tuple

from .. import api
from ..kubeconfig import read_kubeconfig
from ..kubelet import INSTANCE, config_phase, start_phase
from ..preflight import Env, kubelet_check, run_checks
from ..versions import Version
from ..workflow import Context, PhaseError
from .tlsbootstrap import CURRENT, KUBELET_CONF

CRI_SOCKET = "kubeadm.alpha.kubernetes.io/cri-socket"


def _client(ctx: Context) -> Callable[..., Tuple[int, Any]]:
    """``call(path, method, body)``: the API server as this node (kubelet.conf's client certificate), over TLS
    verified by the CA discovery pinned (api.Untrusted means someone else answers, and ends the phase)."""
    with open(ctx.path(KUBELET_CONF)) as f:  # tls-bootstrap wrote it
        server, ca, _ = read_kubeconfig(f.read(), KUBELET_CONF)
    pem = ctx.path(CURRENT)
    kind = "application/merge-patch+json"
    return lambda path, method="GET", body=None: api.call(
        server + path, ca, "", method, body, cert=(pem, pem), content_type=kind, deadline=ctx.deadline
    )


def kubelet_config(ctx: Context) -> None:
    """The cluster's version (kubeadm-config) and kubelet configuration (kubelet-config), which nodes may read by
    kubeadm's RBAC: the kubelet checked against that version, and its configuration written with this node's own
    settings. A cluster without those ConfigMaps gets the node config's, with a warning."""
    import yaml

    assert ctx.config is not None
    call = _client(ctx)

    def read(name: str, key: str) -> dict:
        def attempt() -> dict:
            status, obj = call("/api/v1/namespaces/kube-system/configmaps/" + name)
            if status in (403, 404):
                ctx.say(f"\t[WARNING] cannot read kube-system/{name} (HTTP {status}): taking the node config's")
                return {}
            if status != 200:
                raise api.Unreachable(f"HTTP {status}: {obj['message']}")
            doc = yaml.safe_load(str((obj.get("data") or {}).get(key)))
            if not isinstance(doc, dict):
                raise PhaseError(f"kube-system/{name} holds no {key} document")
            return doc

        return api.wait(ctx, "kube-system/" + name, attempt)

    cluster = read("kubeadm-config", "ClusterConfiguration")
    # one this runtime does not know ends the phase: the ValueError says which, and what it supports
    version = Version(cluster.get("kubernetesVersion") or ctx.config.kubernetes_version)
    run_checks(ctx, [("FileExisting-kubelet", kubelet_check(version))], Env(ctx.root))
    config_phase(ctx, read("kubelet-config", "kubelet") or None, version.minor > 33)


def kubelet_start(ctx: Context) -> None:
    """Start the kubelet; where the cluster keeps no instance-config.yaml (before v1.34), annotate the Node with
    this node's CRI socket once the kubelet has registered it, as kubeadm's join does."""
    assert ctx.config is not None
    start_phase(ctx)
    if os.path.exists(ctx.path(INSTANCE)):
        return
    name = ctx.name()
    call = _client(ctx)
    patch = {"metadata": {"annotations": {CRI_SOCKET: ctx.config.kubelet.container_runtime_endpoint}}}

    def annotate() -> None:
        status, obj = call("/api/v1/nodes/" + name, "PATCH", patch)
        if status != 200:  # 404 until the kubelet registers it
            raise api.Unreachable(f"HTTP {status}: {obj['message']}")

    api.wait(ctx, f"node {name} to register", annotate)


def runtime(ctx: Context) -> None:
    """The cluster's published runtime, installed here when there is one: the day-2 commands (upgrade, reset) a
    node's first-boot payload leaves out. None published (404; 403 where no kubeseed made the cluster's Roles):
    nothing to do."""
    from ..published import PATH, install

    call = _client(ctx)

    def attempt() -> None:
        status, cm = call(PATH)
        if status == 200:
            install(ctx, cm)
            ctx.say("\tinstalled: this node has upgrade and reset now")
        elif status in (403, 404):
            ctx.say(f"\tthe cluster has none (HTTP {status})")
        else:
            raise api.Unreachable(f"HTTP {status}: {cm['message']}")

    api.wait(ctx, "kube-system/kubeseed-runtime", attempt)
