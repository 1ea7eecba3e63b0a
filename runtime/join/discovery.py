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
            status, body = api.call(url, ca)
            if status != 200:
                raise api.Unreachable(f"HTTP {status} from {url}: {body.get('message', '')}")
            data = body.get("data") or {}
            if "kubeconfig" not in data or (ca is None and key not in data):
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
                    f"{key}. Create a new token (kubeseed token create, or kubeadm token create on the master)"
                ) from None
            raise

    data = fetch(None)
    config = data["kubeconfig"]
    if data[key] != detached_jws(token_id, secret, config):
        raise PhaseError("failed to verify JWS signature of received cluster info object, can't trust this API Server")
    server, ca, _ = read_kubeconfig(config, "cluster-info's kubeconfig")
    if d.ca_cert_hashes:
        found = [ca_pin(c) for c in pem_blocks(ca)]
        if not set(found) & set(d.ca_cert_hashes):
            raise PhaseError(
                "cluster CA found in cluster-info ConfigMap is invalid: none of the public keys "
                f'"{":".join(found)}" are pinned. This API server does not belong to the cluster the pin names; '
                "check --discovery-token-ca-cert-hash"
            )
        if fetch(ca)["kubeconfig"] != config:
            raise PhaseError(
                "the second kubeconfig from the cluster-info ConfigMap (using validated TLS) was different from "
                "the first"
            )
    else:
        ctx.say("\t[WARNING] no CA pin: trusting the cluster-info CA on the token's signature alone (unsafe)")
    user = "tls-bootstrap-token-user"
    text = kubeconfig(server, ca, user, {"token": d.token}, "kubernetes", user + "@kubernetes")
    write_atomic(ctx.path(BOOTSTRAP_CONF), text, 0o600)
    ctx.say(f"\tcluster found at {server}; CA {ca_pin(pem_blocks(ca)[0])}")


def pem_blocks(data: bytes) -> List[bytes]:
    blocks = re.findall(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", data, re.S)
    if not blocks:
        raise PhaseError("cluster-info's certificate-authority-data holds no PEM certificate")
    return blocks
