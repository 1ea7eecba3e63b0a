"""A host's static addressing in the two forms cloud-init reads from a seed: network config version 2
(NoCloud ``network-config``) and OpenStack's ``network_data.json`` (config drive)."""

from __future__ import annotations

import ipaddress
from typing import Any

from .inventory import Host, IPAddress

INTERFACE_ID = "primary"  # the v2 ethernets key and the network_data.json link id
NAME_GLOB = "e*"  # without a MAC, the v2 config matches the first Ethernet-style name (eth0, ens3, enp1s0)


def _default_route(gateway: IPAddress) -> str:
    # "0.0.0.0/0", not "default": Debian 12's cloud-init (22.4) rejects "to: default" as no IP network
    return "0.0.0.0/0" if gateway.version == 4 else "::/0"


def network_config_v2(host: Host) -> dict[str, Any] | None:
    """NoCloud's network-config (version 2, netplan's format), or None when the host uses DHCP."""
    if not host.static:
        return None
    eth: dict[str, Any] = {"match": {"macaddress": host.mac} if host.mac else {"name": NAME_GLOB}}
    eth["addresses"] = [str(a) for a in host.addresses]
    if host.gateway is not None:
        eth["routes"] = [{"to": _default_route(host.gateway), "via": str(host.gateway)}]
    if host.nameservers:
        eth["nameservers"] = {"addresses": [str(ns) for ns in host.nameservers]}
    return {"version": 2, "ethernets": {INTERFACE_ID: eth}}


def network_data(host: Host) -> dict[str, Any] | None:
    """OpenStack's network_data.json as Nova writes it (links, networks, services), or None for DHCP.

    A config drive names a NIC only by its MAC (cloud-init looks the link's ``ethernet_mac_address`` up among
    the machine's NICs), so static addressing here needs ``host.mac``; the caller checks that."""
    if not host.static:
        return None
    link = {"id": INTERFACE_ID, "type": "phy", "ethernet_mac_address": host.mac}
    networks: list[dict[str, Any]] = []
    for i, a in enumerate(host.addresses):
        net: dict[str, Any] = {
            "id": f"network{i}",
            "type": f"ipv{a.version}",
            "link": INTERFACE_ID,
            "ip_address": str(a.ip),
            "netmask": str(a.network.netmask),
            "routes": [],
        }
        gw = host.gateway
        if gw is not None and gw in a.network and not any(r["routes"] for r in networks if r["type"] == net["type"]):
            anywhere = str(ipaddress.ip_network(_default_route(gw)).network_address)
            net["routes"] = [{"network": anywhere, "netmask": anywhere, "gateway": str(gw)}]
        networks.append(net)
    services = [{"type": "dns", "address": str(ns)} for ns in host.nameservers]
    return {"links": [link], "networks": networks, "services": services}
