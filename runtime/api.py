"""The little of the Kubernetes API the runtime speaks: JSON over HTTPS with urllib, and patient retries."""

from __future__ import annotations

import json
import random
import ssl
import time
import urllib.error
import urllib.request
from typing import Any, Callable, Optional, Tuple

from .workflow import Context, Timeout


class Unreachable(Exception):
    """No HTTP answer (refused, timed out, TLS failed): worth retrying while the master boots."""


class Untrusted(Exception):
    """The server's certificate is not from the expected CA: never retried, never trusted."""


def call(
    url: str,
    ca: Optional[bytes],
    token: str = "",
    method: str = "GET",
    body: Any = None,
    timeout: float = 10,
    cert: Optional[Tuple[str, str]] = None,
    content_type: str = "application/json",
) -> Tuple[int, Any]:
    """(HTTP status, decoded JSON body). ``ca`` None means TLS without verification (discovery's first fetch);
    ``cert`` is a (certificate file, key file) pair for client-certificate authentication."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if ca is None:
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    else:
        ctx.load_verify_locations(cadata=ca.decode())
    if cert:
        ctx.load_cert_chain(*cert)
    headers = {"Accept": "application/json"}
    if token:
        headers["Authorization"] = "Bearer " + token
    data = None
    if body is not None:
        data, headers["Content-Type"] = json.dumps(body).encode(), content_type
    req = urllib.request.Request(url, data, headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=ctx) as r:
            status, raw = r.status, r.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    except urllib.error.URLError as e:
        if isinstance(e.reason, ssl.SSLCertVerificationError):
            raise Untrusted(e.reason.verify_message or str(e.reason)) from None
        raise Unreachable(str(e.reason)) from None
    except (OSError, ssl.SSLError) as e:
        raise Unreachable(str(e)) from None
    try:
        return status, json.loads(raw or b"{}")
    except ValueError:
        return status, {"message": raw[:200].decode(errors="replace").strip()}


def wait(ctx: Context, what: str, attempt: Callable[[], Any], first: float = 0.5, most: float = 5.0) -> Any:
    """Return ``attempt()``, retrying while it raises Unreachable: exponential backoff with jitter (``first``
    doubling to ``most`` seconds) until the run's deadline, then a Timeout naming what was awaited and the
    last reason. ``attempt`` raises PhaseError to give up at once."""
    delay, n = first, 0
    while True:
        n += 1
        try:
            return attempt()
        except Unreachable as e:
            last = e
        left = ctx.deadline - time.monotonic()
        if left <= 0:
            raise Timeout(f"timed out after {ctx.timeout:g}s waiting for {what} (last attempt: {last})", last)
        if n == 1 or n % 5 == 0:
            ctx.say(f"\twaiting for {what}: {last}")
        time.sleep(min(delay * random.uniform(0.8, 1.2), left))
        delay = min(delay * 2, most)
