"""The host inventory: ``hosts.yaml`` (apiVersion kubeseed.io/v1alpha1, kind Inventory), loaded with full
validation. Each host gets one seed (``kubeseed seed``): its role, host name (also the node name), and
optionally a MAC, static addresses, a gateway, name servers and extra SSH keys."""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

from kubeseed.runtime.config import API_VERSION

from .errors import FieldError, shown
from .model import _SSH_KEY as SSH_KEY
from .model import _Reader as Reader
from .model import hostname_error
from .plan import ROLES
from .yamlfile import read_yaml

KIND = "Inventory"
HOST_FIELDS = {"hostname", "role", "mac", "addresses", "gateway", "nameservers", "sshAuthorizedKeys"}
_MAC = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")

IPInterface = Union[ipaddress.IPv4Interface, ipaddress.IPv6Interface]
IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]


@dataclass(frozen=True)
class Host:
    index: int  # position in hosts:, for messages that name the entry (hosts[2].mac)
    hostname: str
    role: str
    mac: str | None = None
    addresses: list[IPInterface] = field(default_factory=list)
    gateway: IPAddress | None = None
    nameservers: list[IPAddress] = field(default_factory=list)
    ssh_authorized_keys: list[str] = field(default_factory=list)
    join: bool = False  # a master after the first listed: it joins the control plane the first one creates

    @property
    def path(self) -> str:
        return f"hosts[{self.index}]"

    @property
    def static(self) -> bool:
        """True when the seed carries network configuration (otherwise the machine uses DHCP)."""
        return bool(self.addresses)


@dataclass(frozen=True)
class Inventory:
    source: str
    hosts: list[Host]


def _mac(r: Reader, value: Any, path: str) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        # YAML 1.1 reads 52:54:00:12:34:56 (digits only) as a base-60 number
        raise r.fail(path, 'was read as a number by YAML; quote it, e.g. mac: "52:54:00:12:34:56"')
    if not isinstance(value, str) or not _MAC.fullmatch(value.lower()):
        raise r.fail(path, f"{shown(value)} is not a MAC address like aa:bb:cc:dd:ee:ff")
    mac = value.lower()
    if int(mac[:2], 16) & 1:
        raise r.fail(
            path, f"{shown(value)} is a multicast address; a NIC's MAC has the lowest bit of its first byte clear"
        )
    return mac


def _text(r: Reader, value: Any, path: str, example: str) -> str:
    """An address field's text; a scoped IPv6 address (fe80::1%eth0) is refused: seeds name the NIC otherwise."""
    if not isinstance(value, str):
        raise r.fail(path, f"must be a string like {example}, found {type(value).__name__}")
    if "%" in value:
        raise r.fail(path, f"{shown(value)} has a zone (%NIC); leave it out: the seed's network config names the NIC")
    return value


def _address(r: Reader, value: Any, path: str) -> IPInterface:
    text = _text(r, value, path, "10.0.0.21/24")
    if "/" not in text:
        raise r.fail(path, f"{shown(text)} needs a prefix length, e.g. 10.0.0.21/24 or fd00::21/64")
    try:
        iface = ipaddress.ip_interface(text)
    except ValueError:
        raise r.fail(path, f"{shown(text)} is not an IP network (example: 10.0.0.21/24)") from None
    net = iface.network
    if net.num_addresses > 2 and iface.ip in (net.network_address, net.broadcast_address) and iface.version == 4:
        which = "network" if iface.ip == net.network_address else "broadcast"
        raise r.fail(path, f"{shown(text)} is the {which} address of {net}; give the host's own address")
    return iface


def _ip(r: Reader, value: Any, path: str) -> IPAddress:
    text = _text(r, value, path, "10.0.0.1")
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        raise r.fail(path, f"{shown(text)} is not an IP address") from None


