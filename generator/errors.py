"""Errors a user can cause: one clear line, a fix, a non-zero exit."""

from __future__ import annotations

import reprlib
from typing import Any

SHOWN = 60  # characters of a user's value an error message quotes at most


class UserError(Exception):
    """A problem with the user's input or environment; printed as one line, exit code 2."""

    exit_code = 2


class FieldError(UserError):
    """A problem with one field of a document; the message starts with the field's path."""

    def __init__(self, source: str, path: str, message: str) -> None:
        self.source = source
        self.path = path
        self.message = message
        prefix = f"{source}: " if source else ""
        super().__init__(f"{prefix}{path}: {message}")


def shown(value: Any, limit: int = SHOWN) -> str:
    """``value`` as an error message quotes it: in double quotes, cut to ``limit`` characters (then "..."),
    every character that is not printable ASCII escaped (a line break cannot split it, a look-alike such as the
    Kelvin sign in "\u212aube" cannot pass for "Kube"), so the message stays one short, unambiguous line.
    Anything but a string is shown through reprlib, which never walks a whole nested value."""
    text = value if isinstance(value, str) else reprlib.repr(value)
    cut = text[:limit]
    body = "".join(c if c.isascii() and c.isprintable() and c not in '"\\' else _escape(c) for c in cut)
    return f'"{body}{"..." if len(text) > limit else ""}"'


def _escape(c: str) -> str:
    return "\\" + c if c in '"\\' else c.encode("unicode_escape", "backslashreplace").decode("ascii")
