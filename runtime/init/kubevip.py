"""The control plane's virtual IP without an external load balancer: kube-vip as a static pod on every master.

With ``virtualIP`` in a master's node config, init's control-plane phase (and a control-plane join's) writes
/etc/kubernetes/manifests/kube-vip.yaml. kube-vip runs in ARP mode (NDP for IPv6) with leader election through the
API: the master holding the Lease kube-system/plndr-cp-lock adds the address to its interface and announces it;
when it stops renewing, another takes the address over. The endpoint (controlPlaneEndpoint) is that address, port
6443. The manifest is the static pod that kube-vip's own generator writes for
``kube-vip manifest pod --interface IF --address VIP --controlplane --arp --leaderElection`` (kube-vip v1.2.3,
pkg/kubevip/config_generator.go; https://kube-vip.io/docs/installation/static/), with two choices made here:

- the kubeconfig: the first master (init) mounts super-admin.conf where kube-vip reads admin.conf. Since kubeadm
  1.29, admin.conf's group (kubeadm:cluster-admins) has rights only once upload-config binds it, after the API
  answers at the endpoint, which is the address kube-vip must hold first (kube-vip issue #684; the static-pod
  page's note). A master that joins later mounts admin.conf: the binding exists by then. kubeseed runs v1.30 and
  later, so the first master always uses super-admin.conf (tests/runtime/test_kubevip.py checks MIN_MINOR >= 29).
- the interface: the node config's ``virtualIPInterface``, else the interface that holds this machine's advertise
  address (the masters' network), read from the kernel over netlink. Under --root the machine is another one: the
  setting is used if given, else ``vip_interface`` is left out and kube-vip takes the default route's interface
  itself (cmd/kube-vip.go: "auto-detecting default Interface").

kube-vip reaches its own API server as https://kubernetes:6443, with the pod's host alias kubernetes -> 127.0.0.1
(pkg/manager/manager.go): the API server certificate names ``kubernetes`` (init/certs.py)."""

from __future__ import annotations

import ipaddress
import re
import socket
import struct
from typing import Any, Dict, List, Tuple, Union

from ..workflow import Context, PhaseError
from .controlplane import advertise_address, config
from .versions import DEFAULT_REPOSITORY, KUBE_VIP

API_PORT = 6443  # the API server's --secure-port: kube-vip moves the address, it forwards no port
INTERFACE = re.compile(r"(?!\.\.?\Z)[!-.0-9;-~]{1,15}")  # a Linux interface name (the kernel's dev_valid_name)
Address = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]


def image(repository: str = DEFAULT_REPOSITORY) -> str:
    """kube-vip's image: ghcr.io's with the default image repository; from a mirror, ``<repository>/kube-vip`` (flat,
    as kubeadm puts CoreDNS there), so an air-gapped site mirrors it with the others (``kubeseed images list``)."""
    if repository == DEFAULT_REPOSITORY:
        return f"ghcr.io/kube-vip/kube-vip:{KUBE_VIP}"
    return f"{repository}/kube-vip:{KUBE_VIP}"


def interface_of(ip: Address) -> Tuple[str, int]:
    """The interface holding the address ``ip`` on this machine, and the address's prefix length; ("", 0) if none
    does. From the kernel, as `ip addr` asks it (netlink RTM_GETADDR): the standard library alone, secondary addresses
    included."""
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW) as s:  # NETLINK_ROUTE
        # nlmsghdr (length, RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP, sequence, port), ifaddrmsg (AF_UNSPEC: all)
        s.send(struct.pack("=LHHLL8x", 24, 22, 0x301, 1, 0))
        while True:
            data, at = s.recv(1 << 16), 0
            while at < len(data):
                size, kind = struct.unpack_from("=LH", data, at)
                if kind == 2:  # NLMSG_ERROR
                    raise OSError("netlink refused to list the addresses")
                if kind != 20:  # NLMSG_DONE, not RTM_NEWADDR
                    return "", 0
                pos = at + 24  # ifaddrmsg: family, prefix length, flags, scope, interface index
                while pos + 4 <= at + size:  # attributes: length, type (IFA_ADDRESS, IFA_LOCAL, ...), data
                    length, key = struct.unpack_from("=HH", data, pos)
                    if key in (1, 2) and data[pos + 4 : pos + length] == ip.packed:
                        return socket.if_indextoname(struct.unpack_from("=L", data, at + 20)[0]), data[at + 17]
                    pos += max(4, length + 3 & ~3)
                at += size + 3 & ~3


