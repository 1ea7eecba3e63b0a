"""init's API client: the API server as an admin kubeconfig's user (client certificate), with retries while it
settles, server-side apply, and the resource paths of what init and add-on manifests create."""

from __future__ import annotations

import base64
import os
import tempfile
import urllib.parse
from typing import Any, Callable, Dict, List, Tuple, TypeVar

from .. import api
from ..kubeconfig import read_kubeconfig
from ..workflow import Context, PhaseError, confine
from .objects import RBAC

T = TypeVar("T")

# (apiVersion, kind) -> (plural, namespaced) for what init and kubeadm's add-ons create; add-on manifests of
# other kinds are looked up through API discovery.
KINDS = {
    ("v1", "ConfigMap"): ("configmaps", True),
    ("v1", "Secret"): ("secrets", True),
    ("v1", "Service"): ("services", True),
    ("v1", "ServiceAccount"): ("serviceaccounts", True),
    ("v1", "Namespace"): ("namespaces", False),
    ("v1", "Node"): ("nodes", False),
    ("apps/v1", "Deployment"): ("deployments", True),
    ("apps/v1", "DaemonSet"): ("daemonsets", True),
    (RBAC, "Role"): ("roles", True),
    (RBAC, "RoleBinding"): ("rolebindings", True),
    (RBAC, "ClusterRole"): ("clusterroles", False),
    (RBAC, "ClusterRoleBinding"): ("clusterrolebindings", False),
}


class KeyFiles:
    """Paths the ssl module can load a client certificate and key from, with no key material on any disk and none
    left behind even by a killed process: anonymous in-memory files (memfd), open until close(), read through
    /proc/self/fd. Without memfd or /proc (not Linux): 0600 files in ``fallback_dir``, removed by close()."""

    def __init__(self, fallback_dir: str) -> None:
        self.fallback_dir = fallback_dir
        self.fds: List[int] = []
        self.files: List[str] = []

    def add(self, data: bytes) -> str:
        try:
            fd = os.memfd_create("kubeseed-client", os.MFD_CLOEXEC)
            self.fds.append(fd)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if os.path.exists(f"/proc/self/fd/{fd}"):
                return f"/proc/self/fd/{fd}"
        except (AttributeError, OSError):  # no os.memfd_create (not Linux), or the kernel refuses it
            pass
        fd, path = tempfile.mkstemp(dir=self.fallback_dir, prefix=".client-")
        self.files.append(path)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return path

    def pair(self, cert_pem: bytes, key_pem: bytes) -> Tuple[str, str]:
        """(certificate path, key path), as api.call takes them; nothing is left open if either fails."""
        try:
            return self.add(cert_pem), self.add(key_pem)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        for fd in self.fds:
            os.close(fd)
        for path in self.files:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        self.fds, self.files = [], []


class Client:
    """The API server at the kubeconfig's server, as that kubeconfig's user (client certificate)."""

    def __init__(self, ctx: Context, conf: str) -> None:
        with open(ctx.path(f"/etc/kubernetes/{conf}")) as f:
            self.server, self.ca, creds = read_kubeconfig(f.read(), conf)
        self.ctx = ctx
        # without memfd: beside the kubeconfig (inside the root, which holds the same key already)
        self.keys = KeyFiles(confine(ctx.path("/etc/kubernetes")))
        pems = [base64.b64decode(creds[k]) for k in ("client-certificate-data", "client-key-data")]
        self.cert = self.keys.pair(*pems)  # what api.call loads the client certificate from
        self.found: Dict[Tuple[str, str], Tuple[str, bool]] = {}

    def close(self) -> None:
        self.keys.close()

    def call(self, method: str, path: str, body: Any = None, content_type: str = "application/json") -> Tuple[int, Any]:
        """One request, retried while the server is unreachable or answers 5xx (it may still be settling)."""

        def attempt() -> Tuple[int, Any]:
            try:
                status, obj = api.call(
                    self.server + path, self.ca, "", method, body, 15, self.cert, content_type, self.ctx.deadline
                )
            except api.Untrusted as e:
                raise PhaseError(f"{self.server} does not present a certificate of this cluster's CA ({e})") from None
            if status >= 500 or status == 429:
                raise api.Unreachable(f"HTTP {status} for {method} {path}: {obj.get('message', '')}")
            return status, obj

        return api.wait(self.ctx, f"the API server at {self.server}", attempt)

    def path(self, obj: dict) -> str:
        version, kind = obj.get("apiVersion", ""), obj.get("kind", "")
        meta = obj.get("metadata") or {}
        plural, namespaced = KINDS.get((version, kind)) or self._discover(version, kind)
        base = "/api/v1" if version == "v1" else f"/apis/{version}"
        ns = f"/namespaces/{meta.get('namespace') or 'default'}" if namespaced else ""
        return f"{base}{ns}/{plural}/{meta['name']}"

    def _discover(self, version: str, kind: str) -> Tuple[str, bool]:
        if (version, kind) not in self.found:
            status, doc = self.call("GET", "/api/v1" if version == "v1" else f"/apis/{version}")
            for r in doc.get("resources", []) if status == 200 else []:
                if r.get("kind") == kind and "/" not in r.get("name", "/"):
                    self.found[(version, kind)] = (r["name"], bool(r.get("namespaced")))
                    break
            else:
                raise PhaseError(f"the API server does not serve {kind} in {version} (is its CRD applied first?)")
        return self.found[(version, kind)]

    def apply(self, obj: dict) -> dict:
        """Server-side apply: creates the object or brings it to this content; safe to repeat. Returns the object
        as the server stored it (its uid, e.g., for an ownerReference to it)."""
        query = "?" + urllib.parse.urlencode({"fieldManager": "kubeseed", "force": "true"})
        status, out = self.call("PATCH", self.path(obj) + query, obj, "application/apply-patch+yaml")
        if status not in (200, 201):
            name = f"{obj.get('kind')} {(obj.get('metadata') or {}).get('name')}"
            raise PhaseError(f"the API server refused {name} (HTTP {status}): {out.get('message', '')}")
        return out

    def apply_all(self, objects: List[dict]) -> None:
        for obj in objects:
            self.apply(obj)


def with_client(ctx: Context, conf: str, work: Callable[[Client], T]) -> T:
    """``work(client)`` as the user of /etc/kubernetes/``conf``; the client is closed on every exit."""
    client = Client(ctx, conf)
    try:
        return work(client)
    finally:
        client.close()
