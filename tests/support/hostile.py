"""A misbehaving HTTPS server for the runtime's hostile-answer tests (tests only; never part of the product).

It answers every request on 127.0.0.1 with whatever ``respond`` writes to the socket: wrong JSON types, HTML, a
huge Content-Length, bytes dripped slowly, a redirect. Each connection is served in a daemon thread that gives up
after ``limit`` seconds, so no test outlives it."""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

Respond = Callable[[socket.socket, str], None]  # (connection, request line) -> writes the answer


def self_signed() -> tuple[bytes, bytes]:
    """(certificate PEM, key PEM) for 127.0.0.1, from no CA anyone pinned."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hostile")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .sign(key, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM)
    return pem, key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def json_answer(body: bytes, status: str = "200 OK", content_type: str = "application/json") -> Respond:
    def respond(conn: socket.socket, request: str) -> None:
        head = f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
        conn.sendall(head.encode() + body)

    return respond


class HostileServer:
    def __init__(self, respond: Respond, limit: float = 30) -> None:
        self.respond, self.limit = respond, limit
        self.requests: list[str] = []
        cert, key = self_signed()
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        with tempfile.NamedTemporaryFile(suffix=".pem") as f:  # ssl loads chains from files only
            f.write(cert + key)
            f.flush()
            self.ctx.load_cert_chain(f.name)
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.endpoint = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self._stop = False

    def __enter__(self) -> HostileServer:
        threading.Thread(target=self._serve, daemon=True).start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop = True
        self.sock.close()

    def _serve(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, raw: socket.socket) -> None:
        raw.settimeout(self.limit)
        try:
            with self.ctx.wrap_socket(raw, server_side=True) as conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(4096)
                    if not chunk:
                        return
                    data += chunk
                head, _, rest = data.partition(b"\r\n\r\n")
                length = next(
                    (int(h.split(b":")[1]) for h in head.split(b"\r\n") if h.lower().startswith(b"content-length:")), 0
                )
                while len(rest) < length:
                    rest += conn.recv(4096)
                line = head.split(b"\r\n")[0].decode()
                self.requests.append(line)
                self.respond(conn, line)
        except (OSError, ssl.SSLError):
            pass


def drip(body: bytes, every: float) -> Respond:
    """Headers at once, then the body one byte every ``every`` seconds."""

    def respond(conn: socket.socket, request: str) -> None:
        conn.sendall(f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n\r\n".encode())
        for b in body:
            conn.sendall(bytes([b]))
            time.sleep(every)

    return respond


def endless(content_length: int = 2 << 30) -> Respond:
    """Claims ``content_length`` bytes (2 GiB) and sends zeros as fast as the client reads."""

    def respond(conn: socket.socket, request: str) -> None:
        conn.sendall(f"HTTP/1.1 200 OK\r\nContent-Length: {content_length}\r\n\r\n".encode())
        block = b"0" * 65536
        for _ in range(content_length // len(block)):
            conn.sendall(block)

    return respond
