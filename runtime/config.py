"""The node config (/etc/kubeseed/config.yaml): the contract between generator and runtime."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from .tokens import parse_pin, parse_token

API_VERSION = "kubeseed.io/v1alpha1"
RUNTIME_PATH = "/opt/kubeseed/kubeseed-runtime.pyz"
NODE_CONFIG_PATH = "/etc/kubeseed/config.yaml"
STATE_PATH = "/var/lib/kubeseed/state.json"
LOG_PATH = "/var/log/kubeseed.log"
ROLES = ("master", "node")
KEY_ALGORITHMS = ("ECDSA-P256", "ECDSA-P384", "RSA-2048", "RSA-3072", "RSA-4096")
DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
DNS_NAME = re.compile(r"(?=.{1,253}\Z)[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*")
VERSION = re.compile(r"v(\d+)\.(\d+)\.(\d+)")
DEFAULT_VERSION = "v1.35.5"  # a node joined by flags alone, without a node config, assumes this
MIN_MINOR, MAX_MINOR = 30, 36  # the Kubernetes minors whose kubeadm layout this runtime reproduces


class ConfigError(Exception):
    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path


@dataclass
class Networking:
    pod_subnet: str = "10.244.0.0/16"
    service_subnet: str = "10.96.0.0/12"
    dns_domain: str = "cluster.local"


@dataclass
class Kubelet:
    cgroup_driver: str = "systemd"
    container_runtime_endpoint: str = "unix:///run/containerd/containerd.sock"
    extra_args: Dict[str, str] = field(default_factory=dict)
    server_tls_bootstrap: bool = False


@dataclass
class Discovery:
    token: str
    ca_cert_hashes: List[str]
    unsafe_skip_ca_verification: bool = False


@dataclass
class NodeConfig:
    role: str
    cluster_name: str
    control_plane_endpoint: str
    kubernetes_version: str
    node_name: str = ""
    image_repository: str = "registry.k8s.io"
    key_algorithm: str = "ECDSA-P256"
    networking: Networking = field(default_factory=Networking)
    kubelet: Kubelet = field(default_factory=Kubelet)
    discovery: Optional[Discovery] = None
    pki: Dict[str, str] = field(default_factory=dict)
    bootstrap_tokens: List[Dict[str, Any]] = field(default_factory=list)
    addons: List[str] = field(default_factory=list)

    @property
    def minor(self) -> int:
        return int(self.kubernetes_version.split(".")[1])


def split_endpoint(endpoint: str) -> tuple:
    """``host:port`` or ``[v6]:port`` -> (host, port); ValueError says why not."""
    m = re.fullmatch(r"\[([0-9a-fA-F:.]+)\]:(\d{1,5})|([^:\[\]/\s]+):(\d{1,5})", endpoint)
    if not m:
        raise ValueError("is not host:port (example: 10.0.0.10:6443, or [fd00::10]:6443 for IPv6)")
    host, port = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
    if not 1 <= int(port) <= 65535:
        raise ValueError(f"port {port} is out of range 1-65535")
    if m.group(1):
        ipaddress.IPv6Address(host)
    else:
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            if re.fullmatch(r"[0-9.]+", host) or not DNS_NAME.fullmatch(host.lower()):
                raise ValueError(f"host {host!r} is neither an IPv4 address nor a DNS name") from None
    return host, int(port)


def cidr_error(value: Any) -> str:
    """'' if ``value`` is a normalised CIDR, else what is wrong with it."""
    try:
        net = ipaddress.ip_network(str(value), strict=False)
    except ValueError:
        return f'"{value}" is not a CIDR (example: 10.244.0.0/16)'
    if "/" not in str(value):
        return f'"{value}" is not a CIDR: add the prefix length, e.g. {value}/16'
    if str(net) != str(value).lower():
        return f'"{value}" has host bits set; did you mean {net}?'
    return ""


class _Doc:
    """A mapping being read: typed getters whose errors carry the field path; unknown keys are errors."""

    def __init__(self, data: Any, path: str, known: tuple) -> None:
        if not isinstance(data, dict):
            raise ConfigError(path or "(document)", f"must be a mapping, found {type(data).__name__}")
        for k in data:
            if k not in known:
                raise ConfigError(self._p(path, k), "unknown field")
        self.data, self.path = data, path

    @staticmethod
    def _p(path: str, key: Any) -> str:
        return f"{path}.{key}" if path else str(key)

    def get(self, key: str, kind: type, default: Any = None, required: bool = False) -> Any:
        value = self.data.get(key, default)
        if value is None:
            if required:
                raise ConfigError(self._p(self.path, key), "is required")
            return default
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ConfigError(self._p(self.path, key), f"must be a {kind.__name__}, found {type(value).__name__}")
        return value

    def sub(self, key: str, known: tuple) -> _Doc:
        return _Doc(self.data.get(key) or {}, self._p(self.path, key), known)


def _check(ok: bool, path: str, message: str) -> None:
    if not ok:
        raise ConfigError(path, message)


def parse_node_config(data: Any) -> NodeConfig:
    top = (
        "apiVersion",
        "kind",
        "role",
        "clusterName",
        "nodeName",
        "controlPlaneEndpoint",
        "kubernetesVersion",
        "imageRepository",
        "keyAlgorithm",
        "networking",
        "kubelet",
        "discovery",
        "pki",
        "bootstrapTokens",
        "addons",
    )
    if isinstance(data, dict) and data.get("apiVersion") != API_VERSION:
        raise ConfigError(
            "apiVersion",
            f'unknown version "{data.get("apiVersion")}"; this runtime reads '
            f"{API_VERSION}: re-render the payload with a kubeseed that matches this runtime",
        )
    d = _Doc(data, "", top)
    _check(d.get("kind", str) == "NodeConfig", "kind", f'must be NodeConfig, found "{d.get("kind", str)}"')
    role = d.get("role", str, required=True)
    _check(role in ROLES, "role", f'"{role}" is not one of master, node')
    name = d.get("clusterName", str, required=True)
    _check(bool(DNS_LABEL.fullmatch(name)), "clusterName", f'"{name}" is not a DNS-1123 label')
    node_name = d.get("nodeName", str, "")
    _check(
        not node_name or bool(DNS_NAME.fullmatch(node_name)),
        "nodeName",
        f'"{node_name}" is not a valid node name (lower-case DNS name)',
    )
    endpoint = d.get("controlPlaneEndpoint", str, required=True)
    try:
        split_endpoint(endpoint)
    except ValueError as e:
        raise ConfigError("controlPlaneEndpoint", f'"{endpoint}" {e}') from None
    version = d.get("kubernetesVersion", str, required=True)
    m = VERSION.fullmatch(version)
    _check(bool(m), "kubernetesVersion", f'"{version}" is not a version like v1.35.5')
    _check(
        m is not None and m.group(1) == "1" and MIN_MINOR <= int(m.group(2)) <= MAX_MINOR,
        "kubernetesVersion",
        f'"{version}" is not supported by this runtime (v1.{MIN_MINOR} to v1.{MAX_MINOR})',
    )
    alg = d.get("keyAlgorithm", str, "ECDSA-P256")
    _check(alg in KEY_ALGORITHMS, "keyAlgorithm", f'"{alg}" is not one of {", ".join(KEY_ALGORITHMS)}')

    n = d.sub("networking", ("podSubnet", "serviceSubnet", "dnsDomain"))
    net = Networking(
        n.get("podSubnet", str, "10.244.0.0/16"),
        n.get("serviceSubnet", str, "10.96.0.0/12"),
        n.get("dnsDomain", str, "cluster.local"),
    )
    for key, value in (("podSubnet", net.pod_subnet), ("serviceSubnet", net.service_subnet)):
        err = cidr_error(value)
        _check(not err, f"networking.{key}", err)
    _check(bool(DNS_NAME.fullmatch(net.dns_domain)), "networking.dnsDomain", f'"{net.dns_domain}" is not a DNS domain')

    k = d.sub("kubelet", ("cgroupDriver", "containerRuntimeEndpoint", "extraArgs", "serverTLSBootstrap"))
    kubelet = Kubelet(
        k.get("cgroupDriver", str, "systemd"),
        k.get("containerRuntimeEndpoint", str, "unix:///run/containerd/containerd.sock"),
        k.get("extraArgs", dict, {}),
        k.get("serverTLSBootstrap", bool, False),
    )
    _check(
        kubelet.cgroup_driver in ("systemd", "cgroupfs"),
        "kubelet.cgroupDriver",
        f'"{kubelet.cgroup_driver}" is not one of systemd, cgroupfs',
    )
    _check(
        kubelet.container_runtime_endpoint.startswith("unix:///"),
        "kubelet.containerRuntimeEndpoint",
        "must be a unix:///path/to/socket URL",
    )
    for key, value in kubelet.extra_args.items():
        _check(isinstance(key, str) and isinstance(value, str), f"kubelet.extraArgs.{key}", "must be a string")

    cfg = NodeConfig(
        role=role,
        cluster_name=name,
        control_plane_endpoint=endpoint,
        kubernetes_version=version,
        node_name=node_name,
        image_repository=d.get("imageRepository", str, "registry.k8s.io"),
        key_algorithm=alg,
        networking=net,
        kubelet=kubelet,
    )
    if "discovery" in d.data:
        disc = d.sub("discovery", ("token", "caCertHashes", "unsafeSkipCAVerification"))
        token = disc.get("token", str, required=True)
        try:
            parse_token(token)
        except ValueError as e:
            raise ConfigError("discovery.token", str(e)) from None
        pins = disc.get("caCertHashes", list, [])
        for i, pin in enumerate(pins):
            try:
                pins[i] = parse_pin(pin if isinstance(pin, str) else "")
            except ValueError as e:
                raise ConfigError(
                    f"discovery.caCertHashes[{i}]", f"invalid discovery token CA certificate hash: {e}"
                ) from None
        unsafe = disc.get("unsafeSkipCAVerification", bool, False)
        _check(
            bool(pins) or unsafe,
            "discovery.caCertHashes",
            "at least one CA pin is required (or set "
            "unsafeSkipCAVerification: true, which lets a network attacker impersonate the API server)",
        )
        cfg.discovery = Discovery(token, pins, unsafe)
    if role == "node":
        _check(cfg.discovery is not None, "discovery", "is required for a node (token and CA pins)")
    else:  # only the master's runtime carries this module
        try:
            from .master import parse_master_fields
        except ImportError:
            raise ConfigError("role", "this runtime was built for nodes; render the master payload again") from None
        parse_master_fields(d, cfg)
    return cfg


def read_node_config(path: str) -> Any:
    """The parsed YAML of a node config file (not yet validated)."""
    import yaml  # here, not at the top: preflight must be able to report a missing PyYAML

    try:
        with open(path, encoding="utf-8") as f:
            return yaml.safe_load(f)
    except FileNotFoundError:
        raise ConfigError(
            path, "no node config here; pass --config FILE, or --root DIR for a materialized payload"
        ) from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(path, f"cannot read it: {e}") from None
    except yaml.YAMLError as e:
        raise ConfigError(path, f"is not valid YAML: {str(e).splitlines()[0]}") from None


def parse_node_config_file(data: Any, path: str) -> NodeConfig:
    """``parse_node_config`` whose errors name the file too."""
    try:
        return parse_node_config(data)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e.path}", str(e).split(": ", 1)[1]) from None


def load_node_config(path: str) -> NodeConfig:
    return parse_node_config_file(read_node_config(path), path)
