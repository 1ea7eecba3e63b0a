"""kubeconfig files as kubeadm and the kubelet write them, and reading one back."""

from __future__ import annotations

import base64
from typing import Tuple

from .workflow import PhaseError


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def kubeconfig(server: str, ca: bytes, user: str, creds: dict, cluster: str = "kubernetes", context: str = "") -> str:
    """One cluster, one user, one context (``<user>@<cluster>`` unless given)."""
    import yaml

    context = context or f"{user}@{cluster}"
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": cluster, "cluster": {"server": server, "certificate-authority-data": b64(ca)}}],
            "contexts": [{"name": context, "context": {"cluster": cluster, "user": user}}],
            "current-context": context,
            "preferences": {},
            "users": [{"name": user, "user": creds}],
        },
        sort_keys=False,
    )


def read_kubeconfig(text: str, where: str) -> Tuple[str, bytes, dict]:
    """(server, CA PEM bytes, user credentials) of a kubeconfig's first cluster and user."""
    import yaml

    try:
        doc = yaml.safe_load(text)
        cluster = doc["clusters"][0]["cluster"]
        users = doc.get("users") or [{}]
        return cluster["server"], base64.b64decode(cluster["certificate-authority-data"]), users[0].get("user", {})
    except Exception as e:  # not YAML, or not shaped like a kubeconfig: whatever the parser or a lookup raised
        raise PhaseError(f"{where} is not a usable kubeconfig ({type(e).__name__}: {e})") from None
