"""The cluster model: ``cluster.yaml`` (apiVersion kubeseed.io/v1alpha1, kind Cluster), loaded with full validation."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kubeseed.runtime.config import (
    API_VERSION,
    DEFAULT_VERSION,
    DNS_LABEL,
    DNS_NAME,
    KEY_ALGORITHMS,
    MAX_MINOR,
    MIN_MINOR,
    VERSION,
    cidr_error,
    split_endpoint,
)

from .errors import FieldError
from .templating import render_template

CLUSTER_FILE = "cluster.yaml"
CGROUP_DRIVERS = ("systemd", "cgroupfs")


_LINUX_USER = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
_CRYPT_HASH = re.compile(r"\$(1|5|6|y|2[aby])\$[./A-Za-z0-9$=,]+")
_SSH_KEY = re.compile(
    r"(ssh-(rsa|ed25519|dss)|ecdsa-sha2-nistp(256|384|521)|sk-(ssh-ed25519|ecdsa-sha2-nistp256)@openssh\.com) \S+.*"
)
_IMAGE_REPO = re.compile(r"[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)*")


@dataclass
class LoginUser:
    name: str
    ssh_authorized_keys: list[str] = field(default_factory=list)
    password_hash: str | None = None
    groups: list[str] = field(default_factory=list)
    sudo: bool = False  # passwordless sudo (cloud-init `sudo`, a sudoers.d file for Ignition)


@dataclass
class Cluster:
    name: str
    kubernetes_version: str
    control_plane_endpoint: str
    image_repository: str
    pod_subnet: str
    service_subnet: str
    dns_domain: str
    key_algorithm: str
    cgroup_driver: str
    container_runtime_endpoint: str
    kubelet_extra_args: dict[str, str]
    kubelet_server_tls_bootstrap: bool
    users: list[LoginUser]
    addons: list[Path]

    @property
    def endpoint_host(self) -> str:
        return split_endpoint(self.control_plane_endpoint)[0]


def default_cluster_text(
    name: str,
    endpoint: str,
    kubernetes_version: str = DEFAULT_VERSION,
    key_algorithm: str = "ECDSA-P256",
    pod_subnet: str = "10.244.0.0/16",
    service_subnet: str = "10.96.0.0/12",
) -> str:
    """The commented cluster.yaml that ``cluster create`` writes."""
    return render_template(
        "cluster.yaml.j2",
        name=name,
        endpoint=endpoint,
        kubernetes_version=kubernetes_version,
        key_algorithm=key_algorithm,
        image_repository="registry.k8s.io",
        pod_subnet=pod_subnet,
        service_subnet=service_subnet,
        dns_domain="cluster.local",
        cgroup_driver="systemd",
        cri_endpoint="unix:///run/containerd/containerd.sock",
        min_minor=MIN_MINOR,
        max_minor=MAX_MINOR,
    )


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
                raise self.fail(
                    f"{path}.{key}" if path else str(key),
                    f"unknown field; known fields here: {', '.join(sorted(allowed))}",
                )
        return value

    def string(self, doc: dict[str, Any], key: str, path: str, default: str | None = None) -> str:
        full = f"{path}.{key}" if path else key
        value = doc.get(key, default)
        if value is None:
            raise self.fail(full, "is required")
        if not isinstance(value, str) or not value:
            raise self.fail(full, f"must be a non-empty string, found {value!r}")
        return value

    def string_list(self, value: Any, path: str) -> list[str]:
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.fail(path, f"must be a list, found {type(value).__name__}")
        for i, item in enumerate(value):
            if not isinstance(item, str) or not item:
                raise self.fail(f"{path}[{i}]", f"must be a non-empty string, found {item!r}")
        return list(value)


def parse_version(version: str) -> tuple[int, int, int]:
    m = VERSION.fullmatch(version)
    if not m:
        raise ValueError(f'"{version}" is not a version like {DEFAULT_VERSION}')
    major, minor, patch = (int(g) for g in m.groups())
    if major != 1 or not MIN_MINOR <= minor <= MAX_MINOR:
        raise ValueError(f'"{version}" is not supported; kubeseed supports v1.{MIN_MINOR} to v1.{MAX_MINOR}')
    return major, minor, patch


def _cidr(r: _Reader, value: str, path: str) -> str:
    err = cidr_error(value)
    if err:
        raise r.fail(path, err)
    return value.lower()


def parse_cluster(data: Any, source: str = CLUSTER_FILE, base_dir: Path | None = None) -> Cluster:
    """Validate a parsed cluster.yaml; every error names the field path and how to fix it."""
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
    }
    doc = r.mapping(data, "", top)
    api = doc.get("apiVersion")
    if api != API_VERSION:
        raise r.fail("apiVersion", f'unknown version "{api}"; this kubeseed reads {API_VERSION}')
    if doc.get("kind") != "Cluster":
        raise r.fail("kind", f'must be Cluster, found "{doc.get("kind")}"')
    name = r.string(doc, "name", "")
    if not DNS_LABEL.fullmatch(name):
        raise r.fail("name", f'"{name}" is not a DNS-1123 label (lower-case letters, digits, "-"; at most 63)')
    version = r.string(doc, "kubernetesVersion", "", DEFAULT_VERSION)
    try:
        parse_version(version)
    except ValueError as e:
        raise r.fail("kubernetesVersion", str(e)) from None
    endpoint = r.string(doc, "controlPlaneEndpoint", "")
    try:
        split_endpoint(endpoint)
    except ValueError as e:
        raise r.fail("controlPlaneEndpoint", f'"{endpoint}" {e}') from None
    repo = r.string(doc, "imageRepository", "", "registry.k8s.io")
    if not _IMAGE_REPO.fullmatch(repo):
        raise r.fail(
            "imageRepository", f'"{repo}" is not a registry path like registry.k8s.io or mirror.local:5000/k8s'
        )

    net = r.mapping(doc.get("networking"), "networking", {"podSubnet", "serviceSubnet", "dnsDomain"})
    pod = _cidr(r, r.string(net, "podSubnet", "networking", "10.244.0.0/16"), "networking.podSubnet")
    svc = _cidr(r, r.string(net, "serviceSubnet", "networking", "10.96.0.0/12"), "networking.serviceSubnet")
    if ipaddress.ip_network(pod).overlaps(ipaddress.ip_network(svc)):
        raise r.fail("networking.serviceSubnet", f"{svc} overlaps networking.podSubnet {pod}; pick disjoint ranges")
    if ipaddress.ip_network(svc).num_addresses < 4:
        raise r.fail("networking.serviceSubnet", f"{svc} is too small; use a /12 to /24 (IPv4)")
    domain = r.string(net, "dnsDomain", "networking", "cluster.local")
    if not DNS_NAME.fullmatch(domain):
        raise r.fail("networking.dnsDomain", f'"{domain}" is not a DNS domain like cluster.local')

    alg = r.string(doc, "keyAlgorithm", "", "ECDSA-P256")
    if alg not in KEY_ALGORITHMS:
        raise r.fail("keyAlgorithm", f'"{alg}" is not one of {", ".join(KEY_ALGORITHMS)}')

    kub = r.mapping(
        doc.get("kubelet"), "kubelet", {"cgroupDriver", "containerRuntimeEndpoint", "extraArgs", "serverTLSBootstrap"}
    )
    server_tls_bootstrap = kub.get("serverTLSBootstrap", False)
    if not isinstance(server_tls_bootstrap, bool):
        raise r.fail("kubelet.serverTLSBootstrap", f"must be true or false, found {server_tls_bootstrap!r}")
    driver = r.string(kub, "cgroupDriver", "kubelet", "systemd")
    if driver not in CGROUP_DRIVERS:
        raise r.fail("kubelet.cgroupDriver", f'"{driver}" is not one of {", ".join(CGROUP_DRIVERS)}')
    cri = r.string(kub, "containerRuntimeEndpoint", "kubelet", "unix:///run/containerd/containerd.sock")
    if not re.fullmatch(r"unix:///\S+", cri):
        raise r.fail("kubelet.containerRuntimeEndpoint", f'"{cri}" is not a unix:///path/to/socket URL')
    extra = kub.get("extraArgs") or {}
    if not isinstance(extra, dict):
        raise r.fail("kubelet.extraArgs", 'must be a mapping of flag name to value, e.g. {max-pods: "150"}')
    extra_args: dict[str, str] = {}
    for k, v in extra.items():
        if not isinstance(k, str) or not re.fullmatch(r"[a-z0-9][a-z0-9-]*", k):
            raise r.fail(f"kubelet.extraArgs.{k}", "flag names are lower-case words joined by '-', without '--'")
        if isinstance(v, bool) or not isinstance(v, (str, int, float)):
            raise r.fail(f"kubelet.extraArgs.{k}", f"must be a string value, found {v!r}")
        extra_args[k] = str(v)

    users = _parse_users(r, doc.get("users"))
    addons = _parse_addons(r, doc.get("addons"), base_dir)
    return Cluster(
        name=name,
        kubernetes_version=version,
        control_plane_endpoint=endpoint,
        image_repository=repo,
        pod_subnet=pod,
        service_subnet=svc,
        dns_domain=domain,
        key_algorithm=alg,
        cgroup_driver=driver,
        container_runtime_endpoint=cri,
        kubelet_extra_args=extra_args,
        kubelet_server_tls_bootstrap=server_tls_bootstrap,
        users=users,
        addons=addons,
    )


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
            raise r.fail(f"{path}.name", f'"{name}" is not a valid Linux user name')
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
                raise r.fail(f"{path}.groups[{j}]", f'"{g}" is not a valid group name')
        sudo = u.get("sudo", False)
        if not isinstance(sudo, bool):
            raise r.fail(f"{path}.sudo", f"must be true or false, found {sudo!r}")
        users.append(
            LoginUser(
                name=name, ssh_authorized_keys=[k.strip() for k in keys], password_hash=pw, groups=groups, sudo=sudo
            )
        )
    return users


def _parse_addons(r: _Reader, value: Any, base_dir: Path | None) -> list[Path]:
    paths = r.string_list(value, "addons")
    out: list[Path] = []
    for i, rel in enumerate(paths):
        p = Path(rel)
        if base_dir is not None and not p.is_absolute():
            p = base_dir / p
        if base_dir is not None:
            if not p.is_file():
                raise r.fail(f"addons[{i}]", f'"{rel}" does not exist (paths are relative to the cluster directory)')
            try:
                list(yaml.safe_load_all(p.read_text()))
            except (yaml.YAMLError, UnicodeDecodeError) as e:
                raise r.fail(f"addons[{i}]", f'"{rel}" is not a YAML manifest: {str(e).splitlines()[0]}') from None
        out.append(p)
    return out


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
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise FieldError(str(path), "(yaml)", f"is not valid YAML{where}: {getattr(e, 'problem', e)}") from None
    return parse_cluster(data, str(path), cluster_dir)
