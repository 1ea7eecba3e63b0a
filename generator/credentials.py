"""kubectl credentials: a kubeconfig with a client certificate signed by the cluster CA."""

from __future__ import annotations

import base64

import yaml

from kubeseed.runtime import pki

from .model import Cluster
from .secrets import ClusterSecrets


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def user_kubeconfig(cluster: Cluster, secrets: ClusterSecrets, user: str, groups: list[str], days: float) -> str:
    """A kubeconfig for ``user`` (certificate CN) in ``groups`` (certificate O), valid for ``days``."""
    ca_key = pki.load_key(secrets.pki["ca.key"])
    key = pki.new_key(cluster.key_algorithm)
    cert = pki.sign_leaf(secrets.ca_cert, ca_key, key.public_key(), user, groups, client=True, days=days)
    context = f"{user}@{cluster.name}"
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": cluster.name,
                "cluster": {
                    "server": f"https://{cluster.control_plane_endpoint}",
                    "certificate-authority-data": _b64(secrets.pki["ca.crt"]),
                },
            }
        ],
        "contexts": [{"name": context, "context": {"cluster": cluster.name, "user": user}}],
        "current-context": context,
        "preferences": {},
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate-data": _b64(pki.cert_pem(cert)),
                    "client-key-data": _b64(pki.key_pem(key)),
                },
            }
        ],
    }
    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=False, width=1 << 16)
