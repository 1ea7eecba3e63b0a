"""The node role: ``join`` (discovery, TLS bootstrap, kubelet) and the checks only a joining node needs."""

from __future__ import annotations

from typing import TYPE_CHECKING, List

from ..preflight import dir_available, file_available
from ..workflow import Phase

if TYPE_CHECKING:
    from ..preflight import Check


def phases() -> List[Phase]:
    from .discovery import discovery
    from .kubelet import kubelet_config, kubelet_start, runtime
    from .tlsbootstrap import tls_bootstrap

    return [
        Phase("discovery", "Discovering the cluster", discovery),
        Phase("tls-bootstrap", "Bootstrapping certificates", tls_bootstrap),
        Phase("kubelet-config", "Writing the cluster's kubelet configuration", kubelet_config),
        Phase("kubelet-start", "Starting the kubelet", kubelet_start),
        Phase("runtime", "Installing the cluster's runtime", runtime),
    ]


def checks() -> List[Check]:
    """A clean slate: no manifests, no kubelet credentials or cluster CA from an earlier cluster."""
    files = ("kubelet.conf", "bootstrap-kubelet.conf", "pki/ca.crt")
    return [dir_available("/etc/kubernetes/manifests")] + [file_available(f"/etc/kubernetes/{f}") for f in files]


CONFIG = None  # a node's config has no fields of its own
DONE = "\nThis node has joined the cluster: see it with 'kubectl get nodes' on the control plane."
