"""In-test fake kube-apiserver -- tests only; never part of the product.

No kube-apiserver binary can be had on this machine, so the runtime's API side is tested against this HTTPS
server. It plays a kube-apiserver with kubeadm's RBAC plus the kube-controller-manager controllers that node
join depends on (bootstrapsigner, csrapproving, csrsigning), as they look to a client:

* joining nodes: anonymous ``kube-public/cluster-info`` with ``jws-kubeconfig-<id>`` keys, bootstrap-token
  bearer authentication, CertificateSigningRequest create / auto-approve / sign / get;
* a master's ``init``: client-certificate authentication, a generic object store behind the REST paths init
  uses (ConfigMaps, Secrets, RBAC, add-on workloads, ...), merge patch and server-side apply, discovery and
  health endpoints, and (opt-in) RBAC authorization evaluated over the RBAC objects in the store.

Byte-level reference: ../shared/protocol/README.md sections 1-3, 5-7, 10 and the vectors next to it. What is
simplified is said where it is done (e.g. no watch, no managedFields, apply = merge patch).
"""

from __future__ import annotations

import base64
import binascii
import copy
import dataclasses
import datetime as dt
import hashlib
import hmac
import ipaddress
import json
import os
import re
import secrets
import ssl
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, NamedTuple, Union
from urllib.parse import parse_qs, urlsplit

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CLUSTER_INFO_PATH = "/api/v1/namespaces/kube-public/configmaps/cluster-info"
CSR_PATH = "/apis/certificates.k8s.io/v1/certificatesigningrequests"
KUBELET_SIGNER = "kubernetes.io/kube-apiserver-client-kubelet"
NODE_TOKEN_GROUP = "system:bootstrappers:kubeadm:default-node-token"
BOOTSTRAP_TOKEN_TYPE = "bootstrap.kubernetes.io/token"
TOKEN_RE = re.compile(r"\A([a-z0-9]{6})\.([a-z0-9]{16})\Z")
TOKEN_SECRET_NAME_RE = re.compile(r"bootstrap-token-([a-z0-9]{6})")  # used with fullmatch (Go's ^...$ = \A...\z)
EXTRA_GROUP_RE = re.compile(r"\Asystem:bootstrappers:[a-z0-9:-]{0,255}[a-z0-9]\Z")
RBAC_GROUP = "rbac.authorization.k8s.io"
CSR_GROUP = "certificates.k8s.io"
AUTHZ_GROUP = "authorization.k8s.io"
ANONYMOUS_USER = "system:anonymous"
DEFAULT_NAMESPACES = ("default", "kube-node-lease", "kube-public", "kube-system")
# Kubernetes usage strings -> x509 KeyUsage flag or ExtendedKeyUsage OID, as the signer maps them (policies.go)
USAGES: dict[str, str] = dict(
    line.split(" = ")
    for line in """signing = digital_signature
digital signature = digital_signature
content commitment = content_commitment
key encipherment = key_encipherment
key agreement = key_agreement
data encipherment = data_encipherment
cert sign = key_cert_sign
crl sign = crl_sign
encipher only = encipher_only
decipher only = decipher_only
any = 2.5.29.37.0
server auth = 1.3.6.1.5.5.7.3.1
client auth = 1.3.6.1.5.5.7.3.2
code signing = 1.3.6.1.5.5.7.3.3
email protection = 1.3.6.1.5.5.7.3.4
s/mime = 1.3.6.1.5.5.7.3.4
ipsec end system = 1.3.6.1.5.5.7.3.5
ipsec tunnel = 1.3.6.1.5.5.7.3.6
ipsec user = 1.3.6.1.5.5.7.3.7
timestamping = 1.3.6.1.5.5.7.3.8
ocsp signing = 1.3.6.1.5.5.7.3.9
microsoft sgc = 1.3.6.1.4.1.311.10.3.3
netscape sgc = 2.16.840.1.113730.4.1""".splitlines()
)
KEY_USAGE_FLAGS = sorted({v for v in USAGES.values() if not v[0].isdigit()})
VERBS = {"GET": "get", "POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}
KUBELET_USAGE_SETS = ({"digital signature", "client auth"}, {"digital signature", "key encipherment", "client auth"})
MERGE_PATCH = ("application/merge-patch+json", "application/strategic-merge-patch+json")
APPLY_PATCH = "application/apply-patch+yaml"


# == wire-format helpers (§2, §3, §6) ========================================================================


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def rfc3339(t: dt.datetime) -> str:
    return t.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def cluster_info_kubeconfig(ca_pem: bytes, server: str, kubeadm_minor: int) -> str:
    """The exact ``data.kubeconfig`` kubeadm writes (client-go clientcmd.Write; §2). ``server`` is the URL."""
    ca_data = base64.b64encode(ca_pem).decode("ascii")
    preferences = "preferences: {}\n" if kubeadm_minor <= 33 else ""
    return (
        "apiVersion: v1\nclusters:\n- cluster:\n"
        f"    certificate-authority-data: {ca_data}\n    server: {server}\n"
        '  name: ""\ncontexts: null\ncurrent-context: ""\nkind: Config\n'
        f"{preferences}users: null\n"
    )


def detached_jws(token_id: str, secret: str, payload: str) -> str:
    """bootstrapsigner's ``jws-kubeconfig-<id>`` value: HS256 keyed by the secret alone, payload detached (§3)."""
    header = b64url(('{"alg":"HS256","kid":"%s"}' % token_id).encode())
    signing_input = f"{header}.{b64url(payload.encode())}".encode("ascii")
    return f"{header}..{b64url(hmac.new(secret.encode(), signing_input, hashlib.sha256).digest())}"


def validate_kubelet_client_csr(csr: x509.CertificateSigningRequest, usages: list[str]) -> str | None:
    """ValidateKubeletClientCSR (§6): None if valid, else the upstream message. Checks run in upstream order."""
    if [a.value for a in csr.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)] != ["system:nodes"]:
        return "subject organization is not system:nodes"
    try:
        san: x509.SubjectAlternativeName | None = csr.extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        ).value
    except x509.ExtensionNotFound:
        san = None
    kinds = ((x509.DNSName, "DNS"), (x509.RFC822Name, "Email"), (x509.IPAddress, "IP"))
    for kind, label in (*kinds, (x509.UniformResourceIdentifier, "URI")):
        if san is not None and san.get_values_for_type(kind):  # type: ignore[call-overload]
            return f"{label} subjectAltNames are not allowed"
    cns = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not (cns and str(cns[-1].value).startswith("system:node:")):  # Go keeps the last CN
        return "subject common name does not begin with system:node:"
    if set(usages) not in KUBELET_USAGE_SETS:
        return "usages did not match [client auth digital signature key encipherment]"
    return None


def csr_object_name(csr_pem_der_spki: bytes, cn: str, orgs: list[str], usages: list[str]) -> str:
    """The kubelet's deterministic CSR name (bootstrap.go digestedName) from the SPKI DER, CN, O and usages."""
    h = hashlib.new("sha512_256")
    for item in [csr_pem_der_spki, cn.encode(), *(o.encode() for o in orgs), *(u.encode() for u in usages)]:
        h.update(b64url(item).encode("ascii") + b"|")
    return "node-csr-" + b64url(h.digest())


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: objects merge recursively, ``null`` removes a key, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# == Status bodies ===========================================================================================


def status_body(code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
    }
    if details:
        body["details"] = details
    body["code"] = code
    return body


def _details(name: str = "", group: str = "", kind: str = "", **more: Any) -> dict[str, Any]:
    """metav1.StatusDetails: every field is omitempty."""
    return {k: v for k, v in dict(name=name, group=group, kind=kind, **more).items() if v}


def _csr_details(name: str, kind: str = "certificatesigningrequests") -> dict[str, Any]:
    return _details(name, CSR_GROUP, kind)


