"""The little of the Kubernetes API the runtime speaks: JSON over HTTPS with urllib, bounded in size and time
whatever the server does, and patient retries."""

from __future__ import annotations

import json
import random
import signal
import ssl
import time
import urllib.error
import urllib.request
from typing import Any, Callable, Dict, Optional, Tuple

from .workflow import Context, Timeout


class Unreachable(Exception):
    """No HTTP answer (refused, timed out, TLS failed): worth retrying while the master boots."""


class Untrusted(Exception):
    """The server's certificate is not from the expected CA: never retried, never trusted."""


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any) -> None:
        return None  # a redirect is an answer: never followed


LIMIT = 4 << 20  # bytes: every answer the runtime reads is far smaller


def _late(*_: Any) -> None:
    raise Unreachable("no whole answer in time")


def call(
    url: str,
    ca: Optional[bytes],
    token: str = "",
    method: str = "GET",
    body: Any = None,
    timeout: float = 10,
    cert: Optional[Tuple[str, str]] = None,
    content_type: str = "application/json",
    deadline: float = 0,
) -> Tuple[int, Dict[str, Any]]:
    """(HTTP status, JSON object). ``ca`` None means TLS without verification (discovery's first fetch);
    ``cert`` is a (certificate file, key file) pair for client-certificate authentication. The whole exchange
    takes at most ``timeout`` seconds and ends by ``deadline`` (time.monotonic()), however slowly the server
    answers; an answer over LIMIT bytes, or none in time, is Unreachable. Any answer that is not a JSON object
    comes back as {"message": its text}; "message" is always a string of at most 200 characters."""
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
    opener = urllib.request.build_opener(_NoRedirect, urllib.request.HTTPSHandler(context=ctx))
    timeout = max(min(timeout, deadline - time.monotonic()) if deadline else timeout, 0.1)
    signal.signal(signal.SIGALRM, _late)
    signal.setitimer(signal.ITIMER_REAL, timeout)  # however slowly a server answers: the run's main thread
    try:
        with opener.open(req, timeout=timeout) as r:
            status, raw = r.status, r.read(LIMIT + 1)
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read(LIMIT + 1)
    except urllib.error.URLError as e:
        if isinstance(e.reason, ssl.SSLCertVerificationError):
            raise Untrusted(e.reason.verify_message or str(e.reason)) from None
        raise Unreachable(str(e.reason)) from None
    except Exception as e:  # refused, reset, cut short, garbled, too slow (_late)
        raise Unreachable(str(e) or type(e).__name__) from None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    if len(raw) > LIMIT:
        raise Unreachable(f"HTTP {status}: an answer over {LIMIT >> 20} MiB")
    try:
        obj = json.loads(raw or b"{}")
    except ValueError:
        obj = None
    if not isinstance(obj, dict):
        obj = {"message": raw.decode(errors="replace")}
    obj["message"] = str(obj.get("message", "")).strip()[:200]
    return status, obj


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
            timeout = Timeout(f"timed out after {ctx.timeout:g}s waiting for {what} (last attempt: {last})")
            timeout.last = last
            raise timeout
        if n == 1 or n % 5 == 0:
            ctx.say(f"\twaiting for {what}: {last}")
        time.sleep(min(delay * random.uniform(0.8, 1.2), left))
        delay = min(delay * 2, most)
