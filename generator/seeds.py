"""Seeds for bare metal: per host, the files of a NoCloud (``cidata``) or config-drive (``config-2``) medium.

Everything is rendered in memory; writing (ISO or directory) is the caller's job, so a bad inventory or
cluster writes nothing."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import FieldError
from .yamlfile import safe_dump

if TYPE_CHECKING:  # `kubeseed seed`'s parser takes KINDS and LABELS from here: nothing heavy on top
    from .inventory import Host, Inventory
    from .model import Cluster
    from .secrets import ClusterSecrets

KINDS = ("nocloud", "configdrive")
LABELS = {"nocloud": "cidata", "configdrive": "config-2"}
USER_DATA = {"nocloud": "user-data", "configdrive": "openstack/latest/user_data"}
# every file a seed of either kind may hold (the network files only for static hosts): what a re-run may replace
SEED_FILES = frozenset(
    {"user-data", "meta-data", "network-config"}
    | {f"openstack/latest/{name}" for name in ("meta_data.json", "user_data", "network_data.json")}
)


@dataclass(frozen=True)
class Seed:
    host: Host
    kind: str
    files: dict[str, bytes]  # relative POSIX path -> content, in the order they go on the medium

    @property
    def label(self) -> str:
        return LABELS[self.kind]

    @property
    def user_data_path(self) -> str:
        return USER_DATA[self.kind]

    def iso(self) -> bytes:
        """The seed as an ISO image (reproducible: same files, same bytes)."""
        from .iso import build_iso

        return build_iso(self.label, self.files, private={self.user_data_path})


def instance_id(secrets: ClusterSecrets, hostname: str) -> str:
    """A UUID fixed by the cluster (its CA pin) and the host name: re-seeding a host keeps its instance id,
    so cloud-init does not take a re-seeded machine for a new instance."""
    import uuid

    namespace = uuid.uuid5(uuid.NAMESPACE_DNS, "seeds.kubeseed.io")
    return str(uuid.uuid5(namespace, f"{secrets.ca_pin}/{hostname}"))


def user_data(
    cluster: Cluster,
    secrets: ClusterSecrets,
    host: Host,
    runtime: str = "embedded",
    ssh_keys: bool = True,
    gzip: bool = False,
) -> bytes:
    """The host's cloud-init payload (as ``kubeseed render ROLE --hostname HOST``), plus, with ``ssh_keys``,
    the host's extra keys as top-level ``ssh_authorized_keys`` (cloud-init gives them to the default user)."""
    from .plan import build_plan
    from .render import cloud_config, dump_cloud_config, gzip_bytes

    plan = build_plan(cluster, secrets, host.role, host.hostname, runtime=runtime, join=host.join)
    doc = cloud_config(plan)
    if ssh_keys and host.ssh_authorized_keys:
        head = {k: v for k, v in doc.items() if k in ("hostname", "preserve_hostname")}
        doc = {**head, "ssh_authorized_keys": list(host.ssh_authorized_keys), **doc}
    data = dump_cloud_config(doc)
    return gzip_bytes(data) if gzip else data


def _yaml(doc: dict[str, Any]) -> bytes:
    return safe_dump(doc).encode()


def _json(doc: dict[str, Any]) -> bytes:
    return (json.dumps(doc, indent=2) + "\n").encode()


def nocloud_seed(cluster: Cluster, secrets: ClusterSecrets, host: Host, runtime: str, gzip: bool) -> Seed:
    from .seednet import network_config_v2

    files = {
        "user-data": user_data(cluster, secrets, host, runtime, True, gzip),
        "meta-data": _yaml({"instance-id": instance_id(secrets, host.hostname), "local-hostname": host.hostname}),
    }
    net = network_config_v2(host)
    if net is not None:
        files["network-config"] = _yaml(net)
    return Seed(host, "nocloud", files)


def configdrive_seed(
    cluster: Cluster, secrets: ClusterSecrets, host: Host, runtime: str, gzip: bool, source: str = ""
) -> Seed:
    """OpenStack's layout under ``openstack/latest``; the extra SSH keys go in meta_data.json's public_keys,
    where OpenStack puts them and cloud-init reads them."""
    from .seednet import network_data

    if host.static and host.mac is None:
        raise FieldError(
            source,
            f"{host.path}.mac",
            "is required for --kind configdrive with static addresses: network_data.json names the NIC by its "
            "MAC; add the NIC's MAC, or use --kind nocloud (which can match the NIC by name)",
        )
    meta: dict[str, Any] = {
        "uuid": instance_id(secrets, host.hostname),
        "name": host.hostname,
        "hostname": host.hostname,
        "launch_index": 0,
    }
    if host.ssh_authorized_keys:
        meta["public_keys"] = {f"key-{i}": k for i, k in enumerate(host.ssh_authorized_keys)}
    files = {
        "openstack/latest/meta_data.json": _json(meta),
        "openstack/latest/user_data": user_data(cluster, secrets, host, runtime, False, gzip),
    }
    net = network_data(host)
    if net is not None:
        files["openstack/latest/network_data.json"] = _json(net)
    return Seed(host, "configdrive", files)


def build_seeds(
    cluster: Cluster,
    secrets: ClusterSecrets,
    inventory: Inventory,
    kind: str = "nocloud",
    runtime: str = "embedded",
    gzip: bool = False,
) -> list[Seed]:
    """One seed per inventory host, in inventory order."""
    if kind == "nocloud":
        return [nocloud_seed(cluster, secrets, h, runtime, gzip) for h in inventory.hosts]
    if kind == "configdrive":
        return [configdrive_seed(cluster, secrets, h, runtime, gzip, inventory.source) for h in inventory.hosts]
    raise ValueError(f"unknown seed kind {kind!r}; known: {', '.join(KINDS)}")
