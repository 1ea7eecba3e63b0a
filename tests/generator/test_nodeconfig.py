"""The node config contract: the generator's one writer (to_doc) and the runtime's parser agree, and the derived
values a config implies are checked where it is read."""

from __future__ import annotations

import copy
import functools
import random
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubeseed.generator.errors import FieldError
from kubeseed.generator.model import load_cluster
from kubeseed.generator.nodeconfig import config_text, node_config, parse_doc, to_doc
from kubeseed.generator.secrets import generate_secrets, load
from kubeseed.runtime.config import (
    CGROUP_DRIVERS,
    KEY_ALGORITHMS,
    ConfigError,
    Discovery,
    Kubelet,
    Networking,
    NodeConfig,
)
from kubeseed.runtime.versions import MAX_MINOR, MIN_MINOR


@functools.lru_cache(maxsize=1)
def real_pki() -> dict[str, str]:
    """One real CA bundle: a master's parser loads every PEM and checks each key against its certificate."""
    return {name: pem.decode() for name, pem in generate_secrets("ECDSA-P256").pki.items()}


def _word(rnd: random.Random, n: int, alphabet: str = "abcdefghijklmnopqrstuvwxyz0123456789") -> str:
    return "".join(rnd.choice(alphabet) for _ in range(n))


def _networking(rnd: random.Random) -> Networking:
    if rnd.random() < 0.3:
        return Networking()
    if rnd.random() < 0.7:
        pods = f"10.{rnd.randrange(100, 200)}.0.0/{rnd.choice([16, 20, 24])}"
        svc = f"172.{rnd.randrange(16, 31)}.0.0/{rnd.choice([12, 16, 24, 28])}"
        svc = "172.16.0.0/12" if svc.endswith("/12") else svc
    else:
        pods = f"fd00:{rnd.randrange(1, 999):x}::/{rnd.choice([48, 56, 64])}"
        svc = f"fd01:{rnd.randrange(1, 999):x}::/{rnd.choice([108, 112, 120])}"
    return Networking(pods, svc, rnd.choice(["cluster.local", "k8s.example.org", "c1"]))


def _kubelet(rnd: random.Random) -> Kubelet:
    extra = {f"flag-{_word(rnd, 3)}": rnd.choice(["150", "true", "a,b", "10s", "x=y"]) for _ in range(rnd.randrange(3))}
    return Kubelet(
        rnd.choice(CGROUP_DRIVERS),
        rnd.choice([Kubelet.container_runtime_endpoint, "unix:///var/run/crio/crio.sock"]),
        extra,
        rnd.random() < 0.5,
    )


def random_config(rnd: random.Random) -> NodeConfig:
    role = rnd.choice(["master", "node"])
    cfg = NodeConfig(
        role=role,
        cluster_name=rnd.choice(["demo", "prod-1", _word(rnd, 8)]),
        control_plane_endpoint=rnd.choice(["10.0.0.10:6443", "[fd00::10]:6443", "api.example.com:443"]),
        kubernetes_version=f"v1.{rnd.randrange(MIN_MINOR, MAX_MINOR + 1)}.{rnd.randrange(0, 20)}",
        node_name=rnd.choice(["", f"{role}-{rnd.randrange(9)}", "n.example.com"]),
        image_repository=rnd.choice([NodeConfig.image_repository, "mirror.local:5000/k8s"]),
        key_algorithm=rnd.choice(KEY_ALGORITHMS),  # P384 on a master before v1.34 is refused: see below
        networking=_networking(rnd),
        kubelet=_kubelet(rnd),
    )
    if role == "node" or rnd.random() < 0.2:
        pins = [f"sha256:{_word(rnd, 64, '0123456789abcdef')}" for _ in range(rnd.randrange(3))]
        cfg.discovery = Discovery(f"{_word(rnd, 6)}.{_word(rnd, 16)}", pins, not pins or rnd.random() < 0.2)
    if role == "master":
        if cfg.key_algorithm == "ECDSA-P384" and cfg.version.minor < 34:
            cfg.key_algorithm = "ECDSA-P256"
        cfg.pki = dict(real_pki())
        cfg.bootstrap_tokens = [
            {"token": f"{_word(rnd, 6)}.{_word(rnd, 16)}", "usages": ["signing", "authentication"]}
            for _ in range(rnd.randrange(3))
        ]
        cfg.addons = [f"/etc/kubeseed/addons/{i:02d}-a.yaml" for i in range(rnd.randrange(3))]
        cfg.advertise_address = rnd.choice(["", "10.0.0.5", "fd00::5"])
    return cfg


