"""kubeadm's kube-system/kubeadm-certs Secret both ways (issue 14, item 3): a kubeseed master uploads it as kubeadm's
upload-certs does (checked here by decrypting it with cryptography's AESGCM directly, not with the runtime's code),
and a joining control plane downloads it with its bootstrap token. Against the in-test API server (real TLS, RBAC
and bootstrap-token authentication on): no kube-apiserver binary can be had here, and it runs no garbage collector,
so the ownerReference is checked as data."""

from __future__ import annotations

import base64
import datetime as dt
import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from kubeseed.generator.tokens import load_tokens
from kubeseed.runtime import api
from kubeseed.runtime.init import copycerts
from kubeseed.runtime.kubeconfig import kubeconfig
from kubeseed.runtime.workflow import Context, PhaseError
from tests.support.master import Cluster

PKI = "etc/kubernetes/pki"
# kubeadm's certsToTransfer with stacked etcd
FILES = [
    "ca.crt",
    "ca.key",
    "front-proxy-ca.crt",
    "front-proxy-ca.key",
    "sa.pub",
    "sa.key",
    "etcd/ca.crt",
    "etcd/ca.key",
]
ENTRIES = {f.replace("/", "-"): f for f in FILES}  # kubeadm's data keys: etcd/ca.crt is etcd-ca.crt
NODE_GROUP = "system:bootstrappers:kubeadm:default-node-token"
SECRET_URL = "/api/v1/namespaces/kube-system/secrets/kubeadm-certs"


