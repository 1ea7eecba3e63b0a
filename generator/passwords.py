"""Password hashes for login users: passlib stays behind this one function."""

from __future__ import annotations

from passlib.hash import sha512_crypt


def hash_password(password: str) -> str:
    """Return a SHA-512 crypt(3) hash (``$6$...``), the format cloud-init and Ignition both accept."""
    if not password:
        raise ValueError("the password is empty")
    return str(sha512_crypt.hash(password))
