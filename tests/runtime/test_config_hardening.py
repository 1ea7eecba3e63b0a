"""Values that used to pass the node config's checks and crash later (or never time out) are refused up front, as
one line naming the field or flag, exit 2: bootstrap-token fields, pki entries that are not loadable keys and
certificates, add-on paths outside /etc/kubeseed/addons, an endpoint host that is not ASCII, --timeout nan/inf."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubeseed.generator.zipapp import build_zipapp
from kubeseed.runtime import pki
from kubeseed.runtime.config import ConfigError, parse_node_config, split_endpoint
from kubeseed.runtime.init import CONFIG as MASTER_FIELDS
from tests.support.join import flags, node_zipapp
from tests.support.master import API_PHASES

GARBAGE_KEY = "-----BEGIN EC PRIVATE KEY-----\nbm90IGEga2V5\n-----END EC PRIVATE KEY-----\n"
ANOTHER_CA_KEY = pki.key_pem(pki.new_key("ECDSA-P256")).decode()

MASTER_CASES = [
    ("bootstrapTokens", [5], "bootstrapTokens[0]: must be a mapping, found int"),
    ("bootstrapTokens.0.expires", 5, 'bootstrapTokens[0].expires: 5 is not an RFC 3339 time such as "2030-01-31T12:0'),
    ("bootstrapTokens.0.expires", "tomorrow", "bootstrapTokens[0].expires: 'tomorrow' is not an RFC 3339 time"),
    ("bootstrapTokens.0.expires", "2030-02-30T00:00:00Z", "bootstrapTokens[0].expires: '2030-02-30T00:00:00Z' is not"),
    ("bootstrapTokens.0.usages", ["signing", 5], 'bootstrapTokens[0].usages: each usage must be "signing" or "a'),
    ("bootstrapTokens.0.usages", "signing", "bootstrapTokens[0].usages: must be a list, found str"),
    ("bootstrapTokens.0.groups", ["system:masters"], "bootstrapTokens[0].groups: each group must match system:boot"),
    ("bootstrapTokens.0.description", 5, "bootstrapTokens[0].description: must be a str, found int"),
    ("bootstrapTokens.0.secret", "x", "bootstrapTokens[0].secret: unknown field"),
    ("pki.ca.key", GARBAGE_KEY, "pki.ca.key: is not a PEM ECDSA or RSA private key without a password; render the"),
    ("pki.sa.key", "-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----\n", "pki.sa.key: is not a PEM ECDSA"),
    (
        "pki.etcd/ca.crt",
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        "pki.etcd/ca.crt: is not a PEM cer",
    ),
    (
        "pki.sa.pub",
        "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
        "pki.sa.pub: is not a PEM public key",
    ),
    ("pki.ca.key", ANOTHER_CA_KEY, "pki.ca.key: is not the key of pki.ca.crt"),
    ("addons", ["/etc/passwd"], "addons[0]: must be a file in /etc/kubeseed/addons/ (an absolute, normalized path"),
    ("addons", ["/etc/kubeseed/addons/../../passwd"], "addons[0]: must be a file in /etc/kubeseed/addons/"),
    ("addons", ["/etc/kubeseed/addons/a/../b.yaml"], "addons[0]: must be a file in /etc/kubeseed/addons/"),
    ("addons", ["/etc/kubeseed/addons//b.yaml"], "addons[0]: must be a file in /etc/kubeseed/addons/"),
    ("addons", ["/etc/kubeseed/addons/"], "addons[0]: must be a file in /etc/kubeseed/addons/"),
    ("addons", ["/etc/kubeseed/addons-evil/x.yaml"], "addons[0]: must be a file in /etc/kubeseed/addons/"),
    ("addons", ["etc/kubeseed/addons/x.yaml"], "addons[0]: must be a file in /etc/kubeseed/addons/"),
    ("addons", [5], "addons[0]: must be a file in /etc/kubeseed/addons/"),
    ("controlPlaneEndpoint", "\u212aube.local:6443", 'controlPlaneEndpoint: "\u212aube.local:6443" host \'\\u212aube'),
]


def _set(doc: dict[str, Any], path: str, value: Any) -> None:
    """Set a field: ``pki.<file>`` (file names hold dots), else a dotted path with list indexes."""
    if path.startswith("pki."):
        doc["pki"][path[len("pki.") :]] = value
        return
    *parents, last = path.split(".")
    node: Any = doc
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    node[last] = value


@pytest.mark.parametrize("path,value,expected", MASTER_CASES, ids=[f"{c[0]}={c[1]!r}"[:60] for c in MASTER_CASES])
def test_master_config_refusals(master_doc: dict[str, Any], path: str, value: Any, expected: str) -> None:
    _set(master_doc, path, value)
    with pytest.raises(ConfigError) as e:
        parse_node_config(master_doc, MASTER_FIELDS)
    assert str(e.value).startswith(expected), str(e.value)


def test_good_master_fields_pass_and_expiry_is_normalized_to_utc(master_doc: dict[str, Any]) -> None:
    master_doc["bootstrapTokens"][0]["expires"] = "2030-01-01T01:30:00.5+02:00"
    master_doc["addons"] = ["/etc/kubeseed/addons/00-net.yaml", "/etc/kubeseed/addons/sub/01-x.yaml"]
    cfg = parse_node_config(copy.deepcopy(master_doc), MASTER_FIELDS)
    assert cfg.bootstrap_tokens[0]["expires"] == "2029-12-31T23:30:00Z"
    assert cfg.addons == master_doc["addons"]


def _master_root(root: Path, doc: dict[str, Any]) -> Path:
    cfg = root / "etc/kubeseed/config.yaml"
    cfg.parent.mkdir(parents=True)
    cfg.write_text(yaml.safe_dump(doc))
    pyz = root / "kubeseed-runtime.pyz"
    pyz.write_bytes(build_zipapp("master"))
    return pyz


@pytest.mark.parametrize(
    "path,value,field",
    [
        ("pki.ca.key", GARBAGE_KEY, "pki.ca.key"),
        ("bootstrapTokens.0.expires", 5, "bootstrapTokens[0].expires"),
        ("controlPlaneEndpoint", "\u212aube.local:6443", "controlPlaneEndpoint"),
    ],
)
def test_init_refuses_them_in_one_line_before_any_phase(
    tmp_path: Path, master_doc: dict[str, Any], path: str, value: Any, field: str
) -> None:
    """What used to end in a traceback in certs or bootstrap-token."""
    _set(master_doc, path, value)
    pyz = _master_root(tmp_path, master_doc)
    cmd = [sys.executable, str(pyz), "init", "--root", str(tmp_path), "--ignore-preflight-errors", "all"]
    r = subprocess.run(
        [*cmd, "--advertise-address", "127.0.0.2", "--timeout", "5", "--skip-phases", API_PHASES],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and r.stdout == "", r.stdout + r.stderr
    assert r.stderr.startswith(f"error: {tmp_path}/etc/kubeseed/config.yaml: {field}: ")
    assert len(r.stderr.splitlines()) == 1 and not (tmp_path / "etc/kubernetes").exists()


@pytest.mark.parametrize(
    "endpoint",
    ["\u212aube.local:6443", "kube.local:\u0666\u0664\u0664\u0663", "k\u00fcbe.local:6443", "\uff11.2.3.4:1"],
)
def test_an_endpoint_must_be_ascii(endpoint: str) -> None:
    with pytest.raises(ValueError):
        split_endpoint(endpoint)


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e400", "-5", "0"])
def test_timeout_must_be_a_finite_positive_number(root: Path, cluster: Path, value: str) -> None:
    class Endpoint:
        endpoint = "127.0.0.1:9"  # never reached

    cmd = [sys.executable, str(node_zipapp()), "join", *flags(cluster, Endpoint()), "--root", str(root)]  # type: ignore[arg-type]
    cmd += ["--phase", "preflight", "--ignore-preflight-errors", "all", f"--timeout={value}"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    shown = {"1e400": "inf", "-5": "-5", "0": "0"}.get(value, value)
    assert (r.returncode, r.stdout) == (2, ""), r.stdout + r.stderr
    assert r.stderr == f"error: --timeout: must be a positive number of seconds, not {shown}\n"
    assert list(root.rglob("*")) == []
