"""The cluster model: ``cluster.yaml`` (apiVersion kubeseed.io/v1alpha1, kind Cluster), loaded with full validation."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubeseed.runtime.config import (
    API_VERSION,
    DNS_LABEL,
    DNS_NAME,
    KEY_ALGORITHMS,
    KUBELET,
    NETWORKING,
    ConfigError,
    Doc,
    Kubelet,
    Networking,
    NodeConfig,
    parse_kubelet,
    parse_networking,
    split_endpoint,
)
from kubeseed.runtime.versions import DEFAULT, MAX_MINOR, MIN_MINOR, Version

from .errors import SHOWN, FieldError, shown
from .templating import render_template, yaml_scalar
from .yamlfile import load_documents, problem, read_text, read_yaml

CLUSTER_FILE = "cluster.yaml"


_LINUX_USER = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
_CRYPT_HASH = re.compile(r"\$(1|5|6|y|2[aby])\$[./A-Za-z0-9$=,]+")
# One printable ASCII line: cloud-init's ssh_util splits authorized_keys on \r, \v, \x85 and \u2028 too, so any
# of them would start a second entry (with options such as command="...") inside one "key".
_SSH_KEY = re.compile(
    r"(ssh-(rsa|ed25519|dss)|ecdsa-sha2-nistp(256|384|521)|sk-(ssh-ed25519|ecdsa-sha2-nistp256)@openssh\.com)"
    r" [A-Za-z0-9+/]+={0,3}( [ -~]*)?"
)
_IMAGE_REPO = re.compile(r"[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)*")
NODE_NAME_MAX = 52  # the kubelet's certificate is for system:node:NAME, and a common name holds 64 bytes


def hostname_error(name: str) -> str:
    """'' if ``name`` can be a machine's host name, which is also its Kubernetes node name; else why not."""
    if not DNS_NAME.fullmatch(name):
        return (
            f'{shown(name)} is not a lower-case DNS name (letters a-z, digits, "-" and ".", labels of at most 63); '
            "it is also the node name"
        )
    if len(name) > NODE_NAME_MAX:
        return (
            f"{shown(name)} is {len(name)} characters; a host name here has at most {NODE_NAME_MAX}: it is also the "
            f"node name, whose kubelet certificate is for system:node:NAME, and a certificate's common name holds "
            "64 bytes (Linux host names hold 64 too)"
        )
    return ""


@dataclass
class LoginUser:
    name: str
    ssh_authorized_keys: list[str] = field(default_factory=list)
    password_hash: str | None = None
    groups: list[str] = field(default_factory=list)
    sudo: bool = False  # passwordless sudo (cloud-init `sudo`, a sudoers.d file for Ignition)


@dataclass
class Cluster:
    """cluster.yaml. Its networking and kubelet sections are the node config's own types (runtime/config.py),
    parsed by the same code: what renders is what the runtime accepts."""

    name: str
    kubernetes_version: str
    control_plane_endpoint: str
    image_repository: str
    key_algorithm: str
    networking: Networking
    kubelet: Kubelet
    users: list[LoginUser]
    addons: list[Path]
    virtual_ip: str = ""  # controlPlane.virtualIP, held by kube-vip on the masters ("": none, a load balancer's)
    virtual_ip_interface: str = ""  # controlPlane.virtualIPInterface ("": each master's advertise address's)

    @property
    def endpoint_host(self) -> str:
        return split_endpoint(self.control_plane_endpoint)[0]


def default_cluster_text(
    name: str,
    endpoint: str,
    kubernetes_version: str = DEFAULT,
    key_algorithm: str = NodeConfig.key_algorithm,
    pod_subnet: str = Networking.pod_subnet,
    service_subnet: str = Networking.service_subnet,
    virtual_ip: str = "",
) -> str:
    """The commented cluster.yaml that ``cluster create`` writes (the template quotes every value as YAML needs:
    no value can end its line and add keys), with a controlPlane section when the masters have a ``virtual_ip``."""
    text = render_template(
        "cluster.yaml.j2",
        name=name,
        endpoint=endpoint,
        kubernetes_version=kubernetes_version,
        key_algorithm=key_algorithm,
        image_repository=NodeConfig.image_repository,
        pod_subnet=pod_subnet,
        service_subnet=service_subnet,
        dns_domain=Networking.dns_domain,
        cgroup_driver=Kubelet.cgroup_driver,
        cri_endpoint=Kubelet.container_runtime_endpoint,
        min_minor=MIN_MINOR,
        max_minor=MAX_MINOR,
    )
    if virtual_ip:
        text += (
            "\n# The masters' virtual IP, with no load balancer: every master runs kube-vip (a static pod), and the\n"
            "# one elected through the API holds this address (ARP); controlPlaneEndpoint is this address, port 6443.\n"
            "# virtualIPInterface: the masters' interface for it (default: the one holding each master's address).\n"
            "controlPlane:\n  virtualIP: " + yaml_scalar(virtual_ip, '"') + "\n"
        )
    return text


