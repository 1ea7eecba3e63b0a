"""The runtime's node-config loader: every rejection names the field and what to do."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kubeseed.runtime.config import ConfigError, load_node_config, parse_node_config
from kubeseed.runtime.init import CONFIG as MASTER_FIELDS


def test_generated_configs_parse(node_doc: dict[str, Any], master_doc: dict[str, Any]) -> None:
    node = parse_node_config(node_doc)
    assert node.role == "node" and node.node_name == "node-1" and node.version.minor == 35
    assert node.discovery is not None and node.discovery.ca_cert_hashes[0].startswith("sha256:")
    master = parse_node_config(master_doc, MASTER_FIELDS)
    assert master.role == "master" and "ca.key" in master.pki and master.discovery is None


def _set(doc: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    for key in parents:
        doc = doc.setdefault(key, {})
    if value is _DELETE:
        doc.pop(last, None)
    else:
        doc[last] = value


_DELETE = object()

NODE_CASES = [
    (
        "apiVersion",
        "kubeseed.io/v1",
        'apiVersion: unknown version "kubeseed.io/v1"; this runtime reads kubeseed.io/v1alpha1',
    ),
    ("kind", "Cluster", 'kind: must be NodeConfig, found "Cluster"'),
    ("role", "worker", 'role: "worker" is not one of master, node'),
    ("role", _DELETE, "role: is required"),
    ("surprise", 1, "surprise: unknown field"),
    ("nodeName", "Node_1", 'nodeName: "Node_1" is not a valid node name'),
    ("controlPlaneEndpoint", "10.0.0.10", "controlPlaneEndpoint:"),
    ("kubernetesVersion", "1.35", 'kubernetesVersion: "1.35" is not a version like v1.35.5'),
    ("kubernetesVersion", "v1.29.3", 'kubernetesVersion: "v1.29.3" is not supported: kubeseed supports v1.30 to v1.36'),
    ("networking.podSubnet", "10.0.0/8", 'networking.podSubnet: "10.0.0/8" is not a CIDR'),
    ("networking.serviceSubnet", "10.96.0.1/12", 'networking.serviceSubnet: "10.96.0.1/12" has host bits set'),
    ("kubelet.cgroupDriver", "upstart", 'kubelet.cgroupDriver: "upstart" is not one of systemd, cgroupfs'),
    ("kubelet.containerRuntimeEndpoint", "tcp://x", "kubelet.containerRuntimeEndpoint: must be a unix:///"),
    ("discovery.token", "abcdef.SECRETSECRETSECRE", 'discovery.token: token "abcdef.<redacted>" is not of the form'),
    ("discovery.caCertHashes", ["sha1:abcd"], "discovery.caCertHashes[0]: invalid discovery token CA certificate hash"),
    ("discovery.caCertHashes", [], "discovery.caCertHashes: at least one CA pin (sha256:<hex>) is required"),
    ("discovery", _DELETE, "discovery: is required for a node"),
    ("caCert", "-----BEGIN CERTIFICATE-----", "caCert: unknown field"),
]


@pytest.mark.parametrize("path,value,expected", NODE_CASES, ids=[f"{c[0]}" for c in NODE_CASES])
def test_node_config_rejections(node_doc: dict[str, Any], path: str, value: Any, expected: str) -> None:
    _set(node_doc, path, value)
    with pytest.raises(ConfigError) as err:
        parse_node_config(node_doc)
    assert str(err.value).startswith(expected)
    assert "SECRETSECRETSECRE" not in str(err.value)


def test_unsafe_skip_allows_no_pins(node_doc: dict[str, Any]) -> None:
    node_doc["discovery"]["caCertHashes"] = []
    node_doc["discovery"]["unsafeSkipCAVerification"] = True
    assert parse_node_config(node_doc).discovery.unsafe_skip_ca_verification  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "path,value,expected",
    [
        ("pki", _DELETE, "pki: is required"),
        ("pki.ca.key", _DELETE, "pki.ca.key: must hold a PEM block"),
        ("bootstrapTokens", [{"token": "nope"}], 'bootstrapTokens[0].token: token "<redacted>"'),
        ("addons", ["relative.yaml"], "addons[0]: must be a file in /etc/kubeseed/addons/"),
    ],
)
def test_master_config_rejections(master_doc: dict[str, Any], path: str, value: Any, expected: str) -> None:
    if path == "pki.ca.key":
        del master_doc["pki"]["ca.key"]
    else:
        _set(master_doc, path, value)
    with pytest.raises(ConfigError) as err:
        parse_node_config(master_doc, MASTER_FIELDS)
    assert str(err.value).startswith(expected)


def test_load_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no node config here; pass --config FILE, or --root DIR"):
        load_node_config(str(tmp_path / "missing.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("role: [unclosed\n")
    with pytest.raises(ConfigError, match="is not valid YAML"):
        load_node_config(str(bad))
    bad.write_text("- a list\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_node_config(str(bad))


@pytest.mark.parametrize(
    "text,expected",
    [
        # 9 levels of 10 aliases: 10**9 list items once expanded, from a few hundred bytes
        (
            "a: &a [x,x,x,x,x,x,x,x,x,x]\n"
            + "".join(
                f"{c}: &{c} [*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p}]\n"
                for p, c in zip("abcdefgh", "bcdefghi")
            ),
            "line 2: aliases (*name) are not accepted",
        ),
        ("role: node\nrole: master\n", "line 2: key 'role' appears twice"),
    ],
)
def test_aliases_and_duplicate_keys_are_refused(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_node_config(str(path))
    assert str(e.value) == f"{path}: is not valid YAML: {expected}"


def test_the_node_zipapp_refuses_aliases_too(tmp_path: Path) -> None:
    """What ships: the zipapp's copy of the loader keeps the hooks PyYAML calls (pruning must not drop them)."""
    import subprocess
    import sys

    from kubeseed.generator.zipapp import build_zipapp

    pyz = tmp_path / "kubeseed-runtime.pyz"
    pyz.write_bytes(build_zipapp("node"))
    config = tmp_path / "config.yaml"
    config.write_text("apiVersion: &v kubeseed.io/v1alpha1\nkind: *v\n")
    r = subprocess.run([sys.executable, str(pyz), "join", "--config", str(config)], capture_output=True, text=True)
    assert r.returncode == 2 and "aliases (*name) are not accepted" in r.stderr, r.stderr
