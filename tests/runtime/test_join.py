"""`join` end to end under --root against the in-test API server (tests/support/apiserver/, real TLS): discovery,
TLS bootstrap, kubelet configuration; every refusal; crashes in every phase."""

from __future__ import annotations

import datetime
import json
import subprocess
import sys
from pathlib import Path

import pytest

from kubeseed.runtime import pki
from kubeseed.runtime.tokens import ca_pin
from tests.support.apiserver import FakeAPIServer
from tests.support.clientcert_server import kubectl, serve
from tests.support.helpers import cloud_init_files, ignition_files, kubeseed, lay_out
from tests.support.join import (
    NODE,
    assert_no_secret,
    check_joined,
    flags,
    join,
    refused,
    server_tokens,
    token,
)


def test_join_with_flags_end_to_end(root: Path, cluster: Path, api: FakeAPIServer) -> None:
    r = join(root, *flags(cluster, api))
    assert r.returncode == 0, r.stdout + r.stderr
    check_joined(root, cluster, api)
    for line in (
        "[discovery] Discovering the cluster... [done]",
        "[tls-bootstrap] Bootstrapping certificates... [done]",
        "--root: not starting services",
        "This node has joined the cluster",
    ):
        assert line in r.stdout
    assert_no_secret(cluster, root, r.stdout, r.stderr)
    log = [json.loads(line) for line in (root / "var/log/kubeseed.log").read_text().splitlines()]
    assert [e["phase"] for e in log] == [
        "preflight",
        "discovery",
        "tls-bootstrap",
        "kubelet-config",
        "kubelet-start",
        "runtime",
    ]
    assert "[runtime] Installing the cluster's runtime... [done]" in r.stdout  # none published: nothing to install

    # A second run is a no-op that succeeds and does not talk to the API server.
    before = len(api.requests)
    again = join(root, *flags(cluster, api))
    assert again.returncode == 0
    assert again.stdout.count("already done, skipping") == 6
    assert len(api.requests) == before


