"""join's TLS bootstrap: the node's key, a CSR as system:bootstrap:<id>, the signed client certificate,
kubelet.conf (as the kubelet writes it after its own bootstrap) and the cluster CA for the kubelet."""

from __future__ import annotations

import base64
import datetime
import hashlib
import os
from typing import Any, List

from .. import api
from ..kubeconfig import b64, kubeconfig, read_kubeconfig
from ..tokens import b64url
from ..workflow import Context, PhaseError, Timeout, confine, write_atomic
from .discovery import BOOTSTRAP_CONF

CSRS = "/apis/certificates.k8s.io/v1/certificatesigningrequests"
KUBELET_CONF = "/etc/kubernetes/kubelet.conf"
CA_CRT = "/etc/kubernetes/pki/ca.crt"
PKI_DIR = "/var/lib/kubelet/pki"
KEY_TMP = PKI_DIR + "/kubelet-client.key.tmp"
CURRENT = PKI_DIR + "/kubelet-client-current.pem"
KUBELET_SIGNER = "kubernetes.io/kube-apiserver-client-kubelet"


def csr_name(spki: bytes, cn: str, orgs: List[str], usages: List[str]) -> str:
    """The kubelet's deterministic CSR name: one key, one name, so a re-run finds its own CSR again."""
    h = hashlib.new("sha512_256")
    for item in [spki, cn.encode()] + [o.encode() for o in orgs] + [u.encode() for u in usages]:
        h.update(b64url(item).encode() + b"|")
    return "node-csr-" + b64url(h.digest())


def tls_bootstrap(ctx: Context) -> None:
    """Node key, a CSR as system:bootstrap:<id>, the signed certificate, kubelet.conf and ca.crt."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    from ..keys import key_pem, spki

    if os.path.exists(ctx.path(KUBELET_CONF)) and os.path.exists(ctx.path(CURRENT)):
        ctx.say(f"\t{KUBELET_CONF} and its certificate exist (an earlier run made them)")
        _cleanup(ctx)
        return
    try:
        with open(ctx.path(BOOTSTRAP_CONF)) as f:
            server, ca, creds = read_kubeconfig(f.read(), BOOTSTRAP_CONF)
    except FileNotFoundError:
        raise PhaseError(f"{BOOTSTRAP_CONF} is missing: run the discovery phase first") from None
    node = ctx.name()
    keyfile = ctx.path(KEY_TMP)
    if os.path.exists(keyfile):  # a run that was cut off: keep its key, its CSR is still valid
        with open(confine(keyfile), "rb") as kf:
            key = serialization.load_pem_private_key(kf.read(), None)
    else:
        key = ec.generate_private_key(ec.SECP256R1())  # as the kubelet's TLS bootstrap, whatever the cluster's keys
        write_atomic(keyfile, key_pem(key), 0o600)
    usages = ["digital signature", "client auth"]
    cn, orgs = "system:node:" + node, ["system:nodes"]
    name = csr_name(spki(key), cn, orgs, usages)
    subject = x509.Name(
        [x509.NameAttribute(NameOID.ORGANIZATION_NAME, orgs[0]), x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    )
    # key is ECDSA P-256: made here, or read back from where it was written (mypy cannot know the type read back)
    csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())  # type: ignore
    body = {
        "apiVersion": "certificates.k8s.io/v1",
        "kind": "CertificateSigningRequest",
        "metadata": {"name": name},
        "spec": {
            "request": b64(csr.public_bytes(serialization.Encoding.PEM)),
            "signerName": KUBELET_SIGNER,
            "usages": usages,
        },
    }
    token = creds.get("token", "")
    url = server.rstrip("/") + CSRS

    def create() -> Any:
        status, obj = api.call(url, ca, token, "POST", body, deadline=ctx.deadline)
        if status in (200, 201, 409):  # 409: created by an earlier, interrupted run (same key, same name)
            return obj
        if status in (401, 403):
            raise PhaseError(f"the API server refused the bootstrap token (HTTP {status}: {obj.get('message')})")
        if status < 500:
            raise PhaseError(f"the API server rejected the CSR (HTTP {status}: {obj.get('message')})")
        raise api.Unreachable(f"HTTP {status}: {obj.get('message')}")

    def issued() -> Any:
        status, obj = api.call(f"{url}/{name}", ca, token, deadline=ctx.deadline)
        st = obj.get("status") if status == 200 else None
        if not isinstance(st, dict):
            raise api.Unreachable(f"HTTP {status}: {obj['message'] or 'not a CertificateSigningRequest'}")
        for c in st.get("conditions") or []:
            if isinstance(c, dict) and c.get("type") in ("Denied", "Failed") and c.get("status", "True") == "True":
                why = f"{c.get('reason', '')} {c.get('message', '')}".rstrip()
                raise PhaseError(f"CSR {name} was {c['type'].lower()}: {why}")
        if not st.get("certificate"):
            raise api.Unreachable("not approved and signed yet")
        try:
            pem = base64.b64decode(st["certificate"])
            return pem, x509.load_pem_x509_certificate(pem)
        except (TypeError, ValueError) as e:
            raise api.Unreachable(f"CSR {name} holds no readable certificate ({e})") from None

    try:
        api.wait(ctx, f"the API server at {server} to take the CSR", create)
        try:
            pem, cert = api.wait(ctx, f"approval of CSR {name}", issued, first=1, most=5)
        except Timeout as e:
            raise PhaseError(
                f"{e}. Is kube-controller-manager approving CSRs? On the master: kubectl certificate approve {name}"
            ) from None
    except api.Untrusted as e:
        raise PhaseError(f"the API server at {server} is not the discovered cluster's ({e})") from None
    if spki(cert) != spki(key):  # as the kubelet checks (the API server answered over TLS verified by the CA)
        raise PhaseError(f"the certificate issued for {name} is not for this node's key")
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d-%H-%M-%S")
    pem_name = f"kubelet-client-{stamp}.pem"
    write_atomic(ctx.path(f"{PKI_DIR}/{pem_name}"), pem + key_pem(key), 0o600)  # type: ignore[arg-type]
    link = ctx.path(CURRENT)  # its directory is confined to the root: the certificate was just written there
    tmp_link = link + ".tmp"
    if os.path.lexists(tmp_link):
        os.unlink(tmp_link)
    os.symlink(pem_name, tmp_link)
    os.replace(tmp_link, link)
    write_atomic(ctx.path(CA_CRT), ca, 0o644)
    creds = {"client-certificate": CURRENT, "client-key": CURRENT}
    text = kubeconfig(server, ca, "default-auth", creds, "default-cluster", "default-context")
    write_atomic(ctx.path(KUBELET_CONF), text, 0o600)
    _cleanup(ctx)
    until = getattr(cert, "not_valid_after_utc", None) or cert.not_valid_after
    ctx.say(f"\tcertificate for {cn} issued, valid until {until:%Y-%m-%d}")


def _cleanup(ctx: Context) -> None:
    """Remove the bootstrap kubeconfig (the token leaves the disk with it), then the spent key copy."""
    for path in (ctx.path(BOOTSTRAP_CONF), ctx.path(KEY_TMP)):
        if os.path.exists(path):
            os.unlink(path)
