"""The version contract, shared half: the Kubernetes versions this runtime lays out as kubeadm does, and what
every machine's checks change with the version. The control plane's half (image tags, kubeadm's object formats)
is init/versions.py; nothing else compares minors."""

from __future__ import annotations

import re

DEFAULT = "v1.35.5"  # what `cluster create` writes, and what a node joined by flags alone assumes
MIN_MINOR, MAX_MINOR = 30, 36


class Version:
    """A supported Kubernetes version (``v1.MINOR.PATCH``); ValueError says what is wrong with any other."""

    def __init__(self, text: str) -> None:
        m = re.fullmatch(r"v1\.(\d+)\.(\d+)", text)
        if not m:
            raise ValueError(f'"{text}" is not a version like {DEFAULT}')
        self.text, self.minor, self.patch = text, int(m.group(1)), int(m.group(2))
        if not MIN_MINOR <= self.minor <= MAX_MINOR:
            raise ValueError(f'"{text}" is not supported: kubeseed supports v1.{MIN_MINOR} to v1.{MAX_MINOR}')
        # kubeadm's pre-flight checks by version
        self.crictl_required = self.minor < 31  # 1.31 made a missing crictl a warning
        self.checks_proxy_tools = self.minor < 32  # before 1.32: crictl, conntrack, socat, ebtables
        self.checks_network_tools = self.minor < 33  # before 1.33: ip, iptables, ethtool, tc

    def kubelet_skew_ok(self, kubelet_minor: int) -> bool:
        """The kubelet may be up to three minors older than the control plane, never newer."""
        return self.minor - 3 <= kubelet_minor <= self.minor