class APIError(Exception):
    """An error answer: HTTP status plus the Kubernetes Status body."""

    def __init__(self, code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code, self.body = code, status_body(code, reason, message, details)


def bad_request(message: str) -> APIError:
    return APIError(400, "BadRequest", message)


def method_not_allowed() -> APIError:
    return APIError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")


def path_not_found() -> APIError:
    return APIError(404, "NotFound", "the server could not find the requested resource")


# == resource catalogue ======================================================================================


class ResourceType(NamedTuple):
    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool
    short: str = ""  # the short name discovery advertises (kubectl get cm)
    name_rule: str = "subdomain"  # how metadata.name is validated, see NAME_RULES

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        """schema.GroupResource.String(): ``configmaps``, ``deployments.apps``."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    def not_found(self, name: str) -> APIError:
        return APIError(
            404, "NotFound", f'{self.qualified} "{name}" not found', _details(name, self.group, self.plural)
        )


RESOURCES = (
    ResourceType("", "v1", "ConfigMap", "configmaps", True, "cm"),
    ResourceType("", "v1", "Secret", "secrets", True),
    ResourceType("", "v1", "ServiceAccount", "serviceaccounts", True, "sa"),
    ResourceType("", "v1", "Service", "services", True, "svc", "dns1035"),
    ResourceType("", "v1", "Pod", "pods", True, "po"),
    ResourceType("", "v1", "Endpoints", "endpoints", True, "ep"),
    ResourceType("", "v1", "Namespace", "namespaces", False, "ns", "label"),
    ResourceType("", "v1", "Node", "nodes", False, "no"),
    ResourceType("apps", "v1", "Deployment", "deployments", True, "deploy"),
    ResourceType("apps", "v1", "DaemonSet", "daemonsets", True, "ds"),
    ResourceType(RBAC_GROUP, "v1", "Role", "roles", True, name_rule="path"),
    ResourceType(RBAC_GROUP, "v1", "RoleBinding", "rolebindings", True, name_rule="path"),
    ResourceType(RBAC_GROUP, "v1", "ClusterRole", "clusterroles", False, name_rule="path"),
    ResourceType(RBAC_GROUP, "v1", "ClusterRoleBinding", "clusterrolebindings", False, name_rule="path"),
    ResourceType("policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets", True, "pdb"),
    ResourceType(CSR_GROUP, "v1", "CertificateSigningRequest", "certificatesigningrequests", False, "csr"),
    ResourceType(AUTHZ_GROUP, "v1", "SelfSubjectAccessReview", "selfsubjectaccessreviews", False),
    ResourceType(AUTHZ_GROUP, "v1", "SubjectAccessReview", "subjectaccessreviews", False),
)
BY_PATH = {(r.group, r.version, r.plural): r for r in RESOURCES}
BY_KIND = {(r.api_version, r.kind): r for r in RESOURCES}
CSR_TYPE = BY_PATH[(CSR_GROUP, "v1", "certificatesigningrequests")]
REVIEW_TYPES = (
    BY_PATH[(AUTHZ_GROUP, "v1", "selfsubjectaccessreviews")],
    BY_PATH[(AUTHZ_GROUP, "v1", "subjectaccessreviews")],
)
CONFIGMAP, SECRET, NAMESPACE = (BY_KIND[("v1", k)] for k in ("ConfigMap", "Secret", "Namespace"))
STORE_VERBS = ["create", "delete", "get", "list", "patch", "update"]  # what discovery advertises (no watch here)
NAME_RULES: dict[str, tuple[str, int, str]] = {  # rule -> (regex, max length, validation message)
    "subdomain": (
        r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*",
        253,
        "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must "
        "start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is "
        "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
    ),
    "label": (
        r"[a-z0-9]([-a-z0-9]*[a-z0-9])?",
        63,
        "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and "
        "end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is "
        "'[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
    ),
    "dns1035": (
        r"[a-z]([-a-z0-9]*[a-z0-9])?",
        63,
        "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic "
        "character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for "
        "validation is '[a-z]([-a-z0-9]*[a-z0-9])?')",
    ),
}


def name_error(rt: ResourceType, name: str) -> str | None:
    """The field error for an invalid metadata.name (apimachinery's name validators), None if valid."""
    if not name:
        return "metadata.name: Required value: name or generateName is required"
    if rt.name_rule == "path":  # ValidatePathSegmentName (RBAC objects: "system:node-proxier" is fine)
        problem = next((f"may not be '{n}'" for n in (".", "..") if name == n), None)
        problem = problem or next((f"may not contain '{c}'" for c in "/%" if c in name), None)
        return f'metadata.name: Invalid value: "{name}": {problem}' if problem else None
    pattern, limit, message = NAME_RULES[rt.name_rule]
    if len(name) > limit:
        return f'metadata.name: Invalid value: "{name}": must be no more than {limit} characters'
    return None if re.fullmatch(pattern, name) else f'metadata.name: Invalid value: "{name}": {message}'


def discovery_document(path: str, endpoint: str) -> dict[str, Any] | None:
    """``/api``, ``/api/v1``, ``/apis``, ``/apis/<group>`` and ``/apis/<group>/<version>`` (legacy, unaggregated
    discovery; clients asking for aggregated discovery fall back to it)."""

    def group_doc(group: str) -> dict[str, Any]:
        gv = {"groupVersion": f"{group}/v1", "version": "v1"}
        return {"name": group, "versions": [gv], "preferredVersion": gv}

    def resource_list(group: str, version: str) -> dict[str, Any]:
        resources = []
        for r in RESOURCES:
            if (r.group, r.version) == (group, version):
                entry = {"name": r.plural, "singularName": r.kind.lower(), "namespaced": r.namespaced, "kind": r.kind}
                resources.append({**entry, "verbs": STORE_VERBS, **({"shortNames": [r.short]} if r.short else {})})
        if group == AUTHZ_GROUP:
            for entry in resources:
                entry["verbs"] = ["create"]
        if group == CSR_GROUP:
            resources[0]["verbs"] = ["create", "delete", "get", "list"]
            approval = {"name": "certificatesigningrequests/approval", "singularName": "", "namespaced": False}
            resources.append({**approval, "kind": "CertificateSigningRequest", "verbs": ["update"]})
        doc: dict[str, Any] = {"kind": "APIResourceList", "groupVersion": f"{group}/{version}".lstrip("/")}
        if group:  # the core list carries no apiVersion, the group lists do
            doc["apiVersion"] = "v1"
        doc["resources"] = resources
        return doc

    groups = sorted({r.group for r in RESOURCES if r.group})
    parts = path.strip("/").split("/")
    if parts == ["api"]:
        cidrs = [{"clientCIDR": "0.0.0.0/0", "serverAddress": endpoint}]
        return {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": cidrs}
    if parts == ["api", "v1"]:
        return resource_list("", "v1")
    if parts == ["apis"]:
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [group_doc(g) for g in groups]}
    if len(parts) == 2 and parts[0] == "apis" and parts[1] in groups:
        return {"kind": "APIGroup", "apiVersion": "v1", **group_doc(parts[1])}
    if len(parts) == 3 and parts[0] == "apis" and parts[1] in groups and parts[2] == "v1":
        return resource_list(parts[1], "v1")
    return None


# == authentication (§1) =====================================================================================


class Identity(NamedTuple):
    """An authenticated user: name and groups (system:authenticated / system:unauthenticated included)."""

    user: str
    groups: tuple[str, ...]


ANONYMOUS = Identity(ANONYMOUS_USER, ("system:unauthenticated",))


def secret_data(secret: dict[str, Any], key: str) -> str | None:
    """A Secret's ``data[key]`` decoded to text (bootstrapsecretutil.GetData), None when absent or undecodable."""
    value = (secret.get("data") or {}).get(key)
    try:
        return base64.b64decode(value, validate=True).decode() if isinstance(value, str) else None
    except (binascii.Error, UnicodeDecodeError):
        return None


def token_expired(expiration: str | None, now: dt.datetime) -> bool:
    """cluster-bootstrap HasExpired: missing = never; unparseable = expired; ``expiration <= now`` = expired."""
    if expiration is None:
        return False
    if not re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)", expiration):
        return True  # not RFC 3339 (Go's time.RFC3339 layout)
    try:
        return dt.datetime.fromisoformat(expiration.replace("Z", "+00:00")) <= now
    except ValueError:
        return True


def authenticate_token_secret(
    secret: dict[str, Any] | None, token: str, now: dt.datetime | None = None
) -> Identity | None:
    """The bootstrap token authenticator (bootstrap.go) for ``<id>.<secret>`` against the Secret
    ``kube-system/bootstrap-token-<id>``; groups get system:authenticated as the authentication layer adds it."""
    m = TOKEN_RE.fullmatch(token)
    if m is None or secret is None or (secret.get("metadata") or {}).get("deletionTimestamp"):
        return None
    token_id, token_secret = m.groups()
    if secret.get("type") != BOOTSTRAP_TOKEN_TYPE or not isinstance(secret.get("data"), dict):
        return None
    stored = secret_data(secret, "token-secret") or ""
    if not hmac.compare_digest(stored.encode(), token_secret.encode()):
        return None
    if secret_data(secret, "token-id") != token_id:
        return None
    if token_expired(secret_data(secret, "expiration"), now or now_utc()):
        return None
    if secret_data(secret, "usage-bootstrap-authentication") != "true":
        return None
    groups = {"system:bootstrappers"}
    if "auth-extra-groups" in secret["data"]:
        for group in (secret_data(secret, "auth-extra-groups") or "").split(","):
            if not EXTRA_GROUP_RE.fullmatch(group.strip()):
                return None
            groups.add(group.strip())
    return Identity(f"system:bootstrap:{token_id}", tuple(sorted({*groups, "system:authenticated"})))


def signing_token(secret: dict[str, Any], now: dt.datetime | None = None) -> tuple[str, str] | None:
    """bootstrapsigner's validateSecretForSigning (§3): (token id, token secret) or None."""
    name = TOKEN_SECRET_NAME_RE.fullmatch(str((secret.get("metadata") or {}).get("name", "")))
    if name is None or secret.get("type") != BOOTSTRAP_TOKEN_TYPE:
        return None
    token_id, token_secret = secret_data(secret, "token-id"), secret_data(secret, "token-secret")
    if not token_id or token_id != name.group(1) or not token_secret:
        return None
    if token_expired(secret_data(secret, "expiration"), now or now_utc()):
        return None
    return (token_id, token_secret) if secret_data(secret, "usage-bootstrap-signing") == "true" else None


def client_cert_identity(der: bytes) -> Identity:
    """The x509 authenticator's user: CN, groups O values (in order) + system:authenticated."""
    cert = x509.load_der_x509_certificate(der)
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    orgs = [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
    groups = orgs + ["system:authenticated"] * ("system:authenticated" not in orgs)
    return Identity(str(cns[0].value) if cns else "", tuple(groups))


# == authorization ===========================================================================================


@dataclasses.dataclass(frozen=True)
class Attributes:
    """authorizer.Attributes of a request."""

    verb: str
    group: str = ""
    resource: str = ""
    subresource: str = ""
    name: str = ""
    namespace: str = ""
    path: str = ""  # set for a non-resource request (then only verb and path count)

    @property
    def full_resource(self) -> str:
        return f"{self.resource}/{self.subresource}" if self.subresource else self.resource


def forbidden(user: str, attrs: Attributes, reason: str = "") -> APIError:
    """responsewriters.Forbidden + apierrors.NewForbidden, word for word."""
    if attrs.path:
        message = f'forbidden: User "{user}" cannot {attrs.verb} path "{attrs.path}"' + (
            f": {reason}" if reason else ""
        )
        return APIError(403, "Forbidden", message)
    scope = f'in the namespace "{attrs.namespace}"' if attrs.namespace else "at the cluster scope"
    why = f'User "{user}" cannot {attrs.verb} resource "{attrs.full_resource}" in API group "{attrs.group}" {scope}' + (
        f": {reason}" if reason else ""
    )
    res = f"{attrs.resource}.{attrs.group}" if attrs.group else attrs.resource
    what = f'{res} "{attrs.name}"' if attrs.name else res
    return APIError(403, "Forbidden", f"{what} is forbidden: {why}", _details(attrs.name, attrs.group, attrs.resource))


def _rule(groups: list[str], resources: list[str], verbs: list[str]) -> dict[str, Any]:
    return {"apiGroups": groups, "resources": resources, "verbs": verbs}


_KUBELET_API = ["proxy", "metrics", "stats", "log", "spec", "checkpoint", "configz", "healthz", "pods"]
BUILTIN_CLUSTER_ROLES: dict[str, list[dict[str, Any]]] = {  # the bootstrap policy kubeadm's init relies on
    "cluster-admin": [_rule(["*"], ["*"], ["*"]), {"nonResourceURLs": ["*"], "verbs": ["*"]}],
    "system:node-bootstrapper": [
        _rule([CSR_GROUP], ["certificatesigningrequests"], ["create", "get", "list", "watch"])
    ],
    "system:certificates.k8s.io:certificatesigningrequests:nodeclient": [
        _rule([CSR_GROUP], ["certificatesigningrequests/nodeclient"], ["create"])
    ],
    "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient": [
        _rule([CSR_GROUP], ["certificatesigningrequests/selfnodeclient"], ["create"])
    ],
    "system:node-proxier": [
        _rule([""], ["endpoints", "services"], ["list", "watch"]),
        _rule([""], ["nodes"], ["get", "list", "watch"]),
        _rule(["", "events.k8s.io"], ["events"], ["create", "patch", "update"]),
        _rule(["discovery.k8s.io"], ["endpointslices"], ["list", "watch"]),
    ],
    "system:basic-user": [
        _rule([AUTHZ_GROUP], ["selfsubjectaccessreviews", "selfsubjectrulesreviews"], ["create"]),
        _rule(["authentication.k8s.io"], ["selfsubjectreviews"], ["create"]),
    ],
    "system:kubelet-api-admin": [
        _rule([""], ["nodes"], ["get", "list", "watch"]),
        _rule([""], ["nodes"], ["proxy"]),
        _rule([""], [f"nodes/{s}" for s in _KUBELET_API], ["*"]),
    ],
}
BUILTIN_CLUSTER_ROLE_BINDINGS: dict[str, tuple[str, dict[str, str]]] = {
    "cluster-admin": ("cluster-admin", {"kind": "Group", "name": "system:masters"}),
    "system:node-proxier": ("system:node-proxier", {"kind": "User", "name": "system:kube-proxy"}),
    "system:basic-user": ("system:basic-user", {"kind": "Group", "name": "system:authenticated"}),
}


def rule_allows(rule: dict[str, Any], attrs: Attributes) -> bool:
    """rbac/v1 RuleAllows (validation.go)."""
    verbs, groups = rule.get("verbs") or [], rule.get("apiGroups") or []
    if not ("*" in verbs or attrs.verb in verbs):
        return False
    if attrs.path:  # NonResourceURLMatches: exact, "*", or a "prefix*"
        urls = rule.get("nonResourceURLs") or []
        return any(u == attrs.path or (u.endswith("*") and attrs.path.startswith(u[:-1])) for u in urls)
    if not ("*" in groups or attrs.group in groups):
        return False
    resources = rule.get("resources") or []
    wildcard_sub = attrs.subresource and f"*/{attrs.subresource}" in resources
    if not ("*" in resources or attrs.full_resource in resources or wildcard_sub):
        return False
    names = rule.get("resourceNames") or []
    return not names or attrs.name in names


def subject_matches(subject: dict[str, Any], who: Identity, binding_namespace: str) -> bool:
    kind, name = subject.get("kind"), subject.get("name")
    if kind == "User":
        return bool(name == who.user)
    if kind == "Group":
        return name in who.groups
    if kind == "ServiceAccount":
        ns = subject.get("namespace") or binding_namespace
        return bool(ns) and who.user == f"system:serviceaccount:{ns}:{name}"
    return False


def node_authorizer_allows(who: Identity, attrs: Attributes) -> bool:
    """A compact Node authorizer + NodeRestriction: what a kubelet's own credential (system:node:<name>, group
    system:nodes) may do with the resources served here."""
    if "system:nodes" not in who.groups or not who.user.startswith("system:node:"):
        return False
    own = who.user[len("system:node:") :]
    if (attrs.group, attrs.resource) == ("", "nodes"):
        if attrs.subresource == "status":
            return attrs.verb in ("get", "update", "patch") and attrs.name == own
        if not attrs.subresource and attrs.verb in ("get", "list", "watch", "create"):
            return True
        return not attrs.subresource and attrs.verb in ("update", "patch", "delete") and attrs.name == own
    if (attrs.group, attrs.resource, attrs.subresource) == (CSR_GROUP, "certificatesigningrequests", ""):
        return attrs.verb in ("create", "get", "list", "watch")
    if attrs.group == "" and attrs.resource in ("pods", "services", "endpoints") and not attrs.subresource:
        return attrs.verb in ("get", "list", "watch")
    return False


class RBACAuthorizer:
    """The RBAC authorizer over the RBAC objects in an ObjectStore (callers hold the store's lock)."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    def authorize(self, who: Identity, attrs: Attributes) -> tuple[bool, str]:
        """(allowed, reason); the reason lists roles that bindings of this user name but that do not exist."""
        errors: list[str] = []
        bindings = [("", b) for b in self.store.items(BY_KIND[(f"{RBAC_GROUP}/v1", "ClusterRoleBinding")], None)]
        if attrs.namespace:
            rolebindings = self.store.items(BY_KIND[(f"{RBAC_GROUP}/v1", "RoleBinding")], attrs.namespace)
            bindings += [(attrs.namespace, b) for b in rolebindings]
        for ns, binding in bindings:
            if not any(subject_matches(s, who, ns) for s in binding.get("subjects") or []):
                continue
            ref = binding.get("roleRef") or {}
            if ref.get("kind") == "ClusterRole":
                role = self.store.get(BY_KIND[(f"{RBAC_GROUP}/v1", "ClusterRole")], "", str(ref.get("name")))
                missing = f'clusterrole.rbac.authorization.k8s.io "{ref.get("name")}" not found'
            elif ref.get("kind") == "Role" and ns:
                role = self.store.get(BY_KIND[(f"{RBAC_GROUP}/v1", "Role")], ns, str(ref.get("name")))
                missing = f'role.rbac.authorization.k8s.io "{ref.get("name")}" not found'
            else:
                continue
            if role is None:
                errors.append(missing)
            elif any(rule_allows(r, attrs) for r in role.get("rules") or []):
                return True, ""
        if not errors:
            return False, ""
        return False, "RBAC: " + (errors[0] if len(errors) == 1 else "[" + ", ".join(errors) + "]")


# == object store and REST semantics =========================================================================


class ObjectStore:
    """Stored objects by (apiVersion, kind, namespace, name). Not locked itself: the server's lock guards it."""

    def __init__(self) -> None:
        self._objects: dict[tuple[str, str, str, str], dict[str, Any]] = {}

    @staticmethod
    def _key(rt: ResourceType, namespace: str, name: str) -> tuple[str, str, str, str]:
        return rt.api_version, rt.kind, namespace if rt.namespaced else "", name

    def get(self, rt: ResourceType, namespace: str, name: str) -> dict[str, Any] | None:
        return self._objects.get(self._key(rt, namespace, name))

    def put(self, rt: ResourceType, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        self._objects[self._key(rt, meta.get("namespace", ""), meta["name"])] = obj

    def delete(self, rt: ResourceType, namespace: str, name: str) -> dict[str, Any] | None:
        gone = self._objects.pop(self._key(rt, namespace, name), None)
        if gone is not None and rt == NAMESPACE:  # the namespace controller's work, done at once
            for key in [k for k in self._objects if k[2] == name]:
                del self._objects[key]
        return gone

    def items(self, rt: ResourceType, namespace: str | None) -> list[dict[str, Any]]:
        """Objects of one type, sorted by namespace and name; ``namespace`` None = all namespaces."""
        return [
            obj
            for (api_version, kind, ns, _), obj in sorted(self._objects.items())
            if (api_version, kind) == (rt.api_version, rt.kind) and namespace in (None, ns)
        ]

    def namespace_exists(self, namespace: str) -> bool:
        return self.get(NAMESPACE, "", namespace) is not None


def _decode_error(kind: str, into: str, problem: str, version: str = "v1") -> APIError:
    """transformDecodeError's wording."""
    return bad_request(f'{kind} in version "{version}" cannot be handled as a {into}: {problem}')


def _check_string_map(rt: ResourceType, obj: dict[str, Any], field: str) -> None:
    """``data`` / ``stringData`` / ``binaryData`` decode as Go maps of strings (or of []byte, sent as base64)."""
    value = obj.get(field)
    go_type = "[]uint8" if (rt.kind, field) in (("ConfigMap", "binaryData"), ("Secret", "data")) else "string"
    if value is None:
        return
    if not isinstance(value, dict):
        problem = f"json: cannot unmarshal into Go struct field {rt.kind}.{field} of type map[string]{go_type}"
        raise _decode_error(rt.kind, rt.kind, problem)
    for v in value.values():
        if not isinstance(v, str):
            kind = {bool: "bool", int: "number", float: "number", list: "array", dict: "object"}.get(type(v), "value")
            problem = f"json: cannot unmarshal {kind} into Go struct field {rt.kind}.{field} of type {go_type}"
            raise _decode_error(rt.kind, rt.kind, problem)
        if go_type == "[]uint8" and not re.fullmatch(r"([A-Za-z0-9+/]{4})*([A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?", v):
            bad = next((i for i, c in enumerate(v) if c not in _B64_ALPHABET), len(v) // 4 * 4)
            raise _decode_error(rt.kind, rt.kind, f"illegal base64 data at input byte {bad}")


_B64_ALPHABET = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")


def normalize(rt: ResourceType, obj: dict[str, Any]) -> None:
    """What decoding and defaulting do to a written object: type checks of data maps, Secret ``stringData``
    folded into ``data`` (base64), Secret type defaulted, Namespace label and phase."""
    if rt.kind == "ConfigMap":
        _check_string_map(rt, obj, "data")
        _check_string_map(rt, obj, "binaryData")
    elif rt.kind == "Secret":
        _check_string_map(rt, obj, "data")
        _check_string_map(rt, obj, "stringData")
        string_data = obj.pop("stringData", None) or {}
        if string_data:
            data = obj.setdefault("data", {})
            data.update({k: base64.b64encode(v.encode()).decode() for k, v in string_data.items()})
        obj.setdefault("type", "Opaque")
    elif rt.kind == "Namespace":
        obj["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = obj["metadata"]["name"]
        obj.setdefault("spec", {"finalizers": ["kubernetes"]})
        obj["status"] = {"phase": "Active"}


def parse_body(body: bytes, yaml_ok: bool = False) -> dict[str, Any]:
    try:
        obj = json.loads(body)
    except ValueError:
        if not yaml_ok:
            raise bad_request("the object provided is unrecognized or malformed") from None
        try:
            obj = yaml.safe_load(body)
        except yaml.YAMLError as e:
            raise bad_request(f"error decoding YAML: {e}") from None
    if not isinstance(obj, dict):
        raise bad_request("the object provided is unrecognized or malformed")
    return obj


def _selector_matches(selector: str, labels: dict[str, str]) -> bool:
    """Equality-based label selectors: ``a=b``, ``a==b``, ``a!=b``, ``a``, ``!a``, comma-separated."""
    for term in filter(None, (t.strip() for t in selector.split(","))):
        m = re.fullmatch(r"([^!=]+?)\s*(==|=|!=)\s*(.*)", term)
        if m:
            key, op, value = m.groups()
            if (labels.get(key) == value) != (op != "!="):
                return False
        elif term.startswith("!"):
            if term[1:].strip() in labels:
                return False
        elif term not in labels:
            return False
    return True


def _fields_match(selector: str, obj: dict[str, Any]) -> bool:
    meta = obj.get("metadata") or {}
    fields = {"metadata.name": meta.get("name", ""), "metadata.namespace": meta.get("namespace", "")}
    if "type" in obj:
        fields["type"] = obj["type"]
    for term in filter(None, (t.strip() for t in selector.split(","))):
        m = re.fullmatch(r"([^!=]+?)\s*(==|=|!=)\s*(.*)", term)
        if m is None or m.group(1) not in fields:
            raise bad_request(f'"{term}": field label not supported')
        if (fields[m.group(1)] == m.group(3)) != (m.group(2) != "!="):
            return False
    return True


class RESTStorage:
    """Kubernetes REST semantics over an ObjectStore: create / get / list / update / patch / apply / delete, with
    the real server's status codes and messages. Callers hold the server's lock."""

    def __init__(self, store: ObjectStore, next_rv: Callable[[], str], current_rv: Callable[[], str]) -> None:
        self.store, self.next_rv, self.current_rv = store, next_rv, current_rv

    # -- helpers ---------------------------------------------------------------------------------------------
    @staticmethod
    def check_type(rt: ResourceType, obj: dict[str, Any], required: bool = False) -> None:
        """The decoder's view of kind/apiVersion: missing ones default to the path's (typed clients omit them),
        other ones are refused."""
        api_version, kind = obj.get("apiVersion"), obj.get("kind")
        if required and not (api_version and kind):
            raise bad_request("apiVersion and kind must be set in an applied configuration")
        if api_version and api_version != rt.api_version:
            raise bad_request(
                f"the API version in the data ({api_version}) does not match the expected API version "
                f"({rt.api_version})"
            )
        if kind and kind != rt.kind:
            problem = f"the kind in the data ({kind}) does not match the expected kind ({rt.kind})"
            raise _decode_error(str(kind), rt.kind, problem, rt.version)

    @staticmethod
    def check_namespace(rt: ResourceType, obj: dict[str, Any], namespace: str) -> None:
        meta = obj.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise bad_request("the object provided is unrecognized or malformed")
        if rt.namespaced:
            if meta.get("namespace") not in (None, "", namespace):
                raise bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)

    @staticmethod
    def check_name(obj: dict[str, Any], name: str) -> None:
        if obj["metadata"].get("name") != name:
            raise bad_request(
                f"the name of the object ({obj['metadata'].get('name', '')}) does not match the name on the URL "
                f"({name})"
            )

    @staticmethod
    def invalid(rt: ResourceType, name: str, error: str) -> APIError:
        field, _, detail = error.partition(": ")
        cause = {"reason": "FieldValueRequired" if "Required" in detail else "FieldValueInvalid"}
        cause.update(message=detail, field=field)
        details = _details(name, rt.group, rt.kind, causes=[cause])
        return APIError(422, "Invalid", f'{rt.kind} "{name}" is invalid: {error}', details)

    def existing(self, rt: ResourceType, namespace: str, name: str) -> dict[str, Any]:
        obj = self.store.get(rt, namespace, name)
        if obj is None:
            raise rt.not_found(name)
        return obj

    def commit(self, rt: ResourceType, obj: dict[str, Any], old: dict[str, Any] | None, dry_run: bool) -> None:
        """Stamp server-owned metadata and store (unless dry run)."""
        normalize(rt, obj)
        meta = obj["metadata"]
        obj["apiVersion"], obj["kind"] = rt.api_version, rt.kind
        if old is None:
            meta.update(uid=str(uuid.uuid4()), creationTimestamp=rfc3339(now_utc()))
        else:
            for key in ("uid", "creationTimestamp"):
                meta[key] = old["metadata"][key]
        meta["resourceVersion"] = self.current_rv() if dry_run else self.next_rv()
        if not dry_run:
            self.store.put(rt, copy.deepcopy(obj))

    # -- verbs -----------------------------------------------------------------------------------------------
    def create(self, rt: ResourceType, namespace: str, obj: dict[str, Any], dry_run: bool = False) -> dict[str, Any]:
        self.check_type(rt, obj)
        self.check_namespace(rt, obj, namespace)
        meta = obj["metadata"]
        for key in ("uid", "resourceVersion", "creationTimestamp", "deletionTimestamp"):
            meta.pop(key, None)
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + "".join(
                secrets.choice("bcdfghjklmnpqrstvwxz2456789") for _ in range(5)
            )
        name = str(meta.get("name") or "")
        error = name_error(rt, name)
        if error:
            raise self.invalid(rt, name, error)
        if rt.namespaced and not self.store.namespace_exists(namespace):
            raise APIError(
                404, "NotFound", f'namespaces "{namespace}" not found', _details(namespace, "", "namespaces")
            )
        if self.store.get(rt, namespace, name) is not None:
            message = f'{rt.qualified} "{name}" already exists'
            raise APIError(409, "AlreadyExists", message, _details(name, rt.group, rt.plural))
        self.commit(rt, obj, None, dry_run)
        return obj

    def get(self, rt: ResourceType, namespace: str, name: str) -> dict[str, Any]:
        return copy.deepcopy(self.existing(rt, namespace, name))

    def list(self, rt: ResourceType, namespace: str | None, query: dict[str, list[str]]) -> dict[str, Any]:
        labels, fields = (query.get(k, [""])[0] for k in ("labelSelector", "fieldSelector"))
        items = []
        for obj in self.store.items(rt, namespace):
            obj_labels = (obj.get("metadata") or {}).get("labels") or {}
            if _selector_matches(labels, obj_labels) and _fields_match(fields, obj):
                item = copy.deepcopy(obj)
                item.pop("kind", None)  # list items carry no TypeMeta on the wire
                item.pop("apiVersion", None)
                items.append(item)
        meta = {"resourceVersion": self.current_rv()}
        return {"kind": f"{rt.kind}List", "apiVersion": rt.api_version, "metadata": meta, "items": items}

    def update(
        self, rt: ResourceType, namespace: str, name: str, obj: dict[str, Any], dry_run: bool = False
    ) -> dict[str, Any]:
        self.check_type(rt, obj)
        self.check_namespace(rt, obj, namespace)
        self.check_name(obj, name)
        old = self.existing(rt, namespace, name)
        self._precondition(rt, obj, old, name)
        self.commit(rt, obj, old, dry_run)
        return obj

    def patch(
        self, rt: ResourceType, namespace: str, name: str, patch: dict[str, Any], dry_run: bool = False
    ) -> dict[str, Any]:
        """Merge patch (strategic merge patch is treated the same: lists are replaced, not merged by key)."""
        old = self.existing(rt, namespace, name)
        merged = merge_patch(old, patch)
        if not isinstance(merged.get("metadata"), dict):
            raise bad_request("metadata: must be an object")
        self._precondition(rt, patch, old, name)
        for key in ("name", "namespace"):
            if key in old["metadata"]:
                merged["metadata"][key] = old["metadata"][key]
        self.check_type(rt, merged)
        self.commit(rt, merged, old, dry_run)
        return merged

    def apply(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        applied: dict[str, Any],
        may_create: Callable[[], None],
        dry_run: bool = False,
    ) -> tuple[int, dict[str, Any]]:
        """Server-side apply, simplified: creates when missing (``may_create`` raises if the user may not create),
        else merges the applied configuration onto the live object like a merge patch."""
        self.check_type(rt, applied, required=True)
        self.check_namespace(rt, applied, namespace)
        self.check_name(applied, name)
        if self.store.get(rt, namespace, name) is None:
            may_create()
            return 201, self.create(rt, namespace, applied, dry_run)
        return 200, self.patch(rt, namespace, name, applied, dry_run)

    def delete(self, rt: ResourceType, namespace: str, name: str, dry_run: bool = False) -> dict[str, Any]:
        old = self.existing(rt, namespace, name)
        if not dry_run:
            self.store.delete(rt, namespace, name)
        details = _details(name, rt.group, rt.plural, uid=old["metadata"].get("uid", ""))
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}

    @staticmethod
    def _precondition(rt: ResourceType, obj: dict[str, Any], old: dict[str, Any], name: str) -> None:
        wanted = (obj.get("metadata") or {}).get("resourceVersion")
        if wanted and wanted != old["metadata"].get("resourceVersion"):
            message = (
                f'Operation cannot be fulfilled on {rt.qualified} "{name}": the object has been modified; '
                "please apply your changes to the latest version and try again"
            )
            raise APIError(409, "Conflict", message, _details(name, rt.group, rt.plural))


class RequestInfo(NamedTuple):
    """A resource URL that names a resource served here."""

    rt: ResourceType
    namespace: str | None  # None: no namespace in the path
    name: str
    subresource: str


def parse_request(method: str, path: str, query: dict[str, list[str]]) -> tuple[Attributes, RequestInfo | None]:
    """The apiserver's RequestInfoFactory: authorizer attributes for any URL -- resource requests are
    ``/api/v1[/namespaces/<ns>]/<resource>[/<name>[/<sub>]]`` and the same under ``/apis/<group>/<version>``,
    everything else is a non-resource request -- plus the RequestInfo when the URL names a resource served here."""
    parts = path.strip("/").split("/")
    if parts[0] == "api" and len(parts) >= 3:
        group, version, rest = "", parts[1], parts[2:]
    elif parts[0] == "apis" and len(parts) >= 4:
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return Attributes(method.lower(), path=path), None
    namespace = None
    if rest[0] == "namespaces" and len(rest) > 1:
        namespace = rest[1]
        if len(rest) > 2 and rest[2] not in ("status", "finalize"):
            rest = rest[2:]  # a resource inside the namespace; otherwise the namespace object itself
    name, sub = (rest + ["", ""])[1:3]
    if rest[0] == "namespaces":
        namespace = name or None  # a namespace's own namespace is itself
    if method in ("GET", "HEAD") and not name:
        verb = "watch" if query.get("watch", ["false"])[0] in ("true", "1") else "list"
    elif method == "DELETE" and not name:
        verb = "deletecollection"
    else:
        verb = VERBS.get(method, method.lower())
    attrs = Attributes(verb, group, rest[0], sub, name, namespace or "")
    rt = BY_PATH.get((group, version, rest[0]))
    if rt is None or len(rest) > 3 or "" in rest:
        return attrs, None
    if rt != NAMESPACE and rt.namespaced != (namespace is not None) and (name or not rt.namespaced):
        return attrs, None  # cluster-scoped under a namespace, or a namespaced item without one
    return attrs, RequestInfo(rt, namespace, name, sub)


# == the server ==============================================================================================


class CSRRecord(dict[str, Any]):
    """A stored CSR object (the dict) plus test-visible bookkeeping that never reaches the wire."""

    pending_reason: str | None = None
    created: float = 0.0
    approved_as = "nodeclient"  # the approver's recognizer that passed its SubjectAccessReview


Payload = Union[dict[str, Any], str]  # a JSON body, or text/plain (health checks)


class FakeAPIServer:
    """kube-apiserver + controller-manager stand-in (tests only).

    Knobs (plain attributes): ``unavailable_for`` seconds of 503 after start, ``approve`` / ``deny`` /
    ``approval_delay`` for the CSR approver, ``cluster_info_override`` (replaces the served cluster-info data)
    and ``second_fetch_override`` (the kubeconfig served from the second cluster-info GET on). Records:
    ``requests`` (method, path, user, status of each request), ``csrs`` (CSRRecord by name),
    ``cluster_info_fetches``. Options, keyword-only:

    * ``port``: the port to listen on (default: a free one); ``endpoint`` is ``host:port`` once started.
    * ``serving_cert``: PEM (cert, key) to serve with; default a fresh one from ``server_ca`` or the cluster CA.
    * ``rbac``: authorize every request by RBAC over the store's RBAC objects (system:masters may do anything,
      a compact Node authorizer covers kubelet credentials). Default: permissive -- anonymous may only GET
      cluster-info, and the synthesized cluster-info only that; any authenticated user may do anything else.
    * ``cluster_info_from_store``: serve ``kube-public/cluster-info`` from the store only (404 until created) with
      the bootstrapsigner keeping its ``jws-kubeconfig-<id>`` keys; default: synthesized from the CA, signed
      with the constructor's tokens.

    Tokens given to the constructor (``{"token", "expires", "usages", "groups"}``) authenticate and sign
    alongside bootstrap-token Secrets in the store. Non-resource URLs (health, version, discovery) are open to
    everyone. Not served: watch, deletecollection, JSON patch, managedFields.
    """

    def __init__(
        self,
        ca_cert_pem: bytes,
        ca_key_pem: bytes,
        tokens: list[dict],
        *,
        kubeadm_minor: int = 35,
        host: str = "127.0.0.1",
        port: int = 0,
        server_ca: tuple[bytes, bytes] | None = None,
        serving_cert: tuple[bytes, bytes] | None = None,
        rbac: bool = False,
        cluster_info_from_store: bool = False,
    ) -> None:
        self.ca_cert_pem = ca_cert_pem
        self.ca_cert = x509.load_pem_x509_certificate(ca_cert_pem)
        self.ca_key = serialization.load_pem_private_key(ca_key_pem, password=None)
        self.tokens = tokens
        self.kubeadm_minor = kubeadm_minor
        self.host = host
        self.port = port
        self.server_ca = server_ca
        self.serving_cert = serving_cert
        self.rbac = rbac
        self.cluster_info_from_store = cluster_info_from_store
        self.endpoint = ""
        self.unavailable_for = 0.0
        self.approve = True
        self.deny = False
        self.approval_delay = 0.0
        self.cluster_info_override: dict | None = None
        self.second_fetch_override: str | None = None
        self.requests: list[dict] = []
        self.csrs: dict[str, CSRRecord] = {}
        self.cluster_info_fetches = 0
        self._cluster_info_uid = str(uuid.uuid4())
        self._lock = threading.RLock()
        self._rv = 1000
        self._started = 0.0
        self._timers: list[threading.Timer] = []
        self._httpd: ThreadingHTTPServer | None = None
        self.store = ObjectStore()
        self.rest = RESTStorage(self.store, self._next_rv, lambda: str(self._rv))
        self.authorizer = RBACAuthorizer(self.store)
        self._bootstrap_objects()

    def _bootstrap_objects(self) -> None:
        """What a fresh kube-apiserver has: the four namespaces and its bootstrap RBAC policy (the part used here)."""
        defaults = {"labels": {"kubernetes.io/bootstrapping": "rbac-defaults"}}
        defaults["annotations"] = {"rbac.authorization.kubernetes.io/autoupdate": "true"}
        for ns in DEFAULT_NAMESPACES:
            self.put_object({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        for name, rules in BUILTIN_CLUSTER_ROLES.items():
            meta = {"name": name, **copy.deepcopy(defaults)}
            self.put_object({"apiVersion": f"{RBAC_GROUP}/v1", "kind": "ClusterRole", "metadata": meta, "rules": rules})
        for name, (role, subject) in BUILTIN_CLUSTER_ROLE_BINDINGS.items():
            ref = {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": role}
            meta = {"name": name, **copy.deepcopy(defaults)}
            binding = {"metadata": meta, "roleRef": ref, "subjects": [{"apiGroup": RBAC_GROUP, **subject}]}
            self.put_object({"apiVersion": f"{RBAC_GROUP}/v1", "kind": "ClusterRoleBinding", **binding})

    # -- lifecycle -------------------------------------------------------------------------------------------
    def start(self) -> FakeAPIServer:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        cert_pem, key_pem = self.serving_cert or self._serving_cert()
        with tempfile.TemporaryDirectory() as tmp:
            cert_file, key_file = os.path.join(tmp, "tls.crt"), os.path.join(tmp, "tls.key")
            with open(cert_file, "wb") as f:
                f.write(cert_pem)
            with open(key_file, "wb") as f:
                f.write(key_pem)
            ctx.load_cert_chain(cert_file, key_file)
        # --client-ca-file: a client certificate is asked for, optional, and verified against the cluster CA. (A
        # certificate from another CA fails the TLS handshake here; the real server would answer 401.)
        ctx.verify_mode = ssl.CERT_OPTIONAL
        ctx.load_verify_locations(cadata=self.ca_cert_pem.decode())
        handler = type("Handler", (_Handler,), {"api": self})
        httpd = _TLSServer((self.host, self.port), handler)
        httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True, do_handshake_on_connect=False)
        self._httpd = httpd
        self.endpoint = f"{self.host}:{httpd.server_address[1]}"
        self._started = time.monotonic()
        serve = threading.Thread(target=httpd.serve_forever, args=(0.05,), name=f"fake-apiserver-{self.endpoint}")
        serve.daemon = True
        serve.start()
        return self

    def stop(self) -> None:
        with self._lock:
            for t in self._timers:
                t.cancel()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> FakeAPIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _serving_cert(self) -> tuple[bytes, bytes]:
        if self.server_ca is not None:
            issuer = x509.load_pem_x509_certificate(self.server_ca[0])
            issuer_key = serialization.load_pem_private_key(self.server_ca[1], password=None)
        else:
            issuer, issuer_key = self.ca_cert, self.ca_key
        key = ec.generate_private_key(ec.SECP256R1())
        sans: list[x509.GeneralName] = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
        try:
            if self.host != "127.0.0.1":
                sans.append(x509.IPAddress(ipaddress.ip_address(self.host)))
        except ValueError:
            sans.append(x509.DNSName(self.host))
        now = now_utc()
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]))
            .issuer_name(issuer.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .sign(issuer_key, hashes.SHA256())  # type: ignore[arg-type]
        )
        key_pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        return cert.public_bytes(serialization.Encoding.PEM), key_pem

    # -- test helpers (no authentication, no authorization) --------------------------------------------------
    def put_object(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Store ``obj`` as it is (missing uid / resourceVersion / creationTimestamp are filled in), replacing any
        object of the same name; e.g. a Node as a kubelet registers it. Returns the stored copy."""
        rt = BY_KIND.get((obj.get("apiVersion", ""), obj.get("kind", "")))
        if rt is None:
            raise ValueError(f"put_object: {obj.get('apiVersion')}/{obj.get('kind')} is not served here")
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        if rt.namespaced and not meta.get("namespace"):
            raise ValueError(f"put_object: a {rt.kind} needs metadata.namespace")
        with self._lock:
            meta.setdefault("uid", str(uuid.uuid4()))
            meta.setdefault("creationTimestamp", rfc3339(now_utc()))
            meta["resourceVersion"] = self._next_rv()
            if rt == CSR_TYPE:
                rec = CSRRecord(obj)
                rec.setdefault("status", {})
                rec.created = time.monotonic()
                rec.pending_reason = self._approval_blocker(rec)
                self.csrs[meta["name"]] = rec
            else:
                normalize(rt, obj)
                self.store.put(rt, obj)
            return copy.deepcopy(obj)

    def get_object(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> dict | None:
        """A copy of a stored object (cluster-info as the bootstrapsigner left it), None if there is none."""
        rt = BY_KIND[(api_version, kind)]
        with self._lock:
            if rt == CSR_TYPE:
                self._reconcile()
                return copy.deepcopy(dict(self.csrs[name])) if name in self.csrs else None
            self._bootstrapsign()
            obj = self.store.get(rt, namespace or "", name)
            return copy.deepcopy(obj) if obj is not None else None

    def objects(self, api_version: str, kind: str, namespace: str | None = None) -> list[dict]:
        """Copies of the stored objects of one kind (in ``namespace``, or in all), sorted by namespace and name."""
        rt = BY_KIND[(api_version, kind)]
        with self._lock:
            if rt == CSR_TYPE:
                self._reconcile()
                return [copy.deepcopy(dict(r)) for _, r in sorted(self.csrs.items())]
            self._bootstrapsign()
            return copy.deepcopy(self.store.items(rt, namespace))

    # -- authentication (§1) ---------------------------------------------------------------------------------
    def _authenticate(self, authorization: str | None, client_cert: bytes | None = None) -> Identity | None:
        """The user; None (= 401) for a bearer token that does not authenticate. A verified client certificate
        wins (x509 runs first); like Go's bearertoken authenticator, a missing/non-bearer/empty Authorization
        header is anonymous, not an error."""
        if client_cert and client_cert_identity(client_cert).user:  # no CN: the x509 authenticator passes
            return client_cert_identity(client_cert)
        parts = (authorization or "").strip().split(" ", 2)
        if len(parts) < 2 or parts[0].lower() != "bearer" or not parts[1]:
            return ANONYMOUS
        m = TOKEN_RE.fullmatch(parts[1])
        if m is None:
            return None
        for tok in self.tokens:
            tm = TOKEN_RE.fullmatch(str(tok.get("token", "")))
            if tm is None or tm.group(1) != m.group(1):
                continue
            groups = list(tok.get("groups", [NODE_TOKEN_GROUP]))
            ok = (
                hmac.compare_digest(tm.group(2).encode(), m.group(2).encode())
                and not self._expired(tok)
                and "authentication" in tok.get("usages", ["signing", "authentication"])
                and all(EXTRA_GROUP_RE.fullmatch(g) for g in groups)
            )
            if ok:
                groups = sorted({"system:bootstrappers", *groups, "system:authenticated"})
                return Identity(f"system:bootstrap:{m.group(1)}", tuple(groups))
        with self._lock:
            secret = self.store.get(SECRET, "kube-system", f"bootstrap-token-{m.group(1)}")
            return authenticate_token_secret(copy.deepcopy(secret), parts[1])

    @staticmethod
    def _expired(tok: dict) -> bool:
        exp = tok.get("expires")
        if exp is None:
            return False
        if exp.tzinfo is None:
            exp = exp.replace(tzinfo=dt.timezone.utc)
        return bool(exp <= now_utc())

    # -- authorization ---------------------------------------------------------------------------------------
    def _allowed(self, who: Identity, attrs: Attributes) -> tuple[bool, str]:
        if attrs.path and self._non_resource(attrs.path) is not None:
            return attrs.verb == "get", ""  # public non-resource URLs
        if not self.rbac:
            is_cluster_info = (attrs.group, attrs.resource, attrs.subresource, attrs.namespace, attrs.name) == (
                "",
                "configmaps",
                "",
                "kube-public",
                "cluster-info",
            )
            if who.user == ANONYMOUS_USER:
                return is_cluster_info and attrs.verb == "get", ""
            return not (is_cluster_info and not self.cluster_info_from_store), ""  # synthesized: anonymous GET only
        if "system:masters" in who.groups or node_authorizer_allows(who, attrs):
            return True, ""
        with self._lock:
            return self.authorizer.authorize(who, attrs)

    def allows(
        self,
        user: str,
        groups: list[str],
        verb: str,
        resource: str,
        *,
        group: str = "",
        subresource: str = "",
        name: str = "",
        namespace: str = "",
    ) -> bool:
        """Would this server let ``user`` (with exactly these ``groups``) do this? The SubjectAccessReview answer."""
        return self._allowed(
            Identity(user, tuple(groups)), Attributes(verb, group, resource, subresource, name, namespace)
        )[0]

    def _authorize(self, who: Identity, attrs: Attributes) -> None:
        allowed, reason = self._allowed(who, attrs)
        if not allowed:
            raise forbidden(who.user, attrs, reason)

    # -- request dispatch ------------------------------------------------------------------------------------
    def handle(
        self,
        method: str,
        raw_path: str,
        authorization: str | None,
        body: bytes,
        *,
        content_type: str = "application/json",
        client_cert: bytes | None = None,
    ) -> tuple[int, Payload, str | None]:
        """(HTTP status, JSON body or text, user) for one request; user is None when authentication failed."""
        who = self._authenticate(authorization, client_cert)
        user = who.user if who is not None else None
        if time.monotonic() - self._started < self.unavailable_for:
            msg = "the server is currently unable to handle the request"
            return 503, status_body(503, "ServiceUnavailable", msg), user
        if who is None:
            return 401, status_body(401, "Unauthorized", "Unauthorized"), user
        url = urlsplit(raw_path)
        path, query = url.path.rstrip("/") or "/", parse_qs(url.query)
        try:
            status, payload = self._route(method, path, query, who, body, content_type.split(";")[0].strip())
        except APIError as e:
            status, payload = e.code, e.body
        return status, payload, user

    def _route(
        self, method: str, path: str, query: dict[str, list[str]], who: Identity, body: bytes, content_type: str
    ) -> tuple[int, Payload]:
        attrs, info = parse_request(method, path, query)
        if attrs.path:
            public = self._non_resource(path)
            if public is not None:  # system:public-info-viewer / system:discovery, open to everyone here
                if method != "GET":
                    raise method_not_allowed()
                return 200, public
        if self.rbac or info is not None:  # RBAC authorizes before routing, so unknown URLs can be 403 too
            self._authorize(who, attrs)
        if info is None:
            raise path_not_found()
        verb = attrs.verb
        if path == CLUSTER_INFO_PATH and verb == "get" and not self.cluster_info_from_store:
            return 200, self._cluster_info()
        if method in ("POST", "PUT") and content_type not in ("application/json", "application/yaml"):
            message = "the body of the request was in an unknown format - accepted media types include: "
            raise APIError(415, "UnsupportedMediaType", message + "application/json, application/yaml")
        if info.rt == CSR_TYPE:
            return self._csr_request(verb, info, query, who, body)
        if info.rt in REVIEW_TYPES:
            return self._access_review(verb, info, who, body)
        return self._rest_request(verb, info, query, who, body, content_type)

    def _access_review(self, verb: str, info: RequestInfo, who: Identity, body: bytes) -> tuple[int, Payload]:
        """(Self)SubjectAccessReview create (``kubectl auth can-i``): the authorizer's answer, nothing stored."""
        if verb != "create" or info.name:
            raise method_not_allowed()
        review = parse_body(body)
        RESTStorage.check_type(info.rt, review)
        spec = review.get("spec") or {}
        if info.rt.kind == "SubjectAccessReview":
            who = Identity(str(spec.get("user", "")), tuple(spec.get("groups") or ()))
        resource, non_resource = spec.get("resourceAttributes") or {}, spec.get("nonResourceAttributes") or {}
        if bool(resource) == bool(non_resource):
            error = "spec.resourceAttributes: Invalid value: exactly one of nonResourceAttributes or "
            error += "resourceAttributes must be specified"
            raise RESTStorage.invalid(info.rt, "", error)
        if resource:
            fields = ("verb", "group", "resource", "subresource", "name", "namespace")
            attrs = Attributes(*(str(resource.get(f, "")) for f in fields))
        else:
            attrs = Attributes(str(non_resource.get("verb", "")), path=str(non_resource.get("path", "")))
        allowed, reason = self._allowed(who, attrs)
        result = {"allowed": allowed, **({"reason": reason} if reason else {})}
        return 201, {
            "kind": info.rt.kind,
            "apiVersion": info.rt.api_version,
            "metadata": {},
            "spec": spec,
            "status": result,
        }

    def _non_resource(self, path: str) -> Payload | None:
        if path in ("/livez", "/readyz", "/healthz"):
            return "ok"
        if path == "/version":
            return {
                "major": "1",
                "minor": str(self.kubeadm_minor),
                "gitVersion": f"v1.{self.kubeadm_minor}.0",
                "gitTreeState": "clean",
                "compiler": "gc",
                "platform": "linux/amd64",
            }
        return discovery_document(path, self.endpoint)

    def _rest_request(
        self,
        verb: str,
        info: RequestInfo,
        query: dict[str, list[str]],
        who: Identity,
        body: bytes,
        content_type: str,
    ) -> tuple[int, Payload]:
        rt, ns, name = info.rt, info.namespace or "", info.name
        if info.subresource and not (info.subresource == "status" and verb in ("get", "update", "patch")):
            raise method_not_allowed() if info.subresource == "status" else path_not_found()
        dry_run = query.get("dryRun", [""])[0] == "All"
        with self._lock:
            if verb == "get":
                self._bootstrapsign()
                return 200, self._served(rt, self.rest.get(rt, ns, name))
            if verb == "list":
                self._bootstrapsign()
                return 200, self.rest.list(rt, info.namespace if rt.namespaced else None, query)
            if verb == "watch":
                raise bad_request("watch is not supported by this test server")
            if verb == "create" and not name:
                return 201, self.rest.create(rt, ns, parse_body(body, content_type == "application/yaml"), dry_run)
            if verb == "update":
                return 200, self.rest.update(
                    rt, ns, name, parse_body(body, content_type == "application/yaml"), dry_run
                )
            if verb == "delete":
                return 200, self.rest.delete(rt, ns, name, dry_run)
            if verb == "patch" and content_type in MERGE_PATCH:
                return 200, self.rest.patch(rt, ns, name, parse_body(body), dry_run)
            if verb == "patch" and content_type == APPLY_PATCH:
                if not query.get("fieldManager", [""])[0]:
                    raise bad_request("fieldManager is required for apply requests")
                create = Attributes("create", rt.group, rt.plural, namespace=ns)
                applied = parse_body(body, yaml_ok=True)
                return self.rest.apply(rt, ns, name, applied, lambda: self._authorize(who, create), dry_run)
            if verb == "patch":
                message = (
                    f"the body of the request was in an unknown format - accepted media types include: "
                    f"{', '.join(MERGE_PATCH)}, {APPLY_PATCH}"
                )
                raise APIError(415, "UnsupportedMediaType", message)
        raise method_not_allowed()

    def _served(self, rt: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
        """A GET answer; cluster-info reads are counted and the knobs apply to what is served (not stored)."""
        meta = obj["metadata"]
        if (rt, meta.get("namespace"), meta["name"]) != (CONFIGMAP, "kube-public", "cluster-info"):
            return obj
        self.cluster_info_fetches += 1
        if self.cluster_info_fetches > 1 and self.second_fetch_override is not None:
            obj.setdefault("data", {})["kubeconfig"] = self.second_fetch_override
        if self.cluster_info_override is not None:
            obj["data"] = dict(self.cluster_info_override)
        return obj

    def _next_rv(self) -> str:
        self._rv += 1
        return str(self._rv)

    # -- cluster-info (§2, §3) -------------------------------------------------------------------------------
    def real_kubeconfig(self) -> str:
        return cluster_info_kubeconfig(self.ca_cert_pem, f"https://{self.endpoint}", self.kubeadm_minor)

    def _constructor_signing_tokens(self) -> dict[str, str]:
        signing = {}
        for tok in self.tokens:
            m = TOKEN_RE.fullmatch(str(tok.get("token", "")))
            if m and not self._expired(tok) and "signing" in tok.get("usages", ["signing", "authentication"]):
                signing[m.group(1)] = m.group(2)
        return signing

    def _cluster_info(self) -> dict[str, Any]:
        with self._lock:
            self.cluster_info_fetches += 1
            later = self.cluster_info_fetches > 1
            kubeconfig = self.real_kubeconfig()
            data = {"kubeconfig": kubeconfig}
            for token_id, secret in self._constructor_signing_tokens().items():
                data[f"jws-kubeconfig-{token_id}"] = detached_jws(token_id, secret, kubeconfig)
            if later and self.second_fetch_override is not None:
                data["kubeconfig"] = self.second_fetch_override
            if self.cluster_info_override is not None:
                data = dict(self.cluster_info_override)
            meta = {
                "name": "cluster-info",
                "namespace": "kube-public",
                "uid": self._cluster_info_uid,
                "resourceVersion": self._next_rv(),
                "creationTimestamp": rfc3339(now_utc()),
            }
            return {"kind": "ConfigMap", "apiVersion": "v1", "metadata": meta, "data": dict(sorted(data.items()))}

    def _bootstrapsign(self) -> None:
        """The bootstrapsigner controller, run on every read: ``jws-kubeconfig-<id>`` in the stored cluster-info for
        exactly the tokens valid for signing (Secrets in kube-system, and the constructor's tokens)."""
        if not self.cluster_info_from_store:
            return
        with self._lock:
            cm = self.store.get(CONFIGMAP, "kube-public", "cluster-info")
            data = (cm or {}).get("data")
            if cm is None or not isinstance(data, dict) or not isinstance(data.get("kubeconfig"), str):
                return
            signers = self._constructor_signing_tokens()
            for secret in self.store.items(SECRET, "kube-system"):
                found = signing_token(secret)
                if found:
                    signers[found[0]] = found[1]
            signed = {k: v for k, v in data.items() if not k.startswith("jws-kubeconfig-")}
            for token_id, token_secret in signers.items():
                signed[f"jws-kubeconfig-{token_id}"] = detached_jws(token_id, token_secret, data["kubeconfig"])
            if signed != data:
                cm["data"] = dict(sorted(signed.items()))
                cm["metadata"]["resourceVersion"] = self._next_rv()

    # -- CertificateSigningRequests (§6) ---------------------------------------------------------------------
    def _csr_request(
        self, verb: str, info: RequestInfo, query: dict[str, list[str]], who: Identity, body: bytes
    ) -> tuple[int, Payload]:
        name, sub = info.name, info.subresource
        if sub == "approval" and verb == "update":
            return self._update_approval(name, body, who)
        if sub:
            raise path_not_found() if sub not in ("approval", "status") else method_not_allowed()
        if verb == "create" and not name:
            return self._create_csr(body, who.user, list(who.groups))
        if verb == "get":
            return self._get_csr(name)
        if verb == "list":
            return 200, self._list_csrs(query)
        if verb == "watch":
            return 400, status_body(400, "BadRequest", "watch is not supported by this test server")
        if verb == "delete":
            with self._lock:
                rec = self.csrs.pop(name, None)
            if rec is None:
                return self._get_csr(name)
            details = _csr_details(name) | {"uid": rec["metadata"]["uid"]}
            return 200, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}
        raise method_not_allowed()

    def _create_csr(self, body: bytes, user: str, groups: list[str]) -> tuple[int, dict[str, Any]]:
        try:
            obj = json.loads(body)
            assert isinstance(obj, dict) and isinstance(obj.get("spec", {}), dict)
        except (ValueError, AssertionError):
            return 400, status_body(400, "BadRequest", "the object provided is unrecognized or malformed")
        if obj.get("kind", "CertificateSigningRequest") != "CertificateSigningRequest":
            return 400, status_body(400, "BadRequest", f"the kind in the data ({obj.get('kind')}) is not supported")
        meta, spec = dict(obj.get("metadata") or {}), dict(obj.get("spec") or {})
        name = meta.get("name") or ""
        if not name and meta.get("generateName"):
            name = meta["generateName"] + "".join(secrets.choice("bcdfghjklmnpqrstvwxz2456789") for _ in range(5))
        errors, csr = self._validate_csr(name, spec)
        if errors:
            msg = errors[0] if len(errors) == 1 else "[" + ", ".join(errors) + "]"
            text = f'CertificateSigningRequest.certificates.k8s.io "{name}" is invalid: {msg}'
            return 422, status_body(422, "Invalid", text, _csr_details(name, "CertificateSigningRequest"))
        with self._lock:
            if name in self.csrs:
                text = f'certificatesigningrequests.certificates.k8s.io "{name}" already exists'
                return 409, status_body(409, "AlreadyExists", text, _csr_details(name))
            meta.update(
                name=name, uid=str(uuid.uuid4()), resourceVersion=self._next_rv(), creationTimestamp=rfc3339(now_utc())
            )
            spec.update(username=user, groups=groups)
            rec = CSRRecord(
                apiVersion="certificates.k8s.io/v1",
                kind="CertificateSigningRequest",
                metadata=meta,
                spec=spec,
                status={},
            )
            rec.created = time.monotonic()
            rec.pending_reason = self._approval_blocker(rec)
            self.csrs[name] = rec
            reply = copy.deepcopy(dict(rec))
            timer = threading.Timer(self.approval_delay, self._reconcile)
            timer.daemon = True
            self._timers.append(timer)
        timer.start()
        return 201, reply

    @staticmethod
    def _validate_csr(name: str, spec: dict[str, Any]) -> tuple[list[str], x509.CertificateSigningRequest | None]:
        """Create-time API validation (validation.go), field-error wording as in the vectors."""
        errors: list[str] = []
        csr = None
        if not name:
            errors.append("metadata.name: Required value: name or generateName is required")
        try:
            pem = base64.b64decode(spec.get("request") or "", validate=True)
            block = re.search(rb"-----BEGIN ([^-\n]*)-----", pem)
            if block is None or block.group(1) != b"CERTIFICATE REQUEST":
                raise ValueError("PEM block type must be CERTIFICATE REQUEST")
            csr = x509.load_pem_x509_csr(pem)
            if not csr.is_signature_valid:
                kind = "ECDSA" if isinstance(csr.public_key(), ec.EllipticCurvePublicKey) else "signature"
                csr = None
                raise ValueError(f"x509: {kind} verification failure")  # Go's CheckSignature wording for ECDSA
        except ValueError as e:
            errors.append(f"spec.request: Invalid value: ...: {e}")
        usages = spec.get("usages") or []
        if not isinstance(usages, list) or not all(isinstance(u, str) for u in usages):
            return [*errors, "spec.usages: Invalid value: must be a list of strings"], csr
        if not usages:
            errors.append("spec.usages: Required value: usages must be provided")
        for i, usage in enumerate(usages):
            if usage not in USAGES:
                errors.append(f'spec.usages[{i}]: Unsupported value: "{usage}"')
            elif usage in usages[:i]:
                errors.append(f'spec.usages[{i}]: Duplicate value: "{usage}"')
        signer = spec.get("signerName") or ""
        if not signer:
            errors.append("spec.signerName: Required value")
        elif not re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?\.[a-z0-9-]+/[A-Za-z0-9_.:/-]+", signer):
            errors.append(
                f'spec.signerName: Invalid value: "{signer}": must be a fully qualified domain and path '
                "of the form 'example.com/signer-name'"
            )
        exp = spec.get("expirationSeconds")
        if exp is not None and (not isinstance(exp, int) or exp < 600):
            errors.append(
                f"spec.expirationSeconds: Invalid value: {exp}: may not specify a duration less than "
                "600 seconds (10 minutes)"
            )
        return errors, csr

    def _get_csr(self, name: str) -> tuple[int, dict[str, Any]]:
        self._reconcile()
        with self._lock:
            if name not in self.csrs:
                text = f'certificatesigningrequests.certificates.k8s.io "{name}" not found'
                return 404, status_body(404, "NotFound", text, _csr_details(name))
            return 200, copy.deepcopy(dict(self.csrs[name]))

    def _list_csrs(self, query: dict[str, list[str]]) -> dict[str, Any]:
        self._reconcile()
        selector = (query.get("fieldSelector") or [""])[0]
        want = selector[len("metadata.name=") :] if selector.startswith("metadata.name=") else None
        with self._lock:
            items = [copy.deepcopy(dict(r)) for n, r in sorted(self.csrs.items()) if want in (None, n)]
            return {
                "kind": "CertificateSigningRequestList",
                "apiVersion": "certificates.k8s.io/v1",
                "metadata": {"resourceVersion": str(self._rv)},
                "items": items,
            }

    def _update_approval(self, name: str, body: bytes, who: Identity) -> tuple[int, dict[str, Any]]:
        """PUT .../certificatesigningrequests/<name>/approval (``kubectl certificate approve|deny``): the
        conditions of the body replace the stored ones; the approver needs ``approve`` on the signer."""
        obj = parse_body(body)
        conditions = (obj.get("status") or {}).get("conditions") or []
        with self._lock:
            rec = self.csrs.get(name)
            if rec is None:
                return self._get_csr(name)
            signer = str(rec["spec"].get("signerName", ""))
            names = (signer, signer.split("/")[0] + "/*")
            if not any(self._allowed(who, Attributes("approve", CSR_GROUP, "signers", name=n))[0] for n in names):
                why = f'user not permitted to approve requests with signerName "{signer}"'
                raise APIError(
                    403, "Forbidden", f'{CSR_TYPE.qualified} "{name}" is forbidden: {why}', _csr_details(name)
                )
            if {"Approved", "Denied"} <= {c.get("type") for c in conditions}:
                error = "status.conditions: Invalid value: Approved and Denied conditions are mutually exclusive"
                raise RESTStorage.invalid(CSR_TYPE, name, error)
            stamp = rfc3339(now_utc())
            rec["status"]["conditions"] = [
                {"status": "True", "lastUpdateTime": stamp, "lastTransitionTime": stamp, **c} for c in conditions
            ]
            rec["metadata"]["resourceVersion"] = self._next_rv()
        self._reconcile()
        return self._get_csr(name)

    def _approval_blocker(self, rec: CSRRecord) -> str | None:
        """Why the csrapproving controller (sarapprove.go) would not approve this CSR now; None if it would."""
        spec = rec.get("spec") or {}
        if spec.get("signerName") != KUBELET_SIGNER:
            return f"signerName is not {KUBELET_SIGNER}"
        try:
            csr = x509.load_pem_x509_csr(base64.b64decode(spec["request"]))
        except (ValueError, KeyError, TypeError):
            return "spec.request does not parse"
        problem = validate_kubelet_client_csr(csr, spec.get("usages") or [])
        if problem:
            return problem
        groups = list(spec.get("groups") or [])
        if not self.rbac:  # the permissive mode's stand-in for kubeadm's autoapprove binding
            if NODE_TOKEN_GROUP not in groups:
                return f"requester is not in {NODE_TOKEN_GROUP} (no nodeclient permission)"
            return None
        requester = Identity(str(spec.get("username", "")), tuple(groups))
        cns = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        tried = ["selfnodeclient"] if cns and requester.user == cns[-1].value else []
        tried.append("nodeclient")
        for sub in tried:
            review = Attributes("create", CSR_GROUP, "certificatesigningrequests", sub)
            if self._allowed(requester, review)[0]:
                rec.approved_as = sub
                return None
        return (
            f'recognized csr "{rec["metadata"]["name"]}" as [{" ".join(tried)}] but subject access review was not '
            f'approved: User "{requester.user}" cannot create resource "certificatesigningrequests/nodeclient" '
            f'in API group "{CSR_GROUP}" at the cluster scope'
        )

    def _reconcile(self) -> None:
        """The csrapproving + csrsigning controllers: approve (or, with ``deny``, deny) every undecided CSR whose
        approval_delay has passed -- re-checking permissions each time, as the approver requeues refused
        CSRs -- and sign every approved kubelet-client CSR that has no certificate yet."""
        with self._lock:
            now = time.monotonic()
            for rec in self.csrs.values():
                status = rec["status"]
                if not status.get("conditions") and now - rec.created >= self.approval_delay:
                    rec.pending_reason = self._approval_blocker(rec)
                    stamp = rfc3339(now_utc())
                    cond = {"lastUpdateTime": stamp, "lastTransitionTime": stamp, "status": "True"}
                    if self.deny:
                        cond.update(type="Denied", reason="NodeDenied", message="denied by test")
                    elif self.approve and rec.pending_reason is None:
                        what = "self kubelet client" if rec.approved_as == "selfnodeclient" else "kubelet client"
                        message = f"Auto approving {what} certificate after SubjectAccessReview."
                        cond.update(type="Approved", reason="AutoApproved", message=message)
                    else:
                        continue
                    status["conditions"] = [cond]
                    rec["metadata"]["resourceVersion"] = self._next_rv()
                self._sign_if_approved(rec)

    def _sign_if_approved(self, rec: CSRRecord) -> None:
        status, spec = rec["status"], rec["spec"]
        types = {c.get("type") for c in status.get("conditions") or [] if c.get("status", "True") == "True"}
        if "Approved" not in types or types & {"Denied", "Failed"} or status.get("certificate"):
            return
        if spec.get("signerName") != KUBELET_SIGNER:
            return  # only the kubelet-client signer is run here
        problem = validate_kubelet_client_csr(x509.load_pem_x509_csr(base64.b64decode(spec["request"])), spec["usages"])
        if problem:
            stamp = rfc3339(now_utc())
            failed = {"type": "Failed", "status": "True", "reason": "SignerValidationFailure", "message": problem}
            status["conditions"].append({**failed, "lastUpdateTime": stamp, "lastTransitionTime": stamp})
        else:
            status["certificate"] = base64.b64encode(self._sign(rec)).decode("ascii")
        rec["metadata"]["resourceVersion"] = self._next_rv()

    def _sign(self, rec: CSRRecord) -> bytes:
        csr = x509.load_pem_x509_csr(base64.b64decode(rec["spec"]["request"]))
        usages = rec["spec"]["usages"]
        now = now_utc()
        ttl = dt.timedelta(days=365)
        if rec["spec"].get("expirationSeconds"):
            ttl = min(ttl, dt.timedelta(seconds=rec["spec"]["expirationSeconds"]))
        not_after = min(now + ttl, self.ca_cert.not_valid_after_utc)
        flags = {f: any(USAGES[u] == f for u in usages) for f in KEY_USAGE_FLAGS}  # as the signer: from spec.usages
        builder = (
            x509.CertificateBuilder()
            .subject_name(csr.subject)
            .issuer_name(self.ca_cert.subject)
            .public_key(csr.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(not_after)
            .add_extension(x509.KeyUsage(**flags), critical=True)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        )
        ekus = sorted({USAGES[u] for u in usages if USAGES[u][0].isdigit()})
        if ekus:
            builder = builder.add_extension(x509.ExtendedKeyUsage([x509.ObjectIdentifier(o) for o in ekus]), False)
        try:
            ski = self.ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
            aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
            builder = builder.add_extension(aki, critical=False)
        except x509.ExtensionNotFound:
            pass
        cert = builder.sign(self.ca_key, hashes.SHA256())  # type: ignore[arg-type]
        return cert.public_bytes(serialization.Encoding.PEM)


class _TLSServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:  # TLS handshake failures etc.: stay quiet
        pass


class _Handler(BaseHTTPRequestHandler):
    api: FakeAPIServer
    protocol_version = "HTTP/1.1"

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        client_cert = self.connection.getpeercert(binary_form=True)  # type: ignore[attr-defined]
        try:
            status, payload, user = self.api.handle(
                self.command,
                self.path,
                self.headers.get("Authorization"),
                body,
                content_type=self.headers.get("Content-Type") or "application/json",
                client_cert=client_cert,
            )
        except Exception as e:  # a bug in this fake must show up as a 500, not a dropped connection
            status, payload, user = 500, status_body(500, "InternalError", f"fake apiserver error: {e!r}"), None
        with self.api._lock:
            self.api.requests.append({"method": self.command, "path": self.path, "user": user, "status": status})
        if isinstance(payload, str):
            data, content_type = payload.encode(), "text/plain; charset=utf-8"
        else:
            data, content_type = json.dumps(payload, separators=(",", ":")).encode(), "application/json"
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:  # never echo requests (or credentials) to stderr
        pass
