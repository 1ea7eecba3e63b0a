"""Which heavy modules a kubeseed command loads (tests only): run it in a fresh interpreter and look."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HEAVY = ("cryptography", "jinja2", "pycdlib", "passlib", "python_minifier", "urllib.request")
PROBE = """
import json, sys
from kubeseed.generator.cli import main
out, argv = sys.argv[1], sys.argv[2:]
try:
    code = main(argv)
except SystemExit as e:
    code = e.code
with open(out, "w") as f:
    json.dump({"code": code, "loaded": sorted(m for m in %r if m in sys.modules)}, f)
""" % (HEAVY,)


def loaded(cwd: Path, tmp_path: Path, *argv: str, stdin: str = "") -> set[str]:
    """The heavy modules a kubeseed command (run in a fresh interpreter) has loaded when it returns."""
    out = tmp_path / "probe.json"
    r = subprocess.run(
        [sys.executable, "-c", PROBE, str(out), *argv], cwd=cwd, input=stdin, capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr
    result = json.loads(out.read_text())
    assert result["code"] == 0, r.stderr
    return set(result["loaded"])
