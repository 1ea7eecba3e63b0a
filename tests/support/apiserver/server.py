"""The in-test fake kube-apiserver itself (tests only; never part of the product): FakeAPIServer, its TLS server
and request handler. See the package docstring."""

from __future__ import annotations

import base64
import copy
import datetime as dt
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
from typing import Any, Callable, Union
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.support.apiserver.auth import (
    ANONYMOUS,
    BUILTIN_CLUSTER_ROLE_BINDINGS,
    BUILTIN_CLUSTER_ROLES,
    Attributes,
    Identity,
    RBACAuthorizer,
    authenticate_token_secret,
    client_cert_identity,
    forbidden,
    node_authorizer_allows,
    node_name,
    signing_token,
)
from tests.support.apiserver.protocol import (
    ANONYMOUS_USER,
    APPLY_PATCH,
    BY_KIND,
    CLUSTER_INFO_PATH,
    CONFIGMAP,
    CSR_GROUP,
    CSR_TYPE,
    DEFAULT_NAMESPACES,
    EXTRA_GROUP_RE,
    KEY_USAGE_FLAGS,
    KUBELET_SIGNER,
    MERGE_PATCH,
    NODE_TOKEN_GROUP,
    POD,
    RBAC_GROUP,
    REVIEW_TYPES,
    SECRET,
    TOKEN_RE,
    USAGES,
    APIError,
    ResourceType,
    _csr_details,
    bad_request,
    cluster_info_kubeconfig,
    detached_jws,
    discovery_document,
    method_not_allowed,
    now_utc,
    path_not_found,
    rfc3339,
    status_body,
    validate_kubelet_client_csr,
)
from tests.support.apiserver.store import ObjectStore, RequestInfo, RESTStorage, normalize, parse_body, parse_request

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
    ``approval_delay`` for the CSR approver, ``cluster_info_override`` (replaces the served cluster-info data),
    ``second_fetch_override`` (the kubeconfig served from the second cluster-info GET on) and
    ``pod_termination_seconds`` (an evicted pod stays, with a deletionTimestamp, this long before it is gone, as a
    kubelet takes its grace period; default 0: gone at once). Records:
    ``requests`` (method, path, user, status of each request), ``csrs`` (CSRRecord by name),
    ``cluster_info_fetches``. ``static_tokens`` (bearer token -> (user, groups)) plays ``--token-auth-file``.
    Options, keyword-only:

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
    everyone. ``pods/<name>/eviction`` evicts as the real handler does (NodeRestriction, PodDisruptionBudgets by
    their status, 429 when a budget allows no disruption); no disruption controller runs, so a test sets a
    budget's ``status`` itself. Not served: watch, deletecollection, JSON patch, managedFields.
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
        self.csr_create_status = 201  # what a CSR create answers (some proxies say 200)
        self.pod_termination_seconds = 0.0
        # --token-auth-file's stand-in: bearer token -> (user, groups); empty unless a test adds some
        self.static_tokens: dict[str, tuple[str, list[str]]] = {}
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

    def update_object(
        self, api_version: str, kind: str, name: str, change: Callable[[dict[str, Any]], None], namespace: str = ""
    ) -> dict[str, Any] | None:
        """Apply ``change`` to a copy of a stored object and store it (a new resourceVersion when it changed), all
        under the server's lock, as a controller's read-modify-write of one field (e.g. a kubelet's status update)
        that keeps what API clients changed meanwhile. Returns the stored copy, None if there is no such object."""
        rt = BY_KIND[(api_version, kind)]
        if rt == CSR_TYPE:
            raise ValueError("update_object: CertificateSigningRequests are kept apart; use put_object")
        with self._lock:
            old = self.store.get(rt, namespace, name)
            if old is None:
                return None
            new = copy.deepcopy(old)
            change(new)
            if new != old:
                new["metadata"]["resourceVersion"] = self._next_rv()
                self.store.put(rt, new)
            return copy.deepcopy(new)

    def delete_object(self, api_version: str, kind: str, name: str, namespace: str = "") -> dict[str, Any] | None:
        """Remove a stored object at once (no grace period), as a kubelet removes a mirror pod; returns it, None if
        there was none."""
        rt = BY_KIND[(api_version, kind)]
        with self._lock:
            gone = self.csrs.pop(name, None) if rt == CSR_TYPE else self.store.delete(rt, namespace, name)
            return copy.deepcopy(dict(gone)) if gone is not None else None

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
        static = self.static_tokens.get(parts[1])
        if static is not None:  # the token authenticator of --token-auth-file
            return Identity(static[0], tuple(dict.fromkeys([*static[1], "system:authenticated"])))
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
        if info.rt == POD and info.subresource == "eviction":
            return self._evict(verb, info, query, who, body, content_type)
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

    def _evict(
        self, verb: str, info: RequestInfo, query: dict[str, list[str]], who: Identity, body: bytes, content_type: str
    ) -> tuple[int, Payload]:
        """POST .../pods/<name>/eviction: RESTStorage.evict's answer; the pod goes at once, or after
        ``pod_termination_seconds`` with a deletionTimestamp meanwhile."""
        if verb != "create":
            raise method_not_allowed()
        eviction = parse_body(body, content_type == "application/yaml")
        options = eviction.get("deleteOptions") or {}
        dry_run = "All" in query.get("dryRun", []) or "All" in (options.get("dryRun") or [])
        with self._lock:
            status, answer, pod = self.rest.evict(info.namespace or "", info.name, eviction, node_name(who), dry_run)
            if pod is not None and not dry_run and not pod["metadata"].get("deletionTimestamp"):
                self._terminate(pod)
        return status, answer

    def _terminate(self, pod: dict[str, Any]) -> None:
        """Delete a stored pod as the API server and its kubelet do: at once, or with a grace period."""
        meta = pod["metadata"]
        ns, name, uid, grace = meta["namespace"], meta["name"], meta["uid"], self.pod_termination_seconds
        if grace <= 0:
            self.store.delete(POD, ns, name)
            return
        meta["deletionTimestamp"] = rfc3339(now_utc() + dt.timedelta(seconds=grace))
        meta["deletionGracePeriodSeconds"] = max(1, round(grace))
        meta["resourceVersion"] = self._next_rv()

        def gone() -> None:
            with self._lock:
                current = self.store.get(POD, ns, name)
                if current is not None and current["metadata"]["uid"] == uid:
                    self.store.delete(POD, ns, name)

        timer = threading.Timer(grace, gone)
        timer.daemon = True
        self._timers.append(timer)
        timer.start()

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
        return self.csr_create_status, reply

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
        retry_after = payload.get("details", {}).get("retryAfterSeconds") if isinstance(payload, dict) else None
        if retry_after:  # as responsewriters.ErrorNegotiated sets it
            self.send_header("Retry-After", str(retry_after))
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:  # never echo requests (or credentials) to stderr
        pass
