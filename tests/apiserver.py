"""In-test fake kube-apiserver for the node-join runtime -- tests only; never part of the product.

No kube-apiserver binary can be had on this machine, so the runtime's API side is tested against this
HTTPS server. It speaks the wire format of the endpoints a joining node uses, as a kube-apiserver with
kubeadm's RBAC plus the kube-controller-manager (bootstrapsigner, csrapproving, csrsigning) look to a
client: anonymous ``kube-public/cluster-info`` with ``jws-kubeconfig-<id>`` keys, bootstrap-token bearer
authentication, and CertificateSigningRequest create / auto-approve / sign / get. Byte-level reference:
../shared/protocol/README.md sections 1-3, 5, 6 and the vectors next to it.
"""

from __future__ import annotations

import base64
import copy
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
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CLUSTER_INFO_PATH = "/api/v1/namespaces/kube-public/configmaps/cluster-info"
CSR_PATH = "/apis/certificates.k8s.io/v1/certificatesigningrequests"
KUBELET_SIGNER = "kubernetes.io/kube-apiserver-client-kubelet"
NODE_TOKEN_GROUP = "system:bootstrappers:kubeadm:default-node-token"
TOKEN_RE = re.compile(r"\A([a-z0-9]{6})\.([a-z0-9]{16})\Z")
EXTRA_GROUP_RE = re.compile(r"\Asystem:bootstrappers:[a-z0-9:-]{0,255}[a-z0-9]\Z")
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


def _csr_details(name: str, kind: str = "certificatesigningrequests") -> dict[str, Any]:
    return {"name": name, "group": "certificates.k8s.io", "kind": kind}


class CSRRecord(dict[str, Any]):
    """A stored CSR object (the dict) plus test-visible bookkeeping that never reaches the wire."""

    pending_reason: str | None = None
    created: float = 0.0


