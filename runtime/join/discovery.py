"""join's discovery: fetch kube-public/cluster-info without trusting TLS, check its detached JWS with the token
and its CA against the pins, fetch it again over TLS verified by that CA, and write the bootstrap kubeconfig."""

from __future__ import annotations

import re
from typing import Any, List

from .. import api
from ..kubeconfig import kubeconfig, read_kubeconfig
from ..tokens import ca_pin, detached_jws, parse_token
from ..workflow import Context, PhaseError, Timeout, write_atomic

CLUSTER_INFO = "/api/v1/namespaces/kube-public/configmaps/cluster-info"
BOOTSTRAP_CONF = "/etc/kubernetes/bootstrap-kubelet.conf"


class NoSignature(api.Unreachable):
    """cluster-info answers but carries no signature for the token (yet: the bootstrapsigner may be behind)."""


def discovery(ctx: Context) -> None:
    """Fetch cluster-info without trusting TLS, check its JWS with the token and its CA against the pins,
    fetch it again over TLS verified by that CA; write the bootstrap kubeconfig."""
    assert ctx.config is not None and ctx.config.discovery is not None  # join's config always has discovery
    d = ctx.config.discovery
    token_id, secret = parse_token(d.token)
    key = "jws-kubeconfig-" + token_id
    url = f"https://{ctx.config.control_plane_endpoint}{CLUSTER_INFO}"

    def fetch(ca: Any) -> Any:
        def attempt() -> Any:
            status, body = api.call(url, ca, deadline=ctx.deadline)
            data = body.get("data")
            if status != 200 or not isinstance(data, dict) or not isinstance(data.get("kubeconfig"), str):
                raise api.Unreachable(f"HTTP {status} from {url}, not a cluster-info ConfigMap: {body['message']}")
            if ca is None and not isinstance(data.get(key), str):
                raise NoSignature(f"cluster-info has no signature for token {token_id} yet")
            return data

        try:
            return api.wait(ctx, f"cluster-info at {url}", attempt)
        except api.Untrusted as e:
            raise PhaseError(
                f"the API server at {url} presented a certificate not signed by the pinned cluster CA ({e}); "
                "refusing to trust it"
            ) from None
        except Timeout as e:
            if isinstance(e.last, NoSignature):
                raise PhaseError(
                    f'token id "{token_id}" is invalid for this cluster or it has expired: cluster-info has no '
                    f"{key}. Create a new one: kubeseed token create (or kubeadm token create)"
                ) from None
            raise

    data = fetch(None)
    config = data["kubeconfig"]
    if data[key] != detached_jws(token_id, secret, config):
        raise PhaseError("failed to verify JWS signature of received cluster info object, can't trust this API Server")
    server, ca, _ = read_kubeconfig(config, "cluster-info's kubeconfig")
    endpoint = f"https://{ctx.config.control_plane_endpoint}"
    if server != endpoint:  # the token's holder signs what it likes: bootstrap only against the configured endpoint
        raise PhaseError(f"cluster-info names the API server {server!r}, not {endpoint} as configured; refusing it")
    if d.ca_cert_hashes:
        blocks = {ca_pin(c): c for c in pem_blocks(ca)}
        pinned = [c for p, c in blocks.items() if p in d.ca_cert_hashes]
        if not pinned:
            raise PhaseError(
                "cluster CA found in cluster-info ConfigMap is invalid: none of the public keys "
                f'"{":".join(blocks)}" are pinned: not the pinned cluster; check --discovery-token-ca-cert-hash'
            )
        ca = b"\n".join(pinned) + b"\n"  # only the pinned CAs: kubelet.conf and ca.crt trust nothing else
        if fetch(ca)["kubeconfig"] != config:
            raise PhaseError(
                "the second kubeconfig from the cluster-info ConfigMap (using validated TLS) was different from "
                "the first"
            )
    else:
        ctx.say("\t[WARNING] no CA pin: trusting cluster-info on the token's signature alone")
    user = "tls-bootstrap-token-user"
    text = kubeconfig(endpoint, ca, user, {"token": d.token}, "kubernetes", user + "@kubernetes")
    write_atomic(ctx.path(BOOTSTRAP_CONF), text, 0o600)
    ctx.say(f"\tcluster found at {endpoint}; CA {ca_pin(pem_blocks(ca)[0])}")


def pem_blocks(data: bytes) -> List[bytes]:
    blocks = re.findall(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", data, re.S)
    if not blocks:
        raise PhaseError("cluster-info's certificate-authority-data holds no PEM certificate")
    return blocks
