"""init's kubeconfig phase: the kubeconfig files kubeadm init writes, each with a client certificate signed
by the cluster CA (existing ones are kept), and admin.conf for root's kubectl."""

from __future__ import annotations

import os
from typing import List, NamedTuple

from ..kubeconfig import b64, kubeconfig
from ..workflow import Context, write_atomic
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
