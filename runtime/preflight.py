"""Pre-flight checks, kubeadm style: each check has a name and says what is wrong and the fix."""

from __future__ import annotations

import errno
import importlib.util
import os
import re
import socket
import stat
import subprocess
import sys
from typing import TYPE_CHECKING, Callable, List, Optional, Tuple

from .config import DNS_NAME, Kubelet
from .versions import DEFAULT, Version
from .workflow import Context, PhaseError

PATH_DIRS = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")
K8S_REPO = "https://pkgs.k8s.io/core:/stable:/v1.{0}/deb/"  # the Kubernetes package repository, one per minor
if TYPE_CHECKING:
    Result = List[Tuple[str, str]]  # (level "error"|"warning", message)
    Check = Tuple[str, Callable[["Env"], Result]]


class Env:
    """What the checks look at. Tests replace methods; --root moves file and binary look-ups into DIR."""

    def __init__(self, root: str = "") -> None:
        self.root = root

    def path(self, p: str) -> str:
        return os.path.join(self.root, p.lstrip("/")) if self.root else p

    def which(self, name: str) -> Optional[str]:
        dirs = PATH_DIRS if self.root else os.environ.get("PATH", "").split(os.pathsep) + list(PATH_DIRS)
        for d in dirs:
            p = self.path(os.path.join(d, name))
            if os.path.isfile(p) and os.access(p, os.X_OK):
                return p
        return None

    def read(self, p: str) -> Optional[str]:
        """A kernel file (/proc, /sys): always the running kernel's, whatever --root says."""
        try:
            with open(p) as f:
                return f.read()
        except OSError:
            return None

    def exists(self, p: str) -> bool:
        return os.path.lexists(self.path(p))

    def listdir(self, p: str) -> List[str]:
        return os.listdir(self.path(p)) if os.path.isdir(self.path(p)) else []

    def is_socket(self, p: str) -> bool:
        return os.path.exists(self.path(p)) and stat.S_ISSOCK(os.stat(self.path(p)).st_mode)

    def euid(self) -> int:
        return os.geteuid()

    def cpus(self) -> int:
        return os.cpu_count() or 1

    def port_in_use(self, port: int) -> bool:
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Go's net.Listen, which kubeadm uses
            try:
                s.bind(("", port))
            except OSError as e:
                return e.errno == errno.EADDRINUSE
        return False

    def version_of(self, binary: str) -> str:
        try:
            return subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.SubprocessError):
            return ""

    def hostname(self) -> str:
        return socket.gethostname()

    def resolves(self, name: str) -> bool:
        try:
            return bool(socket.getaddrinfo(name, None))
        except OSError:
            return False

    def module_missing(self, name: str) -> bool:
        return importlib.util.find_spec(name) is None


def _binary(name: str, level: str, package: str) -> Check:
    msg = f"{name} not found in system path. Install it: apt-get install {package}"
    return f"FileExisting-{name}", lambda env: [] if env.which(name) else [(level, msg)]


RESET = "run reset (a master's or the full runtime has it)"


def file_available(path: str) -> Check:
    msg = f"{path} already exists (left by another cluster?). Remove it, or {RESET}"
    return "FileAvailable-" + path.replace("/", "-"), lambda env: [("error", msg)] if env.exists(path) else []


def dir_available(path: str) -> Check:
    msg = f"{path} is not empty (left by another cluster?). Empty it, or {RESET}"
    return "DirAvailable-" + path.replace("/", "-"), lambda env: [("error", msg)] if env.listdir(path) else []


def port(port: int) -> Check:
    msg = f"Port {port} is in use. Stop what listens there (see: ss -ltnp 'sport = :{port}')"
    return f"Port-{port}", lambda env: [("error", msg)] if env.port_in_use(port) else []


def _ip_forward(env: Env) -> Result:
    p = "/proc/sys/net/ipv4/ip_forward"
    value = env.read(p)
    if value is not None and value.strip() == "1":
        return []
    what = "does not exist" if value is None else "contents are not set to 1"
    return [("error", f"{p} {what}. Fix: sysctl -w net.ipv4.ip_forward=1, and set it in /etc/sysctl.d/k8s.conf")]


def _privileged(env: Env) -> Result:
    ok = env.root or env.euid() == 0
    return [] if ok else [("error", "user is not running as root. Run it with sudo, or as root")]


def _python(env: Env) -> Result:
    out: Result = []
    if sys.version_info < (3, 9):
        out.append(("error", f"Python {sys.version.split()[0]} is too old; the runtime needs 3.9 or newer"))
    for mod in ("yaml", "cryptography"):
        if env.module_missing(mod):
            out.append(("error", f"Python module {mod} is missing. Install it: apt-get install python3-{mod}"))
    return out


