"""A running cluster's API, from the operator's machine: what ``token create|delete|list|upload``, ``user create
--clusterrole`` and ``upgrade plan|apply`` change or read there.

Who kubeseed is there: the cluster directory holds the CA key, so by default kubeseed makes itself a short-lived
admin client certificate (user ``kubeseed-admin``, group ``kubeadm:cluster-admins``, which init binds to
cluster-admin as kubeadm does), in memory, for the length of one command; ``--kubeconfig FILE`` uses that file's
credential instead. Every request is one bounded attempt through the runtime's own ``api.call`` (JSON over HTTPS
with the cluster CA, at most TIMEOUT seconds), so an unreachable cluster answers fast; NotReached and Refused say
which of the two went wrong. Objects are built by the same code as init's (bootstrap-token Secrets, RBAC
bindings)."""

from __future__ import annotations

import base64
import binascii
import datetime
import re
import shutil
import tempfile
import urllib.parse
from pathlib import Path
from types import TracebackType
from typing import Any

from kubeseed.runtime import api
from kubeseed.runtime.init.apiclient import KINDS, KeyFiles
from kubeseed.runtime.init.controlplane import ADMIN_GROUP
from kubeseed.runtime.init.objects import binding
from kubeseed.runtime.kubeconfig import read_kubeconfig
from kubeseed.runtime.tokens import TOKEN_ID_RE, ca_pin
from kubeseed.runtime.workflow import PhaseError, clean

from .errors import UserError, shown
from .model import Cluster
from .secrets import ClusterSecrets
from .tokens import USAGES, BootstrapToken

ADMIN_USER = "kubeseed-admin"
ADMIN_MINUTES = 10  # lifetime of kubeseed's own admin certificate (backdated 5 minutes, as kubeadm's are)
TIMEOUT = 5.0  # seconds one request may take, connection included
SECRETS = "/api/v1/namespaces/kube-system/secrets"
TOKEN_TYPE = "bootstrap.kubernetes.io/token"
NAMESPACE_RE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")  # an RFC 1123 label, as namespace names are
_PEM_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)


class NotReached(Exception):
    """No answer from the cluster's API server: refused or timed out, or a server without this cluster's CA."""


class Refused(Exception):
    """The API server answered, but did not do what was asked (no permission, an object in the way, ...)."""


def _key_files(cert_pem: bytes, key_pem: bytes) -> tuple[KeyFiles, tuple[str, str]]:
    """The credential where the ssl module can load it, as init's API client keeps its own: in memory (memfd);
    only where the OS has none (not Linux), 0600 files in a private temporary directory, removed on close."""
    files = KeyFiles(tempfile.mkdtemp(prefix="kubeseed-api-"))  # 0700
    try:
        return files, files.pair(cert_pem, key_pem)
    except BaseException:
        shutil.rmtree(files.fallback_dir, ignore_errors=True)
        raise


