"""The kubelet's configuration as kubeadm lays it out, and starting it through systemd."""

from __future__ import annotations

import os
import re
import subprocess
import time
from typing import Optional

from .workflow import Context, PhaseError, write_atomic

CONFIG = "/var/lib/kubelet/config.yaml"
FLAGS = "/var/lib/kubelet/kubeadm-flags.env"
# kubeadm's NodeLocalCRISocket (on from v1.34): this machine's CRI socket, where `kubeadm upgrade` reads it
INSTANCE = "/var/lib/kubelet/instance-config.yaml"
RESOLVED = "/run/systemd/resolve/resolv.conf"  # exists while systemd-resolved runs
DROP_IN = "/etc/systemd/system/kubelet.service.d/10-kubeadm.conf"
DROP_IN_TEXT = """[Service]
Environment="KUBELET_KUBECONFIG_ARGS=--bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf \
--kubeconfig=/etc/kubernetes/kubelet.conf"
Environment="KUBELET_CONFIG_ARGS=--config=/var/lib/kubelet/config.yaml"
EnvironmentFile=-/var/lib/kubelet/kubeadm-flags.env
EnvironmentFile=-/etc/default/kubelet
ExecStart=
ExecStart=/usr/bin/kubelet $KUBELET_KUBECONFIG_ARGS $KUBELET_CONFIG_ARGS $KUBELET_KUBEADM_ARGS $KUBELET_EXTRA_ARGS
"""


def kubelet_configuration(ctx: Context) -> dict:
    """KubeletConfiguration with the settings kubeadm writes (kubelet-config ConfigMap)."""
    cfg = ctx.config
    assert cfg is not None
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"cacheTTL": "0s", "enabled": True},
            "x509": {"clientCAFile": "/etc/kubernetes/pki/ca.crt"},
        },
        "authorization": {"mode": "Webhook", "webhook": {"cacheAuthorizedTTL": "0s", "cacheUnauthorizedTTL": "0s"}},
        "cgroupDriver": cfg.kubelet.cgroup_driver,
        "clusterDNS": [cfg.networking.cluster_dns_ip],
        "clusterDomain": cfg.networking.dns_domain,
        "containerRuntimeEndpoint": cfg.kubelet.container_runtime_endpoint,
        "rotateCertificates": True,
        "serverTLSBootstrap": cfg.kubelet.server_tls_bootstrap,
        "staticPodPath": "/etc/kubernetes/manifests",
    }


def config_phase(ctx: Context, kc: Optional[dict] = None, local_cri: Optional[bool] = None) -> None:
    """Write config.yaml: ``kc`` (the cluster's KubeletConfiguration; this machine's own without it) with what is
    this machine's alone, as kubeadm: its CRI socket, also in instance-config.yaml with ``local_cri`` (kubeadm's
    NodeLocalCRISocket, on from v1.34), and systemd-resolved's resolv.conf when that runs (/etc/resolv.conf's
    127.0.0.53 would make CoreDNS loop)."""
    import yaml

    cfg = ctx.config
    assert cfg is not None
    kc = kc or kubelet_configuration(ctx)
    cri = kc["containerRuntimeEndpoint"] = cfg.kubelet.container_runtime_endpoint
    if os.path.exists(ctx.path(RESOLVED)):
        kc["resolvConf"] = RESOLVED
    if cfg.version.minor > 33 if local_cri is None else local_cri:
        write_atomic(ctx.path(INSTANCE), f'containerRuntimeEndpoint: "{cri}"\n', 0o644)
    write_atomic(ctx.path(CONFIG), yaml.safe_dump(kc), 0o644)
    args = {"container-runtime-endpoint": cfg.kubelet.container_runtime_endpoint, "hostname-override": ctx.name()}
    args.update(cfg.kubelet.extra_args)
    # Escaped twice, for how systemd reads the file back: its EnvironmentFile parser takes \\ and \" inside the
    # double quotes as \ and " (and expands no $), then ExecStart splits $KUBELET_KUBEADM_ARGS at spaces, taking
    # quotes and backslashes as quoting. So no value can end the quotes or add a line, and each flag reaches the
    # kubelet as one exact word. Plain flags read as kubeadm writes them.
    flags = " ".join(re.sub(r"([\\\"' ])", r"\\\1", f"--{k}={v}") for k, v in args.items())
    flags = re.sub(r'([\\"])', r"\\\1", flags)
    write_atomic(ctx.path(FLAGS), f'KUBELET_KUBEADM_ARGS="{flags}"\n', 0o644)
    write_atomic(ctx.path(DROP_IN), DROP_IN_TEXT, 0o644)


def systemctl(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """``systemctl ARGS`` with its output captured; PhaseError when it cannot be run at all."""
    try:
        return subprocess.run(("systemctl",) + args, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.SubprocessError) as e:
        raise PhaseError(f"systemctl {' '.join(args)} failed: {e}") from None


def start_phase(ctx: Context) -> None:
    """Enable and restart the kubelet; wait until systemd says it is active. Under --root: only say so."""
    steps = (("daemon-reload",), ("enable", "kubelet"), ("restart", "kubelet"))
    if ctx.root:
        ctx.say(
            "\t--root: not starting services; a machine would run systemctl " + ", ".join(" ".join(s) for s in steps)
        )
        return
    for step in steps:
        r = systemctl(*step)
        if r.returncode != 0:
            raise PhaseError(f"systemctl {' '.join(step)}: {r.stderr.strip()}. See: systemctl status kubelet")
    while True:
        state = systemctl("is-active", "kubelet").stdout.strip()
        if state == "active":
            return
        if state == "failed" or time.monotonic() > ctx.deadline:
            raise PhaseError(
                f"the kubelet is {state or 'not running'}. See: systemctl status kubelet; journalctl -u kubelet"
            )
        time.sleep(1)
