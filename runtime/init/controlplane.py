"""What init's phases share about this control-plane machine: its paths, its config, its addresses."""

from __future__ import annotations

import ipaddress
import socket
from typing import List, Optional

from ..config import NodeConfig, split_endpoint
from ..workflow import Context, PhaseError
from .versions import ControlPlaneVersion

PKI = "/etc/kubernetes/pki"
MANIFESTS = "/etc/kubernetes/manifests"
ADDON_DIR = "/etc/kubeseed/addons"  # the only place add-on manifests are read from
# The CA and service-account keys a master payload carries (written into PKI as they are)
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
CERTIFICATE_KEY = "/var/lib/kubeseed/certificate-key"  # the key init --upload-certs used (0600), for the join command


def config(ctx: Context) -> NodeConfig:
    assert ctx.config is not None  # init always runs with a node config
    return ctx.config


def version(ctx: Context) -> ControlPlaneVersion:
    return ControlPlaneVersion(config(ctx).kubernetes_version)


def host_port(ip: str, port: int) -> str:
    """Go's net.JoinHostPort: an IPv6 address in brackets (``[fd00::10]:6443``), so net.SplitHostPort reads it."""
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def url(ip: str, port: int, scheme: str = "https") -> str:
    return f"{scheme}://{host_port(ip, port)}"


def localhost(ip: str) -> str:
    """kubeadm's etcdLocalhostAddress: the loopback address of the advertise address's family."""
    return "::1" if ":" in ip else "127.0.0.1"


def advertise_address(ctx: Context) -> str:
    """--advertise-address, else the address this machine would reach the endpoint (or the world) from."""
    if config(ctx).advertise_address:
        return config(ctx).advertise_address
    host = split_endpoint(config(ctx).control_plane_endpoint)[0]
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


def read(path: str) -> Optional[bytes]:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None
