from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.helpers import HOSTNAMES, kubeseed

ROLES_FORMATS = [("master", "cloud-init"), ("node", "cloud-init"), ("master", "ignition"), ("node", "ignition")]


@pytest.fixture(scope="module")
def payloads(full_cluster_template: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Path]:
    """Every payload kind of the full cluster (user, add-on, hostname), rendered by the real CLI:
    (role, "cloud-init" | "cloud-init-gzip" | "ignition") -> file."""
    out = tmp_path_factory.mktemp("payloads")
    cwd = full_cluster_template.parent
    rendered = {}
    for role in ("master", "node"):
        for kind, extra in (
            ("cloud-init", []),
            ("cloud-init-gzip", ["--gzip"]),
            ("ignition", ["--format", "ignition"]),
        ):
            path = out / f"{role}-{kind}"
            r = kubeseed("render", role, "demo", "--hostname", HOSTNAMES[role], "--out", str(path), *extra, cwd=cwd)
            assert r.returncode == 0, r.stderr
            rendered[(role, kind)] = path
    return rendered
