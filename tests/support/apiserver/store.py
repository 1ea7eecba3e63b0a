"""Object store and REST semantics of the in-test fake kube-apiserver (tests only; never part of the product):
ObjectStore, decoding and defaulting, selectors, RESTStorage and request parsing. See the package docstring."""

from __future__ import annotations

import base64
import copy
import json
import re
import secrets
import uuid
from typing import Any, Callable, NamedTuple

import yaml

from tests.support.apiserver.auth import Attributes
from tests.support.apiserver.protocol import (
    BOOLEAN_FIELDS,
    BY_PATH,
    FIELD_LABELS,
    NAMESPACE,
    PDB,
    POD,
    VERBS,
    APIError,
    ResourceType,
    _details,
    bad_request,
    merge_patch,
    name_error,
    now_utc,
    rfc3339,
    status_body,
)

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


def _field_value(obj: dict[str, Any], label: str) -> str:
    value: Any = obj
    for key in label.split("."):
        value = value.get(key) if isinstance(value, dict) else None
    if label in BOOLEAN_FIELDS or isinstance(value, bool):
        return "true" if value is True else "false"
    return "" if value is None else str(value)


def _field_requirements(selector: str, kind: str) -> list[tuple[str, bool, str]]:
    """A field selector as (label, equal?, value) terms, checked before anything is listed: ``metadata.name``,
    ``metadata.namespace`` and the kind's own (FIELD_LABELS); 400 for any other label."""
    supported = ("metadata.name", "metadata.namespace", *FIELD_LABELS.get(kind, ()))
    terms = []
    for term in filter(None, (t.strip() for t in selector.split(","))):
        m = re.fullmatch(r"([^!=]+?)\s*(==|=|!=)\s*(.*)", term)
        if m is None or m.group(1) not in supported:
            raise bad_request(f'"{term}": field label not supported')
        terms.append((m.group(1), m.group(2) != "!=", m.group(3)))
    return terms


def label_selector_matches(selector: dict[str, Any], labels: dict[str, str]) -> bool | None:
    """metav1.LabelSelectorAsSelector(selector).Matches(labels): ``matchLabels`` and ``matchExpressions`` (In,
    NotIn, Exists, DoesNotExist); None when the selector is invalid."""
    match_labels, expressions = selector.get("matchLabels") or {}, selector.get("matchExpressions") or []
    if not isinstance(match_labels, dict) or not isinstance(expressions, list):
        return None
    if any(labels.get(k) != v for k, v in match_labels.items()):
        return False
    for expr in expressions:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if op == "In" and values:
            ok = labels.get(key) in values
        elif op == "NotIn" and values:
            ok = labels.get(key) not in values
        elif op in ("Exists", "DoesNotExist") and not values:
            ok = (key in labels) == (op == "Exists")
        else:
            return None
        if not ok:
            return False
    return True


def pod_ready(pod: dict[str, Any]) -> bool:
    """podutil.IsPodReady: the Ready condition is True."""
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


EVICTION_VERSIONS = ("policy/v1", "policy/v1beta1")
BUDGET_VIOLATION = "Cannot evict pod as it would violate the pod's disruption budget."
MAX_DISRUPTED_PODS = 2000


def _too_many_requests(retry_after: int, cause: str) -> APIError:
    """errors.NewTooManyRequests(BUDGET_VIOLATION, retry_after) with a DisruptionBudget cause (eviction.go)."""
    details: dict[str, Any] = {"causes": [{"reason": "DisruptionBudget", "message": cause}]}
    if retry_after:
        details["retryAfterSeconds"] = retry_after
    return APIError(429, "TooManyRequests", BUDGET_VIOLATION, details)


