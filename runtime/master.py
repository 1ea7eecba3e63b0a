"""What only a master's runtime needs (the init phases come here); a node's payload leaves it out."""

from __future__ import annotations

from typing import Any

from .config import ConfigError, NodeConfig, _check
from .tokens import parse_token

PKI_FILES = (
    "ca.crt",
    "ca.key",
    "etcd/ca.crt",
    "etcd/ca.key",
    "front-proxy-ca.crt",
    "front-proxy-ca.key",
    "sa.key",
    "sa.pub",
)


def parse_master_fields(d: Any, cfg: NodeConfig) -> None:
    """The master's part of the node config: the CA and SA keys, bootstrap tokens, add-on paths."""
    pki = d.get("pki", dict, required=True)
    for f in PKI_FILES:
        _check(isinstance(pki.get(f), str) and "-----BEGIN" in pki[f], f"pki.{f}", "must hold a PEM block")
    _check(set(pki) <= set(PKI_FILES), "pki", f"unknown files {sorted(set(pki) - set(PKI_FILES))}")
    cfg.pki = pki
    tokens = d.get("bootstrapTokens", list, [])
    for i, t in enumerate(tokens):
        path = f"bootstrapTokens[{i}]"
        _check(isinstance(t, dict), path, "must be a mapping")
        try:
            parse_token(t.get("token") if isinstance(t.get("token"), str) else "")
        except ValueError as e:
            raise ConfigError(f"{path}.token", str(e)) from None
    cfg.bootstrap_tokens = tokens
    addons = d.get("addons", list, [])
    for i, a in enumerate(addons):
        _check(isinstance(a, str) and a.startswith("/"), f"addons[{i}]", "must be an absolute path")
    cfg.addons = addons
