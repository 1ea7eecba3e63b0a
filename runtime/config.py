"""The node config (/etc/kubeseed/config.yaml): the contract between generator and runtime.

These dataclasses and parsers are the one schema: the generator's cluster model parses its networking and kubelet
sections with the same sub-parsers, and writes the node config from these types. Defaults live here only, and are
part of the API version: they never change within kubeseed.io/v1alpha1, so a writer may leave them out. A role's
own fields (the master's keys and tokens) are parsed by the hook its package passes as ``extend``."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

from .tokens import parse_pin, parse_token
from .versions import DEFAULT, Version

API_VERSION = "kubeseed.io/v1alpha1"
RUNTIME_PATH = "/opt/kubeseed/kubeseed-runtime.pyz"
NODE_CONFIG_PATH = "/etc/kubeseed/config.yaml"
STATE_PATH = "/var/lib/kubeseed/state.json"
LOG_PATH = "/var/log/kubeseed.log"
ROLES = ("master", "node")
KEY_ALGORITHMS = ("ECDSA-P256", "ECDSA-P384", "RSA-2048", "RSA-3072", "RSA-4096")
CGROUP_DRIVERS = ("systemd", "cgroupfs")
DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
DNS_NAME = re.compile(r"(?=.{1,253}\Z)[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*")
FLAG_NAME = re.compile(r"[a-z0-9][a-z0-9-]*")
CRI_ENDPOINT = re.compile(r"unix:///\S+")
CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class ConfigError(Exception):
    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path, self.message = path, message


@dataclass
class Networking:
    pod_subnet: str = "10.244.0.0/16"
    service_subnet: str = "10.96.0.0/12"
    dns_domain: str = "cluster.local"

    @property
    def api_service_ip(self) -> str:
        """The ``kubernetes`` Service's address: the first of the service range (parse_networking checks it)."""
        return str(ipaddress.ip_network(self.service_subnet)[1])

    @property
    def cluster_dns_ip(self) -> str:
        """kube-dns's address: kubeadm takes the tenth of the service range (parse_networking checks it)."""
        return str(ipaddress.ip_network(self.service_subnet)[10])


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
    kubernetes_version: str = DEFAULT
    node_name: str = ""
    image_repository: str = "registry.k8s.io"
    key_algorithm: str = "ECDSA-P256"
    networking: Networking = field(default_factory=Networking)
    kubelet: Kubelet = field(default_factory=Kubelet)
    discovery: Optional[Discovery] = None
    pki: Dict[str, str] = field(default_factory=dict)
    bootstrap_tokens: List[Dict[str, Any]] = field(default_factory=list)
    addons: List[str] = field(default_factory=list)
    advertise_address: str = ""
    virtual_ip: str = ""  # a master's: the control plane's virtual IP, held by kube-vip (runtime/init/kubevip.py)
    virtual_ip_interface: str = ""  # where kube-vip holds it ("": the interface of the advertise address)
    upload_certs: bool = False  # a master's init: kubeadm-certs for `kubeadm join --control-plane` (init/copycerts.py)
    certificate_key: str = ""  # the key encrypting them ("": one made and kept in /var/lib/kubeseed)

    @property
    def version(self) -> Version:
        return Version(self.kubernetes_version)


def split_endpoint(endpoint: str) -> Tuple[str, int]:
    """``host:port`` or ``[v6]:port`` -> (host, port); ValueError says why not. ASCII only: lower() makes some
    other letters ASCII (the Kelvin sign becomes k), which no certificate or URL takes."""
    m = re.fullmatch(r"\[([0-9a-fA-F:.]+)\]:(\d{1,5})|([^:\[\]/\s]+):(\d{1,5})", endpoint, re.A)
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
            if re.fullmatch(r"[0-9.]+", host) or not (host.isascii() and DNS_NAME.fullmatch(host.lower())):
                raise ValueError(f"host {host!a} is neither an IPv4 address nor a DNS name") from None
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