@pytest.mark.parametrize("seed", range(200))
def test_parse_of_to_doc_is_the_same_config(seed: int) -> None:
    cfg = random_config(random.Random(seed))
    assert parse_doc(to_doc(cfg)) == cfg
    assert parse_doc(yaml.safe_load(config_text(cfg))) == cfg  # through the YAML the payload carries


def test_the_writer_leaves_defaults_out(cluster: Path) -> None:
    c, secrets = load(cluster)
    doc = to_doc(node_config(c, secrets, "node", None))
    assert set(doc) == {"apiVersion", "kind", "role", "clusterName", "controlPlaneEndpoint", "kubernetesVersion"} | {
        "discovery"
    }
    assert parse_doc(doc).networking == Networking() and parse_doc(doc).kubelet == Kubelet()


def test_cluster_sections_are_the_node_configs_types(cluster: Path) -> None:
    """cluster.yaml's networking and kubelet parse to the runtime's own dataclasses, values normalised alike."""
    text = (cluster / "cluster.yaml").read_text()
    text = text.replace("extraArgs: {}", 'extraArgs: {max-pods: 150, node-labels: "a=b"}')
    (cluster / "cluster.yaml").write_text(text)
    c = load_cluster(cluster)
    assert isinstance(c.networking, Networking) and isinstance(c.kubelet, Kubelet)
    assert c.kubelet.extra_args == {"max-pods": "150", "node-labels": "a=b"}
    _, secrets = load(cluster)
    for role in ("master", "node"):
        assert parse_doc(to_doc(node_config(c, secrets, role, "h-1"))).kubelet == c.kubelet


@pytest.mark.parametrize(
    "path,value,message",
    [
        ("networking.serviceSubnet", "10.96.0.0/29", "10.96.0.0/29 must be a /12 to /28"),
        ("networking.serviceSubnet", "10.0.0.0/8", "10.0.0.0/8 must be a /12 to /28"),
        ("networking.serviceSubnet", "fd01::/96", "fd01::/96 must be a /108 to /124"),
        ("kubelet.containerRuntimeEndpoint", "unix:///", "must be a unix:///path/to/socket URL"),
        ("kubelet.extraArgs", {"max-pods": True}, 'must be a one-line string, e.g. {max-pods: "150"}'),
        ("kubelet.extraArgs", {"node-labels": 'a"\nLD_PRELOAD=x'}, "must be a one-line string"),
        ("kubelet.extraArgs", {"--max-pods": "1"}, "flag names are lower-case words joined by '-'"),
    ],
)
def test_both_sides_refuse_alike(cluster: Path, path: str, value: Any, message: str) -> None:
    """One validator: cluster.yaml and the node config refuse the same values with the same message (the /29
    service range used to render, then crash join in kubelet-config)."""
    c, secrets = load(cluster)
    doc = to_doc(node_config(c, secrets, "node", None))
    section, key = path.split(".")
    node_doc = copy.deepcopy(doc)
    node_doc.setdefault(section, {})[key] = value
    with pytest.raises(ConfigError) as e:
        parse_doc(node_doc)
    assert e.value.path.startswith(path) and message in e.value.message
    data = yaml.safe_load((cluster / "cluster.yaml").read_text())
    data.setdefault(section, {})[key] = value
    (cluster / "cluster.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(FieldError) as f:
        load_cluster(cluster)
    assert f.value.path.startswith(path) and message in f.value.message


@pytest.mark.parametrize("version,refused", [("v1.33.9", True), ("v1.34.0", False)])
def test_p384_needs_kubeadm_134(cluster: Path, version: str, refused: bool) -> None:
    """kubeadm before 1.34 cannot make P384 keys, so its control-plane joins and certificate renewals would fail
    on such a cluster: a master's node config and cluster.yaml refuse the pair alike."""
    c, secrets = load(cluster)
    doc = to_doc(node_config(c, secrets, "master", "cp-1"))
    doc.update(keyAlgorithm="ECDSA-P384", kubernetesVersion=version)
    data = yaml.safe_load((cluster / "cluster.yaml").read_text())
    data.update(keyAlgorithm="ECDSA-P384", kubernetesVersion=version)
    (cluster / "cluster.yaml").write_text(yaml.safe_dump(data))
    if not refused:
        assert parse_doc(doc).key_algorithm == load_cluster(cluster).key_algorithm == "ECDSA-P384"
        return
    with pytest.raises(ConfigError, match="ECDSA-P384 needs v1.34 or later: kubeadm v1.33 cannot make"):
        parse_doc(doc)
    with pytest.raises(FieldError, match="keyAlgorithm: ECDSA-P384 needs v1.34 or later: kubeadm v1.33"):
        load_cluster(cluster)
