"""What upgrade's steps share: where it keeps its record and backups, its context, and the API server as this
machine (a master's admin.conf, a node's kubelet credentials)."""

from __future__ import annotations

from typing import Any, Callable, Optional, Tuple, cast

from ..versions import Version
from ..workflow import Context, PhaseError

STATE = "/var/lib/kubeseed/upgrade.json"  # upgrade's phases (init's and join's stay in state.json)
TMP = "/etc/kubernetes/tmp"  # kubeadm's place for upgrade backups
KUBELET_CONF = "/etc/kubernetes/kubelet.conf"


class Upgrade(Context):
    """The upgrade's context: the machine's (the node config's version is the one it runs now), plus the target
    and the options."""

    target: Version
    drain: str = ""  # --drain NODE (on a master)
    no_drain: bool = False
    component_timeout: float = 300
    config_path = ""  # the node config's file, which post-upgrade updates


def ready(obj: dict) -> bool:
    """Whether a Pod or Node has condition Ready True."""
    conditions = (obj.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def target(ctx: Context) -> str:
    return cast(Upgrade, ctx).target.text


def machine_api(ctx: Context) -> Callable[..., Tuple[int, Any]]:
    """``call(method, path, body=None, content_type=..., timeout=15)`` to the API server with this machine's
    credentials (a master's admin.conf, a node's kubelet client certificate), one attempt, TLS verified by the
    cluster CA. One per context: a master's key stays in memory (memfd) until the process ends."""
    from .. import api
    from ..kubeconfig import read_kubeconfig

    found: Optional[Callable[..., Tuple[int, Any]]] = getattr(ctx, "machine_api", None)
    if found:
        return found

    if ctx.config is not None and ctx.config.role == "master":
        from ..init.apiclient import Client

        client = Client(ctx, "admin.conf")
        server, ca, cert = client.server, client.ca, client.cert
    else:  # kubelet.conf names the kubelet's rotated client certificate, as the kubelet reads it
        with open(ctx.path(KUBELET_CONF)) as f:
            server, ca, user = read_kubeconfig(f.read(), KUBELET_CONF)
        cert = (ctx.path(str(user.get("client-certificate"))), ctx.path(str(user.get("client-key"))))

    def call(
        method: str, path: str, body: Any = None, content_type: str = "application/json", timeout: float = 15
    ) -> Tuple[int, Any]:
        try:
            return api.call(server + path, ca, "", method, body, timeout, cert, content_type, ctx.deadline)
        except api.Untrusted as e:
            raise PhaseError(f"{server} does not present a certificate of this cluster's CA ({e})") from None
        except api.Unreachable as e:
            raise PhaseError(f"the API server at {server} does not answer ({e}); is the control plane up?") from None

    ctx.machine_api = call  # type: ignore[attr-defined]
    return call
