"""kubeadm's own test vectors (../shared/protocol/vectors): token formats and CA pins."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from kubeseed.runtime.join.tlsbootstrap import csr_name
from kubeseed.runtime.tokens import TOKEN_ID_RE, ca_pin, detached_jws, parse_pin, parse_token

VECTORS = Path(__file__).resolve().parents[3] / "shared" / "protocol" / "vectors"


def load(name: str) -> dict[str, Any]:
    path = VECTORS / f"{name}.json"
    if not path.exists():
        pytest.fail(f"{path} is missing: the protocol vectors live in ../shared beside the checkout")
    return json.loads(path.read_text())


TOKENS = load("bootstrap_token_format")
PINS = load("ca_pin_hashes")


@pytest.mark.parametrize("case", TOKENS["cases"], ids=lambda c: repr(c["token"]))
def test_token_format(case: dict[str, Any]) -> None:
    if case["valid"]:
        token_id, secret = parse_token(case["token"])
        assert f"{token_id}.{secret}" == case["token"]
    else:
        with pytest.raises(ValueError) as err:
            parse_token(case["token"])
        secret = case["token"].partition(".")[2]
        assert "<redacted>" in str(err.value)  # the error never repeats a secret
        if secret:
            assert "." + secret not in str(err.value)


@pytest.mark.parametrize("case", TOKENS["token_id_cases"], ids=lambda c: repr(c["token_id"]))
def test_token_id_format(case: dict[str, Any]) -> None:
    assert bool(TOKEN_ID_RE.fullmatch(case["token_id"])) == case["valid"]


@pytest.mark.parametrize("case", [c for c in PINS["cases"] if c["type"] == "hash"], ids=lambda c: c["name"])
def test_ca_pin_of_certificate(case: dict[str, Any]) -> None:
    assert ca_pin(case["pem"].encode()) == case["expected_pin"]


def _bundle(pem: str) -> list[bytes]:
    marker = "-----END CERTIFICATE-----"
    return [(part + marker + "\n").encode() for part in pem.split(marker) if "BEGIN" in part]


@pytest.mark.parametrize("case", [c for c in PINS["cases"] if c["type"] == "pin_set"], ids=lambda c: c["name"])
def test_pin_set_against_ca_bundle(case: dict[str, Any]) -> None:
    pins = {parse_pin(p) for p in case["pins"]}
    found = {ca_pin(cert) for cert in _bundle(case["ca_bundle_pem"])}
    assert bool(pins & found) == case["expect_accept"]


@pytest.mark.parametrize("case", [c for c in PINS["cases"] if c["type"] == "malformed_pin"], ids=lambda c: c["pin"])
def test_malformed_pin_rejected_with_kubeadm_message(case: dict[str, Any]) -> None:
    with pytest.raises(ValueError) as err:
        parse_pin(case["pin"])
    assert str(err.value) == case["error"]


JWS = load("jws_detached_signatures")
CSRS = load("csr_node_client")


@pytest.mark.parametrize("case", JWS["cases"], ids=lambda c: c["name"])
def test_detached_jws(case: dict[str, Any]) -> None:
    """The runtime verifies cluster-info by recomputing kubeadm's detached JWS and comparing strings."""
    computed = detached_jws(case["token_id"], case["token_secret"], case["payload"])
    assert (computed == case["detached_jws"]) == case["expect_valid"]


@pytest.mark.parametrize(
    "case", [c for c in CSRS["cases"] if c.get("valid") and "name" in c["object"]["metadata"]], ids=lambda c: c["name"]
)
def test_csr_name_is_the_kubelets(case: dict[str, Any]) -> None:
    csr = x509.load_pem_x509_csr(case["csr_pem"].encode())
    subject = csr.subject
    cn = subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    orgs = [a.value for a in subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
    spki = csr.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert csr_name(spki, cn, orgs, case["object"]["spec"]["usages"]) == case["object"]["metadata"]["name"]
