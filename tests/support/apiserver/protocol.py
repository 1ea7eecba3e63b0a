"""Wire formats of the in-test fake kube-apiserver (tests only; never part of the product): constants,
cluster-info kubeconfig, detached JWS, CSR validation and naming, merge patch, Status bodies, the resource
catalogue, names and discovery documents. See the package docstring."""

from __future__ import annotations

import base64
import copy
import datetime as dt
import hashlib
import hmac
import re
from typing import Any, NamedTuple

from cryptography import x509
from cryptography.x509.oid import NameOID

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
POD, PDB = BY_KIND[("v1", "Pod")], BY_KIND[("policy/v1", "PodDisruptionBudget")]
# the field selectors each kind supports besides metadata.name and metadata.namespace (the registries'
# GetAttrs / field label conversion funcs); booleans select as "true" / "false"
FIELD_LABELS: dict[str, tuple[str, ...]] = {
    "Pod": (
        "spec.nodeName",
        "spec.restartPolicy",
        "spec.schedulerName",
        "spec.serviceAccountName",
        "spec.hostNetwork",
        "status.phase",
        "status.podIP",
        "status.nominatedNodeName",
    ),
    "Node": ("spec.unschedulable",),
    "Namespace": ("status.phase",),
    "Secret": ("type",),
}
BOOLEAN_FIELDS = ("spec.hostNetwork", "spec.unschedulable")  # a missing one selects as "false"
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
        if not group:  # the eviction subresource, as kubectl drain looks for it (group and version set)
            eviction = {"name": "pods/eviction", "singularName": "", "namespaced": True, "group": "policy"}
            resources.append({**eviction, "version": "v1", "kind": "Eviction", "verbs": ["create"]})
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
