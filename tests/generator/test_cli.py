"""The kubeseed CLI end to end in a subprocess: cluster, tokens, render, users, bad input."""

from __future__ import annotations

import datetime
import hashlib
import os
import re
import stat
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.support.helpers import cloud_init_files, ignition_files, kubeseed, kubeseed_bytes

TOKEN = re.compile(r"[a-z0-9]{6}\.[a-z0-9]{16}")


def tree(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_cluster_create_layout_modes_and_pin(cluster_template: Path) -> None:
    d = cluster_template
    assert mode(d) == 0o700 and mode(d / "pki") == 0o700
    keys = ["ca.key", "etcd/ca.key", "front-proxy-ca.key", "sa.key"]
    for k in keys:
        assert mode(d / "pki" / k) == 0o600, k
    assert mode(d / "tokens.yaml") == 0o600
    cas = {"ca.crt": "kubernetes", "etcd/ca.crt": "etcd-ca", "front-proxy-ca.crt": "front-proxy-ca"}
    for name, cn in cas.items():
        cert = x509.load_pem_x509_certificate((d / "pki" / name).read_bytes())
        assert cert.subject.rfc4514_string() == f"CN={cn}"
        assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
        life = cert.not_valid_after_utc - cert.not_valid_before_utc
        assert datetime.timedelta(days=3649) < life < datetime.timedelta(days=3651)
    key = serialization.load_pem_private_key((d / "pki" / "sa.key").read_bytes(), None)
    pub = serialization.load_pem_public_key((d / "pki" / "sa.pub").read_bytes())
    assert key.public_key().public_numbers() == pub.public_numbers()  # type: ignore[union-attr]
    tokens = yaml.safe_load((d / "tokens.yaml").read_text())["tokens"]
    assert len(tokens) == 1 and TOKEN.fullmatch(tokens[0]["token"])
    assert tokens[0]["usages"] == ["signing", "authentication"]


def test_cluster_create_prints_kubeadm_pin_and_no_secret(tmp_path: Path) -> None:
    r = kubeseed(
        "cluster", "create", "prod", "--endpoint", "api.example.com:6443", "--key-algorithm", "RSA-2048", cwd=tmp_path
    )
    assert r.returncode == 0, r.stderr
    ca = x509.load_pem_x509_certificate((tmp_path / "prod/pki/ca.crt").read_bytes())
    spki = ca.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert f"sha256:{hashlib.sha256(spki).hexdigest()}" in r.stdout
    assert isinstance(ca.public_key(), rsa.RSAPublicKey) and ca.public_key().key_size == 2048
    secret = yaml.safe_load((tmp_path / "prod/tokens.yaml").read_text())["tokens"][0]["token"]
    assert secret not in r.stdout + r.stderr and secret.split(".")[1] not in r.stdout + r.stderr
    assert "kubeseed render master prod" in r.stdout and "[done]" in r.stderr


def test_cluster_create_refuses_existing_dir(cluster: Path) -> None:
    before = tree(cluster)
    r = kubeseed("cluster", "create", "demo", "--endpoint", "10.0.0.10:6443", cwd=cluster.parent)
    assert r.returncode == 2
    assert "already exists" in r.stderr and "Traceback" not in r.stderr
    assert tree(cluster) == before


@pytest.mark.parametrize(
    "args,expected",
    [
        (["--endpoint", "10.0.0.10"], '--endpoint: "10.0.0.10" is not host:port'),
        (
            ["--endpoint", "10.0.0.10:6443", "--pod-subnet", "10.0.0/8"],
            '--pod-subnet: "10.0.0/8" is not a CIDR',
        ),
        (["--endpoint", "10.0.0.10:6443", "--kubernetes-version", "v2.0.0"], "--kubernetes-version: "),
        (["--endpoint", "10.0.0.10:6443", "--token-ttl", "forever"], "--token-ttl"),
        (  # kube-dns takes the tenth address: once this rendered, then join died in kubelet-config
            ["--endpoint", "10.0.0.10:6443", "--service-subnet", "10.96.0.0/29"],
            "--service-subnet: 10.96.0.0/29 must be a /12 to /28",
        ),
        (
            ["--endpoint", "10.0.0.10:6443", "--pod-subnet", "10.244.0.0/25"],
            "--pod-subnet: 10.244.0.0/25 must hold one /24 per node",
        ),
    ],
)
def test_cluster_create_bad_input_writes_nothing(tmp_path: Path, args: list[str], expected: str) -> None:
    r = kubeseed("cluster", "create", "demo", *args, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert expected in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_token_create_list_delete(cluster: Path) -> None:
    cwd = cluster.parent
    r = kubeseed("token", "create", "demo", "--ttl", "2h", "--description", "rack 4", cwd=cwd)
    assert r.returncode == 0, r.stderr
    tok = r.stdout.strip()
    assert TOKEN.fullmatch(tok)
    assert mode(cluster / "tokens.yaml") == 0o600
    listing = kubeseed("token", "list", "demo", cwd=cwd).stdout
    line = next(x for x in listing.splitlines() if x.startswith(tok))
    assert "rack 4" in line and "signing,authentication" in line and re.search(r"\b[12]h\b", line)
    forever = kubeseed("token", "create", "demo", "--ttl", "0", cwd=cwd).stdout.strip()
    assert "<forever>" in kubeseed("token", "list", "demo", cwd=cwd).stdout
    r = kubeseed("token", "delete", "demo", tok.split(".")[0], cwd=cwd)
    assert r.returncode == 0, r.stderr
    listing = kubeseed("token", "list", "demo", cwd=cwd).stdout
    assert tok not in listing and forever in listing


@pytest.mark.parametrize(
    "args,expected",
    [
        (["token", "create", "demo", "--ttl", "1d"], '--ttl: "1d" is not a duration'),
        (["token", "create", "demo", "--usages", "signing,root"], '"root" is not a token usage'),
        (["token", "create", "demo", "--groups", "system:masters"], "must match system:bootstrappers"),
        (["token", "delete", "demo", "ABCDEF"], '"ABCDEF" is not a token id'),
        (["token", "delete", "demo", "zzzzzz"], 'no token with id "zzzzzz"'),
        (["token", "create", "nope"], "nope"),
    ],
)
def test_token_bad_input(cluster: Path, args: list[str], expected: str) -> None:
    before = tree(cluster)
    r = kubeseed(*args, cwd=cluster.parent)
    assert r.returncode == 2, r.stdout + r.stderr
    assert expected in r.stderr and "Traceback" not in r.stderr
    assert tree(cluster) == before


def test_malformed_token_in_store_is_refused(cluster: Path) -> None:
    doc = yaml.safe_load((cluster / "tokens.yaml").read_text())
    secret = doc["tokens"][0]["token"]
    doc["tokens"][0]["token"] = secret + "\n"
    (cluster / "tokens.yaml").write_text(yaml.safe_dump(doc))
    r = kubeseed("render", "node", "demo", cwd=cluster.parent)
    assert r.returncode == 2
    assert "tokens[0].token: is not a bootstrap token" in r.stderr and secret not in r.stderr
    assert r.stdout == ""


def _expire_all(cluster: Path) -> None:
    doc = yaml.safe_load((cluster / "tokens.yaml").read_text())
    for t in doc["tokens"]:
        t["expires"] = "2020-01-01T00:00:00Z"
    (cluster / "tokens.yaml").write_text(yaml.safe_dump(doc))


def test_expired_tokens_are_never_rendered(cluster: Path) -> None:
    cwd = cluster.parent
    old = yaml.safe_load((cluster / "tokens.yaml").read_text())["tokens"][0]["token"]
    _expire_all(cluster)
    r = kubeseed("render", "node", "demo", cwd=cwd)
    assert r.returncode == 2 and "no unexpired bootstrap token" in r.stderr and r.stdout == ""
    r = kubeseed("render", "node", "demo", "--token", old.split(".")[0], cwd=cwd)
    assert r.returncode == 2 and "has expired" in r.stderr
    new = kubeseed("token", "create", "demo", cwd=cwd).stdout.strip()
    for role in ("node", "master"):
        out = kubeseed_bytes("render", role, "demo", cwd=cwd)
        assert out.returncode == 0
        config = cloud_init_files(out.stdout)["/etc/kubeseed/config.yaml"][0]
        assert old.encode() not in config and new.encode() in config
    assert "TTL" in kubeseed("token", "list", "demo", cwd=cwd).stdout
    assert "<expired>" in kubeseed("token", "list", "demo", cwd=cwd).stdout


@pytest.mark.parametrize("fmt", ["cloud-init", "ignition"])
def test_node_payload_holds_no_private_key(cluster: Path, fmt: str) -> None:
    out = kubeseed_bytes("render", "node", "demo", "--format", fmt, cwd=cluster.parent)
    assert out.returncode == 0, out.stderr
    files = (cloud_init_files if fmt == "cloud-init" else ignition_files)(out.stdout)
    assert b"PRIVATE KEY" not in out.stdout
    for path, (content, _) in files.items():
        assert b"PRIVATE KEY" not in content, path
    config = yaml.safe_load(files["/etc/kubeseed/config.yaml"][0])
    token = yaml.safe_load((cluster / "tokens.yaml").read_text())["tokens"][0]["token"]
    assert config["discovery"]["token"] == token
    assert "caCert" not in config  # the pin is what the node trusts; discovery fetches the CA and checks it
    assert config["discovery"]["caCertHashes"][0].startswith("sha256:")
    assert "pki" not in config


def test_master_payload_carries_ca_and_sa_keys(cluster: Path) -> None:
    out = kubeseed_bytes("render", "master", "demo", "--hostname", "cp-1", cwd=cluster.parent)
    assert out.returncode == 0, out.stderr
    files = cloud_init_files(out.stdout)
    assert files["/etc/kubeseed/config.yaml"][1] == 0o600
    assert files["/opt/kubeseed/kubeseed-runtime.pyz"][1] == 0o755
    config = yaml.safe_load(files["/etc/kubeseed/config.yaml"][0])
    for name in ("ca.key", "etcd/ca.key", "front-proxy-ca.key", "sa.key", "sa.pub", "ca.crt"):
        assert config["pki"][name] == (cluster / "pki" / name).read_text(), name
    assert config["role"] == "master" and config["nodeName"] == "cp-1"


def test_render_is_reproducible(cluster: Path) -> None:
    for fmt in ("cloud-init", "ignition"):
        a = kubeseed_bytes("render", "master", "demo", "--format", fmt, cwd=cluster.parent).stdout
        b = kubeseed_bytes("render", "master", "demo", "--format", fmt, cwd=cluster.parent).stdout
        assert a == b and len(a) > 1000


def test_render_out_file_gzip_and_size_report(cluster: Path) -> None:
    r = kubeseed("render", "node", "demo", "--gzip", "--platform", "aws", "--out", "m.gz", cwd=cluster.parent)
    assert r.returncode == 0, r.stderr
    data = (cluster.parent / "m.gz").read_bytes()
    assert data[:2] == b"\x1f\x8b" and mode(cluster.parent / "m.gz") == 0o600
    assert f"{len(data):,} bytes (fits AWS EC2: 16,384)" in r.stderr
    assert "/etc/kubeseed/config.yaml" in cloud_init_files(data)


def test_platform_limit_refuses_and_suggests_gzip(cluster: Path) -> None:
    addons = cluster / "addons"
    addons.mkdir()
    # ~40 KB of incompressible-looking text: over EC2's limit raw and also gzipped.
    blob = "\n".join(hashlib.sha256(str(i).encode()).hexdigest() for i in range(700))
    (addons / "big.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: big}\ndata:\n  blob: |\n"
        + "".join(f"    {x}\n" for x in blob.splitlines())
    )
    doc = yaml.safe_load((cluster / "cluster.yaml").read_text())
    doc["addons"] = ["addons/big.yaml"]
    (cluster / "cluster.yaml").write_text(yaml.safe_dump(doc))
    r = kubeseed("render", "master", "demo", "--platform", "aws", "--out", "m.yaml", cwd=cluster.parent)
    assert r.returncode == 2
    assert "over the AWS EC2 user-data limit of 16,384 bytes; use --gzip" in r.stderr
    assert not (cluster.parent / "m.yaml").exists()
    r = kubeseed("render", "master", "demo", "--platform", "digitalocean", "--gzip", "-o", "m.gz", cwd=cluster.parent)
    assert r.returncode == 2 and "does not decode gzip" in r.stderr
    ok = kubeseed("render", "master", "demo", "--platform", "gce", "-o", "m.yaml", cwd=cluster.parent)
    assert ok.returncode == 0, ok.stderr
    assert (
        b"kind: ConfigMap"
        in cloud_init_files((cluster.parent / "m.yaml").read_bytes())["/etc/kubeseed/addons/00-big.yaml"][0]
    )


@pytest.mark.parametrize(
    "args,expected",
    [
        (["render", "node", "missing"], "no cluster.yaml here"),
        (["render", "node", "demo", "--hostname", "Bad_Host"], "--hostname"),
        (["render", "node", "demo", "--format", "ignition", "--gzip"], "--gzip applies to cloud-init"),
        (["render", "node", "demo", "--token", "zzzzzz"], 'no token with id "zzzzzz"'),
    ],
)
def test_render_bad_input(cluster: Path, args: list[str], expected: str) -> None:
    r = kubeseed(*args, cwd=cluster.parent)
    assert r.returncode == 2
    assert expected in r.stderr and "Traceback" not in r.stderr and r.stdout == ""


def test_render_rejects_unknown_cluster_api_version(cluster: Path) -> None:
    text = (cluster / "cluster.yaml").read_text().replace("kubeseed.io/v1alpha1", "kubeseed.io/v2")
    (cluster / "cluster.yaml").write_text(text)
    r = kubeseed("render", "master", "demo", cwd=cluster.parent)
    assert r.returncode == 2
    assert 'cluster.yaml: apiVersion: unknown version "kubeseed.io/v2"' in r.stderr


def test_render_refuses_tampered_ca(cluster: Path) -> None:
    (cluster / "pki/ca.crt").write_text("-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n")
    r = kubeseed("render", "node", "demo", cwd=cluster.parent)
    assert r.returncode == 2 and "does not parse" in r.stderr and r.stdout == ""


def test_user_create_writes_private_kubeconfig(cluster: Path) -> None:
    r = kubeseed(
        "user", "create", "demo", "bob", "--group", "dev", "--group", "ops", "-o", "kubeconfig-bob", cwd=cluster.parent
    )
    assert r.returncode == 0, r.stderr
    path = cluster.parent / "kubeconfig-bob"
    assert mode(path) == 0o600
    kc = yaml.safe_load(path.read_text())
    assert kc["clusters"][0]["cluster"]["server"] == "https://10.0.0.10:6443"
    import base64

    cert = x509.load_pem_x509_certificate(base64.b64decode(kc["users"][0]["user"]["client-certificate-data"]))
    assert cert.subject.rfc4514_string() == "CN=bob,O=ops,O=dev"
    ca = x509.load_pem_x509_certificate((cluster / "pki/ca.crt").read_bytes())
    cert.verify_directly_issued_by(ca)
    again = kubeseed("user", "create", "demo", "bob", "-o", "kubeconfig-bob", cwd=cluster.parent)
    assert again.returncode == 2 and "already exists" in again.stderr
    bad = kubeseed("user", "create", "demo", "system:admin", "-o", "x", cwd=cluster.parent)
    assert bad.returncode == 2 and not (cluster.parent / "x").exists()


def test_hash_password_from_stdin(tmp_path: Path) -> None:
    r = kubeseed("hash-password", cwd=tmp_path, stdin="correct horse\n")
    assert r.returncode == 0, r.stderr
    h = r.stdout.strip()
    from passlib.hash import sha512_crypt

    assert h.startswith("$6$") and sha512_crypt.verify("correct horse", h)
    assert kubeseed("hash-password", cwd=tmp_path, stdin="\n").returncode == 2


def test_quickstart_renders_everything_and_reruns(tmp_path: Path) -> None:
    r = kubeseed("quickstart", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    base = tmp_path / "kubeseed-demo"
    for name in (
        "master.yaml",
        "node.yaml",
        "master.ign",
        "node.ign",
        "master.yaml.gz",
        "node.yaml.gz",
        "kubeconfig-admin",
    ):
        assert (base / name).is_file(), name
        assert f"kubeseed-demo/{name}" in r.stdout, name
    assert (base / "demo/cluster.yaml").is_file()
    ca_before = (base / "demo/pki/ca.key").read_bytes()
    again = kubeseed("quickstart", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert (base / "demo/pki/ca.key").read_bytes() == ca_before
    assert os.stat(base / "node.yaml").st_mode & 0o077 == 0


def test_default_node_payload_fits_ec2(cluster: Path) -> None:
    """EC2's 16,384 bytes with the real join code in the runtime: the node's cloud-config fits with --gzip
    (cloud-init decodes it), keeping at least 512 bytes spare (the size budget every change keeps). Raw node
    payloads (about 21 KB), Ignition configs (never gzipped as a whole) and
    master payloads (about 25 KB gzipped, with the init code) do not: the README says so with the figures, and
    render refuses them for --platform aws with a clear message."""
    args = ("render", "node", "demo", "--hostname", "node-1", "--platform", "aws", "--gzip")
    r = kubeseed_bytes(*args, cwd=cluster.parent)
    assert r.returncode == 0, r.stderr
    assert len(r.stdout) <= 16_384 - 512, f"{16_384 - len(r.stdout)} bytes spare; the budget keeps 512"
    assert b"(fits AWS EC2: 16,384)" in r.stderr
    r = kubeseed_bytes("render", "master", "demo", "--platform", "aws", "--gzip", cwd=cluster.parent)
    assert r.returncode == 2 and b"over the AWS EC2 user-data limit of 16,384 bytes" in r.stderr


def test_preinstalled_runtime_payload_is_config_only(cluster: Path) -> None:
    """For a golden image that has the runtime baked in: the same payload without the zipapp."""
    full = kubeseed_bytes("render", "node", "demo", cwd=cluster.parent)
    small = kubeseed_bytes("render", "node", "demo", "--runtime", "preinstalled", cwd=cluster.parent)
    assert small.returncode == 0, small.stderr
    files = cloud_init_files(small.stdout)
    assert set(files) == {"/etc/kubeseed/config.yaml"}
    assert files["/etc/kubeseed/config.yaml"] == cloud_init_files(full.stdout)["/etc/kubeseed/config.yaml"]
    assert len(small.stdout) < 2_000 < len(full.stdout)
    assert yaml.safe_load(small.stdout)["runcmd"] == [["python3", "/opt/kubeseed/kubeseed-runtime.pyz", "join"]]
