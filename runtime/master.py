"""What only a master's runtime needs: its config fields, and the certs and kubeconfig phases of init."""

from __future__ import annotations

import ipaddress
import os
import socket
from typing import Any, List, Optional, Tuple

from .config import ConfigError, NodeConfig, _check, split_endpoint
from .kubeconfig import b64, kubeconfig
from .tokens import parse_token
from .workflow import Context, Phase, PhaseError, write_atomic

PKI = "/etc/kubernetes/pki"
PKI_FILES = (
    "ca.crt",
    "ca.key",
    "etcd/ca.crt",
    "etcd/ca.key",
    "front-proxy-ca.crt",
    "front-proxy-ca.key",
    "sa.key",
    "sa.pub",
)
ADMIN_GROUP = "kubeadm:cluster-admins"


def parse_master_fields(d: Any, cfg: NodeConfig) -> None:
    """The master's part of the node config: the CA and SA keys, bootstrap tokens, add-on paths."""
    pki = d.get("pki", dict, required=True)
    for f in PKI_FILES:
        _check(isinstance(pki.get(f), str) and "-----BEGIN" in pki[f], f"pki.{f}", "must hold a PEM block")
    _check(set(pki) <= set(PKI_FILES), "pki", f"unknown files {sorted(set(pki) - set(PKI_FILES))}")
    cfg.pki = pki
    tokens = d.get("bootstrapTokens", list, [])
    for i, t in enumerate(tokens):
        path = f"bootstrapTokens[{i}]"
        _check(isinstance(t, dict), path, "must be a mapping")
        try:
            parse_token(t.get("token") if isinstance(t.get("token"), str) else "")
        except ValueError as e:
            raise ConfigError(f"{path}.token", str(e)) from None
    cfg.bootstrap_tokens = tokens
    addons = d.get("addons", list, [])
    for i, a in enumerate(addons):
        _check(isinstance(a, str) and a.startswith("/"), f"addons[{i}]", "must be an absolute path")
    cfg.addons = addons


def phases() -> List[Phase]:
    from . import bootstrap, kubelet, manifests

    return [
        Phase("certs", "Generating certificates", certs),
        Phase("kubeconfig", "Writing kubeconfig files", kubeconfigs),
        Phase("etcd", "Writing the etcd static pod", manifests.etcd_phase),
        Phase("control-plane", "Writing the control-plane static pods", manifests.control_plane_phase),
        Phase("kubelet-start", "Starting the kubelet", kubelet.master_phase),
        Phase("wait-control-plane", "Waiting for the control plane", bootstrap.wait_control_plane),
        Phase("upload-config", "Uploading the configuration", bootstrap.upload_config),
        Phase("mark-control-plane", "Marking the control-plane node", bootstrap.mark_control_plane),
        Phase("bootstrap-token", "Configuring bootstrap tokens", bootstrap.bootstrap_token),
        Phase("addon", "Installing add-ons", bootstrap.addon),
        Phase("show-join-command", "Printing the join command", bootstrap.show_join_command),
    ]


def preflight_checks() -> list:
    """init's own pre-flight checks: kubeadm's CPU and memory minimums, control-plane ports, a clean slate."""
    import re

    from .preflight import _dir_available, _file_available, _port

    def cpus(env: Any) -> list:
        n = env.cpus()
        return [("error", f"the number of available CPUs {n} is less than the required 2")] if n < 2 else []

    def memory(env: Any) -> list:
        m = re.search(r"MemTotal:\s+(\d+) kB", env.read("/proc/meminfo") or "")
        mb = int(m.group(1)) // 1024 if m else 0
        return [("error", f"the system RAM ({mb} MB) is less than the minimum 1700 MB")] if mb < 1700 else []

    manifests = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "etcd")
    return (
        [("NumCPU", cpus), ("Mem", memory)]
        + [_port(p) for p in (6443, 10259, 10257, 2379, 2380)]
        + [_file_available(f"/etc/kubernetes/manifests/{c}.yaml") for c in manifests]
        + [_dir_available("/var/lib/etcd")]
    )