@pytest.mark.parametrize("fmt", ["cloud-init", "ignition"])
def test_rendered_node_payload_joins(tmp_path: Path, cluster: Path, api: FakeAPIServer, fmt: str) -> None:
    """The generator's payload and the runtime meet: render, lay the files out as cloud-init or Ignition would
    (the consumer tests show they do), run the first-boot hook's command under --root."""
    cfg = cluster / "cluster.yaml"
    cfg.write_text(cfg.read_text().replace("10.0.0.10:6443", api.endpoint))
    r = kubeseed("render", "node", "demo", "--format", fmt, "--hostname", NODE, "-o", "node", cwd=cluster.parent)
    assert r.returncode == 0, r.stderr
    root = tmp_path / "machine"
    decode = cloud_init_files if fmt == "cloud-init" else ignition_files
    pyz = lay_out(decode((cluster.parent / "node").read_bytes()), root)
    r = subprocess.run(
        [sys.executable, str(pyz), "join", "--root", str(root), "--ignore-preflight-errors", "all"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    check_joined(root, cluster, api)
    assert_no_secret(cluster, root, r.stdout, r.stderr)


def test_join_waits_for_a_master_that_boots_later(root: Path, cluster: Path, api: FakeAPIServer) -> None:
    api.unavailable_for = 3.0
    r = join(root, *flags(cluster, api))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "waiting for cluster-info" in r.stdout
    assert sum(1 for q in api.requests if q["status"] == 503) >= 2
    check_joined(root, cluster, api)


def test_unsafe_skip_joins_without_a_pin(root: Path, cluster: Path, api: FakeAPIServer) -> None:
    r = join(root, api.endpoint, "--token", token(cluster), "--discovery-token-unsafe-skip-ca-verification")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "[WARNING] no CA pin" in r.stdout
    check_joined(root, cluster, api)


# --- refusals: a clear message, a non-zero exit, nothing written -------------------------------------------


@pytest.mark.parametrize(
    "change,code,message",
    [
        ({"token": "not-a-token"}, 2, '--token: token "<redacted>" is not of the form'),
        ({"token": "abcdef.0123456789ABCDEF"}, 2, "--token: token"),
        ({"pin": "sha256:1234"}, 2, "invalid discovery token CA certificate hash: invalid hash"),
        ({"pin": "md5:0011"}, 2, 'unknown hash format "md5"'),
    ],
)
def test_malformed_input_is_refused(
    root: Path, cluster: Path, api: FakeAPIServer, change: dict[str, str], code: int, message: str
) -> None:
    r = join(root, *flags(cluster, api, **change))
    refused(root, r, code, message)
    assert api.requests == []


def test_no_pin_and_no_unsafe_flag_is_refused(root: Path, cluster: Path, api: FakeAPIServer) -> None:
    r = join(root, api.endpoint, "--token", token(cluster))
    refused(root, r, 2, "--discovery-token-ca-cert-hash: at least one CA pin (sha256:<hex>) is required")


def test_wrong_secret_fails_the_signature(root: Path, cluster: Path, api: FakeAPIServer) -> None:
    token_id = token(cluster).split(".")[0]
    r = join(root, *flags(cluster, api, token=f"{token_id}.0000000000000000"))
    refused(root, r, 1, "failed to verify JWS signature of received cluster info object")
    assert "0000000000000000" not in r.stdout + r.stderr


def test_unknown_token_id_times_out_as_invalid(root: Path, cluster: Path, api: FakeAPIServer) -> None:
    r = join(root, *flags(cluster, api, token="zzzzzz.0000000000000000"), timeout=3)
    refused(root, r, 1, 'token id "zzzzzz" is invalid for this cluster or it has expired')


def test_tampered_signature_is_refused(root: Path, cluster: Path, api: FakeAPIServer) -> None:
    token_id = token(cluster).split(".")[0]
    real = json.loads(_get_cluster_info(api))["data"]
    forged = dict(real)
    sig = forged[f"jws-kubeconfig-{token_id}"]
    forged[f"jws-kubeconfig-{token_id}"] = sig[:-2] + ("AA" if not sig.endswith("AA") else "BB")
    api.cluster_info_override = forged
    r = join(root, *flags(cluster, api))
    refused(root, r, 1, "failed to verify JWS signature")


def test_tampered_cluster_info_is_refused(root: Path, cluster: Path, api: FakeAPIServer) -> None:
    real = json.loads(_get_cluster_info(api))["data"]
    forged = dict(real, kubeconfig=real["kubeconfig"].replace("server: https://", "server: https://evil."))
    api.cluster_info_override = forged
    r = join(root, *flags(cluster, api))
    refused(root, r, 1, "failed to verify JWS signature")


def test_server_of_another_cluster_is_refused_by_the_pin(root: Path, cluster: Path, api: FakeAPIServer) -> None:
    """An impostor who even knows the token (leaked) but not the CA key: its cluster-info verifies, its CA does
    not match the pin."""
    other_key = pki.new_key("ECDSA-P256")
    other = pki.new_ca("kubernetes", other_key)
    with FakeAPIServer(pki.cert_pem(other), pki.key_pem(other_key), server_tokens(cluster)) as impostor:
        r = join(root, *flags(cluster, impostor))
        refused(root, r, 1, "none of the public keys")
        assert ca_pin(pki.cert_pem(other)) in r.stderr  # it says which key it found
        assert impostor.csrs == {}


def test_second_fetch_must_match(root: Path, cluster: Path, api: FakeAPIServer) -> None:
    real = api.real_kubeconfig()
    api.second_fetch_override = real.replace('name: ""', "name: other")
    r = join(root, *flags(cluster, api))
    refused(root, r, 1, "the second kubeconfig from the cluster-info ConfigMap (using validated TLS)")


def test_tls_from_another_ca_is_refused(root: Path, cluster: Path) -> None:
    """A man in the middle relays the real cluster-info but cannot present a certificate of the cluster CA."""
    mitm_key = pki.new_key("ECDSA-P256")
    mitm = pki.new_ca("kubernetes", mitm_key)
    with FakeAPIServer(
        (cluster / "pki/ca.crt").read_bytes(),
        (cluster / "pki/ca.key").read_bytes(),
        server_tokens(cluster),
        server_ca=(pki.cert_pem(mitm), pki.key_pem(mitm_key)),
    ) as server:
        r = join(root, *flags(cluster, server))
        refused(root, r, 1, "presented a certificate not signed by the pinned cluster CA")
        assert server.csrs == {}


def test_expired_token_is_refused(root: Path, cluster: Path) -> None:
    tokens = server_tokens(cluster)
    tokens[0]["expires"] = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=1)
    with FakeAPIServer((cluster / "pki/ca.crt").read_bytes(), (cluster / "pki/ca.key").read_bytes(), tokens) as server:
        r = join(root, *flags(cluster, server), timeout=3)
        refused(root, r, 1, "is invalid for this cluster or it has expired")


def test_unreachable_master_times_out(root: Path, cluster: Path, api: FakeAPIServer) -> None:
    api.unavailable_for = 60
    r = join(root, *flags(cluster, api), timeout=3)
    refused(root, r, 1, "timed out after 3s waiting for cluster-info")
    assert "HTTP 503" in r.stderr


def test_denied_csr(root: Path, cluster: Path, api: FakeAPIServer) -> None:
    api.deny = True
    r = join(root, *flags(cluster, api))
    assert r.returncode == 1
    assert "was denied" in r.stderr
    assert not (root / "etc/kubernetes/kubelet.conf").exists()


def test_unapproved_csr_times_out_with_the_fix(root: Path, cluster: Path, api: FakeAPIServer) -> None:
    api.approve = False
    r = join(root, *flags(cluster, api), timeout=4)
    assert r.returncode == 1
    assert "waiting for approval of CSR node-csr-" in r.stderr and "kubectl certificate approve node-csr-" in r.stderr
    assert not (root / "etc/kubernetes/kubelet.conf").exists()
    # Approved later (by hand): the same run resumes with the same key and the same CSR.
    key_before = (root / "var/lib/kubelet/pki/kubelet-client.key.tmp").read_bytes()
    api.approve = True
    r = join(root, *flags(cluster, api))
    assert r.returncode == 0, r.stdout + r.stderr
    cert = check_joined(root, cluster, api)
    assert cert.public_key().public_numbers() == pki.load_key(key_before).public_key().public_numbers()


# --- crashes: kill the runtime inside each phase, run it again ----------------------------------------------

KILL_POINTS = [
    ("preflight", ("preflight.run_checks", 1, "after")),
    ("discovery", ("workflow.write_atomic", 1, "after")),  # bootstrap kubeconfig written, phase not recorded
    ("tls-bootstrap: key written", ("workflow.write_atomic", 2, "after")),
    ("tls-bootstrap: CSR created", ("api.call", 3, "after")),
    ("tls-bootstrap: certificate saved", ("workflow.write_atomic", 3, "after")),
    ("tls-bootstrap: kubelet.conf written", ("workflow.write_atomic", 5, "after")),
    ("kubelet-config", ("kubelet.write_atomic", 1, "after")),
    ("kubelet-start", ("kubelet.start_phase", 1, "before")),
]


@pytest.mark.parametrize("where,kill", KILL_POINTS, ids=[k[0] for k in KILL_POINTS])
def test_killed_in_a_phase_then_rerun(
    root: Path, cluster: Path, api: FakeAPIServer, where: str, kill: tuple[str, int, str]
) -> None:
    r = join(root, *flags(cluster, api), kill=kill)
    assert r.returncode == -9, f"{where}: the kill point was not reached\n{r.stdout}{r.stderr}"
    keyfile = root / "var/lib/kubelet/pki/kubelet-client.key.tmp"
    key_at_crash = keyfile.read_bytes() if keyfile.exists() else None
    r = join(root, *flags(cluster, api))
    assert r.returncode == 0, r.stdout + r.stderr
    cert = check_joined(root, cluster, api)
    if key_at_crash:  # the key made before the crash is the key that got certified: none made twice
        assert cert.public_key().public_numbers() == pki.load_key(key_at_crash).public_key().public_numbers()
    assert len(api.csrs) == 1


def _get_cluster_info(api: FakeAPIServer) -> str:
    import ssl
    import urllib.request

    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    url = f"https://{api.endpoint}/api/v1/namespaces/kube-public/configmaps/cluster-info"
    with urllib.request.urlopen(url, context=ctx, timeout=10) as response:
        return response.read().decode()


def test_kubelet_conf_works_for_a_real_client(root: Path, cluster: Path, api: FakeAPIServer, tmp_path: Path) -> None:
    """kubectl (the kubelet's client library's sibling) loads the joined node's kubelet.conf, presents the
    issued certificate and verifies the server by the discovered CA; the server sees the node's identity."""
    r = join(root, *flags(cluster, api))
    assert r.returncode == 0, r.stdout + r.stderr
    conf = (root / "etc/kubernetes/kubelet.conf").read_text()
    local = tmp_path / "kubelet.conf"  # the same file with the machine paths moved under --root
    local.write_text(conf.replace("/var/lib/kubelet/", f"{root}/var/lib/kubelet/"))
    for url, seen in serve(cluster, tmp_path):
        r = kubectl("--kubeconfig", str(local), "--server", url, "get", "--raw", "/version")
        assert r.returncode == 0, r.stderr
        assert seen == [{"path": "/version", "cn": f"system:node:{NODE}", "orgs": ["system:nodes"]}]
