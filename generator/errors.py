"""Errors a user can cause: one clear line, a fix, a non-zero exit."""

from __future__ import annotations


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
