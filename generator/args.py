"""What every command does with its arguments: one line of text, a cluster directory, a duration."""

from __future__ import annotations

import datetime
from pathlib import Path

from .errors import UserError, shown


def text_arg(value: str, what: str) -> str:
    """``value`` from the command line, if it is one line of UTF-8 text; else a UserError naming ``what``."""
    if any("\ud800" <= c <= "\udfff" for c in value):  # how Python hands over bytes that are not UTF-8
        raise UserError(f"{what}: {shown(value)} is not UTF-8 text")
    if not value.isprintable():
        raise UserError(f"{what}: {shown(value)} holds control characters or line breaks; give one line of text")
    return value


CLUSTER_HELP = "cluster directory (demo is ./demo)"


def cluster_dir_arg(name: str) -> Path:
    return Path(text_arg(name, "CLUSTER"))


def ttl_arg(text: str, flag: str = "--ttl") -> datetime.timedelta | None:
    from .tokens import parse_ttl

    try:
        return parse_ttl(text)
    except ValueError as e:
        raise UserError(f"{flag}: {e}") from None