class _Reader:
    """Walks a parsed YAML mapping, raising FieldError with the full field path."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, path: str, message: str) -> FieldError:
        return FieldError(self.source, path, message)

    def mapping(self, value: Any, path: str, allowed: set[str]) -> dict[str, Any]:
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise self.fail(path, f"must be a mapping, found {type(value).__name__}")
        for key in value:
            if key not in allowed:
                name = key if isinstance(key, str) and key.isprintable() and len(key) <= SHOWN else shown(key)
                raise self.fail(
                    f"{path}.{name}" if path else name,
                    f"unknown field; known fields here: {', '.join(sorted(allowed))}",
                )
        return value

    def string(self, doc: dict[str, Any], key: str, path: str, default: str | None = None) -> str:
        full = f"{path}.{key}" if path else key
        value = doc.get(key, default)
        if value is None:
            raise self.fail(full, "is required")
        if not isinstance(value, str) or not value:
            raise self.fail(full, f"must be a non-empty string, found {shown(value)}")
        return value

    def string_list(self, value: Any, path: str) -> list[str]:
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.fail(path, f"must be a list, found {type(value).__name__}")
        for i, item in enumerate(value):
            if not isinstance(item, str) or not item:
                raise self.fail(f"{path}[{i}]", f"must be a non-empty string, found {shown(item)}")
        return list(value)


def _shared(r: _Reader, parse: Any, value: Any, path: str, known: tuple[str, ...]) -> Any:
    """A section parsed by the node config's own parser; its errors become this file's."""
    try:
        return parse(Doc(value if value is not None else {}, path, known))
    except ConfigError as e:
        hint = f"; known fields here: {', '.join(sorted(known))}" if e.message == "unknown field" else ""
        raise r.fail(e.path, e.message + hint) from None


def parse_cluster(data: Any, source: str = CLUSTER_FILE, base_dir: Path | None = None) -> Cluster:
    """Validate a parsed cluster.yaml; every error names the field path and how to fix it."""
    from kubeseed.runtime.init.versions import ControlPlaneVersion

    r = _Reader(source)
    top = {
        "apiVersion",
        "kind",
        "name",
        "kubernetesVersion",
        "controlPlaneEndpoint",
        "imageRepository",
        "networking",
        "keyAlgorithm",
        "kubelet",
        "users",
        "addons",
        "controlPlane",
    }
    doc = r.mapping(data, "", top)
    _one_line(r, doc, "")  # first: the shared parsers' messages quote values whole
    api = doc.get("apiVersion")
    if api != API_VERSION:
        raise r.fail("apiVersion", f"unknown version {shown(api)}; this kubeseed reads {API_VERSION}")
    if doc.get("kind") != "Cluster":
        raise r.fail("kind", f"must be Cluster, found {shown(doc.get('kind'))}")
    name = r.string(doc, "name", "")
    if not DNS_LABEL.fullmatch(name):
        raise r.fail("name", f'{shown(name)} is not a DNS-1123 label (lower-case letters, digits, "-"; at most 63)')
    version = r.string(doc, "kubernetesVersion", "", DEFAULT)
    try:
        Version(version)
    except ValueError as e:
        raise r.fail("kubernetesVersion", str(e)) from None
    endpoint = r.string(doc, "controlPlaneEndpoint", "")
    try:
        split_endpoint(endpoint)
    except ValueError as e:
        raise r.fail("controlPlaneEndpoint", f"{shown(endpoint)} {e}") from None
    repo = r.string(doc, "imageRepository", "", NodeConfig.image_repository)
    if not _IMAGE_REPO.fullmatch(repo):
        raise r.fail(
            "imageRepository", f"{shown(repo)} is not a registry path like registry.k8s.io or mirror.local:5000/k8s"
        )
    net = _shared(r, parse_networking, doc.get("networking"), "networking", NETWORKING)
    # cluster-wide rules a single machine's config cannot see
    pods = ipaddress.ip_network(net.pod_subnet)
    if pods.overlaps(ipaddress.ip_network(net.service_subnet)):
        raise r.fail(
            "networking.serviceSubnet",
            f"{net.service_subnet} overlaps networking.podSubnet {net.pod_subnet}; pick disjoint ranges",
        )
    node_block = 24 if pods.version == 4 else 64  # kube-controller-manager's --node-cidr-mask-size defaults
    if not node_block - 16 <= pods.prefixlen <= node_block:
        raise r.fail(
            "networking.podSubnet",
            f"{pods} must hold one /{node_block} per node (kube-controller-manager hands them out, 65536 at most): "
            f"use a /{node_block - 16} to /{node_block}",
        )
    alg = r.string(doc, "keyAlgorithm", "", NodeConfig.key_algorithm)
    if alg not in KEY_ALGORITHMS:
        raise r.fail("keyAlgorithm", f"{shown(alg)} is not one of {', '.join(KEY_ALGORITHMS)}")
    why = ControlPlaneVersion(version).key_algorithm_error
    if alg == "ECDSA-P384" and why:
        raise r.fail("keyAlgorithm", f"ECDSA-P384 needs v1.34 or later: {why}; use ECDSA-P256, or a newer version")
    kubelet = _shared(r, parse_kubelet, doc.get("kubelet"), "kubelet", KUBELET)
    virtual_ip, interface = _parse_control_plane(r, doc.get("controlPlane"), endpoint, net)

    users = _parse_users(r, doc.get("users"))
    addons = _parse_addons(r, doc.get("addons"), base_dir)
    return Cluster(
        name=name,
        kubernetes_version=version,
        control_plane_endpoint=endpoint,
        image_repository=repo,
        key_algorithm=alg,
        networking=net,
        kubelet=kubelet,
        users=users,
        addons=addons,
        virtual_ip=virtual_ip,
        virtual_ip_interface=interface,
    )


def virtual_ip_error(value: str) -> str:
    """'' if ``value`` can be the masters' virtual IP, else why not (the text that follows the quoted value)."""
    try:
        ip = ipaddress.ip_address(value)
    except ValueError:
        return "is not an IP address (example: 10.0.0.100, or fd00::100)"
    if ip.is_loopback or ip.is_multicast or ip.is_unspecified or ip.is_link_local:
        return f"cannot be a virtual IP: use an unused IPv{ip.version} address of the masters' network"
    return ""