def _budget_forbidden(name: str, why: str) -> APIError:
    message = f'poddisruptionbudget.policy "{name}" is forbidden: {why}'
    return APIError(403, "Forbidden", message, _details(name, "policy", "poddisruptionbudget"))


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
        terms = _field_requirements(fields, rt.kind)
        items = []
        for obj in self.store.items(rt, namespace):
            obj_labels = (obj.get("metadata") or {}).get("labels") or {}
            fields_match = all((_field_value(obj, label) == value) == equal for label, equal, value in terms)
            if _selector_matches(labels, obj_labels) and fields_match:
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

    # -- the pods/eviction subresource (pkg/registry/core/pod/storage/eviction.go) ------------------------------
    def evict(
        self, namespace: str, name: str, eviction: dict[str, Any], node: str | None, dry_run: bool = False
    ) -> tuple[int, dict[str, Any], dict[str, Any] | None]:
        """(HTTP status, Status body, the pod to delete -- None when nothing is to be deleted) for a policy/v1 (or
        v1beta1) Eviction POSTed by a client that is ``node``'s kubelet or (None) anyone else. The caller deletes
        the pod (at once or gracefully); PodDisruptionBudget status is decremented here, as the real handler does."""
        if eviction.get("apiVersion") not in (None, *EVICTION_VERSIONS):
            version = eviction["apiVersion"]
            raise bad_request(f"the API version in the data ({version}) does not match the expected API version (v1)")
        if eviction.get("kind") not in (None, "Eviction"):
            raise _decode_error(str(eviction["kind"]), "Eviction", f'no kind "{eviction["kind"]}" is registered')
        if node is not None:  # the NodeRestriction admission plugin: a node evicts only pods bound to itself
            if (self.existing(POD, namespace, name).get("spec") or {}).get("nodeName") != node:
                why = f"node {node} can only evict pods with spec.nodeName set to itself"
                raise APIError(403, "Forbidden", f'pods "{name}" is forbidden: {why}', _details(name, "", "pods"))
        if (eviction.get("metadata") or {}).get("name") != name:
            raise bad_request("name in URL does not match name in Eviction object")
        pod = self.existing(POD, namespace, name)
        success = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}
        phase = (pod.get("status") or {}).get("phase")
        if phase in ("Succeeded", "Failed", "Pending") or pod["metadata"].get("deletionTimestamp"):
            return 201, success, pod  # canIgnorePDB: no budget to check
        labels = pod["metadata"].get("labels") or {}
        budgets = [
            pdb
            for pdb in self.store.items(PDB, namespace)
            if (pdb.get("spec") or {}).get("selector")  # nil or empty selects nothing
            and label_selector_matches(pdb["spec"]["selector"], labels)
        ]
        if len(budgets) > 1:
            message = "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support."
            body = status_body(500, "", message)
            del body["reason"]  # metav1.Status omits an empty reason
            return 500, body, None
        if budgets:
            self._take_disruption(budgets[0], name, pod_ready(pod), dry_run)
        return 201, success, pod

    def _take_disruption(self, pdb: dict[str, Any], pod_name: str, ready: bool, dry_run: bool) -> None:
        """checkAndDecrement: raises 429/403 when the budget allows no disruption now, else spends one."""
        status, name = pdb.get("status") or {}, pdb["metadata"]["name"]
        current, desired = int(status.get("currentHealthy") or 0), int(status.get("desiredHealthy") or 0)
        if not ready and current >= desired > 0:
            return  # an unready pod counts for nothing: evicting it costs no disruption
        if int(status.get("observedGeneration") or 0) < int(pdb["metadata"].get("generation") or 0):
            raise _too_many_requests(10, f"The disruption budget {name} is still being processed by the server.")
        allowed = int(status.get("disruptionsAllowed") or 0)
        if allowed < 0:
            raise _budget_forbidden(name, "pdb disruptions allowed is negative")
        if len(status.get("disruptedPods") or {}) > MAX_DISRUPTED_PODS:
            raise _budget_forbidden(
                name, "DisruptedPods map too big - too many evictions not confirmed by PDB controller"
            )
        if allowed == 0:
            raise _too_many_requests(
                0, f"The disruption budget {name} needs {desired} healthy pods and has {current} currently"
            )
        if dry_run:
            return
        status = pdb.setdefault("status", {})
        status["disruptionsAllowed"] = allowed - 1
        status.setdefault("disruptedPods", {})[pod_name] = rfc3339(now_utc())
        if allowed == 1:  # pdbhelper.UpdateDisruptionAllowedCondition
            conditions = [c for c in status.get("conditions") or [] if c.get("type") != "DisruptionAllowed"]
            cond: dict[str, Any] = {"type": "DisruptionAllowed", "status": "False"}
            if status.get("observedGeneration"):
                cond["observedGeneration"] = status["observedGeneration"]
            cond.update(lastTransitionTime=rfc3339(now_utc()), reason="InsufficientPods", message="")
            status["conditions"] = [*conditions, cond]
        pdb["metadata"]["resourceVersion"] = self.next_rv()

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
