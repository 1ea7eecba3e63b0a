"""What `kubeseed upgrade apply` writes to the cluster so that every machine can fetch the runtime and the upgrade
target: the ConfigMap kube-system/kubeseed-runtime (the full runtime zipapp as binaryData, its sha256 and the
Kubernetes version to upgrade to) and the Role and RoleBinding that let nodes read it, as kubeadm lets them read
kubelet-config."""

from __future__ import annotations

import base64
import hashlib
from typing import List

from ..init.objects import NODE_GROUP, binding, meta, role, rule
from ..published import KEY, NAME
from ..versions import Version

READER = "kubeseed:runtime-reader"  # the Role and RoleBinding's name


def objects(pyz: bytes, target: str, runtime_version: str) -> List[dict]:
    """The ConfigMap holding ``pyz`` (the full runtime, ``runtime_version``) and ``target``, and its readers."""
    Version(target)  # ValueError says what is wrong with it
    configmap = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": meta(NAME, "kube-system", **{"app.kubernetes.io/managed-by": "kubeseed"}),
        "data": {
            "kubernetesVersion": target,
            "runtimeVersion": runtime_version,
            "sha256": hashlib.sha256(pyz).hexdigest(),
        },
        "binaryData": {KEY: base64.b64encode(pyz).decode()},
    }
    readers = [("Group", "system:nodes"), ("Group", NODE_GROUP)]
    return [
        configmap,
        role("Role", READER, [rule([""], ["configmaps"], ["get"], [NAME])], "kube-system"),
        binding("RoleBinding", READER, "Role", READER, readers, "kube-system"),
    ]
