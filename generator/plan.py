"""The format-neutral node plan: files, units, users and the first-boot command for one machine.

Generation is a pure function of (cluster model, secrets bundle, role, options); the renderers only encode
the plan as cloud-config or Ignition.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field

import yaml

from kubeseed.runtime.config import NODE_CONFIG_PATH, RUNTIME_PATH, parse_node_config

from .errors import UserError
from .model import Cluster, LoginUser
from .secrets import ClusterSecrets
from .tokens import BootstrapToken, find_token, now_utc
from .zipapp import build_zipapp

ROLES = ("master", "node")
RUNTIMES = ("embedded", "preinstalled")
ACTIONS = {"master": "init", "node": "join"}
ADDON_DIR = "/etc/kubeseed/addons"


@dataclass
class PlanFile:
    path: str
    content: bytes
    mode: int
    owner: str = "root:root"


@dataclass
class PlanUnit:
    name: str
    content: str
    enabled: bool = True


@dataclass
class NodePlan:
    """What one machine gets. ``command`` is the first-boot hook: cloud-init runs it from runcmd, Ignition
    from a oneshot ``kubeseed-firstboot.service``; ``units`` are any further systemd units."""

    role: str
    hostname: str | None
    files: list[PlanFile]
    units: list[PlanUnit]
    users: list[LoginUser]
    command: list[str] = field(default_factory=list)


def pick_join_token(secrets: ClusterSecrets, token_id: str | None, now: datetime.datetime) -> BootstrapToken:
    """The token a node payload carries: the one asked for, else the newest usable one. Never an expired one."""
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
    return usable[-1]


def node_config(
    cluster: Cluster,
    secrets: ClusterSecrets,
    role: str,
    hostname: str | None,
    token_id: str | None = None,
    now: datetime.datetime | None = None,
) -> dict:
    """The NodeConfig document (the contract with the runtime), holding only the secrets ``role`` needs."""
    now = now or now_utc()
    doc: dict = {
        "apiVersion": "kubeseed.io/v1alpha1",
        "kind": "NodeConfig",
        "role": role,
        "clusterName": cluster.name,
        "nodeName": hostname or "",
        "controlPlaneEndpoint": cluster.control_plane_endpoint,
        "kubernetesVersion": cluster.kubernetes_version,
        "imageRepository": cluster.image_repository,
        "keyAlgorithm": cluster.key_algorithm,
        "networking": {
            "podSubnet": cluster.pod_subnet,
            "serviceSubnet": cluster.service_subnet,
            "dnsDomain": cluster.dns_domain,
        },
        "kubelet": {
            "cgroupDriver": cluster.cgroup_driver,
            "containerRuntimeEndpoint": cluster.container_runtime_endpoint,
            "extraArgs": dict(cluster.kubelet_extra_args),
            "serverTLSBootstrap": cluster.kubelet_server_tls_bootstrap,
        },
    }
    if role == "node":
        tok = pick_join_token(secrets, token_id, now)
        doc["discovery"] = {"token": tok.token, "caCertHashes": [secrets.ca_pin], "unsafeSkipCAVerification": False}
    else:
        doc["pki"] = {name: data.decode() for name, data in secrets.pki.items()}
        doc["bootstrapTokens"] = [t.to_dict() for t in secrets.tokens if not t.expired(now)]
        doc["addons"] = [f"{ADDON_DIR}/{i:02d}-{p.name}" for i, p in enumerate(cluster.addons)]
    parse_node_config(doc)  # the runtime's own schema: never ship a config the runtime would refuse
    return doc


def build_plan(
    cluster: Cluster,
    secrets: ClusterSecrets,
    role: str,
    hostname: str | None = None,
    token_id: str | None = None,
    now: datetime.datetime | None = None,
    runtime: str = "embedded",
) -> NodePlan:
    """``runtime="preinstalled"`` leaves the runtime out: a golden image has it at RUNTIME_PATH already."""
    if role not in ROLES:
        raise UserError(f'role "{role}" is not one of {", ".join(ROLES)}')
    doc = node_config(cluster, secrets, role, hostname, token_id, now)
    config_text = yaml.safe_dump(doc, sort_keys=False, default_flow_style=False, width=1 << 16)
    files = [PlanFile(NODE_CONFIG_PATH, config_text.encode(), 0o600)]
    if runtime == "embedded":
        files.insert(0, PlanFile(RUNTIME_PATH, build_zipapp(role), 0o755))
    for user in cluster.users:  # one format-neutral way for cloud-init and Ignition alike
        if user.sudo:
            rule = f"{user.name} ALL=(ALL) NOPASSWD:ALL\n".encode()
            files.append(PlanFile(f"/etc/sudoers.d/90-kubeseed-{user.name}", rule, 0o440))
    if role == "master":
        for i, p in enumerate(cluster.addons):
            files.append(PlanFile(f"{ADDON_DIR}/{i:02d}-{p.name}", p.read_bytes(), 0o600))
    return NodePlan(
        role=role,
        hostname=hostname,
        files=files,
        units=[],
        users=list(cluster.users),
        command=["python3", RUNTIME_PATH, ACTIONS[role]],
    )
