"""Authentication and authorization of the in-test fake kube-apiserver (tests only; never part of the product):
identities, bootstrap-token Secrets, client certificates, the RBAC and Node authorizers. See the package
docstring."""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime as dt
import hmac
import re
from typing import TYPE_CHECKING, Any, NamedTuple

from cryptography import x509
from cryptography.x509.oid import NameOID

from tests.support.apiserver.protocol import (
    ANONYMOUS_USER,
    AUTHZ_GROUP,
    BOOTSTRAP_TOKEN_TYPE,
    BY_KIND,
    CSR_GROUP,
    EXTRA_GROUP_RE,
    RBAC_GROUP,
    TOKEN_RE,
    TOKEN_SECRET_NAME_RE,
    APIError,
    _details,
    now_utc,
)

if TYPE_CHECKING:
    from tests.support.apiserver.store import ObjectStore


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


def node_name(who: Identity) -> str | None:
    """nodeidentifier.NodeIdentity: the node a kubelet's own credential (system:node:<name>, group system:nodes)
    speaks for; None for anyone else."""
    if "system:nodes" not in who.groups or not who.user.startswith("system:node:"):
        return None
    return who.user[len("system:node:") :] or None


def node_authorizer_allows(who: Identity, attrs: Attributes) -> bool:
    """A compact Node authorizer + NodeRestriction: what a kubelet's own credential (system:node:<name>, group
    system:nodes) may do with the resources served here. Evictions are allowed here as the real authorizer allows
    them; NodeRestriction's check (only pods bound to this node) is made by the eviction handler, which has the
    pod."""
    own = node_name(who)
    if own is None:
        return False
    if (attrs.group, attrs.resource) == ("", "nodes"):
        if attrs.subresource == "status":
            return attrs.verb in ("get", "update", "patch") and attrs.name == own
        if not attrs.subresource and attrs.verb in ("get", "list", "watch", "create"):
            return True
        return not attrs.subresource and attrs.verb in ("update", "patch", "delete") and attrs.name == own
    if (attrs.group, attrs.resource, attrs.subresource) == (CSR_GROUP, "certificatesigningrequests", ""):
        return attrs.verb in ("create", "get", "list", "watch")
    if (attrs.group, attrs.resource, attrs.subresource) == ("", "pods", "eviction"):
        return attrs.verb == "create"
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