def _parse_control_plane(r: _Reader, value: Any, endpoint: str, net: Networking) -> tuple[str, str]:
    """controlPlane: the masters' virtual IP that kube-vip holds (runtime/init/kubevip.py), which the endpoint must
    be at the API server's port, and the interface it goes on; ("", "") without one (a load balancer or DNS name is
    the endpoint)."""
    from kubeseed.runtime.init.controlplane import host_port
    from kubeseed.runtime.init.kubevip import API_PORT, INTERFACE

    section = r.mapping(value, "controlPlane", {"virtualIP", "virtualIPInterface"})
    if section.get("virtualIP") is None:
        if section.get("virtualIPInterface") is not None:
            raise r.fail("controlPlane.virtualIPInterface", "goes with controlPlane.virtualIP, which is not set")
        return "", ""
    vip = r.string(section, "virtualIP", "controlPlane")
    why = virtual_ip_error(vip)
    if why:
        raise r.fail("controlPlane.virtualIP", f"{shown(vip)} {why}")
    ip = ipaddress.ip_address(vip)
    for key, subnet in (("podSubnet", net.pod_subnet), ("serviceSubnet", net.service_subnet)):
        if ip in ipaddress.ip_network(subnet):
            raise r.fail(
                "controlPlane.virtualIP",
                f"{ip} is in networking.{key} {subnet}; use an unused address of the masters' network",
            )
    host, port = split_endpoint(endpoint)
    want = host_port(str(ip), API_PORT)
    try:
        same = ipaddress.ip_address(host) == ip
    except ValueError:  # a DNS name
        same = False
    if not same:
        raise r.fail(
            "controlPlaneEndpoint",
            f'"{endpoint}" must be the virtual IP (controlPlane.virtualIP) at port {API_PORT}, "{want}"; or leave '
            "controlPlane.virtualIP out when a load balancer or a DNS name is the endpoint",
        )
    if port != API_PORT:
        raise r.fail(
            "controlPlaneEndpoint",
            f'"{endpoint}" must use port {API_PORT} with a virtual IP (controlPlane.virtualIP): it is the API '
            f'server\'s own port, and kube-vip moves the address without forwarding ports; use "{want}"',
        )
    interface = ""
    if section.get("virtualIPInterface") is not None:
        interface = r.string(section, "virtualIPInterface", "controlPlane")
        if not INTERFACE.fullmatch(interface):
            raise r.fail(
                "controlPlane.virtualIPInterface",
                f'{shown(interface)} is not a network interface name (1 to 15 characters without "/", ":" or '
                "spaces; e.g. eth0)",
            )
    return str(ip), interface