class FakeAPIServer:
    """kube-apiserver + controller-manager stand-in (tests only). Knobs are plain attributes, see the brief."""

    def __init__(
        self,
        ca_cert_pem: bytes,
        ca_key_pem: bytes,
        tokens: list[dict],
        *,
        kubeadm_minor: int = 35,
        host: str = "127.0.0.1",
        server_ca: tuple[bytes, bytes] | None = None,
    ) -> None:
        self.ca_cert_pem = ca_cert_pem
        self.ca_cert = x509.load_pem_x509_certificate(ca_cert_pem)
        self.ca_key = serialization.load_pem_private_key(ca_key_pem, password=None)
        self.tokens = tokens
        self.kubeadm_minor = kubeadm_minor
        self.host = host
        self.server_ca = server_ca
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

    # -- lifecycle -------------------------------------------------------------------------------------------
    def start(self) -> FakeAPIServer:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        cert_pem, key_pem = self._serving_cert()
        with tempfile.TemporaryDirectory() as tmp:
            cert_file, key_file = os.path.join(tmp, "tls.crt"), os.path.join(tmp, "tls.key")
            with open(cert_file, "wb") as f:
                f.write(cert_pem)
            with open(key_file, "wb") as f:
                f.write(key_pem)
            ctx.load_cert_chain(cert_file, key_file)
        handler = type("Handler", (_Handler,), {"api": self})
        httpd = _TLSServer((self.host, 0), handler)
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

    # -- authentication (§1) ---------------------------------------------------------------------------------
    def _authenticate(self, authorization: str | None) -> tuple[str, list[str]] | None:
        """(user, groups); None (= 401) for a bearer token that does not authenticate. Like Go's bearertoken
        authenticator, a missing/non-bearer/empty Authorization header is anonymous, not an error."""
        parts = (authorization or "").strip().split(" ", 2)
        if len(parts) < 2 or parts[0].lower() != "bearer" or not parts[1]:
            return "system:anonymous", ["system:unauthenticated"]
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
                return f"system:bootstrap:{m.group(1)}", sorted(
                    {"system:bootstrappers", *groups, "system:authenticated"}
                )
        return None

    @staticmethod
    def _expired(tok: dict) -> bool:
        exp = tok.get("expires")
        if exp is None:
            return False
        if exp.tzinfo is None:
            exp = exp.replace(tzinfo=dt.timezone.utc)
        return bool(exp <= now_utc())

    # -- request dispatch ------------------------------------------------------------------------------------
    def handle(
        self, method: str, raw_path: str, authorization: str | None, body: bytes
    ) -> tuple[int, dict, str | None]:
        """Returns (HTTP status, JSON body, user) for one request; user is None when authentication failed."""
        auth = self._authenticate(authorization)
        user, groups = auth if auth is not None else (None, [])
        if time.monotonic() - self._started < self.unavailable_for:
            msg = "the server is currently unable to handle the request"
            return 503, status_body(503, "ServiceUnavailable", msg), user
        if user is None:
            return 401, status_body(401, "Unauthorized", "Unauthorized"), user
        url = urlsplit(raw_path)
        path, query = url.path.rstrip("/"), parse_qs(url.query)
        name = path[len(CSR_PATH) + 1 :] if path.startswith(CSR_PATH + "/") else ""
        if path == CLUSTER_INFO_PATH:
            if method != "GET" or user != "system:anonymous":  # kubeadm binds the Role to system:anonymous only
                verb = VERBS.get(method, method.lower())
                return 403, self._forbidden(user, verb, "configmaps", "", "cluster-info", "kube-public"), user
            return 200, self._cluster_info(), user
        if path == CSR_PATH or (name and "/" not in name):
            verb = VERBS.get(method, method.lower()) if method != "GET" or name else "list"
            verb = "watch" if verb == "list" and query.get("watch", ["false"])[0] in ("true", "1") else verb
            if verb not in ("create", "get", "list", "watch") or "system:bootstrappers" not in groups:
                return 403, self._forbidden(user, verb, "certificatesigningrequests", "certificates.k8s.io", name), user
            if verb == "create" and not name:
                return (*self._create_csr(body, user, groups), user)
            if verb == "get":
                return (*self._get_csr(name), user)
            if verb == "list":
                return 200, self._list_csrs(query), user
            if verb == "watch":
                return 400, status_body(400, "BadRequest", "watch is not supported by this test server"), user
            return 405, status_body(405, "MethodNotAllowed", "the server does not allow this method"), user
        return 404, status_body(404, "NotFound", "the server could not find the requested resource"), user

    @staticmethod
    def _forbidden(user: str, verb: str, resource: str, group: str, name: str, ns: str = "") -> dict[str, Any]:
        res = f"{resource}.{group}" if group else resource
        what = f'{res} "{name}"' if name else res
        scope = f'in the namespace "{ns}"' if ns else "at the cluster scope"
        msg = f'{what} is forbidden: User "{user}" cannot {verb} resource "{resource}" in API group "{group}" {scope}'
        details = {"name": name, "group": group, "kind": resource} if name else {"group": group, "kind": resource}
        return status_body(403, "Forbidden", msg, details)

    def _next_rv(self) -> str:
        self._rv += 1
        return str(self._rv)

    # -- cluster-info (§2, §3) -------------------------------------------------------------------------------
    def real_kubeconfig(self) -> str:
        return cluster_info_kubeconfig(self.ca_cert_pem, f"https://{self.endpoint}", self.kubeadm_minor)

    def _cluster_info(self) -> dict[str, Any]:
        with self._lock:
            self.cluster_info_fetches += 1
            later = self.cluster_info_fetches > 1
            kubeconfig = self.real_kubeconfig()
            data = {"kubeconfig": kubeconfig}
            for tok in self.tokens:
                m = TOKEN_RE.fullmatch(str(tok.get("token", "")))
                if m and not self._expired(tok) and "signing" in tok.get("usages", ["signing", "authentication"]):
                    data[f"jws-kubeconfig-{m.group(1)}"] = detached_jws(m.group(1), m.group(2), kubeconfig)
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

    # -- CertificateSigningRequests (§6) ---------------------------------------------------------------------
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
            if spec["signerName"] != KUBELET_SIGNER:
                rec.pending_reason = f"signerName is not {KUBELET_SIGNER}"
            elif NODE_TOKEN_GROUP not in groups:
                rec.pending_reason = f"requester is not in {NODE_TOKEN_GROUP} (no nodeclient permission)"
            else:
                assert csr is not None
                rec.pending_reason = validate_kubelet_client_csr(csr, spec["usages"])
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

    def _reconcile(self) -> None:
        """The csrapproving + csrsigning controllers: act on every pending CSR whose approval_delay has passed."""
        with self._lock:
            now = time.monotonic()
            for rec in self.csrs.values():
                if rec["status"].get("conditions") or now - rec.created < self.approval_delay:
                    continue
                stamp = rfc3339(now_utc())
                cond = {"lastUpdateTime": stamp, "lastTransitionTime": stamp, "status": "True"}
                if self.deny:
                    cond.update(type="Denied", reason="NodeDenied", message="denied by test")
                elif self.approve and rec.pending_reason is None:
                    cond.update(
                        type="Approved",
                        reason="AutoApproved",
                        message="Auto approving kubelet client certificate after SubjectAccessReview.",
                    )
                    rec["status"]["certificate"] = base64.b64encode(self._sign(rec)).decode("ascii")
                else:
                    continue
                rec["status"]["conditions"] = [cond]
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
        try:
            status, payload, user = self.api.handle(self.command, self.path, self.headers.get("Authorization"), body)
        except Exception as e:  # a bug in this fake must show up as a 500, not a dropped connection
            status, payload, user = 500, status_body(500, "InternalError", f"fake apiserver error: {e!r}"), None
        with self.api._lock:
            self.api.requests.append({"method": self.command, "path": self.path, "user": user, "status": status})
        data = json.dumps(payload, separators=(",", ":")).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:  # never echo requests (or credentials) to stderr
        pass