class Doc:
    """A mapping being read: typed getters whose errors carry the field path; unknown keys are errors."""

    def __init__(self, data: Any, path: str, known: Tuple[str, ...]) -> None:
        if not isinstance(data, dict):
            raise ConfigError(path or "(document)", f"must be a mapping, found {type(data).__name__}")
        self.data, self.path = data, path
        for k in data:
            check(k in known, self.at(k), "unknown field")

    def at(self, key: Any) -> str:
        return f"{self.path}.{key}" if self.path else str(key)

    def get(self, key: str, kind: type, default: Any = None, required: bool = False) -> Any:
        value = self.data.get(key, default)
        if value is None:
            if required:
                raise ConfigError(self.at(key), "is required")
            return default
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ConfigError(self.at(key), f"must be a {kind.__name__}, found {type(value).__name__}")
        return value

    def sub(self, key: str, known: Tuple[str, ...]) -> Doc:
        return Doc(self.data.get(key) or {}, self.at(key), known)


def check(ok: bool, path: str, message: str) -> None:
    if not ok:
        raise ConfigError(path, message)


NETWORKING = ("podSubnet", "serviceSubnet", "dnsDomain")
KUBELET = ("cgroupDriver", "containerRuntimeEndpoint", "extraArgs", "serverTLSBootstrap")


def parse_networking(n: Doc) -> Networking:
    """The networking section, with the values kubeadm derives from it checked here, not when first used."""
    net = Networking(
        n.get("podSubnet", str, Networking.pod_subnet),
        n.get("serviceSubnet", str, Networking.service_subnet),
        n.get("dnsDomain", str, Networking.dns_domain),
    )
    for key, value in (("podSubnet", net.pod_subnet), ("serviceSubnet", net.service_subnet)):
        err = cidr_error(value)
        check(not err, n.at(key), err)
    net.pod_subnet, net.service_subnet = net.pod_subnet.lower(), net.service_subnet.lower()
    svc = ipaddress.ip_network(net.service_subnet)
    least = svc.max_prefixlen - 20  # kubeadm: at most 20 host bits; kube-dns takes the tenth address
    check(
        least <= svc.prefixlen <= svc.max_prefixlen - 4,
        n.at("serviceSubnet"),
        f"{svc} must be a /{least} to /{svc.max_prefixlen - 4}: kube-dns takes its tenth address, and kubeadm "
        "allows at most 20 host bits",
    )
    check(bool(DNS_NAME.fullmatch(net.dns_domain)), n.at("dnsDomain"), f'"{net.dns_domain}" is not a DNS domain')
    return net


def parse_kubelet(k: Doc) -> Kubelet:
    kubelet = Kubelet(
        k.get("cgroupDriver", str, Kubelet.cgroup_driver),
        k.get("containerRuntimeEndpoint", str, Kubelet.container_runtime_endpoint),
        {},
        k.get("serverTLSBootstrap", bool, Kubelet.server_tls_bootstrap),
    )
    check(
        kubelet.cgroup_driver in CGROUP_DRIVERS,
        k.at("cgroupDriver"),
        f'"{kubelet.cgroup_driver}" is not one of {", ".join(CGROUP_DRIVERS)}',
    )
    cri = kubelet.container_runtime_endpoint
    check(bool(CRI_ENDPOINT.fullmatch(cri)), k.at("containerRuntimeEndpoint"), "must be a unix:///path/to/socket URL")
    extra = k.get("extraArgs", dict, {})
    for name, value in extra.items():
        path = f"{k.at('extraArgs')}.{name}"
        check(
            isinstance(name, str) and bool(FLAG_NAME.fullmatch(name)),
            path,
            "flag names are lower-case words joined by '-', without '--'",
        )
        check(
            isinstance(value, (str, int, float)) and not isinstance(value, bool) and not CONTROL.search(str(value)),
            path,
            'must be a one-line string, e.g. {max-pods: "150"}',
        )
        kubelet.extra_args[name] = str(value)
    return kubelet


TOP = (
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
)


