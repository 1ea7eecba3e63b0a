"""The node config a payload carries (/etc/kubeseed/config.yaml): built as the runtime's own NodeConfig type
from the cluster model and secrets, and written by ``to_doc``, the one writer of the contract. The runtime's
parser reads it back to an equal NodeConfig (tests/generator/test_nodeconfig.py checks that over many cases)."""

from __future__ import annotations

import datetime
from typing import Any

from kubeseed.runtime.cli import COMMANDS, load_role
from kubeseed.runtime.config import API_VERSION, Discovery, Kubelet, Networking, NodeConfig, parse_node_config
from kubeseed.runtime.init import ADDON_DIR

from .errors import UserError
from .model import Cluster
from .secrets import ClusterSecrets
from .tokens import BootstrapToken, find_token, now_utc
from .yamlfile import safe_dump


def pick_join_token(secrets: ClusterSecrets, token_id: str | None, now: datetime.datetime) -> BootstrapToken:
    """The token a node payload carries: the one asked for, else the newest usable one that tokens.yaml records
    on the cluster (a master payload carries it, or its Secret was made or seen through the API), else the newest
    usable one. Never an expired one."""
    if token_id:
        tok = find_token(secrets.tokens, token_id)
        if tok.expired(now):
            raise UserError(f'token "{tok.id}" has expired; create a new one with `kubeseed token create CLUSTER`')
        if not tok.usable_for_join(now):
            raise UserError(f'token "{tok.id}" lacks the signing and authentication usages a join needs')
        return tok
    usable = [t for t in secrets.tokens if t.usable_for_join(now)]
    if not usable:
        raise UserError("no unexpired bootstrap token for nodes; create one with `kubeseed token create CLUSTER`")
    return ([t for t in usable if t.cluster] or usable)[-1]


def addon_paths(cluster: Cluster) -> list[str]:
    """Where the master payload puts each add-on manifest, in order."""
    return [f"{ADDON_DIR}/{i:02d}-{p.name}" for i, p in enumerate(cluster.addons)]


def node_config(
    cluster: Cluster,
    secrets: ClusterSecrets,
    role: str,
    hostname: str | None,
    token_id: str | None = None,
    now: datetime.datetime | None = None,
    join: bool = False,
) -> NodeConfig:
    """One machine's NodeConfig, holding only the secrets ``role`` needs (a node: its token and the CA pin; a
    master: the CA keys, with ``join`` a node's token and pin too, to join the running control plane)."""
    now = now or now_utc()
    cfg = NodeConfig(
        role=role,
        cluster_name=cluster.name,
        control_plane_endpoint=cluster.control_plane_endpoint,
        kubernetes_version=cluster.kubernetes_version,
        node_name=hostname or "",
        image_repository=cluster.image_repository,
        key_algorithm=cluster.key_algorithm,
        networking=cluster.networking,
        kubelet=cluster.kubelet,
    )
    if role == "node" or join:
        cfg.discovery = Discovery(pick_join_token(secrets, token_id, now).token, [secrets.ca_pin])
    if role == "master":  # every master runs kube-vip when the cluster has a virtual IP; nodes just use the endpoint
        cfg.pki = {name: data.decode() for name, data in secrets.pki.items()}
        cfg.virtual_ip, cfg.virtual_ip_interface = cluster.virtual_ip, cluster.virtual_ip_interface
    if role == "master" and not join:  # the cluster's tokens and add-ons are the first master's to create
        cfg.bootstrap_tokens = [t.to_dict() for t in secrets.tokens if not t.expired(now)]
        cfg.addons = addon_paths(cluster)
    return cfg


def to_doc(cfg: NodeConfig) -> dict[str, Any]:
    """The node config document for ``cfg``: every field that differs from its default (defaults are part of the
    API version, and every payload byte counts: EC2 takes 16 KiB of user-data)."""
    doc: dict[str, Any] = {
        "apiVersion": API_VERSION,
        "kind": "NodeConfig",
        "role": cfg.role,
        "clusterName": cfg.cluster_name,
        "controlPlaneEndpoint": cfg.control_plane_endpoint,
        "kubernetesVersion": cfg.kubernetes_version,
    }
    _set(doc, "nodeName", cfg.node_name, "")
    _set(doc, "imageRepository", cfg.image_repository, NodeConfig.image_repository)
    _set(doc, "keyAlgorithm", cfg.key_algorithm, NodeConfig.key_algorithm)
    net, kubelet = cfg.networking, cfg.kubelet
    networking: dict[str, Any] = {}
    _set(networking, "podSubnet", net.pod_subnet, Networking.pod_subnet)
    _set(networking, "serviceSubnet", net.service_subnet, Networking.service_subnet)
    _set(networking, "dnsDomain", net.dns_domain, Networking.dns_domain)
    _set(doc, "networking", networking, {})
    section: dict[str, Any] = {}
    _set(section, "cgroupDriver", kubelet.cgroup_driver, Kubelet.cgroup_driver)
    _set(section, "containerRuntimeEndpoint", kubelet.container_runtime_endpoint, Kubelet.container_runtime_endpoint)
    _set(section, "extraArgs", dict(kubelet.extra_args), {})
    _set(section, "serverTLSBootstrap", kubelet.server_tls_bootstrap, Kubelet.server_tls_bootstrap)
    _set(doc, "kubelet", section, {})
    if cfg.discovery:
        d = cfg.discovery
        doc["discovery"] = {"token": d.token, "caCertHashes": list(d.ca_cert_hashes)}
        _set(doc["discovery"], "unsafeSkipCAVerification", d.unsafe_skip_ca_verification, False)
    if cfg.role == "master":
        doc.update(pki=dict(cfg.pki), bootstrapTokens=list(cfg.bootstrap_tokens), addons=list(cfg.addons))
        _set(doc, "advertiseAddress", cfg.advertise_address, "")
        _set(doc, "virtualIP", cfg.virtual_ip, "")
        _set(doc, "virtualIPInterface", cfg.virtual_ip_interface, "")
    return doc


def _set(doc: dict[str, Any], key: str, value: Any, default: Any) -> None:
    if value != default:
        doc[key] = value


def parse_doc(doc: Any) -> NodeConfig:
    """The runtime's own parser, with the fields of the document's role (loaded as the runtime's CLI does)."""
    role = doc.get("role") if isinstance(doc, dict) else None
    return parse_node_config(doc, load_role(role).CONFIG if role in COMMANDS else None)


def config_text(cfg: NodeConfig) -> str:
    """/etc/kubeseed/config.yaml for ``cfg``; never one the runtime would refuse."""
    doc = to_doc(cfg)
    parse_doc(doc)
    return safe_dump(doc, width=1 << 16)
