"""cluster.yaml validation: every error names the field path and the fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from kubeseed.generator.errors import FieldError
from kubeseed.generator.model import default_cluster_text, load_cluster, parse_cluster, split_endpoint
from kubeseed.generator.passwords import hash_password


def base() -> dict[str, Any]:
    return yaml.safe_load(default_cluster_text("demo", "10.0.0.10:6443"))


def test_default_text_is_commented_and_valid() -> None:
    text = default_cluster_text("demo", "10.0.0.10:6443")
    assert text.count("\n#") >= 5, "cluster.yaml should explain itself to a person editing it"
    c = parse_cluster(yaml.safe_load(text))
    assert (c.name, c.control_plane_endpoint, c.key_algorithm) == ("demo", "10.0.0.10:6443", "ECDSA-P256")
    net = c.networking
    assert (net.pod_subnet, net.service_subnet, net.dns_domain) == ("10.244.0.0/16", "10.96.0.0/12", "cluster.local")


@pytest.mark.parametrize(
    "path,value,expected",
    [
        (("networking", "podSubnet"), "10.0.0/8", 'networking.podSubnet: "10.0.0/8" is not a CIDR'),
        (("networking", "podSubnet"), "10.244.0.1/16", "has host bits set; did you mean 10.244.0.0/16"),
        (("networking", "serviceSubnet"), "10.244.0.0/20", "overlaps networking.podSubnet"),
        (("networking", "dnsDomain"), "Cluster Local", "networking.dnsDomain"),
        (("controlPlaneEndpoint",), "10.0.0.10", 'controlPlaneEndpoint: "10.0.0.10" is not host:port'),
        (("controlPlaneEndpoint",), "10.0.0.10:99999", "port 99999 is out of range"),
        (("controlPlaneEndpoint",), "10.0.0.300:6443", "neither an IPv4 address nor a DNS name"),
        (("apiVersion",), "kubeseed.io/v9", 'apiVersion: unknown version "kubeseed.io/v9"'),
        (("kind",), "Node", "kind: must be Cluster"),
        (("name",), "My_Cluster", 'name: "My_Cluster" is not a DNS-1123 label'),
        (("kubernetesVersion",), "1.33", 'kubernetesVersion: "1.33" is not a version'),
        (("kubernetesVersion",), "v1.20.0", "kubeseed supports v1.30 to v1.36"),
        (("keyAlgorithm",), "DSA-1024", 'keyAlgorithm: "DSA-1024" is not one of'),
        (("kubelet", "cgroupDriver"), "upstart", "kubelet.cgroupDriver"),
        (("kubelet", "containerRuntimeEndpoint"), "tcp://x", "kubelet.containerRuntimeEndpoint"),
        (("kubelet", "extraArgs"), {"--max-pods": "10"}, "kubelet.extraArgs.--max-pods"),
        (("imageRepository",), "Registry K8s", "imageRepository"),
        (("bogus",), 1, "bogus: unknown field"),
        (("networking", "podCidr"), "10.0.0.0/8", "networking.podCidr: unknown field; known fields here: dnsDomain"),
    ],
)
def test_field_errors_name_the_path(path: tuple[str, ...], value: Any, expected: str) -> None:
    doc = base()
    target = doc
    for key in path[:-1]:
        target = target.setdefault(key, {})
    target[path[-1]] = value
    with pytest.raises(FieldError) as e:
        parse_cluster(doc, "cluster.yaml")
    assert expected in str(e.value)
    assert str(e.value).startswith("cluster.yaml: ")


@pytest.mark.parametrize(
    "user,expected",
    [
        ({"name": "ops", "password": "hunter2"}, "users[0].password: clear-text passwords are not accepted"),
        ({"name": "Ops"}, 'users[0].name: "Ops" is not a valid Linux user name'),
        ({"name": "ops", "sshAuthorizedKeys": ["not a key"]}, "users[0].sshAuthorizedKeys[0]"),
        ({"name": "ops", "passwordHash": "plain"}, "users[0].passwordHash: is not a crypt(3) hash"),
        ({"name": "ops", "groups": ["Bad Group"]}, "users[0].groups[0]"),
    ],
)
def test_user_errors(user: dict[str, Any], expected: str) -> None:
    doc = base()
    doc["users"] = [user]
    with pytest.raises(FieldError) as e:
        parse_cluster(doc, "cluster.yaml")
    assert expected in str(e.value)
    assert "hunter2" not in str(e.value)


def test_users_with_hash_and_keys() -> None:
    doc = base()
    h = hash_password("s3cret")
    doc["users"] = [
        {
            "name": "ops",
            "sshAuthorizedKeys": ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE ops@x"],
            "passwordHash": h,
            "groups": ["sudo"],
        }
    ]
    c = parse_cluster(doc)
    assert c.users[0].password_hash == h and h.startswith("$6$") and "s3cret" not in h


def test_duplicate_user() -> None:
    doc = base()
    doc["users"] = [{"name": "ops"}, {"name": "ops"}]
    with pytest.raises(FieldError, match=r"users\[1\]\.name"):
        parse_cluster(doc)


def test_addons_resolve_relative_to_cluster_dir(tmp_path: Path) -> None:
    doc = base()
    doc["addons"] = ["addons/cni.yaml"]
    (tmp_path / "cluster.yaml").write_text(yaml.safe_dump(doc))
    with pytest.raises(FieldError, match=r'addons\[0\]: "addons/cni.yaml" does not exist'):
        load_cluster(tmp_path)
    (tmp_path / "addons").mkdir()
    (tmp_path / "addons" / "cni.yaml").write_text("kind: [unclosed\n")
    with pytest.raises(FieldError, match=r"addons\[0\].*is not a YAML manifest"):
        load_cluster(tmp_path)
    (tmp_path / "addons" / "cni.yaml").write_text("apiVersion: v1\nkind: Namespace\nmetadata: {name: cni}\n")
    assert load_cluster(tmp_path).addons == [tmp_path / "addons" / "cni.yaml"]


def test_broken_yaml_names_the_line(tmp_path: Path) -> None:
    (tmp_path / "cluster.yaml").write_text("apiVersion: kubeseed.io/v1alpha1\nname: [x\n")
    with pytest.raises(FieldError, match="is not valid YAML at line"):
        load_cluster(tmp_path)


@pytest.mark.parametrize(
    "endpoint,expected",
    [
        ("10.0.0.10:6443", ("10.0.0.10", 6443)),
        ("api.example.com:443", ("api.example.com", 443)),
        ("[fd00::10]:6443", ("fd00::10", 6443)),
    ],
)
def test_split_endpoint(endpoint: str, expected: tuple[str, int]) -> None:
    assert split_endpoint(endpoint) == expected


@pytest.mark.parametrize("endpoint", ["fd00::10:6443", "[fd00::zz]:6443", "host", ":6443", "http://x:1", "a b:1"])
def test_split_endpoint_rejects(endpoint: str) -> None:
    with pytest.raises(ValueError):
        split_endpoint(endpoint)
