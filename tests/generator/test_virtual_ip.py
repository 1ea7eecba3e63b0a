"""cluster.yaml's controlPlane.virtualIP (the masters hold it with kube-vip): its validation, one error naming the
field and the fix, exit 2 and nothing written; `cluster create --virtual-ip`; the master's node config carries it,
a node's does not and its payload is byte for byte the same; `images list` adds kube-vip's image."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubeseed.generator.errors import FieldError
from kubeseed.generator.model import default_cluster_text, load_cluster, parse_cluster
from kubeseed.generator.nodeconfig import node_config, parse_doc, to_doc
from kubeseed.generator.secrets import load
from kubeseed.runtime.config import ConfigError
from tests.support.helpers import cloud_init_files, kubeseed, kubeseed_bytes

VIP = "10.0.0.100"


def vip_doc(vip: Any = VIP, endpoint: str = f"{VIP}:6443", **section: Any) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(default_cluster_text("demo", endpoint))
    doc["controlPlane"] = {"virtualIP": vip, **section}
    return doc


def with_virtual_ip(cluster: Path, vip: str = VIP, interface: str = "") -> None:
    """Give the cluster directory's cluster.yaml a virtual IP (and the endpoint that goes with it)."""
    doc = yaml.safe_load((cluster / "cluster.yaml").read_text())
    doc["controlPlaneEndpoint"] = f"{vip}:6443"
    doc["controlPlane"] = {"virtualIP": vip, **({"virtualIPInterface": interface} if interface else {})}
    (cluster / "cluster.yaml").write_text(yaml.safe_dump(doc))


def test_a_virtual_ip_is_parsed_and_normalized() -> None:
    c = parse_cluster(vip_doc("FD00:0::100", "[fd00::100]:6443", virtualIPInterface="ens160"))
    assert (c.virtual_ip, c.virtual_ip_interface) == ("fd00::100", "ens160")
    plain = parse_cluster(yaml.safe_load(default_cluster_text("demo", "10.0.0.10:6443")))
    assert (plain.virtual_ip, plain.virtual_ip_interface) == ("", "")  # a load balancer or DNS name: nothing added
    assert parse_cluster(dict(vip_doc(), controlPlane=None)).virtual_ip == ""


@pytest.mark.parametrize(
    "doc,path,message",
    [
        (vip_doc("10.0.0"), "controlPlane.virtualIP", '"10.0.0" is not an IP address (example: 10.0.0.100'),
        (vip_doc("vip.example.com"), "controlPlane.virtualIP", "is not an IP address"),
        (vip_doc("127.0.0.5"), "controlPlane.virtualIP", "cannot be a virtual IP: use an unused IPv4 address"),
        (vip_doc("fe80::1", "[fe80::1]:6443"), "controlPlane.virtualIP", "use an unused IPv6 address"),
        (vip_doc("10.96.0.5", "10.96.0.5:6443"), "controlPlane.virtualIP", "is in networking.serviceSubnet"),
        (vip_doc("10.244.3.3", "10.244.3.3:6443"), "controlPlane.virtualIP", "is in networking.podSubnet"),
        (vip_doc(1), "controlPlane.virtualIP", "must be a non-empty string"),
        (
            vip_doc(endpoint="10.0.0.10:6443"),
            "controlPlaneEndpoint",
            '"10.0.0.10:6443" must be the virtual IP (controlPlane.virtualIP) at port 6443, "10.0.0.100:6443"; or '
            "leave controlPlane.virtualIP out when a load balancer or a DNS name is the endpoint",
        ),
        (vip_doc(endpoint="api.example.com:6443"), "controlPlaneEndpoint", "must be the virtual IP"),
        (vip_doc(endpoint=f"{VIP}:443"), "controlPlaneEndpoint", "must use port 6443 with a virtual IP"),
        (vip_doc(virtualIPInterface="eth0/1"), "controlPlane.virtualIPInterface", "is not a network interface name"),
        (vip_doc(virtualIPInterface="a" * 16), "controlPlane.virtualIPInterface", "1 to 15 characters"),
        (vip_doc(interface="eth0"), "controlPlane.interface", "unknown field; known fields here: virtualIP, "),
        (
            dict(vip_doc(), controlPlane={"virtualIPInterface": "eth0"}),
            "controlPlane.virtualIPInterface",
            "goes with controlPlane.virtualIP, which is not set",
        ),
    ],
)
def test_each_bad_value_is_one_error_naming_the_field(doc: dict[str, Any], path: str, message: str) -> None:
    with pytest.raises(FieldError) as e:
        parse_cluster(doc, "cluster.yaml")
    assert e.value.path == path
    assert message in e.value.message, e.value.message
    assert "\n" not in str(e.value)


def test_bad_cluster_yaml_fails_render_with_exit_2_and_no_output(cluster: Path) -> None:
    doc = yaml.safe_load((cluster / "cluster.yaml").read_text())
    doc["controlPlane"] = {"virtualIP": VIP}  # the endpoint stays 10.0.0.10:6443
    (cluster / "cluster.yaml").write_text(yaml.safe_dump(doc))
    r = kubeseed("render", "master", "demo", "-o", "m.yaml", cwd=cluster.parent)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith("error: demo/cluster.yaml: controlPlaneEndpoint: ")
    assert not (cluster.parent / "m.yaml").exists()


