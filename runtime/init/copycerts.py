"""kubeadm's kube-system/kubeadm-certs Secret, both ways (kubeadm's copycerts phase).

upload: the cluster's CA, front-proxy CA, etcd CA and service-account keys, each encrypted with a certificate key
(AES-256-GCM, the nonce in front), in a Secret that a 2-hour bootstrap token's Secret owns (the garbage collector
deletes it with the token), readable by kubeadm's node bootstrap tokens: `kubeadm join --control-plane
--certificate-key KEY` takes its certificates from there. download: the same Secret read with a joining machine's
bootstrap token, decrypted, checked (each key belongs to its certificate) and written to /etc/kubernetes/pki, for
`join --control-plane --certificate-key KEY` against a kubeadm-made control plane."""

from __future__ import annotations

import base64
import datetime
import os
import re
import secrets
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from .. import api
from ..kubeconfig import b64
from ..workflow import Context, PhaseError, confine, write_atomic
from .apiclient import Client, with_client
from .apiphases import token_secret
from .controlplane import PKI, read
from .objects import NODE_GROUP, binding, meta, role, rule

SECRET, NAMESPACE = "kubeadm-certs", "kube-system"
WHERE = f"{NAMESPACE}/{SECRET}"
SECRET_PATH = f"/api/v1/namespaces/{NAMESPACE}/secrets/{SECRET}"
RBAC_NAME = "kubeadm:" + SECRET  # the Role and its RoleBinding
TTL = datetime.timedelta(hours=2)  # the token's, so the Secret's
TTL_DESCRIPTION = "Proxy for managing TTL for the kubeadm-certs secret"
# What kubeadm shares with stacked etcd, and which key belongs to which certificate (or public key)
PAIRS = {"ca.key": "ca.crt", "front-proxy-ca.key": "front-proxy-ca.crt", "sa.key": "sa.pub"}
PAIRS["etcd/ca.key"] = "etcd/ca.crt"  # stacked etcd's CA (external etcd's client files are not ours to share)
FILES = tuple(f for pair in PAIRS.items() for f in reversed(pair))  # ca.crt, ca.key, front-proxy-ca.crt, ...
NONCE = 12  # bytes: GCM's standard nonce, as Go's cipher.NewGCM uses
TAG = 16
NEW_KEY = "On a control-plane node, `kubeadm init phase upload-certs --upload-certs` uploads them anew with a new key"


def certificate_key() -> str:
    """A new certificate key as kubeadm makes one: 32 random bytes (an AES-256 key) in lower-case hex."""
    return secrets.token_hex(32)


def key_bytes(key: str) -> bytes:
    """The AES key a certificate key encodes; the error never repeats the key."""
    if not re.fullmatch("[0-9a-fA-F]{64}", key):
        raise PhaseError(f"a certificate key is 64 hexadecimal characters (32 bytes); this one is not. {NEW_KEY}")
    return bytes.fromhex(key)


def entry(name: str) -> str:
    """The Secret's data key for a file under the PKI directory: ``etcd/ca.crt`` is ``etcd-ca.crt``."""
    return name.replace("/", "-")


def encrypt(data: bytes, key: bytes, nonce: Optional[bytes] = None) -> bytes:
    """kubeadm's EncryptBytes: nonce || AES-GCM ciphertext || tag, no associated data; the nonce is random unless
    given (tests)."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    nonce = os.urandom(NONCE) if nonce is None else nonce
    return nonce + AESGCM(key).encrypt(nonce, data, None)


def decrypt(blob: bytes, key: bytes) -> bytes:
    """kubeadm's DecryptBytes; ValueError when ``blob`` is too short, InvalidTag when the key is not the one it was
    encrypted with or the data was altered."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    if len(blob) < NONCE + TAG:
        raise ValueError("shorter than a nonce and a tag")
    return AESGCM(key).decrypt(blob[:NONCE], blob[NONCE:], None)


def ttl_token(now: Optional[datetime.datetime] = None) -> dict:
    """The bootstrap-token Secret upload-certs makes first: a new random token, expiring 2 hours from ``now``, that
    authenticates nobody and signs nothing (no usages, no groups); it only owns kubeadm-certs."""
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    token = ".".join("".join(secrets.choice(alphabet) for _ in range(n)) for n in (6, 16))
    until = (now or datetime.datetime.now(datetime.timezone.utc)).astimezone(datetime.timezone.utc) + TTL
    obj = token_secret({"token": token, "description": TTL_DESCRIPTION, "expires": f"{until:%Y-%m-%dT%H:%M:%SZ}"})
    # token_secret gives a token without usages or groups a node token's; kubeadm gives this one none
    data = obj["data"]
    obj["data"] = {k: v for k, v in data.items() if not k.startswith("usage-bootstrap-") and k != "auth-extra-groups"}
    return obj


