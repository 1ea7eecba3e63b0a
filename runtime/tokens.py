"""Bootstrap tokens and CA public-key pins, byte for byte as kubeadm (protocol README sections 1 and 4)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from typing import Any, Tuple

TOKEN_RE = re.compile(r"([a-z0-9]{6})\.([a-z0-9]{16})")
TOKEN_ID_RE = re.compile(r"[a-z0-9]{6}")


def parse_token(token: str) -> Tuple[str, str]:
    """Split ``id.secret``; the error never repeats the secret."""
    m = TOKEN_RE.fullmatch(token)
    if not m:
        shown = token.split(".", 1)[0][:6] + ".<redacted>" if "." in token else "<redacted>"
        raise ValueError(f'token "{shown}" is not of the form [a-z0-9]{{6}}.[a-z0-9]{{16}}')
    return m.group(1), m.group(2)


def ca_pin(cert: Any) -> str:
    """``sha256:`` + hex SHA-256 of the certificate's (PEM, DER or x509 object) DER SubjectPublicKeyInfo."""
    from cryptography import x509  # lazily: preflight reports a missing cryptography itself
    from cryptography.hazmat.primitives import serialization

    if isinstance(cert, bytes):
        cert = (
            x509.load_pem_x509_certificate(cert)
            if cert.lstrip().startswith(b"-----")
            else x509.load_der_x509_certificate(cert)
        )
    spki = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "sha256:" + hashlib.sha256(spki).hexdigest()


def parse_pin(pin: str) -> str:
    """Validate a ``--discovery-token-ca-cert-hash`` value as kubeadm's pubkeypin.Set.Allow does."""
    parts = pin.split(":")
    if len(parts) != 2:
        raise ValueError('invalid hash, expected "format:hex-value". Known format(s) are: sha256')
    fmt, value = parts
    if fmt.lower() != "sha256":
        raise ValueError(f'unknown hash format "{fmt}". Known format(s) are: sha256')
    if len(value) // 2 != 32:
        raise ValueError(f'invalid hash "{pin}", expected a 32 byte SHA-256 hash, found {len(value) // 2} bytes')
    bad = re.search("[^0-9a-fA-F]", value)  # then as Go's hex.DecodeString says it
    if bad or len(value) % 2:
        why = f"invalid byte: U+{ord(bad[0]):04X} '{bad[0]}'" if bad else "odd length hex string"
        raise ValueError(f'invalid hash "{pin}", could not decode SHA-256 from hex: encoding/hex: {why}')
    return "sha256:" + value.lower()


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def detached_jws(token_id: str, secret: str, payload: str) -> str:
    """kubeadm's detached JWS over ``payload``: HS256 keyed by the token secret, header exactly
    ``{"alg":"HS256","kid":"<id>"}``, payload section left empty. Verify by recomputing and comparing."""
    head = b64url(f'{{"alg":"HS256","kid":"{token_id}"}}'.encode())
    mac = hmac.new(secret.encode(), f"{head}.{b64url(payload.encode())}".encode(), hashlib.sha256).digest()
    return f"{head}..{b64url(mac)}"