def kubelet_check(version: Version, skew: bool = True) -> Callable[[Env], Result]:
    """The kubelet is installed and, with ``skew``, of a minor ``version`` allows (a joining node's preflight
    checks only that it is there: its kubelet-config phase checks it against the cluster's version)."""
    minor = version.minor

    def check(env: Env) -> Result:
        path = env.which("kubelet")
        if not path:
            fix = f"Install kubelet v1.{minor} from {K8S_REPO.format(minor)}, then: apt-get install kubelet"
            return [("error", "kubelet not found in system path. " + fix)]
        if env.root or not skew:
            return []
        m = re.search(r"v1\.(\d+)\.\d+", env.version_of(path))
        if not m:
            return [("warning", f"cannot tell the version of {path}")]
        found = int(m.group(1))
        if version.kubelet_skew_ok(found):
            return []
        why = "the kubelet may be at most 3 minor versions older, never newer"
        return [
            ("error", f"kubelet v1.{found} does not match Kubernetes v1.{minor} ({why}). Install kubelet v1.{minor}")
        ]

    return check


def _cri(endpoint: str) -> Callable[[Env], Result]:
    sock = endpoint[len("unix://") :]
    fix = "Install and start it: apt-get install containerd && systemctl enable --now containerd"
    msg = f"container runtime is not running: no socket at {sock}. {fix}"
    return lambda env: [] if env.is_socket(sock) else [("error", msg)]


def _swap(env: Env) -> Result:
    if not (env.read("/proc/swaps") or "").strip().splitlines()[1:]:
        return []
    return [
        (
            "warning",
            "swap is on: the kubelet will not start with it. Fix: swapoff -a, and remove it from /etc/fstab",
        )
    ]


def _hostname(node_name: str) -> Callable[[Env], Result]:
    def check(env: Env) -> Result:
        name = node_name or env.hostname().lower()
        if not DNS_NAME.fullmatch(name):
            fix = "Set the host name, or nodeName in the node config"
            return [("error", f'node name "{name}" is not a lower-case DNS name. {fix}')]
        if env.resolves(name):
            return []
        return [
            ("warning", f'hostname "{name}" could not be reached: it does not resolve. Add it to /etc/hosts or DNS')
        ]

    return check


def checks(version: Version, cri_endpoint: str, node_name: str, extra: List[Check], skew: bool = True) -> List[Check]:
    """Every machine's checks for Kubernetes ``version`` (the required binaries changed from 1.30 to 1.33), then
    ``extra``: the role's own."""
    cs: List[Check] = [
        ("IsPrivilegedUser", _privileged),
        ("Python", _python),
        ("FileExisting-kubelet", kubelet_check(version, skew)),
        ("CRI", _cri(cri_endpoint)),
    ]
    binaries = [("mount", "error", "mount"), ("nsenter", "error", "util-linux"), ("touch", "warning", "coreutils")]
    if version.checks_proxy_tools:
        binaries += [("crictl", "error" if version.crictl_required else "warning", "cri-tools")]
        binaries += [
            ("conntrack", "error", "conntrack"),
            ("socat", "warning", "socat"),
            ("ebtables", "warning", "ebtables"),
        ]
    if version.checks_network_tools:
        binaries += [("ip", "error", "iproute2"), ("iptables", "error", "iptables")]
        binaries += [("ethtool", "warning", "ethtool"), ("tc", "warning", "iproute2")]
    cs += [_binary(*b) for b in binaries]
    cs += [("Swap", _swap), ("FileContent--proc-sys-net-ipv4-ip_forward", _ip_forward)]
    cs += [("Hostname", _hostname(node_name)), port(10250)]
    return cs + extra


def run_checks(ctx: Context, cs: List[Check], env: Env) -> None:
    """Print kubeadm-style lines; raise PhaseError when an error is not ignored."""
    if env.root:
        ctx.say(f"\t[INFO] --root {env.root}: kernel and ports are this machine's")
    errors: List[str] = []
    ignore = ctx.ignore_errors
    for name, check in cs:
        for level, msg in check(env):
            error = level == "error" and not ("all" in ignore or name.lower() in ignore)
            if error and name not in errors:
                errors.append(name)
            ctx.say(f"\t[{'ERROR' if error else 'WARNING'} {name}]: {msg}")
    if errors:
        raise PhaseError(
            f"{len(errors)} pre-flight error(s); fix them, or skip with --ignore-preflight-errors={','.join(errors)}"
        )


def phase(ctx: Context, extra: List[Check], env: Optional[Env] = None) -> None:
    """The checks for this machine's config (or the defaults, for ``preflight`` without one), then the role's."""
    cfg = ctx.config
    version = cfg.version if cfg else Version(DEFAULT)
    cri = cfg.kubelet.container_runtime_endpoint if cfg else Kubelet.container_runtime_endpoint
    node_name = ctx.node_name or (cfg.node_name if cfg else "")
    skew = not cfg or cfg.role == "master"  # a node's is checked against the cluster's version, once it has it
    run_checks(ctx, checks(version, cri, node_name, extra, skew), env or Env(ctx.root))
