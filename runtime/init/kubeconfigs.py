"""init's kubeconfig phase: the kubeconfig files kubeadm init writes, each with a client certificate signed
by the cluster CA (existing ones are kept), and admin.conf for root's kubectl; and kubelet-finalize, which points
kubelet.conf at the kubelet's rotated client certificate."""

from __future__ import annotations

import os
import posixpath
from typing import List, NamedTuple

from ..kubeconfig import b64, kubeconfig
from ..workflow import Context, PhaseError, write_atomic
from .controlplane import ADMIN_GROUP, advertise_address, config, read, url


class KubeconfigFile(NamedTuple):
    file: str  # under /etc/kubernetes
    user: str  # the certificate's CN
    orgs: List[str]
    server: str


def kubeconfig_files(ctx: Context) -> List[KubeconfigFile]:
    cfg, ip = config(ctx), advertise_address(ctx)
    endpoint, local = f"https://{cfg.control_plane_endpoint}", url(ip, 6443)
    return [
        KubeconfigFile("admin.conf", "kubernetes-admin", [ADMIN_GROUP], endpoint),
        KubeconfigFile("super-admin.conf", "kubernetes-super-admin", ["system:masters"], endpoint),
        KubeconfigFile("controller-manager.conf", "system:kube-controller-manager", [], local),
        KubeconfigFile("scheduler.conf", "system:kube-scheduler", [], local),
        KubeconfigFile("kubelet.conf", f"system:node:{ctx.name()}", ["system:nodes"], endpoint),
    ]


def kubeconfigs(ctx: Context) -> None:
    from .. import pki
    from ..keys import key_pem, new_key

    cfg = config(ctx)
    ca_pem = cfg.pki["ca.crt"].encode()
    ca, ca_key = pki.load_cert(ca_pem), pki.load_key(cfg.pki["ca.key"].encode())
    for f in kubeconfig_files(ctx):
        path = ctx.path(f"/etc/kubernetes/{f.file}")
        if os.path.exists(path):
            continue
        key = new_key(cfg.key_algorithm)
        cert = pki.sign_leaf(ca, ca_key, key.public_key(), f.user, f.orgs, client=True)
        creds = {"client-certificate-data": b64(pki.cert_pem(cert)), "client-key-data": b64(key_pem(key))}
        write_atomic(path, kubeconfig(f.server, ca_pem, f.user, creds), 0o600)
    root_config = ctx.path("/root/.kube/config")
    if not os.path.exists(root_config):
        write_atomic(root_config, read(ctx.path("/etc/kubernetes/admin.conf")) or b"", 0o600)


KUBELET_CONF = "/etc/kubernetes/kubelet.conf"
KUBELET_PKI = "/var/lib/kubelet/pki"  # the kubelet's --cert-dir unless kubelet extraArgs set one


def kubelet_client_pem(ctx: Context) -> str:
    """Where the kubelet keeps its rotated client certificate and key (one PEM file, a link to the newest)."""
    return posixpath.join(config(ctx).kubelet.extra_args.get("cert-dir", KUBELET_PKI), "kubelet-client-current.pem")


def _exists(ctx: Context, path: str) -> bool:
    """``path`` is a file; under --root, an absolute link (as the kubelet makes it) resolves inside the root."""
    p = ctx.path(path)
    if ctx.root and os.path.islink(p):
        target = os.readlink(p)
        p = ctx.path(target) if os.path.isabs(target) else os.path.join(os.path.dirname(p), target)
    return os.path.isfile(p)


def kubelet_finalize(ctx: Context) -> None:
    """kubeadm's kubelet-finalize (enable-client-cert-rotation): the kubeconfig phase embedded a 1-year client
    certificate in kubelet.conf; the kubelet, started with rotateCertificates, copies it to
    /var/lib/kubelet/pki/kubelet-client-current.pem at its first start and renews it there. If that file exists,
    kubelet.conf's user is pointed at it (client-certificate and client-key both), so the kubelet's own rotation
    keeps kubelet.conf valid, and the kubelet is restarted. If it does not exist, nothing changes, as in kubeadm
    (rotation is taken to be off; nobody writes the file for the kubelet): this says so, and how to run the phase
    again once it is there."""
    from ..config import load_yaml
    from ..kubelet import start_phase

    pem, node = kubelet_client_pem(ctx), ctx.name()
    if not _exists(ctx, pem):
        ctx.say(
            f"\t[kubelet-finalize] {pem} not found: kubelet client certificate rotation looks disabled, so "
            f"{KUBELET_CONF} keeps its embedded certificate (valid 1 year). Once the kubelet has written it, run: "
            "kubeseed-runtime init --phase kubelet-finalize"
        )
        return
    try:
        with open(ctx.path(KUBELET_CONF), "rb") as f:
            doc = load_yaml(f.read())
    except FileNotFoundError:
        raise PhaseError(
            f"could not load {KUBELET_CONF}: it does not exist; run: kubeseed-runtime init --phase kubeconfig"
        ) from None
    except Exception as e:  # unreadable or not YAML
        raise PhaseError(f"could not load {KUBELET_CONF}: {type(e).__name__}: {e}") from None
    users = doc.get("users") if isinstance(doc, dict) else None
    entry = next((u for u in users or [] if isinstance(u, dict) and u.get("name") == f"system:node:{node}"), None)
    if entry is None:
        raise PhaseError(f'the file "{KUBELET_CONF}" does not contain authentication for user "{node}"')
    want = {"client-certificate": pem, "client-key": pem}
    if entry.get("user") == want:
        ctx.say(f"\t[kubelet-finalize] {KUBELET_CONF} already points to {pem}")
        return
    ctx.say(
        f'\t[kubelet-finalize] Updating "{KUBELET_CONF}" to point to a rotatable kubelet client certificate and key'
    )
    user = dict(entry.get("user") or {})
    for key in ("client-certificate-data", "client-key-data"):
        user.pop(key, None)
    user.update(want)
    entry["user"] = user
    import yaml

    write_atomic(ctx.path(KUBELET_CONF), yaml.safe_dump(doc, sort_keys=False), 0o600)
    start_phase(ctx)  # kubeadm's TryRestartKubelet; under --root it only says so