def vip_interface(ctx: Context) -> str:
    """The interface kube-vip holds the address on ('' under --root without the setting: kube-vip picks it)."""
    cfg = config(ctx)
    if cfg.virtual_ip_interface:
        return cfg.virtual_ip_interface
    if ctx.root:
        ctx.say("\t[control-plane] --root: no vip_interface, kube-vip takes the default route's")
        return ""
    ip = ipaddress.ip_address(advertise_address(ctx))
    fix = "set controlPlane.virtualIPInterface in cluster.yaml and render again"
    try:
        name, prefix = interface_of(ip)
    except OSError as e:
        raise PhaseError(f"cannot list this machine's addresses ({e}); {fix}") from None
    if not name:
        raise PhaseError(f"the advertise address {ip} is on no interface here: pass one of this machine's, or {fix}")
    if ipaddress.ip_address(cfg.virtual_ip) not in ipaddress.ip_interface(f"{ip}/{prefix}").network:
        ctx.say(f"\t[control-plane] warning: the virtual IP is outside {name}'s network {ip}/{prefix}")
    return name


def kube_vip_pod(ctx: Context) -> Dict[str, Any]:
    """kube-vip's static pod for this master (kube-vip's generated form: see the module's docstring)."""
    cfg = config(ctx)
    vip = ipaddress.ip_address(cfg.virtual_ip)
    iface = vip_interface(ctx)
    # kube-vip v1.2.3's order; lease timings 15/10/2: client-go's, which `manifest pod` writes since v1.1.0 (#1429)
    values: List[Tuple[str, Any]] = [("vip_arp", "true"), ("port", API_PORT), ("vip_nodename", None)]
    values += [("vip_interface", iface)] if iface else []
    values += [
        ("vip_subnet", vip.max_prefixlen),  # the address alone: /32, /128
        ("cp_enable", "true"),
        ("cp_namespace", "kube-system"),
        ("vip_leaderelection", "true"),
        ("vip_leasename", "plndr-cp-lock"),  # kube-vip's default --leaseName
        ("vip_leaseduration", 15),
        ("vip_renewdeadline", 10),
        ("vip_retryperiod", 2),
        ("address", vip),
        ("prometheus_server", ":2112"),
    ]
    node_name = {"fieldRef": {"fieldPath": "spec.nodeName"}}
    env = [{"name": k, "valueFrom": node_name} if v is None else {"name": k, "value": str(v)} for k, v in values]
    mounted = "/etc/kubernetes/admin.conf"  # where kube-vip reads its kubeconfig, whichever file is mounted there
    host_file = "/etc/kubernetes/super-admin.conf" if ctx.command == "init" else mounted  # see the docstring
    container = {
        "args": ["manager"],
        "env": env,
        "image": image(cfg.image_repository),
        "imagePullPolicy": "IfNotPresent",
        "name": "kube-vip",
        "resources": {},
        "securityContext": {"capabilities": {"add": ["NET_ADMIN", "NET_RAW"], "drop": ["ALL"]}},
        "volumeMounts": [{"mountPath": mounted, "name": "kubeconfig"}],
    }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "kube-vip", "namespace": "kube-system"},
        "spec": {
            "containers": [container],
            "hostAliases": [{"hostnames": ["kubernetes"], "ip": "127.0.0.1"}],
            "hostNetwork": True,
            "volumes": [{"hostPath": {"path": host_file}, "name": "kubeconfig"}],
        },
        "status": {},
    }