def _list(r: Reader, value: Any, path: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise r.fail(path, f"must be a list, found {type(value).__name__}")
    return value


def _parse_host(r: Reader, item: Any, i: int) -> Host:
    path = f"hosts[{i}]"
    h = r.mapping(item, path, HOST_FIELDS)
    hostname = r.string(h, "hostname", path)
    if hostname_error(hostname):
        raise r.fail(f"{path}.hostname", hostname_error(hostname))
    role = r.string(h, "role", path)
    if role not in ROLES:
        raise r.fail(f"{path}.role", f"{shown(role)} is not one of {', '.join(ROLES)}")
    mac = _mac(r, h["mac"], f"{path}.mac") if h.get("mac") is not None else None
    raw_addresses = _list(r, h.get("addresses"), f"{path}.addresses")
    addresses = [_address(r, a, f"{path}.addresses[{j}]") for j, a in enumerate(raw_addresses)]
    for j, a in enumerate(addresses):
        for k in range(j):
            if addresses[k].ip == a.ip:
                raise r.fail(f"{path}.addresses[{j}]", f"{a.ip} is already {path}.addresses[{k}]")
    gateway = None
    if h.get("gateway") is not None:
        gateway = _ip(r, h["gateway"], f"{path}.gateway")
        if not addresses:
            raise r.fail(f"{path}.gateway", "needs static addresses; without addresses the host uses DHCP")
        nets = [a.network for a in addresses if a.version == gateway.version]
        if not any(gateway in n for n in nets):
            inside = ", ".join(str(n) for n in nets) or f"none of IPv{gateway.version}"
            raise r.fail(f"{path}.gateway", f"{gateway} is outside the host's networks ({inside})")
        if any(gateway == a.ip for a in addresses):
            raise r.fail(f"{path}.gateway", f"{gateway} is the host's own address")
    servers = _list(r, h.get("nameservers"), f"{path}.nameservers")
    nameservers = [_ip(r, s, f"{path}.nameservers[{j}]") for j, s in enumerate(servers)]
    if nameservers and not addresses:
        raise r.fail(f"{path}.nameservers", "need static addresses; with DHCP the DHCP server names the name servers")
    keys = r.string_list(h.get("sshAuthorizedKeys"), f"{path}.sshAuthorizedKeys")
    for j, key in enumerate(keys):
        if not SSH_KEY.fullmatch(key.strip()):
            raise r.fail(f"{path}.sshAuthorizedKeys[{j}]", "is not an OpenSSH public key (ssh-ed25519 AAAA... comment)")
    return Host(i, hostname, role, mac, addresses, gateway, nameservers, [k.strip() for k in keys])


def _check_unique(r: Reader, hosts: list[Host]) -> None:
    """Host names, MACs and addresses belong to one entry each; a clash names both entries."""
    names: dict[str, str] = {}
    macs: dict[str, str] = {}
    ips: dict[IPAddress, str] = {}
    for h in hosts:
        where = f"{h.path}.hostname"
        if h.hostname in names:
            raise r.fail(where, f'"{h.hostname}" is already {names[h.hostname]}; host names must be unique')
        names[h.hostname] = where
        if h.mac is not None:
            where = f"{h.path}.mac"
            if h.mac in macs:
                raise r.fail(where, f'"{h.mac}" is already {macs[h.mac]}; MACs must be unique')
            macs[h.mac] = where
        for j, a in enumerate(h.addresses):
            where = f"{h.path}.addresses[{j}]"
            if a.ip in ips:
                raise r.fail(where, f"{a.ip} is already {ips[a.ip]}; addresses must be unique")
            ips[a.ip] = where


def parse_inventory(data: Any, source: str = "hosts.yaml") -> Inventory:
    """Validate a parsed hosts.yaml; every error names the field path and how to fix it."""
    r = Reader(source)
    doc = r.mapping(data, "", {"apiVersion", "kind", "hosts"})
    api = doc.get("apiVersion")
    if api != API_VERSION:
        raise r.fail("apiVersion", f"unknown version {shown(api)}; this kubeseed reads {API_VERSION}")
    if doc.get("kind") != KIND:
        raise r.fail("kind", f"must be {KIND}, found {shown(doc.get('kind'))}")
    items = doc.get("hosts")
    if items is None:
        raise r.fail("hosts", "is required: a list of hosts, each with hostname and role")
    items = _list(r, items, "hosts")
    if not items:
        raise r.fail("hosts", "lists no hosts; add one, e.g. {hostname: worker-1, role: node}")
    hosts = [_parse_host(r, item, i) for i, item in enumerate(items)]
    _check_unique(r, hosts)
    first = next((h for h in hosts if h.role == "master"), None)
    # the first master listed creates the cluster (init); the others join its control plane
    hosts = [dataclasses.replace(h, join=h.role == "master" and h is not first) for h in hosts]
    return Inventory(source, hosts)


def load_inventory(path: Path) -> Inventory:
    """Load and validate an inventory file; errors name the file and the field."""
    try:
        data = read_yaml(path)
    except FileNotFoundError:
        raise FieldError("", str(path), "no such file; write an inventory (see README, Seeds for bare metal)") from None
    except IsADirectoryError:
        raise FieldError("", str(path), "is a directory; --inventory takes a hosts.yaml file") from None
    return parse_inventory(data, str(path))
