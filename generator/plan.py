"""The format-neutral node plan: files, units, users and the first-boot command for one machine.

Generation is a pure function of (cluster model, secrets bundle, role, options); the renderers only encode
the plan as cloud-config or Ignition.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from kubeseed.runtime.config import NODE_CONFIG_PATH, ROLES, RUNTIME_PATH

from .errors import UserError

if TYPE_CHECKING:  # the command line imports RUNTIMES and ROLES from here to build its parser: nothing heavy on top
    import datetime

    from .model import Cluster, LoginUser
    from .secrets import ClusterSecrets

RUNTIMES = ("embedded", "preinstalled")


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


def build_plan(
    cluster: Cluster,
    secrets: ClusterSecrets,
    role: str,
    hostname: str | None = None,
    token_id: str | None = None,
    now: datetime.datetime | None = None,
    runtime: str = "embedded",
    join: bool = False,
) -> NodePlan:
    """``runtime="preinstalled"`` leaves the runtime out: a golden image has it at RUNTIME_PATH already. ``join``:
    a master that joins the running control plane (``join --control-plane``, with a token and the CA pin as a
    node's, and the full runtime, which alone has that command) instead of creating the cluster."""
    from kubeseed.runtime.cli import COMMANDS

    from .nodeconfig import addon_paths, config_text, node_config
    from .zipcache import cached_zipapp

    if role not in ROLES:
        raise UserError(f'role "{role}" is not one of {", ".join(ROLES)}')
    cfg = node_config(cluster, secrets, role, hostname, token_id, now, join)
    files = [PlanFile(NODE_CONFIG_PATH, config_text(cfg).encode(), 0o600)]
    if runtime == "embedded":
        files.insert(0, PlanFile(RUNTIME_PATH, cached_zipapp(None if join else role), 0o755))
    for user in cluster.users:  # one format-neutral way for cloud-init and Ignition alike
        if user.sudo:
            rule = f"{user.name} ALL=(ALL) NOPASSWD:ALL\n".encode()
            files.append(PlanFile(f"/etc/sudoers.d/90-kubeseed-{user.name}", rule, 0o440))
    if role == "master" and not join:
        for path, src in zip(addon_paths(cluster), cluster.addons):
            files.append(PlanFile(path, src.read_bytes(), 0o600))
    return NodePlan(
        role=role,
        hostname=hostname,
        files=files,
        units=[],
        users=list(cluster.users),
        command=["python3", RUNTIME_PATH, "join", "--control-plane"]
        if join
        else ["python3", RUNTIME_PATH, COMMANDS[role]],
    )
