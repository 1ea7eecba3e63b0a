"""Bootstrap tokens in kubeadm's format, kept in ``<cluster>/tokens.yaml`` (0600)."""

from __future__ import annotations

import datetime
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubeseed.runtime.tokens import TOKEN_ID_RE, parse_token

from .errors import FieldError, UserError, shown
from .fsutil import atomic_write
from .yamlfile import read_yaml

TOKENS_FILE = "tokens.yaml"
ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
USAGES = ("signing", "authentication")
DEFAULT_GROUP = "system:bootstrappers:kubeadm:default-node-token"
GROUP_RE = re.compile(r"system:bootstrappers:[a-z0-9:-]{0,255}[a-z0-9]")
DEFAULT_TTL = datetime.timedelta(hours=24)
# How the running cluster learns a token, as tokens.yaml records it (its optional ``cluster`` field); a token
# without one is in tokens.yaml only, as far as kubeseed knows.
MASTER_PAYLOAD = "master-payload"  # a rendered master payload carries it: init creates its Secret at first boot
VIA_API = "api"  # kubeseed created its Secret through the cluster's API, or `token list` found it there
CLUSTER_RECORDS = (MASTER_PAYLOAD, VIA_API)
MAX_TTL_HOURS = 876_000  # 100 years: longer ones overflow Python's dates (and outlive any certificate)
_DURATION = re.compile(r"(?:([0-9]{1,18})h)?(?:([0-9]{1,18})m)?(?:([0-9]{1,18})s)?")


def generate_token() -> str:
    """A new token: every character uniform over [a-z0-9] from the OS CSPRNG."""
    pick = secrets.choice
    return "".join(pick(ALPHABET) for _ in range(6)) + "." + "".join(pick(ALPHABET) for _ in range(16))


def parse_ttl(text: str) -> datetime.timedelta | None:
    """Parse a Go-style duration (``24h``, ``1h30m``, ``90s``); ``0`` means the token never expires."""
    if text == "0":
        return None
    m = _DURATION.fullmatch(text)
    if not text or not m or not any(m.groups()):
        raise ValueError(f"{shown(text)} is not a duration like 24h, 1h30m or 90s (0 = never expires)")
    h, mi, s = (int(g or 0) for g in m.groups())
    seconds = 3600 * h + 60 * mi + s
    if seconds > 3600 * MAX_TTL_HOURS:
        raise ValueError(f"{shown(text)} is longer than {MAX_TTL_HOURS}h (100 years)")
    return datetime.timedelta(seconds=seconds) if seconds else None


def now_utc() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)


def format_time(t: datetime.datetime) -> str:
    return t.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class BootstrapToken:
    token: str
    description: str = ""
    expires: datetime.datetime | None = None
    usages: list[str] = field(default_factory=lambda: list(USAGES))
    groups: list[str] = field(default_factory=lambda: [DEFAULT_GROUP])
    cluster: str = ""  # how the cluster learns it (MASTER_PAYLOAD, VIA_API), "" for tokens.yaml only

    @property
    def id(self) -> str:
        return self.token.split(".", 1)[0]

    def expired(self, now: datetime.datetime) -> bool:
        return self.expires is not None and self.expires <= now

    def usable_for_join(self, now: datetime.datetime) -> bool:
        return not self.expired(now) and set(USAGES) <= set(self.usages)

    def to_dict(self) -> dict[str, Any]:
        """The token as a master's node config carries it (the runtime's bootstrapTokens fields, nothing more)."""
        return {
            "token": self.token,
            "description": self.description,
            "expires": format_time(self.expires) if self.expires else None,
            "usages": list(self.usages),
            "groups": list(self.groups),
        }


def new_token(
    ttl: datetime.timedelta | None = DEFAULT_TTL,
    description: str = "",
    usages: list[str] | None = None,
    groups: list[str] | None = None,
) -> BootstrapToken:
    usages = list(usages) if usages is not None else list(USAGES)
    groups = list(groups) if groups is not None else [DEFAULT_GROUP]
    if not usages:
        raise UserError(f"--usages: name at least one of {','.join(USAGES)}; a token without usages serves nothing")
    for u in usages:
        if u not in USAGES:
            raise UserError(f"--usages: {shown(u)} is not a token usage; use {','.join(USAGES)}")
    for g in groups:
        if not GROUP_RE.fullmatch(g):
            raise UserError(f"--groups: {shown(g)} must match system:bootstrappers:[a-z0-9:-]*[a-z0-9]")
    expires = now_utc() + ttl if ttl is not None else None
    return BootstrapToken(generate_token(), description, expires, usages, groups)