@pytest.fixture(scope="module")
def master(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A kubeseed master after init (the admin's bindings, the node bootstrap token), its API server running."""
    c = Cluster(tmp_path_factory.mktemp("copycerts"))
    with c.api:
        c.register_node()
        r = c.init()
        assert r.returncode == 0, r.stdout + r.stderr
        yield c


def context(root: Path, command: str = "init") -> Context:
    return Context(command, None, str(root), out=io.StringIO(), timeout=10)


def said(ctx: Context) -> str:
    out = ctx.out.getvalue()
    assert isinstance(out, str)
    return out


@pytest.fixture
def key(master: Cluster) -> tuple[str, Context]:
    """A fresh upload with a new certificate key: (the key, the upload's context)."""
    ctx = context(master.root)
    k = copycerts.certificate_key()
    copycerts.upload_certs(ctx, k)
    return k, ctx


def stored(master: Cluster) -> dict[str, Any]:
    secret = master.api.get_object("v1", "Secret", "kubeadm-certs", "kube-system")
    assert secret is not None, "kubeadm-certs was not created"
    return secret


def aes_open(value: str, k: str) -> bytes:
    """One entry decrypted as kubeadm's DecryptBytes does, with cryptography alone: base64, then nonce (12 bytes) ||
    ciphertext || tag (16 bytes)."""
    blob = base64.b64decode(value)
    return AESGCM(bytes.fromhex(k)).decrypt(blob[:12], blob[12:], None)


def data(secret: dict[str, Any]) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}


def no_secrets_in(text: str, *secrets: str) -> None:
    """No key material and none of ``secrets`` (as given or upper-case) in ``text``."""
    assert "PRIVATE KEY" not in text and "BEGIN" not in text
    for secret in secrets:
        assert secret not in text and secret.upper() not in text


def token_secret(master: Cluster) -> str:
    return load_tokens(master.dir)[0].token.split(".")[1]


# -- the cipher and the key, as kubeadm's cmd/kubeadm/app/util/crypto and copycerts -----------------------------------


def test_encryption_layout_is_kubeadms() -> None:
    """EncryptBytes is gcm.Seal(nonce, nonce, data, nil): nonce || ciphertext || tag, no associated data."""
    k, nonce, plain = bytes(range(32)), bytes.fromhex("cafebabefacedbaddecaf888"), b"-----BEGIN CERTIFICATE-----\n"
    assert copycerts.encrypt(plain, k, nonce) == nonce + AESGCM(k).encrypt(nonce, plain, None)
    # and a published AES-256-GCM vector (McGrew and Viega's GCM specification, test case 14): zero key, zero IV
    expected = "000000000000000000000000" + "cea7403d4d606b6e074ec5d3baf39d18" + "d0d1c8a799996bf0265b98b5d48ab919"
    assert copycerts.encrypt(bytes(16), bytes(32), bytes(12)).hex() == expected
    assert copycerts.decrypt(bytes.fromhex(expected), bytes(32)) == bytes(16)
    one, two = copycerts.encrypt(plain, k), copycerts.encrypt(plain, k)
    assert one[:12] != two[:12] and len(one) == 12 + len(plain) + 16  # a random nonce each time
    assert copycerts.decrypt(one, k) == plain


def test_certificate_key_is_32_random_bytes_in_hex() -> None:
    keys = {copycerts.certificate_key() for _ in range(20)}
    assert len(keys) == 20
    for k in keys:
        assert len(k) == 64 and k == k.lower() and len(bytes.fromhex(k)) == 32


@pytest.mark.parametrize("bad", ["", "abc", "g" * 64, "00" * 31, "00" * 33, "00" * 32 + "\n"])
def test_a_malformed_key_is_refused_without_repeating_it(bad: str, tmp_path: Path) -> None:
    with pytest.raises(PhaseError, match="64 hexadecimal characters") as e:
        copycerts.download_certs(context(tmp_path, "join"), lambda path: (500, {}), bad)
    if bad.strip():
        assert bad.strip() not in str(e.value)


# -- upload ---------------------------------------------------------------------------------------------------------


def test_upload_stores_the_ca_and_sa_files_encrypted_as_kubeadm(master: Cluster, key: tuple[str, Context]) -> None:
    k, ctx = key
    secret = stored(master)
    assert secret["type"] == "Opaque" and set(secret["data"]) == set(ENTRIES)
    for name, f in ENTRIES.items():
        assert aes_open(secret["data"][name], k) == (master.root / PKI / f).read_bytes(), name
    # every entry has its own nonce
    assert len({base64.b64decode(v)[:12] for v in secret["data"].values()}) == len(ENTRIES)
    assert 'Storing the certificates in Secret "kubeadm-certs" in the "kube-system" Namespace' in said(ctx)
    no_secrets_in(said(ctx), k, token_secret(master))


def test_the_secret_is_owned_by_a_2_hour_token_that_can_do_nothing(master: Cluster, key: tuple[str, Context]) -> None:
    before = dt.datetime.now(dt.timezone.utc)
    copycerts.upload_certs(context(master.root), key[0])
    (ref,) = stored(master)["metadata"]["ownerReferences"]
    token = master.api.get_object("v1", "Secret", ref["name"], "kube-system")
    assert token is not None
    assert ref == {
        "apiVersion": "v1",
        "kind": "Secret",
        "name": token["metadata"]["name"],
        "uid": token["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }
    fields = data(token)
    assert token["type"] == "bootstrap.kubernetes.io/token"
    assert token["metadata"]["name"] == "bootstrap-token-" + fields["token-id"]
    assert len(fields["token-id"]) == 6 and len(fields["token-secret"]) == 16
    assert fields["description"] == "Proxy for managing TTL for the kubeadm-certs secret"
    # as kubeadm's createShortLivedBootstrapToken: no usages, no extra groups (`kubeadm token list`: <none>, <none>)
    assert set(fields) == {"token-id", "token-secret", "description", "expiration"}
    expires = dt.datetime.strptime(fields["expiration"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc)
    assert before + dt.timedelta(hours=2) - dt.timedelta(seconds=1) <= expires
    assert expires <= dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=2)
    # it authenticates nobody: a token without usage-bootstrap-authentication is refused (401)
    status, _ = get(master, SECRET_URL, f"{fields['token-id']}.{fields['token-secret']}")
    assert status == 401


def test_each_upload_has_a_new_token_and_the_newest_key(master: Cluster, key: tuple[str, Context]) -> None:
    first = stored(master)["metadata"]["ownerReferences"][0]["uid"]
    k2 = copycerts.certificate_key()
    copycerts.upload_certs(context(master.root), k2)
    secret = stored(master)
    assert [r["uid"] for r in secret["metadata"]["ownerReferences"]] != [first]
    assert aes_open(secret["data"]["ca.key"], k2) == (master.root / PKI / "ca.key").read_bytes()


def test_the_role_lets_node_bootstrap_tokens_get_only_that_secret(master: Cluster, key: tuple[str, Context]) -> None:
    rbac = "rbac.authorization.k8s.io/v1"
    role = master.api.get_object(rbac, "Role", "kubeadm:kubeadm-certs", "kube-system")
    assert role is not None and role["rules"] == [
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"], "resourceNames": ["kubeadm-certs"]}
    ]
    rb = master.api.get_object(rbac, "RoleBinding", "kubeadm:kubeadm-certs", "kube-system")
    assert rb is not None and rb["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    assert [(s["kind"], s["name"]) for s in rb["subjects"]] == [("Group", NODE_GROUP)]

    token = load_tokens(master.dir)[0].token  # the cluster's node bootstrap token: in kubeadm's node group
    status, secret = get(master, SECRET_URL, token)
    assert status == 200 and set(secret["data"]) == set(ENTRIES)
    assert get(master, "/api/v1/namespaces/kube-system/secrets", token)[0] == 403  # no list
    own = "/api/v1/namespaces/kube-system/secrets/bootstrap-token-" + token.split(".")[0]
    assert get(master, own, token)[0] == 403  # no other Secret
    master.api.static_tokens["node-credential"] = ("system:node:worker-1", ["system:nodes"])
    assert get(master, SECRET_URL, "node-credential")[0] == 403  # a node is no bootstrapper
    assert get(master, SECRET_URL, "")[0] == 403  # nor is anonymous


def get(master: Cluster, path: str, token: str) -> tuple[int, dict[str, Any]]:
    ca = (master.root / PKI / "ca.crt").read_bytes()
    return api.call(f"https://127.0.0.1:{master.port}{path}", ca, token)


# -- download -------------------------------------------------------------------------------------------------------


def joiner(master: Cluster, root: Path) -> Context:
    """A machine that ran discovery against ``master``: its bootstrap kubeconfig holds the node token."""
    ca = (master.root / PKI / "ca.crt").read_bytes()
    token = load_tokens(master.dir)[0].token
    conf = kubeconfig(f"https://127.0.0.1:{master.port}", ca, "tls-bootstrap-token-user", {"token": token})
    (root / "etc/kubernetes").mkdir(parents=True)
    (root / "etc/kubernetes/bootstrap-kubelet.conf").write_text(conf)
    return context(root, "join")


def download(ctx: Context, k: str, ca: bytes | None = None) -> None:
    call, discovered = copycerts.bootstrap_call(ctx, "/etc/kubernetes/bootstrap-kubelet.conf")
    copycerts.download_certs(ctx, call, k, discovered if ca is None else ca)


def test_download_writes_the_same_files_with_kubeadms_modes(
    master: Cluster, key: tuple[str, Context], tmp_path: Path
) -> None:
    ctx = joiner(master, tmp_path)
    download(ctx, key[0])
    for f in FILES:
        assert (tmp_path / PKI / f).read_bytes() == (master.root / PKI / f).read_bytes(), f
        mode = os.stat(tmp_path / PKI / f).st_mode & 0o777
        assert mode == (0o600 if f.endswith(".key") else 0o644), (f, oct(mode))
    assert 'Downloading the certificates in Secret "kubeadm-certs"' in said(ctx)
    no_secrets_in(said(ctx), key[0], token_secret(master))
    again = context(tmp_path, "join")
    download(again, key[0])  # a re-run: the same files are there
    assert "all files exist already" in said(again)


def refused(ctx: Context, k: str, ca: bytes | None = None) -> str:
    """The PhaseError's message, once it is checked that nothing was written under the PKI directory."""
    pki = Path(ctx.root) / PKI
    before = {p: p.read_bytes() for p in pki.rglob("*") if p.is_file()}
    with pytest.raises(PhaseError) as e:
        download(ctx, k, ca)
    assert {p: p.read_bytes() for p in pki.rglob("*") if p.is_file()} == before
    no_secrets_in(str(e.value) + said(ctx), k)
    return str(e.value)


def test_a_wrong_key_is_refused_and_says_how_to_get_one(
    master: Cluster, key: tuple[str, Context], tmp_path: Path
) -> None:
    wrong = copycerts.certificate_key()
    message = refused(joiner(master, tmp_path), wrong)
    assert message.startswith("the certificate key does not decrypt kube-system/kubeadm-certs: ")
    assert "kubeadm init phase upload-certs --upload-certs" in message
    assert wrong not in message and key[0] not in message


def test_a_tampered_entry_is_refused(master: Cluster, key: tuple[str, Context], tmp_path: Path) -> None:
    def flip(secret: dict[str, Any]) -> None:
        blob = bytearray(base64.b64decode(secret["data"]["etcd-ca.key"]))
        blob[40] ^= 1
        secret["data"]["etcd-ca.key"] = base64.b64encode(bytes(blob)).decode()

    master.api.update_object("v1", "Secret", "kubeadm-certs", flip, "kube-system")
    message = refused(joiner(master, tmp_path), key[0])
    assert message.startswith("kube-system/kubeadm-certs: etcd-ca.key does not decrypt with the key that decrypts")
    assert "altered or damaged" in message


def test_a_key_that_is_not_its_certificates_is_refused(
    master: Cluster, key: tuple[str, Context], tmp_path: Path
) -> None:
    """Right key, well-formed entries, but front-proxy-ca.key swapped for ca.key: the pair check catches it."""
    files = {f: (master.root / PKI / f).read_bytes() for f in FILES}
    files["front-proxy-ca.key"] = files["ca.key"]
    owner = stored(master)["metadata"]["ownerReferences"][0]
    forged = copycerts.certs_secret(files, key[0], {"metadata": {"name": owner["name"], "uid": owner["uid"]}})[0]
    master.api.put_object(forged)
    message = refused(joiner(master, tmp_path), key[0])
    assert message.startswith("front-proxy-ca.key in kube-system/kubeadm-certs is not the key of front-proxy-ca.crt")


def test_a_ca_that_is_not_the_discovered_one_is_refused(
    master: Cluster, key: tuple[str, Context], tmp_path: Path
) -> None:
    other = (master.root / PKI / "front-proxy-ca.crt").read_bytes()  # a CA, but not the cluster's
    message = refused(joiner(master, tmp_path), key[0], ca=other)
    assert "is not the cluster CA discovery verified" in message


def test_a_gone_secret_says_it_expired_and_how_to_upload_again(
    master: Cluster, key: tuple[str, Context], tmp_path: Path
) -> None:
    master.api.delete_object("v1", "Secret", "kubeadm-certs", "kube-system")  # what the GC does after 2 hours
    message = refused(joiner(master, tmp_path), key[0])
    assert 'Secret "kubeadm-certs" was not found in the "kube-system" Namespace' in message
    assert "2 hours" in message and "kubeadm init phase upload-certs --upload-certs" in message


def test_another_ca_on_disk_is_refused(master: Cluster, key: tuple[str, Context], tmp_path: Path) -> None:
    ctx = joiner(master, tmp_path)
    (tmp_path / PKI).mkdir(parents=True)
    left = (master.root / PKI / "front-proxy-ca.crt").read_bytes()
    (tmp_path / PKI / "ca.crt").write_bytes(left)
    message = refused(ctx, key[0])
    assert message.startswith("/etc/kubernetes/pki/ca.crt exists and is not the one in kube-system/kubeadm-certs")
    assert (tmp_path / PKI / "ca.crt").read_bytes() == left


def test_a_token_outside_the_node_group_is_told_why(master: Cluster, key: tuple[str, Context], tmp_path: Path) -> None:
    ctx = joiner(master, tmp_path)
    master.api.static_tokens["other-group"] = ("system:bootstrap:abcdef", ["system:bootstrappers"])
    conf = tmp_path / "etc/kubernetes/bootstrap-kubelet.conf"
    conf.write_text(conf.read_text().replace(load_tokens(master.dir)[0].token, "other-group"))
    message = refused(ctx, key[0])
    assert "HTTP 403" in message and "kubeadm:kubeadm-certs" in message and NODE_GROUP in message


def test_init_upload_certs_phase_and_the_join_command(tmp_path: Path) -> None:
    """init --upload-certs: the phase uploads with a key it keeps (0600) and show-join-command prints kubeadm's
    control-plane join command, the key itself only on a terminal; without the flag the phase uploads nothing."""
    c = Cluster(tmp_path)
    c.api.start()
    try:
        c.register_node()
        plain = c.init("--skip-phases", "upload-certs")
        assert plain.returncode == 0, plain.stdout + plain.stderr
        assert c.api.get_object("v1", "Secret", "kubeadm-certs", "kube-system") is None
        assert "--certificate-key" not in plain.stdout
        r = c.init("--phase", "upload-certs", "--upload-certs")
        assert r.returncode == 0, r.stdout + r.stderr
        key = (c.root / "var/lib/kubeseed/certificate-key").read_text().strip()
        assert (c.root / "var/lib/kubeseed/certificate-key").stat().st_mode & 0o777 == 0o600
        secret = c.api.get_object("v1", "Secret", "kubeadm-certs", "kube-system")
        assert secret is not None
        ca = (c.root / "etc/kubernetes/pki/ca.crt").read_bytes()
        assert aes_open(secret["data"]["ca.crt"], key) == ca
        assert key not in r.stdout + r.stderr
        shown = c.init("--phase", "show-join-command")
        assert "\t--control-plane --certificate-key <key: /var/lib/kubeseed/certificate-key>" in shown.stdout
        assert key not in shown.stdout
    finally:
        c.api.stop()