def _parse_users(r: _Reader, value: Any) -> list[LoginUser]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise r.fail("users", f"must be a list, found {type(value).__name__}")
    users: list[LoginUser] = []
    seen: set[str] = set()
    for i, item in enumerate(value):
        path = f"users[{i}]"
        if isinstance(item, dict) and "password" in item:
            raise r.fail(
                f"{path}.password",
                "clear-text passwords are not accepted; run `kubeseed hash-password` "
                "and put its output in passwordHash",
            )
        u = r.mapping(item, path, {"name", "sshAuthorizedKeys", "passwordHash", "groups", "sudo"})
        name = r.string(u, "name", path)
        if not _LINUX_USER.fullmatch(name):
            raise r.fail(f"{path}.name", f"{shown(name)} is not a valid Linux user name")
        if name in seen:
            raise r.fail(f"{path}.name", f'"{name}" is listed twice')
        seen.add(name)
        keys = r.string_list(u.get("sshAuthorizedKeys"), f"{path}.sshAuthorizedKeys")
        for j, key in enumerate(keys):
            if not _SSH_KEY.fullmatch(key.strip()):
                raise r.fail(
                    f"{path}.sshAuthorizedKeys[{j}]", "is not an OpenSSH public key (ssh-ed25519 AAAA... comment)"
                )
        pw = u.get("passwordHash")
        if pw is not None and (not isinstance(pw, str) or not _CRYPT_HASH.fullmatch(pw)):
            raise r.fail(f"{path}.passwordHash", "is not a crypt(3) hash; run `kubeseed hash-password` to make one")
        groups = r.string_list(u.get("groups"), f"{path}.groups")
        for j, g in enumerate(groups):
            if not _LINUX_USER.fullmatch(g):
                raise r.fail(f"{path}.groups[{j}]", f"{shown(g)} is not a valid group name")
        sudo = u.get("sudo", False)
        if not isinstance(sudo, bool):
            raise r.fail(f"{path}.sudo", f"must be true or false, found {shown(sudo)}")
        users.append(
            LoginUser(
                name=name, ssh_authorized_keys=[k.strip() for k in keys], password_hash=pw, groups=groups, sudo=sudo
            )
        )
    return users


def _parse_addons(r: _Reader, value: Any, base_dir: Path | None) -> list[Path]:
    """Add-on manifests: files inside the cluster directory (after resolving links), each a YAML stream."""
    import yaml

    out: list[Path] = []
    for i, rel in enumerate(r.string_list(value, "addons")):
        where, p = f"addons[{i}]", Path(rel)
        if p.is_absolute() or ".." in p.parts:
            raise r.fail(
                where,
                f'{shown(rel)} must be a path inside the cluster directory, relative to it (no "/" '
                'at the start, no ".."); copy the manifest into the cluster directory',
            )
        if base_dir is None:
            out.append(p)
            continue
        p = base_dir / p
        if not p.resolve().is_relative_to(base_dir.resolve()):
            raise r.fail(where, f"{shown(rel)} is a link leading out of the cluster directory; copy the manifest in")
        if not p.is_file():
            raise r.fail(where, f"{shown(rel)} does not exist (paths are relative to the cluster directory)")
        try:
            load_documents(read_text(p))
        except yaml.YAMLError as e:
            raise r.fail(where, f"{shown(rel)} is not a YAML manifest: {problem(e)}") from None
        out.append(p)
    return out


def _one_line(r: _Reader, value: Any, path: str) -> None:
    """Every string in cluster.yaml is one line of printable text: values end up in files that the kubelet,
    systemd and cloud-init read line by line."""
    if isinstance(value, dict):
        for key, item in value.items():
            _one_line(r, key, path or "(document)")
            _one_line(r, item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _one_line(r, item, f"{path}[{i}]")
    elif isinstance(value, str) and not value.isprintable():
        raise r.fail(path, f"{shown(value)} must be a one-line string, without control characters")


def load_cluster(cluster_dir: Path) -> Cluster:
    """Load ``cluster_dir/cluster.yaml``; errors name the file and the field."""
    path = cluster_dir / CLUSTER_FILE
    if not path.is_file():
        raise FieldError(
            "",
            str(cluster_dir),
            f"no {CLUSTER_FILE} here; create the cluster with "
            f"`kubeseed cluster create {cluster_dir} --endpoint HOST:6443`",
        )
    return parse_cluster(read_yaml(path), str(path), cluster_dir)