def _parse_entry(item: Any, source: str, path: str) -> BootstrapToken:
    if not isinstance(item, dict):
        raise FieldError(source, path, "must be a mapping with token, expires, usages, groups")
    token = item.get("token")
    try:
        parse_token(token if isinstance(token, str) else "")
    except ValueError:
        raise FieldError(
            source,
            f"{path}.token",
            "is not a bootstrap token of the form [a-z0-9]{6}.[a-z0-9]{16}; "
            "delete the entry and run `kubeseed token create`",
        ) from None
    assert isinstance(token, str)
    expires = item.get("expires")
    exp: datetime.datetime | None = None
    if expires is not None:
        try:
            exp = datetime.datetime.strptime(str(expires), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)
        except ValueError:
            raise FieldError(
                source, f"{path}.expires", f"{shown(expires)} is not a UTC time like 2026-01-02T15:04:05Z"
            ) from None
    usages = item.get("usages", list(USAGES))
    if not isinstance(usages, list) or any(u not in USAGES for u in usages):
        raise FieldError(source, f"{path}.usages", f"must be a list of {', '.join(USAGES)}")
    groups = item.get("groups", [DEFAULT_GROUP])
    if not isinstance(groups, list) or any(not isinstance(g, str) or not GROUP_RE.fullmatch(g) for g in groups):
        raise FieldError(source, f"{path}.groups", "must be a list of system:bootstrappers:... groups")
    description = item.get("description") or ""
    if not isinstance(description, str):
        raise FieldError(source, f"{path}.description", "must be a string")
    cluster = item.get("cluster") or ""  # absent in tokens.yaml files written before it was recorded
    if cluster and cluster not in CLUSTER_RECORDS:
        raise FieldError(
            source, f"{path}.cluster", f"{shown(cluster)} is not one of {', '.join(CLUSTER_RECORDS)}; delete the line"
        )
    return BootstrapToken(token, description, exp, list(usages), list(groups), cluster)


def load_tokens(cluster_dir: Path) -> list[BootstrapToken]:
    path = cluster_dir / TOKENS_FILE
    if not path.exists():
        return []
    data = read_yaml(path, "; restore it, or delete it and run `kubeseed token create`") or {}
    items = data.get("tokens") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise FieldError(str(path), "tokens", "must be a list")
    tokens = [_parse_entry(item, str(path), f"tokens[{i}]") for i, item in enumerate(items)]
    ids = [t.id for t in tokens]
    for i, tid in enumerate(ids):
        if tid in ids[:i]:
            raise FieldError(str(path), f"tokens[{i}].token", f'token id "{tid}" is listed twice; delete one entry')
    return tokens


def save_tokens(cluster_dir: Path, tokens: list[BootstrapToken]) -> None:
    import yaml

    entries = [{**t.to_dict(), **({"cluster": t.cluster} if t.cluster else {})} for t in tokens]
    text = (
        "# Bootstrap tokens (kubeadm format). Secrets: keep this file private (0600).\n"
        "# cluster: how the running cluster learns a token: master-payload (a rendered master payload carries it;\n"
        "# init creates its Secret) or api (kubeseed created its Secret through the API, or token list saw it).\n"
        "# No cluster field: the token is in this file only.\n"
    ) + yaml.safe_dump({"tokens": entries}, sort_keys=False, default_flow_style=False)
    atomic_write(cluster_dir / TOKENS_FILE, text, 0o600)


def record_master_payload(cluster_dir: Path, tokens: list[BootstrapToken], now: datetime.datetime) -> bool:
    """Record in tokens.yaml that a master payload now carries every unexpired token not yet recorded on the
    cluster (its init creates their Secrets). True when tokens.yaml changed."""
    changed = [t for t in tokens if not t.expired(now) and not t.cluster]
    for t in changed:
        t.cluster = MASTER_PAYLOAD
    if changed:
        save_tokens(cluster_dir, tokens)
    return bool(changed)


def find_token(tokens: list[BootstrapToken], ident: str) -> BootstrapToken:
    """Find a token by id or by whole token; the secret is never echoed."""
    tid = ident.split(".", 1)[0]
    if not TOKEN_ID_RE.fullmatch(tid):
        raise UserError(f"{shown(tid)} is not a token id ([a-z0-9]{{6}}); see `kubeseed token list`")
    for t in tokens:
        if t.id == tid:
            return t
    raise UserError(f'no token with id "{tid}"; see `kubeseed token list`')


def format_ttl(t: BootstrapToken, now: datetime.datetime) -> str:
    if t.expires is None:
        return "<forever>"
    if t.expired(now):
        return "<expired>"
    left = t.expires - now
    hours, rem = divmod(int(left.total_seconds()), 3600)
    return f"{hours}h" if hours else f"{rem // 60}m"
