"""join against servers that lie: a token holder that adds its own CA, cluster-info naming another server, and
answers of the wrong shape, size or speed. Each is refused or retried with a clear last error, in bounded time,
and writes nothing (all servers on 127.0.0.1)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from kubeseed.runtime import pki
from tests.support.apiserver import FakeAPIServer, cluster_info_kubeconfig, detached_jws
from tests.support.hostile import HostileServer, drip, endless, json_answer
from tests.support.join import flags, join, pin, refused, server_tokens, snapshot, token


def _forged_cluster_info(cluster: Path, ca_bundle: bytes, server: str) -> dict[str, str]:
    """cluster-info as a token holder can sign it: any CA bundle, any server."""
    token_id, secret = token(cluster).split(".")
    config = cluster_info_kubeconfig(ca_bundle, server, 35)
    return {"kubeconfig": config, f"jws-kubeconfig-{token_id}": detached_jws(token_id, secret, config)}


def test_a_token_holder_cannot_add_its_own_ca(root: Path, cluster: Path) -> None:
    """The bundle is the real CA plus the attacker's, signed with the token, and TLS comes from the attacker's CA:
    only the pinned certificate is kept, so the verified fetch fails and the node trusts nothing of the attacker."""
    evil_key = pki.new_key("ECDSA-P256")
    evil = pki.cert_pem(pki.new_ca("kubernetes", evil_key))
    real = (cluster / "pki/ca.crt").read_bytes()
    with FakeAPIServer(
        real, (cluster / "pki/ca.key").read_bytes(), server_tokens(cluster), server_ca=(evil, pki.key_pem(evil_key))
    ) as server:
        server.cluster_info_override = _forged_cluster_info(cluster, real + evil, f"https://{server.endpoint}")
        r = join(root, *flags(cluster, server), timeout=8)
        refused(root, r, 1, "presented a certificate not signed by the pinned cluster CA")
        assert server.csrs == {}


@pytest.mark.parametrize("server", ["http://{}", "https://evil.example:6443", "https://{}/x"])
def test_cluster_info_must_name_the_configured_endpoint(
    root: Path, cluster: Path, api: FakeAPIServer, server: str
) -> None:
    """A signed cluster-info that points elsewhere, or at plain HTTP (the token would travel in clear on the CSR
    POST), is refused, naming both addresses."""
    named = server.format(api.endpoint)
    api.cluster_info_override = _forged_cluster_info(cluster, (cluster / "pki/ca.crt").read_bytes(), named)
    r = join(root, *flags(cluster, api), timeout=8)
    refused(root, r, 1, f"cluster-info names the API server '{named}', not https://{api.endpoint} as configured")
    assert api.csrs == {}


@pytest.mark.parametrize(
    "body,last",
    [
        (b"[]", "not a cluster-info ConfigMap"),
        (b"null", "not a cluster-info ConfigMap"),
        (b'{"data": "str"}', "not a cluster-info ConfigMap"),
        (b'{"data": {"kubeconfig": 5}}', "not a cluster-info ConfigMap"),
        (b"<html><body>Welcome to nginx</body></html>", "not a cluster-info ConfigMap: <html><body>Welcome"),
        (b'{"data": {"kubeconfig": "x", "jws-kubeconfig-abcdef": ["not", "a", "string"]}}', "has no signature"),
    ],
    ids=["list", "null", "data-string", "kubeconfig-int", "html-200", "jws-not-string"],
)
def test_malformed_answers_are_retried_with_a_clear_last_error(
    root: Path, cluster: Path, body: bytes, last: str
) -> None:
    with HostileServer(
        json_answer(body, content_type="text/html" if body.startswith(b"<") else "application/json")
    ) as s:
        r = join(root, *flags(cluster, s), timeout=3)  # type: ignore[arg-type]
    assert r.returncode == 1, r.stdout + r.stderr
    assert "Traceback" not in r.stderr and snapshot(root) == {}
    if "signature" in last:
        assert "is invalid for this cluster or it has expired" in r.stderr
    else:
        assert "timed out after 3s waiting for cluster-info" in r.stderr and last in r.stderr, r.stderr
        assert "invalid for this cluster" not in r.stderr  # an HTML page is not a verdict on the token


def test_a_huge_answer_is_cut_off(root: Path, cluster: Path) -> None:
    with HostileServer(endless()) as s:
        started = time.monotonic()
        r = join(root, *flags(cluster, s), timeout=6)  # type: ignore[arg-type]
    assert r.returncode == 1 and "an answer over 4 MiB" in r.stderr, r.stderr
    assert time.monotonic() - started < 30 and snapshot(root) == {}


def test_a_dripping_server_does_not_outlive_the_timeout(root: Path, cluster: Path) -> None:
    """One byte every 2 s: each read succeeds, the answer never ends; --timeout 5 bounds the whole command."""
    with HostileServer(drip(json.dumps({"data": {}}).encode() * 10, every=2)) as s:
        started = time.monotonic()
        r = join(root, *flags(cluster, s), timeout=5)  # type: ignore[arg-type]
        took = time.monotonic() - started
    assert r.returncode == 1 and "timed out after 5s waiting for cluster-info" in r.stderr, r.stderr
    assert "no whole answer in time" in r.stderr
    assert took < 12, f"--timeout 5 took {took:.1f}s"


def test_redirects_are_not_followed(root: Path, cluster: Path, api: FakeAPIServer) -> None:
    where = f"https://{api.endpoint}/api/v1/namespaces/kube-public/configmaps/cluster-info"
    with HostileServer(json_answer(b"", status=f"302 Found\r\nLocation: {where}")) as s:
        r = join(root, *flags(cluster, s), timeout=3)  # type: ignore[arg-type]
    assert r.returncode == 1 and "HTTP 302" in r.stderr, r.stderr
    assert api.cluster_info_fetches == 0  # the real server behind the redirect never heard of it


def test_a_200_on_csr_create_is_not_a_rejection(root: Path, cluster: Path, api: FakeAPIServer) -> None:
    """Some proxies answer a create with 200: the node carries on and reads its CSR back."""
    api.csr_create_status = 200
    r = join(root, *flags(cluster, api), timeout=10)
    assert r.returncode == 0, r.stdout + r.stderr
    assert pin(cluster) in r.stdout