def parse_node_config(
    data: Any, extend: Optional[Tuple[Tuple[str, ...], Callable[[Doc, NodeConfig], None]]] = None
) -> NodeConfig:
    """The node config in ``data``. ``extend`` is a role's own top-level fields: their names, and the parser that
    checks them and fills them into the NodeConfig (the master's keys and tokens)."""
    if isinstance(data, dict) and data.get("apiVersion") != API_VERSION:
        raise ConfigError(
            "apiVersion",
            f'unknown version "{data.get("apiVersion")}"; this runtime reads '
            f"{API_VERSION}: render the payload again with a matching kubeseed",
        )
    d = Doc(data, "", TOP + (extend[0] if extend else ()))
    check(d.get("kind", str) == "NodeConfig", "kind", f'must be NodeConfig, found "{d.get("kind", str)}"')
    role = d.get("role", str, required=True)
    check(role in ROLES, "role", f'"{role}" is not one of master, node')
    name = d.get("clusterName", str, required=True)
    check(bool(DNS_LABEL.fullmatch(name)), "clusterName", f'"{name}" is not a DNS-1123 label')
    node_name = d.get("nodeName", str, "")
    check(
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
    try:
        Version(version)
    except ValueError as e:
        raise ConfigError("kubernetesVersion", str(e)) from None
    alg = d.get("keyAlgorithm", str, NodeConfig.key_algorithm)
    check(alg in KEY_ALGORITHMS, "keyAlgorithm", f'"{alg}" is not one of {", ".join(KEY_ALGORITHMS)}')
    cfg = NodeConfig(
        role=role,
        cluster_name=name,
        control_plane_endpoint=endpoint,
        kubernetes_version=version,
        node_name=node_name,
        image_repository=d.get("imageRepository", str, NodeConfig.image_repository),
        key_algorithm=alg,
        networking=parse_networking(d.sub("networking", NETWORKING)),
        kubelet=parse_kubelet(d.sub("kubelet", KUBELET)),
    )
    if "discovery" in d.data:
        cfg.discovery = parse_discovery(d.sub("discovery", ("token", "caCertHashes", "unsafeSkipCAVerification")))
    if role == "node":
        check(cfg.discovery is not None, "discovery", "is required for a node (token and CA pins)")
    if extend:
        extend[1](d, cfg)
    return cfg


def parse_discovery(disc: Doc) -> Discovery:
    token = disc.get("token", str, "")
    check(bool(token), disc.at("token"), "is required: the bootstrap token ID.SECRET (kubeseed token create)")
    try:
        parse_token(token)
    except ValueError as e:
        raise ConfigError(disc.at("token"), str(e)) from None
    pins = list(disc.get("caCertHashes", list, []))
    for i, pin in enumerate(pins):
        try:
            pins[i] = parse_pin(pin if isinstance(pin, str) else "")
        except ValueError as e:
            raise ConfigError(
                f"{disc.at('caCertHashes')}[{i}]", f"invalid discovery token CA certificate hash: {e}"
            ) from None
    unsafe = disc.get("unsafeSkipCAVerification", bool, False)
    check(
        bool(pins) or unsafe,
        disc.at("caCertHashes"),
        "at least one CA pin (sha256:<hex>) is required; skipping it (unsafeSkipCAVerification, "
        "--discovery-token-unsafe-skip-ca-verification) lets an attacker impersonate the API server",
    )
    return Discovery(token, pins, unsafe)


def load_yaml(text: Any) -> Any:
    """YAML as data, safely: PyYAML's safe loader, refusing aliases (a few hundred bytes of nested aliases
    expand to gigabytes) and duplicate keys (the last one would silently win). Raises yaml.YAMLError."""
    import yaml  # here, not at the top: preflight must be able to report a missing PyYAML

    class Loader(yaml.SafeLoader):
        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.AliasEvent):
                raise yaml.YAMLError(f"line {self.peek_event().start_mark.line + 1}: aliases (*name) are not accepted")
            return super().compose_node(parent, index)

        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            seen = set()
            for key_node, _ in node.value:
                key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
                if key in seen:
                    raise yaml.YAMLError(f"line {key_node.start_mark.line + 1}: key {str(key)[:40]!r} appears twice")
                if key is not None:
                    seen.add(key)
            return super().construct_mapping(node, deep)

    return yaml.load(text, Loader)  # a SafeLoader


def read_node_config(path: str) -> Any:
    """The parsed YAML of a node config file (not yet validated)."""
    import yaml

    try:
        with open(path, encoding="utf-8") as f:
            return load_yaml(f)
    except FileNotFoundError:
        raise ConfigError(
            path, "no node config here; pass --config FILE, or --root DIR for a materialized payload"
        ) from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(path, f"cannot read it: {e}") from None
    except yaml.YAMLError as e:
        raise ConfigError(path, f"is not valid YAML: {str(e).splitlines()[0]}") from None


def load_node_config(path: str, extend: Any = None) -> NodeConfig:
    """The node config at ``path``; errors name the file too."""
    try:
        return parse_node_config(read_node_config(path), extend)
    except ConfigError as e:
        if e.path == path:
            raise
        raise ConfigError(f"{path}: {e.path}", e.message) from None