def certs_secret(files: Mapping[str, bytes], key: str, owner: Mapping[str, Any]) -> List[dict]:
    """What upload-certs applies once its token's Secret exists: kubeadm-certs holding each of FILES encrypted with
    ``key``, owned by ``owner`` (that Secret as the API server returned it: its name and uid) as kubeadm's
    controller reference, then the Role and RoleBinding that let kubeadm's node bootstrap tokens get it."""
    aes = key_bytes(key)
    owner_meta = owner.get("metadata") or {}
    if not owner_meta.get("name") or not owner_meta.get("uid"):
        raise PhaseError("the API server returned the upload-certs token's Secret without a name and uid")
    ref = {"apiVersion": "v1", "kind": "Secret", "name": owner_meta["name"], "uid": owner_meta["uid"]}
    ref.update(controller=True, blockOwnerDeletion=True)
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": dict(meta(SECRET, NAMESPACE), ownerReferences=[ref]),
        "data": {entry(f): b64(encrypt(files[f], aes)) for f in FILES},
    }
    readers = [("Group", NODE_GROUP)]
    return [
        secret,
        role("Role", RBAC_NAME, [rule([""], ["secrets"], ["get"], [SECRET])], NAMESPACE),
        binding("RoleBinding", RBAC_NAME, "Role", RBAC_NAME, readers, NAMESPACE),
    ]


def read_pki(ctx: Context) -> Dict[str, bytes]:
    """FILES as they are under the PKI directory."""
    files = {}
    for f in FILES:
        data = read(confine(ctx.path(f"{PKI}/{f}")))
        if not data:
            raise PhaseError(f"{PKI}/{f} is missing or empty: run the certs phase first")
        files[f] = data
    return files


def upload_certs(ctx: Context, key: str) -> None:
    """kubeadm's upload-certs phase: the token first (its Secret's uid is the owner reference), then kubeadm-certs
    encrypted with ``key``, its Role and RoleBinding, as admin.conf's user. Each run uploads anew, with a new token
    (as kubeadm); the key is not printed here."""
    files = read_pki(ctx)
    key_bytes(key)  # a bad key stops the phase before anything is created
    token = ttl_token()
    ctx.say(f'\t[upload-certs] Storing the certificates in Secret "{SECRET}" in the "{NAMESPACE}" Namespace')

    def upload(c: Client) -> None:
        c.apply_all(certs_secret(files, key, c.apply(token)))

    with_client(ctx, "admin.conf", upload)


Call = Callable[[str], Tuple[int, Dict[str, Any]]]


def bootstrap_call(ctx: Context, conf: str) -> Tuple[Call, bytes]:
    """(``call(path)``, CA): GET as the joining machine's bootstrap token, from the kubeconfig ``conf`` discovery
    wrote (join.discovery.BOOTSTRAP_CONF), over TLS verified by the CA discovery pinned (api.Untrusted if another
    server answers); and that CA."""
    from ..kubeconfig import read_kubeconfig

    try:
        with open(confine(ctx.path(conf))) as f:
            server, ca, creds = read_kubeconfig(f.read(), conf)
    except FileNotFoundError:
        raise PhaseError(f"{conf} is missing: run the discovery phase first") from None
    token = str(creds.get("token", ""))
    return lambda path: api.call(server.rstrip("/") + path, ca, token, deadline=ctx.deadline), ca


def download_certs(ctx: Context, call: Call, key: str, ca: Optional[bytes] = None) -> None:
    """kubeadm's download-certs: kubeadm-certs fetched with ``call`` (see bootstrap_call), every entry decrypted
    with ``key``, each key checked against its certificate (and the CA against ``ca``, the cluster CA discovery
    verified, when given), then the files written under the PKI directory, keys 0600, the rest 0644. Nothing is
    written unless all of it is right; a file there already must be the same."""
    aes = key_bytes(key)
    ctx.say(f'\t[download-certs] Downloading the certificates in Secret "{SECRET}" in the "{NAMESPACE}" Namespace')
    try:
        data = api.wait(ctx, WHERE, lambda: _fetch(call))
    except api.Untrusted as e:
        raise PhaseError(f"the API server does not present a certificate of the discovered cluster CA ({e})") from None
    files = _checked(_decrypted(data, aes), ca)
    paths = {f: ctx.path(f"{PKI}/{f}") for f in FILES}
    have = {f: read(confine(paths[f])) for f in FILES}
    for f in FILES:
        if have[f] not in (None, files[f]):
            raise PhaseError(
                f"{PKI}/{f} exists and is not the one in {WHERE} (left by another cluster?): remove {PKI} or run "
                "reset, then join again"
            )
    written = [f for f in FILES if have[f] is None]
    for f in written:
        write_atomic(paths[f], files[f], 0o600 if f.endswith(".key") else 0o644)
    ctx.say(f"\t[download-certs] {'wrote ' + ', '.join(written) if written else 'all files exist already'} in {PKI}")


