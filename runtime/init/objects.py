"""The Kubernetes objects init creates, built as data: metadata, RBAC roles, bindings and rules, ConfigMaps."""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

NODE_GROUP = "system:bootstrappers:kubeadm:default-node-token"
RBAC = "rbac.authorization.k8s.io/v1"


def meta(name: str, namespace: str = "", **labels: str) -> dict:
    meta: Dict[str, Any] = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    if labels:
        meta["labels"] = labels
    return meta


def role(kind: str, name: str, rules: List[dict], namespace: str = "") -> dict:
    return {"apiVersion": RBAC, "kind": kind, "metadata": meta(name, namespace), "rules": rules}


def binding(
    kind: str, name: str, role_kind: str, role_name: str, subjects: List[Tuple[str, str]], ns: str = ""
) -> dict:
    subs = []
    for sub_kind, sub_name in subjects:
        if sub_kind == "ServiceAccount":
            subs.append({"kind": sub_kind, "name": sub_name, "namespace": "kube-system"})
        else:
            subs.append({"apiGroup": "rbac.authorization.k8s.io", "kind": sub_kind, "name": sub_name})
    ref = {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role_name}
    return {"apiVersion": RBAC, "kind": kind, "metadata": meta(name, ns), "roleRef": ref, "subjects": subs}


def rule(groups: List[str], resources: List[str], verbs: List[str], names: Optional[List[str]] = None) -> dict:
    r: Dict[str, Any] = {"apiGroups": groups, "resources": resources, "verbs": verbs}
    if names:
        r["resourceNames"] = names
    return r


def configmap(name: str, namespace: str, data: Dict[str, str]) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta(name, namespace), "data": data}
