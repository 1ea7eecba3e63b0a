"""init's certs phase: the CAs and service-account keys from the payload, and every leaf certificate kubeadm
makes, signed here; nothing that exists is replaced."""

from __future__ import annotations

from typing import Any, List, NamedTuple

from ..config import split_endpoint
from ..workflow import Context, PhaseError, write_atomic
from .controlplane import ADMIN_GROUP, PKI, PKI_FILES, advertise_address, config, machine_addresses, read, version


class Leaf(NamedTuple):
    """One leaf certificate kubeadm makes: PKI/<file>.crt and .key, signed by PKI/<ca>.crt."""

    file: str
    ca: str
    cn: str
    orgs: List[str]
    client: bool
    server: bool
    sans: List[str]


def leaves(ctx: Context) -> List[Leaf]:
    cfg, ip, node = config(ctx), advertise_address(ctx), ctx.name()
    net = cfg.networking
    host = split_endpoint(cfg.control_plane_endpoint)[0]
    domain = net.dns_domain
    api_sans = [node, "kubernetes", "kubernetes.default", "kubernetes.default.svc", f"kubernetes.default.svc.{domain}"]
    api_sans += [net.api_service_ip, ip, host] + machine_addresses()
    etcd_sans = list(dict.fromkeys([node, "localhost", ip, "127.0.0.1", "::1"]))
    kubelet_client_orgs = [] if version(ctx).narrowed_kubelet_client else [ADMIN_GROUP]
    return [
        Leaf("apiserver", "ca", "kube-apiserver", [], False, True, list(dict.fromkeys(api_sans))),
        Leaf("apiserver-kubelet-client", "ca", "kube-apiserver-kubelet-client", kubelet_client_orgs, True, False, []),
        Leaf("front-proxy-client", "front-proxy-ca", "front-proxy-client", [], True, False, []),
        Leaf("etcd/server", "etcd/ca", node, [], True, True, etcd_sans),
        Leaf("etcd/peer", "etcd/ca", node, [], True, True, etcd_sans),
        Leaf("etcd/healthcheck-client", "etcd/ca", "kube-etcd-healthcheck-client", [], True, False, []),
        Leaf("apiserver-etcd-client", "etcd/ca", "kube-apiserver-etcd-client", [], True, False, []),
    ]


def _key(ctx: Context, path: str) -> Any:
    """The key at ``path``, made (and written, 0600) only if there is none: keys are never regenerated."""
    from ..keys import key_pem, load_key, new_key

    data = read(ctx.path(path))
    if data:
        return load_key(data)
    key = new_key(config(ctx).key_algorithm)
    write_atomic(ctx.path(path), key_pem(key), 0o600)
    return key


def certs(ctx: Context) -> None:
    """The CAs and SA keys from the payload, and every leaf certificate kubeadm makes; nothing existing is
    replaced, and existing files from another cluster are refused."""
    from .. import pki
    from ..keys import signed_by

    cfg = config(ctx)
    for name in PKI_FILES:
        path = ctx.path(f"{PKI}/{name}")
        have, want = read(path), cfg.pki[name].encode()
        if have is None:
            write_atomic(path, want, 0o600 if name.endswith(".key") else 0o644)
        elif have != want:
            raise PhaseError(
                f"{PKI}/{name} exists and is not this cluster's (left by another cluster?). Remove {PKI}, or run reset"
            )
    made = []
    for leaf in leaves(ctx):
        crt_path = ctx.path(f"{PKI}/{leaf.file}.crt")
        ca = pki.load_cert(cfg.pki[leaf.ca + ".crt"].encode())
        existing = read(crt_path)
        if existing:
            if not signed_by(pki.load_cert(existing), ca):
                raise PhaseError(
                    f"{PKI}/{leaf.file}.crt is not signed by {PKI}/{leaf.ca}.crt. Remove it to have it made again"
                )
            continue
        key = _key(ctx, f"{PKI}/{leaf.file}.key")
        ca_key = pki.load_key(cfg.pki[leaf.ca + ".key"].encode())
        cert = pki.sign_leaf(
            ca, ca_key, key.public_key(), leaf.cn, leaf.orgs, client=leaf.client, server=leaf.server, sans=leaf.sans
        )
        write_atomic(crt_path, pki.cert_pem(cert), 0o644)
        made.append(leaf.file)
    ctx.say(f"\t[certs] {'generated ' + ', '.join(made) if made else 'all certificates exist already'}")