def _fetch(call: Call) -> Dict[str, Any]:
    status, obj = call(SECRET_PATH)
    message = obj.get("message", "")
    if status == 200 and isinstance(obj.get("data"), dict):
        return dict(obj["data"])
    if status == 404:
        raise PhaseError(
            f'Secret "{SECRET}" was not found in the "{NAMESPACE}" Namespace: it is deleted with its token 2 hours '
            f"after the upload. {NEW_KEY}; join with that key"
        )
    if status == 401:
        raise PhaseError(f"the API server does not accept the bootstrap token (HTTP 401: {message}): create a new one")
    if status == 403:
        raise PhaseError(
            f"the bootstrap token may not read {WHERE} (HTTP 403: {message}): kubeadm's Role {RBAC_NAME} lets tokens "
            f"of the group {NODE_GROUP} get it; join with such a token (kubeadm token create)"
        )
    if status >= 500 or status == 429:
        raise api.Unreachable(f"HTTP {status}: {message}")
    raise PhaseError(f"cannot read {WHERE} (HTTP {status}: {message or 'no data in it'})")


def _decrypted(data: Mapping[str, Any], aes: bytes) -> Dict[str, bytes]:
    """Every entry decrypted (kubeadm decrypts them all, and an empty one stays empty): one that does not is an
    error, a wrong key when none does."""
    from cryptography.exceptions import InvalidTag

    plain: Dict[str, bytes] = {}
    failed = []
    for name, value in sorted(data.items()):
        try:
            if not isinstance(value, str):
                raise ValueError("not base64 text")
            blob = base64.b64decode(value, validate=True)  # binascii.Error is a ValueError
            plain[name] = decrypt(blob, aes) if blob else b""
        except (ValueError, InvalidTag):
            failed.append(name)
    if failed and not any(plain.values()):
        raise PhaseError(
            f"the certificate key does not decrypt {WHERE}: it is not the key the certificates were uploaded with. "
            f"{NEW_KEY}"
        )
    if failed:
        raise PhaseError(
            f"{WHERE}: {', '.join(failed)} {'does' if len(failed) == 1 else 'do'} not decrypt with the key that "
            f"decrypts the other entries (altered or damaged). {NEW_KEY}"
        )
    return plain


def load_pem(name: str, data: bytes) -> Any:
    """A PKI file's content loaded as its name's ending says: ``.crt`` a certificate, ``.pub`` a public key, ``.key``
    an ECDSA or RSA private key; ValueError saying which it is not (never quoting the data: it may be a key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    from ..keys import load_key

    loaders: Dict[str, Tuple[Callable[[bytes], Any], str]] = {
        ".crt": (x509.load_pem_x509_certificate, "certificate"),
        ".pub": (serialization.load_pem_public_key, "public key"),
        ".key": (load_key, "ECDSA or RSA private key without a password"),
    }
    load, kind = loaders[os.path.splitext(name)[1]]
    try:
        return load(data)
    except Exception:  # whatever cryptography raises for data it cannot load
        raise ValueError(f"is not a PEM {kind}") from None


def _checked(plain: Mapping[str, bytes], ca: Optional[bytes]) -> Dict[str, bytes]:
    """FILES from the decrypted entries, each loading as what its name says, each key its certificate's, and the CA
    the one discovery verified (when ``ca`` is given)."""
    from ..keys import spki
    from ..tokens import ca_pin

    files, loaded = {}, {}
    for f in FILES:
        data = plain.get(entry(f))
        if not data:
            raise PhaseError(
                f"{WHERE} has no {entry(f)}{'' if data is None else ' (it is empty)'}: a control plane joins with "
                f"all of {', '.join(map(entry, FILES))}. {NEW_KEY}"
            )
        try:
            loaded[f] = load_pem(f, data)
        except ValueError as e:
            raise PhaseError(f"{entry(f)} in {WHERE} {e}") from None
        files[f] = data
    for key, pub in PAIRS.items():
        if spki(loaded[key]) != spki(loaded[pub]):
            raise PhaseError(f"{entry(key)} in {WHERE} is not the key of {entry(pub)}: upload the certificates again")
    if ca is not None:
        pins = {ca_pin(b) for b in re.findall(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", ca, re.S)}
        if ca_pin(loaded["ca.crt"]) not in pins:
            raise PhaseError(
                f"ca.crt in {WHERE} ({ca_pin(loaded['ca.crt'])}) is not the cluster CA discovery verified "
                f"({', '.join(sorted(pins))}): refusing it"
            )
    return files
