"""The cluster's published runtime: the full runtime (every module and day-2 command) that `kubeseed upgrade apply`
keeps in the ConfigMap kube-system/kubeseed-runtime, as binaryData with its sha256 (runtime/upgrade/publish.py).
A machine installs it after join, and before an upgrade."""

from __future__ import annotations

from typing import Any

from .config import RUNTIME_PATH
from .workflow import Context, PhaseError, write_atomic

NAME = "kubeseed-runtime"
PATH = "/api/v1/namespaces/kube-system/configmaps/" + NAME
KEY = NAME + ".pyz"


def install(ctx: Context, cm: Any) -> None:
    """Install the runtime the ConfigMap ``cm`` holds, if its bytes match its sha256; else PhaseError, and the
    runtime here is kept."""
    import base64
    import hashlib

    pyz = base64.b64decode(cm["binaryData"][KEY])
    if hashlib.sha256(pyz).hexdigest() != cm["data"]["sha256"]:
        raise PhaseError(f"kube-system/{NAME} does not match its sha256; kept this runtime")
    write_atomic(ctx.path(RUNTIME_PATH), pyz, 0o755)