class ClusterAPI:
    """One cluster's API server as one user (a client certificate or a bearer token); ``with`` closes the
    credential's in-memory files. ``who`` says who that is, for messages."""

    def __init__(
        self, server: str, ca: bytes, who: str, cert: tuple[bytes, bytes] | None = None, token: str = ""
    ) -> None:
        self.server, self.ca, self.who, self.token = server.rstrip("/"), ca, who, token
        self._files: KeyFiles | None = None
        self._cert: tuple[str, str] | None = None
        if cert:
            self._files, self._cert = _key_files(*cert)

    def close(self) -> None:
        if self._files is not None:
            self._files.close()
            shutil.rmtree(self._files.fallback_dir, ignore_errors=True)
            self._files = None

    def __enter__(self) -> ClusterAPI:
        return self

    def __exit__(self, kind: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def request(
        self, method: str, path: str, body: Any = None, content_type: str = "application/json"
    ) -> tuple[int, dict[str, Any]]:
        """(HTTP status, JSON object) of one request, within TIMEOUT seconds; NotReached when there is no answer."""
        try:
            return api.call(self.server + path, self.ca, self.token, method, body, TIMEOUT, self._cert, content_type)
        except api.Untrusted as e:
            raise NotReached(
                f"{self.server} does not present a certificate of this cluster's CA ({clean(str(e))})"
            ) from None
        except api.Unreachable as e:
            raise NotReached(f"no answer from {self.server} ({clean(str(e))})") from None

    def _refused(self, what: str, status: int, out: dict[str, Any]) -> Refused:
        message = clean(str(out.get("message") or "")) or "no message"
        return Refused(f"the API server at {self.server} refused to {what} as {self.who} (HTTP {status}: {message})")

    # -- bootstrap tokens ---------------------------------------------------------------------------------------
    def create_token(self, token: BootstrapToken) -> None:
        """Create the token's Secret as init does (kube-system/bootstrap-token-<id>); Refused if one exists."""
        status, out = self.request("POST", SECRETS, token_secret(token))
        if status != 201:
            raise self._refused(f"create Secret kube-system/bootstrap-token-{token.id}", status, out)

    def delete_token(self, token_id: str) -> bool:
        """Delete the token's Secret; False when the cluster held none."""
        status, out = self.request("DELETE", f"{SECRETS}/bootstrap-token-{token_id}")
        if status == 404:
            return False
        if status not in (200, 202):
            raise self._refused(f"delete Secret kube-system/bootstrap-token-{token_id}", status, out)
        return True

    def tokens(self) -> dict[str, BootstrapToken]:
        """The bootstrap tokens the cluster holds (its kube-system bootstrap-token-<id> Secrets), by id."""
        selector = urllib.parse.quote(f"type={TOKEN_TYPE}", safe="=")
        status, out = self.request("GET", f"{SECRETS}?fieldSelector={selector}")
        if status != 200 or not isinstance(out.get("items"), list):
            raise self._refused("list the bootstrap-token Secrets in kube-system", status, out)
        held = {}
        for item in out["items"]:
            tok = secret_token(item) if isinstance(item, dict) else None
            if tok is not None:
                held[tok.id] = tok
        return held

    # -- any object ---------------------------------------------------------------------------------------------
    def get(self, path: str, what: str) -> dict[str, Any] | None:
        """The object (or list) at API ``path``, None when there is none (404); ``what`` names it for Refused."""
        status, out = self.request("GET", path)
        if status == 404:
            return None
        if status != 200:
            raise self._refused(f"read {what}", status, out)
        return out

    def apply(self, obj: dict[str, Any]) -> int:
        """Server-side apply of an object of a kind init makes (RBAC roles and bindings, ConfigMaps, ...: the
        runtime's KINDS): creates it, or brings it to this content (safe to repeat); the HTTP status (201 created,
        200 already there)."""
        version, kind, meta = obj["apiVersion"], obj["kind"], obj["metadata"]
        plural, namespaced = KINDS[(version, kind)]
        base = "/api/v1" if version == "v1" else f"/apis/{version}"
        ns = f"/namespaces/{meta['namespace']}" if namespaced else ""
        name = urllib.parse.quote(meta["name"], safe=":")
        query = urllib.parse.urlencode({"fieldManager": "kubeseed", "force": "true"})
        path = f"{base}{ns}/{plural}/{name}?{query}"
        status, out = self.request("PATCH", path, obj, "application/apply-patch+yaml")
        if status not in (200, 201):
            where = f" in namespace {meta['namespace']}" if meta.get("namespace") else ""
            raise self._refused(f"apply {kind} {meta['name']}{where}", status, out)
        return status


# -- the objects ------------------------------------------------------------------------------------------------


def token_secret(token: BootstrapToken) -> dict[str, Any]:
    """The token's Secret exactly as init writes it (the runtime's own builder: kubeadm's format)."""
    from kubeseed.runtime.init.apiphases import token_secret as build

    return build(token.to_dict())


def secret_literals(token: BootstrapToken) -> list[tuple[str, str]]:
    """The token Secret's data, decoded: what ``kubectl create secret generic --from-literal`` takes."""
    return [(k, base64.b64decode(v).decode()) for k, v in token_secret(token)["data"].items()]


def _data(secret: dict[str, Any]) -> dict[str, str]:
    data = secret.get("data")
    out = {}
    for key, value in (data if isinstance(data, dict) else {}).items():
        try:
            out[str(key)] = base64.b64decode(str(value), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            continue
    return out


def secret_token(secret: dict[str, Any]) -> BootstrapToken | None:
    """The token a bootstrap-token Secret holds (as the API server reads it), None if it holds none."""
    name = str((secret.get("metadata") or {}).get("name", ""))
    data = _data(secret)
    token_id, token_secret = data.get("token-id", ""), data.get("token-secret", "")
    if secret.get("type") != TOKEN_TYPE or name != f"bootstrap-token-{token_id}" or not TOKEN_ID_RE.fullmatch(token_id):
        return None
    if not re.fullmatch(r"[a-z0-9]{16}", token_secret):
        return None
    expires = None
    if data.get("expiration"):
        try:
            expires = datetime.datetime.fromisoformat(data["expiration"].replace("Z", "+00:00"))
        except ValueError:
            expires = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)  # unparseable: expired (as Go)
        if expires.tzinfo is None:
            expires = expires.replace(tzinfo=datetime.timezone.utc)
    usages = [u for u in USAGES if data.get(f"usage-bootstrap-{u}") == "true"]
    groups = [g for g in data.get("auth-extra-groups", "").split(",") if g]
    return BootstrapToken(f"{token_id}.{token_secret}", data.get("description", ""), expires, usages, groups)


def user_binding(user: str, clusterrole: str, namespace: str = "") -> dict[str, Any]:
    """The binding ``user create --clusterrole`` makes: ClusterRoleBinding ``kubeseed:<user>:<role>``, or with a
    namespace a RoleBinding of that name there (the ClusterRole's rights in that namespace only)."""
    kind = "RoleBinding" if namespace else "ClusterRoleBinding"
    return binding(kind, binding_name(user, clusterrole), "ClusterRole", clusterrole, [("User", user)], namespace)


def binding_name(user: str, clusterrole: str) -> str:
    return f"kubeseed:{user}:{clusterrole}"


# -- who kubeseed is on the cluster -----------------------------------------------------------------------------


def connect(cluster: Cluster, secrets: ClusterSecrets, cluster_dir: Path, kubeconfig: str | None) -> ClusterAPI:
    """The cluster's API as kubeseed's own admin (a certificate from the cluster CA, valid ADMIN_MINUTES, in
    memory), or as ``kubeconfig``'s first user. Connects to nothing yet; a bad ``kubeconfig`` is a UserError."""
    if kubeconfig is not None:
        return _from_kubeconfig(kubeconfig, secrets)
    from kubeseed.runtime import pki

    key = pki.new_key("ECDSA-P256")  # any key type serves a client; P-256 is made at once
    cert = pki.sign_leaf(
        secrets.ca_cert,
        pki.load_key(secrets.pki["ca.key"]),
        key.public_key(),
        ADMIN_USER,
        [ADMIN_GROUP],
        client=True,
        days=ADMIN_MINUTES / (24 * 60),
    )
    who = f"{ADMIN_USER} (group {ADMIN_GROUP}, a {ADMIN_MINUTES}-minute certificate from {cluster_dir}/pki/ca.key)"
    return ClusterAPI(
        f"https://{cluster.control_plane_endpoint}", secrets.pki["ca.crt"], who, (pki.cert_pem(cert), pki.key_pem(key))
    )


def _from_kubeconfig(path: str, secrets: ClusterSecrets) -> ClusterAPI:
    flag = f"--kubeconfig: {shown(path)}"
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except OSError as e:
        raise UserError(f"{flag}: cannot read it ({e.strerror or e})") from None
    except UnicodeDecodeError:
        raise UserError(f"{flag}: is not UTF-8 text; name a kubeconfig file") from None
    try:
        server, ca, user = read_kubeconfig(text, "it")
    except PhaseError:
        raise UserError(
            f"{flag}: is not a kubeconfig kubeseed can use: it reads the first cluster's server and "
            "certificate-authority-data and the first user's client-certificate-data and client-key-data, or token"
        ) from None
    if not isinstance(server, str) or not server.startswith("https://"):
        raise UserError(f"{flag}: its server {shown(server)} is not an https:// URL")
    pins = []
    for pem in _PEM_CERT.findall(ca):
        try:
            pins.append(ca_pin(pem))
        except ValueError:
            continue
    if not pins:
        raise UserError(f"{flag}: its certificate-authority-data holds no PEM certificate")
    if secrets.ca_pin not in pins:
        raise UserError(
            f"{flag}: its certificate authority ({pins[0]}) is not this cluster's ({secrets.ca_pin}); it is a "
            "kubeconfig for another cluster: name one of this cluster's"
        )
    who = f"the first user of --kubeconfig {path}"
    user = user if isinstance(user, dict) else {}
    if user.get("client-certificate-data") and user.get("client-key-data"):
        from kubeseed.runtime import pki

        try:
            cert, key = (
                base64.b64decode(str(user[k]), validate=True) for k in ("client-certificate-data", "client-key-data")
            )
            pki.load_cert(cert)
            pki.load_key(key)
        except (ValueError, TypeError):  # binascii.Error is a ValueError; TypeError: a key with a passphrase
            raise UserError(
                f"{flag}: its client-certificate-data and client-key-data are not a PEM certificate and key"
            ) from None
        return ClusterAPI(server, ca, who, (cert, key))
    if isinstance(user.get("token"), str) and user["token"]:
        return ClusterAPI(server, ca, who, token=user["token"])
    raise UserError(
        f"{flag}: its first user has neither client-certificate-data and client-key-data nor a token (kubeseed "
        "does not run exec plugins or read credential files); use a kubeconfig that carries its credential"
    )