def _cfg(ctx: Context) -> NodeConfig:
    assert ctx.config is not None
    return ctx.config


def advertise_address(ctx: Context) -> str:
    """--advertise-address, else the address this machine would reach the endpoint (or the world) from."""
    if ctx.advertise_address:
        return ctx.advertise_address
    host = split_endpoint(_cfg(ctx).control_plane_endpoint)[0]
    for target in (host, "192.0.2.1"):
        try:
            ipaddress.ip_address(target)
            with socket.socket(socket.AF_INET6 if ":" in target else socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.connect((target, 9))  # UDP: no packet is sent; the kernel picks the source address
                ip = s.getsockname()[0]
            if not ipaddress.ip_address(ip).is_loopback or ipaddress.ip_address(target).is_loopback:
                return str(ip)
        except (ValueError, OSError):
            continue
    raise PhaseError("cannot tell this machine's address; pass --advertise-address IP")


def machine_addresses() -> List[str]:
    """The addresses the host name resolves to on this machine (the apiserver certificate names them too)."""
    found = []
    try:
        for info in socket.getaddrinfo(socket.gethostname(), None):
            ip = ipaddress.ip_address(str(info[4][0]).split("%")[0])
            if not ip.is_loopback and str(ip) not in found:
                found.append(str(ip))
    except OSError:
        pass
    return found


def narrowed_kubelet_client(version: str) -> bool:
    """Whether kubeadm of ``version`` gives apiserver-kubelet-client no O and binds it to kubelet-api-admin
    (PR #138957: 1.37, backported to 1.36.1, 1.35.5, 1.34.8, 1.33.12)."""
    minor, patch = (int(x) for x in version.lstrip("v").split(".")[1:3])
    first = {33: 12, 34: 8, 35: 5, 36: 1}
    return minor > 36 or (minor in first and patch >= first[minor])


def leaves(ctx: Context) -> List[Tuple[str, str, str, List[str], bool, bool, List[str]]]:
    """(file base name, issuing CA base name, CN, O, client, server, SANs) of every leaf kubeadm makes."""
    cfg, ip, node = _cfg(ctx), advertise_address(ctx), ctx.name()
    net = ipaddress.ip_network(cfg.networking.service_subnet)
    host = split_endpoint(cfg.control_plane_endpoint)[0]
    domain = cfg.networking.dns_domain
    api_sans = [node, "kubernetes", "kubernetes.default", "kubernetes.default.svc", f"kubernetes.default.svc.{domain}"]
    api_sans += [str(net[1]), ip, host] + machine_addresses()
    etcd_sans = [node, "localhost", ip, "127.0.0.1", "::1"]
    kubelet_client_orgs = [] if narrowed_kubelet_client(cfg.kubernetes_version) else [ADMIN_GROUP]
    return [
        ("apiserver", "ca", "kube-apiserver", [], False, True, list(dict.fromkeys(api_sans))),
        ("apiserver-kubelet-client", "ca", "kube-apiserver-kubelet-client", kubelet_client_orgs, True, False, []),
        ("front-proxy-client", "front-proxy-ca", "front-proxy-client", [], True, False, []),
        ("etcd/server", "etcd/ca", node, [], True, True, list(dict.fromkeys(etcd_sans))),
        ("etcd/peer", "etcd/ca", node, [], True, True, list(dict.fromkeys(etcd_sans))),
        ("etcd/healthcheck-client", "etcd/ca", "kube-etcd-healthcheck-client", [], True, False, []),
        ("apiserver-etcd-client", "etcd/ca", "kube-apiserver-etcd-client", [], True, False, []),
    ]


def _read(path: str) -> Optional[bytes]:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None


def _key(ctx: Context, path: str) -> Any:
    """The key at ``path``, made (and written, 0600) only if there is none: keys are never regenerated."""
    from .keys import key_pem, load_key, new_key

    data = _read(ctx.path(path))
    if data:
        return load_key(data)
    key = new_key(_cfg(ctx).key_algorithm)
    write_atomic(ctx.path(path), key_pem(key), 0o600)
    return key


def certs(ctx: Context) -> None:
    """The CAs and SA keys from the payload, and every leaf certificate kubeadm makes; nothing existing is
    replaced, and existing files from another cluster are refused."""
    from . import pki
    from .keys import signed_by

    cfg = _cfg(ctx)
    for name in PKI_FILES:
        path = ctx.path(f"{PKI}/{name}")
        have, want = _read(path), cfg.pki[name].encode()
        if have is None:
            write_atomic(path, want, 0o600 if name.endswith(".key") else 0o644)
        elif have != want:
            raise PhaseError(
                f"{PKI}/{name} exists and is not this cluster's (left by another cluster?). Remove {PKI}, or run reset"
            )
    made = []
    for base, ca_name, cn, orgs, client, server, sans in leaves(ctx):
        crt_path = ctx.path(f"{PKI}/{base}.crt")
        ca = pki.load_cert(cfg.pki[ca_name + ".crt"].encode())
        existing = _read(crt_path)
        if existing:
            if not signed_by(pki.load_cert(existing), ca):
                raise PhaseError(
                    f"{PKI}/{base}.crt is not signed by {PKI}/{ca_name}.crt. Remove it to have it made again"
                )
            continue
        key = _key(ctx, f"{PKI}/{base}.key")
        ca_key = pki.load_key(cfg.pki[ca_name + ".key"].encode())
        cert = pki.sign_leaf(ca, ca_key, key.public_key(), cn, orgs, client=client, server=server, sans=sans)
        write_atomic(crt_path, pki.cert_pem(cert), 0o644)
        made.append(base)
    ctx.say(f"\t[certs] {'generated ' + ', '.join(made) if made else 'all certificates exist already'}")


def kubeconfig_files(ctx: Context) -> List[Tuple[str, str, List[str], str]]:
    """(file, user = certificate CN, O, server) for each kubeconfig kubeadm init writes."""
    cfg, ip = _cfg(ctx), advertise_address(ctx)
    endpoint = f"https://{cfg.control_plane_endpoint}"
    local = f"https://[{ip}]:6443" if ":" in ip else f"https://{ip}:6443"
    return [
        ("admin.conf", "kubernetes-admin", [ADMIN_GROUP], endpoint),
        ("super-admin.conf", "kubernetes-super-admin", ["system:masters"], endpoint),
        ("controller-manager.conf", "system:kube-controller-manager", [], local),
        ("scheduler.conf", "system:kube-scheduler", [], local),
        ("kubelet.conf", f"system:node:{ctx.name()}", ["system:nodes"], endpoint),
    ]


def kubeconfigs(ctx: Context) -> None:
    """admin, super-admin, controller-manager, scheduler and kubelet kubeconfigs with embedded credentials
    (existing ones are kept), and admin.conf for root's kubectl."""
    from . import pki
    from .keys import key_pem, new_key

    cfg = _cfg(ctx)
    ca_pem = cfg.pki["ca.crt"].encode()
    ca, ca_key = pki.load_cert(ca_pem), pki.load_key(cfg.pki["ca.key"].encode())
    for name, user, orgs, server in kubeconfig_files(ctx):
        path = ctx.path(f"/etc/kubernetes/{name}")
        if os.path.exists(path):
            continue
        key = new_key(cfg.key_algorithm)
        cert = pki.sign_leaf(ca, ca_key, key.public_key(), user, orgs, client=True)
        creds = {"client-certificate-data": b64(pki.cert_pem(cert)), "client-key-data": b64(key_pem(key))}
        write_atomic(path, kubeconfig(server, ca_pem, user, creds), 0o600)
    root_config = ctx.path("/root/.kube/config")
    if not os.path.exists(root_config):
        write_atomic(root_config, _read(ctx.path("/etc/kubernetes/admin.conf")) or b"", 0o600)
