"""Private keys: what a node needs of PKI (the CA work lives in pki, which only masters carry)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Union

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

if TYPE_CHECKING:  # only type checkers need the name (the zipapp builder drops these blocks)
    PrivateKey = Union[ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey]


def new_key(algorithm: str) -> PrivateKey:
    kind, _, size = algorithm.partition("-")
    if kind == "ECDSA":
        return ec.generate_private_key(ec.SECP384R1() if size == "P384" else ec.SECP256R1())
    return rsa.generate_private_key(public_exponent=65537, key_size=int(size))


def key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )


def load_key(pem: bytes) -> PrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey)):
        raise ValueError("unsupported key type (expected ECDSA or RSA)")
    return key


def spki(key_or_cert: Any) -> bytes:
    """DER SubjectPublicKeyInfo of a private key, public key or certificate."""
    pub = key_or_cert.public_key() if hasattr(key_or_cert, "public_key") else key_or_cert
    return pub.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def signed_by(cert: Any, issuer: Any) -> bool:
    """Whether ``issuer`` (a certificate) signed ``cert`` (works with cryptography 3.4 as well)."""
    pub = issuer.public_key()
    try:
        if isinstance(pub, rsa.RSAPublicKey):
            pub.verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(), cert.signature_hash_algorithm)
        else:
            pub.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(cert.signature_hash_algorithm))
        return True
    except Exception:
        return False
