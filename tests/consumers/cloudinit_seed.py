"""Read a seed directory with Debian's own cloud-init datasources, as a machine's first boot does.

Run by the tests with the interpreter cloud-init is installed for (``/usr/bin/python3``):

    python3 cloudinit_seed.py nocloud|configdrive CLOUD_DIR [MAC=NAME ...]

CLOUD_DIR stands in for /var/lib/cloud: the seed is at CLOUD_DIR/seed/nocloud or CLOUD_DIR/seed/config_drive,
the places cloud-init reads a seed from on disk. The datasource (DataSourceNoCloud or DataSourceConfigDrive)
runs its own ``get_data()`` with device probing off; its network config (version 2 as given, or
network_data.json through ``openstack.convert_net_json`` with MAC=NAME as the machine's NICs) goes through
``network_state.parse_net_config_data`` without skipping broken entries (MAC=NAME pairs stand in for the
target machine's NICs), and is rendered as netplan and as
ifupdown (eni) would write it. Prints what the tests check as JSON on stdout.
"""

import hashlib
import json
import os
import sys
import tempfile

from cloudinit import handlers, helpers, net, user_data, util
from cloudinit.net import eni, netplan, network_state
from cloudinit.sources import DataSourceConfigDrive, DataSourceNoCloud


def _datasource(kind, paths, macs):
    if kind == "nocloud":
        sys_cfg = {"datasource": {"NoCloud": {"fs_label": None}}}  # no blkid probing of this machine's disks
        return DataSourceNoCloud.DataSourceNoCloud(sys_cfg, None, paths)
    ds = DataSourceConfigDrive.DataSourceConfigDrive({"datasource_list": ["ConfigDrive"]}, None, paths)
    ds.known_macs = macs
    return ds


def _interfaces(state):
    out = []
    for iface in state.iter_interfaces():
        subnets = []
        for s in iface.get("subnets", []):
            subnets.append(
                {
                    "type": s.get("type"),
                    "address": s.get("address"),
                    "prefix": s.get("prefix"),
                    "gateway": s.get("gateway"),
                    "routes": [
                        {"network": r.get("network"), "prefix": r.get("prefix"), "gateway": r.get("gateway")}
                        for r in s.get("routes", [])
                    ],
                    "dns_nameservers": s.get("dns_nameservers", []),
                }
            )
        out.append({"name": iface.get("name"), "mac_address": iface.get("mac_address"), "subnets": subnets})
    return out


def _render(renderer, state, target):
    renderer.render_network_state(state, target=target)
    found = {}
    for base, _, names in os.walk(target):
        for name in names:
            path = os.path.join(base, name)
            with open(path) as f:
                found[os.path.relpath(path, target)] = f.read()
    return found


def main():
    kind, cloud_dir = sys.argv[1], sys.argv[2]
    macs = dict(arg.split("=", 1) for arg in sys.argv[3:])
    # The target machine's NICs, not this one's: cloud-init names a MAC-matched interface after the NIC that has it.
    net.get_interfaces_by_mac = network_state.get_interfaces_by_mac = lambda *a, **k: dict(macs)
    network_state.find_interface_name_from_mac = lambda mac: macs.get(mac.lower())
    paths = helpers.Paths({"cloud_dir": cloud_dir, "run_dir": os.path.join(cloud_dir, "run")})
    ds = _datasource(kind, paths, macs)
    found = ds.get_data()
    result = {"found": found}
    if not found:
        print(json.dumps(result))
        return
    raw = ds.get_userdata_raw()
    raw = raw if isinstance(raw, bytes) else raw.encode()
    message = user_data.convert_string(raw)  # un-gzips and detects the part type, as cloud-init does
    payload = message.get_payload(decode=True)
    cfg = util.load_yaml(payload.decode())
    result.update(
        {
            "instance_id": ds.get_instance_id(),
            "local_hostname": ds.metadata.get("local-hostname"),
            "public_keys": ds.get_public_ssh_keys(),
            "userdata_raw_sha256": hashlib.sha256(raw).hexdigest(),
            "userdata_sha256": hashlib.sha256(payload).hexdigest(),
            "part_type": handlers.type_from_starts_with(payload.decode()),
            "cloud_config": {k: cfg.get(k) for k in ("hostname", "ssh_authorized_keys", "runcmd")},
            "network_config": None,
        }
    )
    netcfg = ds.network_config
    if netcfg:
        state = network_state.parse_net_config_data(netcfg, skip_broken=False)
        with tempfile.TemporaryDirectory() as tmp:
            rendered = {
                "netplan": _render(netplan.Renderer({"netplan_path": "etc/netplan/50-cloud-init.yaml"}), state, tmp)
            }
        with tempfile.TemporaryDirectory() as tmp:
            rendered["eni"] = _render(eni.Renderer(), state, tmp)
        result["network_config"] = netcfg
        result["interfaces"] = _interfaces(state)
        result["nameservers"] = state.dns_nameservers
        result["rendered"] = rendered
    print(json.dumps(result, default=str))


if __name__ == "__main__":
    main()
