"""The master role: ``init`` (kubeadm's init phases), the checks only a control-plane machine needs, and the
node-config fields only a master's payload carries (the CA and service-account keys, tokens, add-ons)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, List

from ..config import ConfigError, Doc, NodeConfig, check
from ..preflight import Env, dir_available, file_available, port
from ..tokens import parse_token
from ..workflow import Context, Phase
from .controlplane import MANIFESTS, PKI_FILES

ADDON_DIR = "/etc/kubeseed/addons"

if TYPE_CHECKING:
    from ..preflight import Check


def phases() -> List[Phase]:
    from . import addons, apiphases, certs, kubeconfigs, staticpods

    return [
        Phase("certs", "Generating certificates", certs.certs),
        Phase("kubeconfig", "Writing kubeconfig files", kubeconfigs.kubeconfigs),
        Phase("etcd", "Writing the etcd static pod", staticpods.etcd_phase),
        Phase("control-plane", "Writing the control-plane static pods", staticpods.control_plane_phase),
        Phase("kubelet-start", "Starting the kubelet", kubelet_start),
        Phase("wait-control-plane", "Waiting for the control plane", apiphases.wait_control_plane),
        Phase("upload-config", "Uploading the configuration", apiphases.upload_config),
        Phase("mark-control-plane", "Marking the control-plane node", apiphases.mark_control_plane),
        Phase("bootstrap-token", "Configuring bootstrap tokens", apiphases.bootstrap_token),
        Phase("addon", "Installing add-ons", addons.addon),
        Phase("show-join-command", "Printing the join command", apiphases.show_join_command),
    ]


def kubelet_start(ctx: Context) -> None:
    """The same kubelet configuration as a node's, then start it: it runs the static pods."""
    from ..kubelet import config_phase, start_phase

    config_phase(ctx)
    start_phase(ctx)


def checks() -> List[Check]:
    """kubeadm's CPU and memory minimums, the control-plane ports, a clean slate."""

    def cpus(env: Env) -> list:
        n = env.cpus()
        return [("error", f"the number of available CPUs {n} is less than the required 2")] if n < 2 else []

    def memory(env: Env) -> list:
        m = re.search(r"MemTotal:\s+(\d+) kB", env.read("/proc/meminfo") or "")
        mb = int(m.group(1)) // 1024 if m else 0
        return [("error", f"the system RAM ({mb} MB) is less than the minimum 1700 MB")] if mb < 1700 else []

    pods = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "etcd")
    return (
        [("NumCPU", cpus), ("Mem", memory)]
        + [port(p) for p in (6443, 10259, 10257, 2379, 2380)]
        + [file_available(f"{MANIFESTS}/{c}.yaml") for c in pods]
        + [dir_available("/var/lib/etcd")]
    )


def parse_fields(d: Doc, cfg: NodeConfig) -> None:
    """The master's part of the node config: the CA and SA keys, bootstrap tokens, add-on paths."""
    pki: Any = d.get("pki", dict, required=True)
    for f in PKI_FILES:
        check(isinstance(pki.get(f), str) and "-----BEGIN" in pki[f], f"pki.{f}", "must hold a PEM block")
    check(set(pki) <= set(PKI_FILES), "pki", f"unknown files {sorted(set(pki) - set(PKI_FILES))}")
    cfg.pki = pki
    tokens = d.get("bootstrapTokens", list, [])
    for i, t in enumerate(tokens):
        path = f"bootstrapTokens[{i}]"
        check(isinstance(t, dict), path, "must be a mapping")
        try:
            parse_token(t.get("token") if isinstance(t.get("token"), str) else "")
        except ValueError as e:
            raise ConfigError(f"{path}.token", str(e)) from None
    cfg.bootstrap_tokens = tokens
    addons = d.get("addons", list, [])
    for i, a in enumerate(addons):
        check(isinstance(a, str) and a.startswith("/"), f"addons[{i}]", "must be an absolute path")
    cfg.addons = addons


CONFIG = (("pki", "bootstrapTokens", "addons"), parse_fields)
DONE = ""  # show-join-command says it all
