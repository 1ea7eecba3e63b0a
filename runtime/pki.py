"""Keys and X.509 certificates the way kubeadm makes them (shared by the generator and init)."""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Sequence
from typing import TYPE_CHECKING, List, Optional

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .keys import key_pem, load_key, new_key

if TYPE_CHECKING:
    from .keys import PrivateKey

__all__ = ["key_pem", "load_key", "new_key"]  # re-exported: the generator uses pki only

CA_DAYS = 3650
LEAF_DAYS = 365
BACKDATE = datetime.timedelta(minutes=5)


def public_pem(key: PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def load_cert(pem: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem)


def signing_hash(key: PrivateKey) -> "hashes.SHA256 | hashes.SHA384":
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.key_size > 256:
        return hashes.SHA384()
    return hashes.SHA256()


def _name(cn: str, orgs: Sequence[str] = ()) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
    return x509.Name(attrs + [x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _sans(names: Sequence[str]) -> List[x509.GeneralName]:
    out: List[x509.GeneralName] = []
    for n in names:
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            out.append(x509.DNSName(n))
    return out


def new_ca(cn: str, key: PrivateKey, now: Optional[datetime.datetime] = None, days: int = CA_DAYS) -> x509.Certificate:
    """A self-signed CA with kubeadm's profile (10 years, SAN DNS = CN, backdated 5 minutes)."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    pub = key.public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(pub)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.KeyUsage(True, False, True, False, False, True, False, False, False), critical=True)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(pub), critical=False)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(cn)]), critical=False)
        .sign(key, signing_hash(key))
    )


def sign_leaf(
    ca_cert: x509.Certificate,
    ca_key: PrivateKey,
    public_key: object,
    cn: str,
    orgs: Sequence[str] = (),
    client: bool = True,
    server: bool = False,
    sans: Sequence[str] = (),
    days: float = LEAF_DAYS,
    now: Optional[datetime.datetime] = None,
) -> x509.Certificate:
    """A leaf certificate signed by ``ca_key`` (kubeadm: digitalSignature + keyEncipherment, EKUs by role)."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    ekus = ([ExtendedKeyUsageOID.SERVER_AUTH] if server else []) + ([ExtendedKeyUsageOID.CLIENT_AUTH] if client else [])
    b = (
        x509.CertificateBuilder()
        .subject_name(_name(cn, orgs))
        .issuer_name(ca_cert.subject)
        .public_key(public_key)  # type: ignore[arg-type]
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(min(now + datetime.timedelta(days=days), not_after(ca_cert)))
        .add_extension(x509.KeyUsage(True, False, True, False, False, False, False, False, False), critical=True)
        .add_extension(x509.ExtendedKeyUsage(ekus), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
    )
    if sans:
        b = b.add_extension(x509.SubjectAlternativeName(_sans(sans)), critical=False)
    return b.sign(ca_key, signing_hash(ca_key))


def not_after(cert: x509.Certificate) -> datetime.datetime:
    utc = getattr(cert, "not_valid_after_utc", None)  # cryptography >= 42; older ones return naive UTC
    return utc if utc is not None else cert.not_valid_after.replace(tzinfo=datetime.timezone.utc)