def test_cluster_create_with_a_virtual_ip(tmp_path: Path) -> None:
    r = kubeseed("cluster", "create", "demo", "--virtual-ip", "fd00::100", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    c = load_cluster(tmp_path / "demo")
    assert (c.virtual_ip, c.control_plane_endpoint) == ("fd00::100", "[fd00::100]:6443")
    text = (tmp_path / "demo/cluster.yaml").read_text()
    assert "kube-vip" in text.split("controlPlane:\n")[0].rsplit("\n\n", 1)[1]  # the section explains itself
    r = kubeseed("cluster", "create", "same", "--virtual-ip", VIP, "--endpoint", f"{VIP}:6443", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert load_cluster(tmp_path / "same").virtual_ip == VIP


@pytest.mark.parametrize(
    "args,error",
    [
        (["--virtual-ip", "10.0.0"], '--virtual-ip: "10.0.0" is not an IP address'),
        (["--virtual-ip", "a\nb: c"], '--virtual-ip: "a\\nb: c" is not an IP address'),
        (["--virtual-ip", "10.96.0.1"], "--virtual-ip: 10.96.0.1 is in --service-subnet 10.96.0.0/12"),
        (
            ["--virtual-ip", VIP, "--endpoint", "10.0.0.10:6443"],
            '--endpoint: "10.0.0.10:6443" must be the virtual IP (--virtual-ip) at port 6443, "10.0.0.100:6443"',
        ),
        ([], "--endpoint HOST:PORT is required (or --virtual-ip IP"),
    ],
)
def test_cluster_create_refuses_with_exit_2_and_writes_nothing(tmp_path: Path, args: list[str], error: str) -> None:
    r = kubeseed("cluster", "create", "demo", *args, cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr.startswith(f"error: {error}") and r.stderr.count("\n") == 1, r.stderr
    assert not (tmp_path / "demo").exists()


def test_the_masters_node_config_carries_it_a_nodes_does_not(cluster: Path) -> None:
    with_virtual_ip(cluster, interface="ens160")
    c, secrets = load(cluster)
    master = to_doc(node_config(c, secrets, "master", "cp-1"))
    assert (master["virtualIP"], master["virtualIPInterface"]) == (VIP, "ens160")
    assert master["controlPlaneEndpoint"] == f"{VIP}:6443"
    cfg = parse_doc(master)  # the runtime's parser reads it back
    assert (cfg.virtual_ip, cfg.virtual_ip_interface) == (VIP, "ens160")
    assert to_doc(cfg) == master
    node = to_doc(node_config(c, secrets, "node", "worker-1"))
    assert not {"virtualIP", "virtualIPInterface"} & set(node)
    assert node["controlPlaneEndpoint"] == f"{VIP}:6443"  # nodes just use the endpoint
    r = kubeseed("render", "master", "demo", "--hostname", "cp-1", "-o", "m.yaml", cwd=cluster.parent)
    assert r.returncode == 0, r.stderr
    carried = yaml.safe_load(cloud_init_files((cluster.parent / "m.yaml").read_bytes())["/etc/kubeseed/config.yaml"][0])
    assert carried["virtualIP"] == VIP


def test_a_node_payload_is_unchanged_by_it(cluster: Path) -> None:
    """The same node payload, byte for byte, whether the endpoint VIP:6443 is kube-vip's or a load balancer's."""
    doc = yaml.safe_load((cluster / "cluster.yaml").read_text())
    doc["controlPlaneEndpoint"] = f"{VIP}:6443"
    (cluster / "cluster.yaml").write_text(yaml.safe_dump(doc))
    args = ("render", "node", "demo", "--hostname", "worker-1", "--gzip")
    without = kubeseed_bytes(*args, cwd=cluster.parent)
    with_virtual_ip(cluster, interface="ens160")
    with_vip = kubeseed_bytes(*args, cwd=cluster.parent)
    assert without.returncode == with_vip.returncode == 0, with_vip.stderr
    assert with_vip.stdout == without.stdout


@pytest.mark.parametrize(
    "change,path,message",
    [
        ({"virtualIP": "10.0.0.999"}, "virtualIP", "is not an IP address"),
        ({"controlPlaneEndpoint": "10.0.0.10:6443"}, "controlPlaneEndpoint", 'port, "10.0.0.100:6443"'),
        ({"controlPlaneEndpoint": "10.0.0.100:443"}, "controlPlaneEndpoint", "must be the virtual IP at the API"),
        ({"virtualIPInterface": "has space"}, "virtualIPInterface", '"has space" must be a network interface name'),
        ({"virtualIP": None, "virtualIPInterface": "eth0"}, "virtualIPInterface", "with virtualIP"),
    ],
)
def test_the_runtime_refuses_a_bad_virtual_ip(cluster: Path, change: dict[str, Any], path: str, message: str) -> None:
    with_virtual_ip(cluster, interface="eth0")
    c, secrets = load(cluster)
    doc = copy.deepcopy(to_doc(node_config(c, secrets, "master", "cp-1")))
    doc.update(change)
    doc = {k: v for k, v in doc.items() if v is not None}
    with pytest.raises(ConfigError) as e:
        parse_doc(doc)
    assert e.value.path == path and message in e.value.message, e.value


def test_images_list_adds_kube_vip_only_with_a_virtual_ip(cluster: Path) -> None:
    before = kubeseed("images", "list", "demo", cwd=cluster.parent)
    assert before.returncode == 0 and "kube-vip" not in before.stdout
    with_virtual_ip(cluster)
    r = kubeseed("images", "list", "demo", cwd=cluster.parent)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == before.stdout.splitlines() + ["ghcr.io/kube-vip/kube-vip:v1.2.3"]
    doc = yaml.safe_load((cluster / "cluster.yaml").read_text())
    doc["imageRepository"] = "mirror.local:5000/k8s"
    (cluster / "cluster.yaml").write_text(yaml.safe_dump(doc))
    r = kubeseed("images", "list", "demo", cwd=cluster.parent)
    assert r.stdout.splitlines()[-1] == "mirror.local:5000/k8s/kube-vip:v1.2.3"
    assert all(line.startswith("mirror.local:5000/k8s/") for line in r.stdout.splitlines())
