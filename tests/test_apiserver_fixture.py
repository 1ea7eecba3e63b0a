"""Checks of the in-test fake kube-apiserver (tests/apiserver.py) against ../shared/protocol vectors.

The fake is test scaffolding only: no real kube-apiserver runs on this machine, so these tests pin the fake
to the byte-level reference before the runtime's join tests rely on it.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import ssl
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.apiserver import (
    CLUSTER_INFO_PATH,
    CSR_PATH,
    KUBELET_SIGNER,
    FakeAPIServer,
    cluster_info_kubeconfig,
    csr_object_name,
    detached_jws,
    validate_kubelet_client_csr,
)

VECTORS = Path(__file__).resolve().parents[2] / "shared" / "protocol" / "vectors"
TOKEN = "abcdef.0123456789abcdef"
NODE_GROUP = "system:bootstrappers:kubeadm:default-node-token"


def cases(name: str) -> list[dict[str, Any]]:
    return json.loads((VECTORS / name).read_text())["cases"]


def case_id(case: dict[str, Any]) -> str:
    return str(case["name"])


# -- pure functions against the vectors ---------------------------------------------------------------------


@pytest.mark.parametrize("case", cases("cluster_info_configmap.json"), ids=case_id)
def test_cluster_info_kubeconfig_matches_vectors(case: dict[str, Any]) -> None:
    minor = 33 if case["kubeadm_versions"].startswith("<=1.33") else 34
    kubeconfig = cluster_info_kubeconfig(case["ca_pem"].encode(), case["server"], minor)
    assert kubeconfig == case["kubeconfig"]
    assert hashlib.sha256(kubeconfig.encode()).hexdigest() == case["kubeconfig_sha256"]
    token_id, secret = case["token"].split(".")
    assert case["configmap"]["data"] == {
        "kubeconfig": kubeconfig,
        f"jws-kubeconfig-{token_id}": detached_jws(token_id, secret, kubeconfig),
    }


@pytest.mark.parametrize("case", cases("jws_detached_signatures.json"), ids=case_id)
def test_detached_jws_matches_vectors(case: dict[str, Any]) -> None:
    computed = detached_jws(case["token_id"], case["token_secret"], case["payload"])
    assert (computed == case["detached_jws"]) is case["expect_valid"]


CSR_CASES = cases("csr_node_client.json")
APPROVER_CASES = [c for c in CSR_CASES if c["valid"] or c.get("rejected_by", "").startswith("approver")]


@pytest.mark.parametrize("case", APPROVER_CASES, ids=case_id)
def test_validate_kubelet_client_csr_matches_vectors(case: dict[str, Any]) -> None:
    csr = x509.load_pem_x509_csr(case["csr_pem"].encode())
    expected = None if case["valid"] else case["error"]
    assert validate_kubelet_client_csr(csr, case["object"]["spec"]["usages"]) == expected


def test_sha512_256_is_available() -> None:
    empty = "c672b8d1ef56ed28ab87c3622c5114069bdd3ad7b8f9737498d0c01ecef0967a"  # FIPS 180-4 SHA-512/256("")
    assert hashlib.new("sha512_256", b"").hexdigest() == empty


@pytest.mark.parametrize("case", [c for c in CSR_CASES if "name" in c["object"]["metadata"]], ids=case_id)
def test_csr_object_name_matches_vectors(case: dict[str, Any]) -> None:
    csr = x509.load_pem_x509_csr(case["csr_pem"].encode())
    spki = csr.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    cn = str(csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)
    orgs = [str(a.value) for a in csr.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
    name = csr_object_name(spki, cn, orgs, case["object"]["spec"]["usages"])
    assert name == case["object"]["metadata"]["name"]


# -- the server over real TLS --------------------------------------------------------------------------------


def make_ca(cn: str = "kubernetes") -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, True, False, False, True, False, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


@pytest.fixture(scope="module")
def ca() -> tuple[bytes, bytes]:
    return make_ca()


@pytest.fixture
def api(ca: tuple[bytes, bytes]) -> Any:
    tokens: list[dict[str, Any]] = [
        {"token": TOKEN, "expires": None, "usages": ["signing", "authentication"], "groups": [NODE_GROUP]},
        {"token": "zzzzzz.0123456789abcdef", "expires": dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc)},
    ]
    with FakeAPIServer(ca[0], ca[1], tokens) as server:
        yield server


def call(
    api: FakeAPIServer, ca_pem: bytes, method: str, path: str, body: Any = None, token: str | None = None
) -> tuple[int, dict[str, Any]]:
    ctx = ssl.create_default_context(cadata=ca_pem.decode())
    req = urllib.request.Request(f"https://{api.endpoint}{path}", method=method)
    if body is not None:
        req.data = json.dumps(body).encode()
        req.add_header("Content-Type", "application/json")
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        assert e.headers["Content-Type"] == "application/json"
        return e.code, json.loads(e.read())


def node_csr(cn: str = "system:node:worker-1") -> tuple[dict[str, Any], ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:nodes"), x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    )
    csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
    usages = ["digital signature", "client auth"]
    spki = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    obj = {
        "apiVersion": "certificates.k8s.io/v1",
        "kind": "CertificateSigningRequest",
        "metadata": {"name": csr_object_name(spki, cn, ["system:nodes"], usages)},
        "spec": {
            "request": base64.b64encode(csr.public_bytes(serialization.Encoding.PEM)).decode(),
            "signerName": KUBELET_SIGNER,
            "usages": usages,
        },
    }
    return obj, key


def test_anonymous_cluster_info(api: FakeAPIServer, ca: tuple[bytes, bytes]) -> None:
    status, cm = call(api, ca[0], "GET", CLUSTER_INFO_PATH)
    assert status == 200 and cm["kind"] == "ConfigMap" and cm["metadata"]["name"] == "cluster-info"
    kubeconfig = cm["data"]["kubeconfig"]
    assert kubeconfig == cluster_info_kubeconfig(ca[0], f"https://{api.endpoint}", 35)
    assert "preferences" not in kubeconfig
    assert set(cm["data"]) == {"kubeconfig", "jws-kubeconfig-abcdef"}  # the expired token signs nothing
    assert cm["data"]["jws-kubeconfig-abcdef"] == detached_jws("abcdef", "0123456789abcdef", kubeconfig)
    assert api.requests[-1] == {"method": "GET", "path": CLUSTER_INFO_PATH, "user": "system:anonymous", "status": 200}


def test_csr_create_approve_sign_get(api: FakeAPIServer, ca: tuple[bytes, bytes]) -> None:
    obj, key = node_csr()
    name = obj["metadata"]["name"]
    status, created = call(api, ca[0], "POST", CSR_PATH, obj, TOKEN)
    assert status == 201, created
    assert created["spec"]["username"] == "system:bootstrap:abcdef"
    assert created["spec"]["groups"] == ["system:authenticated", "system:bootstrappers", NODE_GROUP]
    assert created["metadata"]["uid"] and created["metadata"]["creationTimestamp"]
    for _ in range(50):
        status, got = call(api, ca[0], "GET", f"{CSR_PATH}/{name}", token=TOKEN)
        if got["status"].get("certificate"):
            break
        time.sleep(0.05)
    assert status == 200
    assert got["status"]["conditions"][0]["type"] == "Approved"
    assert got["status"]["conditions"][0]["reason"] == "AutoApproved"
    cert = x509.load_pem_x509_certificate(base64.b64decode(got["status"]["certificate"]))
    cert.verify_directly_issued_by(x509.load_pem_x509_certificate(ca[0]))
    assert cert.public_key() == key.public_key()
    assert cert.subject.rfc4514_string() == "CN=system:node:worker-1,O=system:nodes"
    assert cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value == x509.ExtendedKeyUsage(
        [ExtendedKeyUsageOID.CLIENT_AUTH]
    )
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.digital_signature and not ku.key_encipherment

    status, dup = call(api, ca[0], "POST", CSR_PATH, obj, TOKEN)
    assert status == 409 and dup["reason"] == "AlreadyExists" and dup["kind"] == "Status"
    status, missing = call(api, ca[0], "GET", f"{CSR_PATH}/nope", token=TOKEN)
    assert status == 404 and missing["reason"] == "NotFound"


def test_authentication_failures(api: FakeAPIServer, ca: tuple[bytes, bytes]) -> None:
    obj, _ = node_csr()
    unauthorized = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": "Unauthorized",
        "reason": "Unauthorized",
        "code": 401,
    }
    for bad in ("abcdef.0123456789abcdee", "zzzzzz.0123456789abcdef", "abcdef.0123456789ABCDEF", "abcdef.012"):
        assert call(api, ca[0], "POST", CSR_PATH, obj, bad) == (401, unauthorized)
    assert api._authenticate(f"Bearer {TOKEN}") is not None
    assert api._authenticate(f"Bearer {TOKEN}x") is None  # fullmatch: nothing may follow the secret
    status, forbidden = call(api, ca[0], "POST", CSR_PATH, obj)
    assert status == 403 and forbidden["reason"] == "Forbidden" and 'User "system:anonymous"' in forbidden["message"]
    assert call(api, ca[0], "GET", "/api/v1/nodes", token=TOKEN)[0] == 404
    assert not api.csrs
    assert "0123456789abcdef" not in json.dumps(api.requests)


@pytest.mark.parametrize("case", CSR_CASES, ids=case_id)
def test_server_handles_every_vector_csr(api: FakeAPIServer, ca: tuple[bytes, bytes], case: dict[str, Any]) -> None:
    status, body = call(api, ca[0], "POST", CSR_PATH, case["object"], TOKEN)
    rejected_by = case.get("rejected_by", "")
    if rejected_by.startswith("kube-apiserver"):
        assert status == 422 and body["reason"] == "Invalid" and case["error"] in body["message"], body
        return
    assert status == 201, body
    name = body["metadata"]["name"]
    status, got = call(api, ca[0], "GET", f"{CSR_PATH}/{name}", token=TOKEN)
    if case["valid"]:
        assert got["status"]["conditions"][0]["type"] == "Approved" and got["status"]["certificate"]
        assert api.csrs[name].pending_reason is None
    else:
        assert got["status"] == {} and api.csrs[name].pending_reason == case["error"]


def test_knobs(ca: tuple[bytes, bytes]) -> None:
    tokens = [{"token": TOKEN, "expires": None, "usages": ["signing", "authentication"], "groups": [NODE_GROUP]}]
    with FakeAPIServer(ca[0], ca[1], tokens, kubeadm_minor=33) as api:
        api.unavailable_for = 0.5
        assert call(api, ca[0], "GET", CLUSTER_INFO_PATH)[0] == 503
        time.sleep(0.5)
        api.second_fetch_override = "tampered"
        first, second = (call(api, ca[0], "GET", CLUSTER_INFO_PATH)[1]["data"] for _ in range(2))
        assert "preferences: {}\n" in first["kubeconfig"] and second["kubeconfig"] == "tampered"
        assert first["jws-kubeconfig-abcdef"] == second["jws-kubeconfig-abcdef"]
        api.cluster_info_override = {"kubeconfig": "x"}
        assert call(api, ca[0], "GET", CLUSTER_INFO_PATH)[1]["data"] == {"kubeconfig": "x"}

        api.approval_delay = 0.3
        obj, _ = node_csr()
        assert call(api, ca[0], "POST", CSR_PATH, obj, TOKEN)[0] == 201
        path = f"{CSR_PATH}/{obj['metadata']['name']}"
        assert call(api, ca[0], "GET", path, token=TOKEN)[1]["status"] == {}
        time.sleep(0.4)
        assert call(api, ca[0], "GET", path, token=TOKEN)[1]["status"]["certificate"]

        api.deny, api.approval_delay = True, 0.0
        obj, _ = node_csr("system:node:worker-2")
        call(api, ca[0], "POST", CSR_PATH, obj, TOKEN)
        status = call(api, ca[0], "GET", f"{CSR_PATH}/{obj['metadata']['name']}", token=TOKEN)[1]["status"]
        assert status["conditions"][0]["type"] == "Denied" and "certificate" not in status


def test_impostor_server_fails_tls_verification(ca: tuple[bytes, bytes]) -> None:
    with FakeAPIServer(ca[0], ca[1], [], server_ca=make_ca("impostor")) as api:
        with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
            call(api, ca[0], "GET", CLUSTER_INFO_PATH)
        insecure = ssl.create_default_context()
        insecure.check_hostname, insecure.verify_mode = False, ssl.CERT_NONE
        with urllib.request.urlopen(f"https://{api.endpoint}{CLUSTER_INFO_PATH}", context=insecure) as resp:
            assert json.loads(resp.read())["data"]["kubeconfig"].count(base64.b64encode(ca[0]).decode()) == 1
