"""Pre-flight checks, kubeadm style: each check has a name and says what is wrong and the fix."""

from __future__ import annotations

import errno
import importlib.util
import os
import re
import shutil
import socket
import subprocess
import sys
from typing import Callable, List, Optional, Tuple

from .config import DNS_NAME
from .workflow import Context, PhaseError

PATH_DIRS = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")
MODULES = (
    ("yaml", "python3-yaml"),
    ("cryptography", "python3-cryptography"),
    ("jwt", "python3-jwt"),
    ("jinja2", "python3-jinja2"),
)
LATEST_MINOR = 36
K8S_REPO = (
    "the Kubernetes package repository (https://pkgs.k8s.io/core:/stable:/v1.{minor}/deb/, see "
    "https://kubernetes.io/docs/setup/production-environment/tools/kubeadm/install-kubeadm/)"
)


class Env:
    """What the checks look at. Tests replace methods; --root moves file and binary look-ups into DIR."""

    def __init__(self, root: str = "") -> None:
        self.root = root

    def path(self, p: str) -> str:
        return os.path.join(self.root, p.lstrip("/")) if self.root else p

    def which(self, name: str) -> Optional[str]:
        if not self.root:
            return shutil.which(name, path=os.pathsep.join([os.environ.get("PATH", "")] + list(PATH_DIRS)))
        for d in PATH_DIRS:
            p = self.path(os.path.join(d, name))
            if os.path.isfile(p) and os.access(p, os.X_OK):
                return p
        return None

    def read(self, p: str) -> Optional[str]:
        """A kernel file (/proc, /sys): always the running kernel's, a directory has none."""
        try:
            with open(p) as f:
                return f.read()
        except OSError:
            return None

    def exists(self, p: str) -> bool:
        return os.path.lexists(self.path(p))

    def listdir(self, p: str) -> List[str]:
        try:
            return os.listdir(self.path(p))
        except OSError:
            return []

    def is_socket(self, p: str) -> bool:
        import stat

        try:
            return stat.S_ISSOCK(os.stat(self.path(p)).st_mode)
        except OSError:
            return False

    def euid(self) -> int:
        return os.geteuid()

    def cpus(self) -> int:
        return os.cpu_count() or 1

    def port_in_use(self, port: int) -> bool:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind(("0.0.0.0", port))
            return False
        except OSError as e:
            return e.errno == errno.EADDRINUSE
        finally:
            s.close()

    def version_of(self, binary: str) -> str:
        try:
            return subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.SubprocessError):
            return ""

    def hostname(self) -> str:
        return socket.gethostname()

    def resolves(self, name: str) -> bool:
        try:
            socket.getaddrinfo(name, None)
            return True
        except OSError:
            return False

    def module_missing(self, name: str) -> bool:
        return importlib.util.find_spec(name) is None


Result = List[Tuple[str, str]]  # (level "error"|"warning", message)


class Check:
    def __init__(self, name: str, check: Callable[[Env], Result]) -> None:
        self.name, self.check = name, check


def _binary(name: str, level: str, package: str) -> Check:
    def check(env: Env) -> Result:
        if env.which(name):
            return []
        return [(level, f"{name} not found in system path. Install it: apt-get install {package}")]

    return Check(f"FileExisting-{name}", check)


def _file_available(path: str) -> Check:
    def check(env: Env) -> Result:
        if env.exists(path):
            return [("error", f"{path} already exists (left by another cluster?). Remove it, or run reset")]
        return []

    return Check("FileAvailable-" + path.replace("/", "-"), check)


def _dir_available(path: str) -> Check:
    def check(env: Env) -> Result:
        if env.listdir(path):
            return [("error", f"{path} is not empty (left by another cluster?). Empty it, or run reset")]
        return []

    return Check("DirAvailable-" + path.replace("/", "-"), check)


def _port(port: int) -> Check:
    def check(env: Env) -> Result:
        if env.port_in_use(port):
            return [("error", f"Port {port} is in use. Stop what listens there (see: ss -ltnp 'sport = :{port}')")]
        return []

    return Check(f"Port-{port}", check)


def _proc_is_one(path: str, fix: str) -> Check:
    def check(env: Env) -> Result:
        value = env.read(path)
        if value is None:
            return [("error", f"{path} does not exist. Fix: {fix}")]
        if value.strip() != "1":
            return [("error", f"{path} contents are not set to 1. Fix: {fix}")]
        return []

    return Check("FileContent-" + path.replace("/", "-"), check)


def _privileged(env: Env) -> Result:
    if env.root or env.euid() == 0:
        return []
    return [("error", "user is not running as root. Run it with sudo, or as root")]


def _python(env: Env) -> Result:
    out: Result = []
    if sys.version_info < (3, 9):
        out.append(("error", f"Python {sys.version.split()[0]} is too old; the runtime needs 3.9 or newer"))
    for mod, pkg in MODULES:
        if env.module_missing(mod):
            out.append(("error", f"Python module {mod} is missing. Install it: apt-get install {pkg}"))
    return out


def _kubelet(minor: int) -> Callable[[Env], Result]:
    def check(env: Env) -> Result:
        path = env.which("kubelet")
        if not path:
            return [
                (
                    "error",
                    f"kubelet not found in system path. Install kubelet v1.{minor} from "
                    + K8S_REPO.format(minor=minor)
                    + ", then: apt-get install kubelet",
                )
            ]
        if env.root:
            return []
        m = re.search(r"v1\.(\d+)\.\d+", env.version_of(path))
        if not m:
            return [("warning", f"cannot tell the version of {path}")]
        found = int(m.group(1))
        if found > minor or found < minor - 3:
            return [
                (
                    "error",
                    f"kubelet v1.{found} does not match Kubernetes v1.{minor} (the kubelet may be at "
                    f"most 3 minor versions older, never newer). Install kubelet v1.{minor}",
                )
            ]
        return []

    return check


def _cri(endpoint: str) -> Callable[[Env], Result]:
    def check(env: Env) -> Result:
        sock = endpoint[len("unix://") :]
        if env.is_socket(sock):
            return []
        return [
            (
                "error",
                f"container runtime is not running: no socket at {sock}. Install and start it: "
                "apt-get install containerd && systemctl enable --now containerd",
            )
        ]

    return check


def _swap(env: Env) -> Result:
    swaps = (env.read("/proc/swaps") or "").strip().splitlines()[1:]
    if swaps:
        return [
            (
                "warning",
                "swap is on; the kubelet refuses to start with swap unless configured to allow it. "
                "Turn it off: swapoff -a, and remove the swap lines from /etc/fstab",
            )
        ]
    return []


def _modules(env: Env) -> Result:
    missing = []
    if env.read("/proc/sys/net/bridge/bridge-nf-call-iptables") is None:
        missing.append("br_netfilter")
    if "\toverlay\n" not in (env.read("/proc/filesystems") or "") + "\n":
        missing.append("overlay")
    if missing:
        mods = " ".join(missing)
        return [
            (
                "warning",
                f"kernel module(s) {mods} not loaded. Fix: modprobe {mods}, and list them in "
                "/etc/modules-load.d/k8s.conf",
            )
        ]
    return []


def _hostname(node_name: str) -> Callable[[Env], Result]:
    def check(env: Env) -> Result:
        name = node_name or env.hostname().lower()
        if not DNS_NAME.fullmatch(name):
            return [
                (
                    "error",
                    f'node name "{name}" is not a lower-case DNS name. Set the host name, or nodeName '
                    "in the node config",
                )
            ]
        if not env.resolves(name):
            return [
                ("warning", f'hostname "{name}" could not be reached: it does not resolve. Add it to /etc/hosts or DNS')
            ]
        return []

    return check


def _cpus(env: Env) -> Result:
    n = env.cpus()
    return [("error", f"the number of available CPUs {n} is less than the required 2")] if n < 2 else []


def _memory(env: Env) -> Result:
    m = re.search(r"MemTotal:\s+(\d+) kB", env.read("/proc/meminfo") or "")
    mb = int(m.group(1)) // 1024 if m else 0
    if mb < 1700:
        return [("error", f"the system RAM ({mb} MB) is less than the minimum 1700 MB")]
    return []


def checks(role: str, minor: int, endpoint: str, node_name: str) -> List[Check]:
    """The checks for ``role`` on Kubernetes v1.``minor`` (the list changed from 1.30 to 1.33)."""
    cs = [
        Check("IsPrivilegedUser", _privileged),
        Check("Python", _python),
        Check("FileExisting-kubelet", _kubelet(minor)),
        Check("CRI", _cri(endpoint)),
        _binary("mount", "error", "mount"),
        _binary("nsenter", "error", "util-linux"),
        _binary("touch", "warning", "coreutils"),
    ]
    if minor < 31:
        cs.append(_binary("crictl", "error", "cri-tools"))
    elif minor == 31:
        cs.append(_binary("crictl", "warning", "cri-tools"))
    if minor < 32:
        cs += [
            _binary("conntrack", "error", "conntrack"),
            _binary("socat", "warning", "socat"),
            _binary("ebtables", "warning", "ebtables"),
        ]
    if minor < 33:
        cs += [
            _binary("ip", "error", "iproute2"),
            _binary("iptables", "error", "iptables"),
            _binary("ethtool", "warning", "ethtool"),
            _binary("tc", "warning", "iproute2"),
        ]
    cs += [
        Check("Swap", _swap),
        _proc_is_one(
            "/proc/sys/net/ipv4/ip_forward", "sysctl -w net.ipv4.ip_forward=1, and set it in /etc/sysctl.d/k8s.conf"
        ),
    ]
    cs += [Check("KernelModules", _modules), Check("Hostname", _hostname(node_name)), _port(10250)]
    if role == "master":
        cs += [Check("NumCPU", _cpus), Check("Mem", _memory)] + [_port(p) for p in (6443, 10259, 10257, 2379, 2380)]
        cs += [
            _file_available(f"/etc/kubernetes/manifests/{c}.yaml")
            for c in ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "etcd")
        ]
        cs.append(_dir_available("/var/lib/etcd"))
    else:
        cs += [
            _dir_available("/etc/kubernetes/manifests"),
            _file_available("/etc/kubernetes/kubelet.conf"),
            _file_available("/etc/kubernetes/bootstrap-kubelet.conf"),
            _file_available("/etc/kubernetes/pki/ca.crt"),
        ]
    return cs


def run_checks(ctx: Context, cs: List[Check], env: Env) -> None:
    """Print kubeadm-style lines; raise PhaseError when an error is not ignored."""
    if env.root:
        ctx.say(
            f"\t[INFO] --root {env.root}: files and binaries are looked up there; kernel, port and CPU "
            "checks see the running kernel"
        )
    errors = []
    ignore = ctx.ignore_errors
    for c in cs:
        for level, msg in c.check(env):
            if level == "error" and not ("all" in ignore or c.name.lower() in ignore):
                errors.append(c.name)
                ctx.say(f"\t[ERROR {c.name}]: {msg}")
            else:
                ctx.say(f"\t[WARNING {c.name}]: {msg}")
    if errors:
        raise PhaseError(
            f"{len(errors)} pre-flight error(s); fix them, or skip with "
            f"--ignore-preflight-errors={','.join(dict.fromkeys(errors))}"
        )


def phase(ctx: Context, env: Optional[Env] = None, role: str = "", minor: int = LATEST_MINOR) -> None:
    cfg = ctx.config
    if cfg:
        role, minor = cfg.role, cfg.minor
    endpoint = cfg.kubelet.container_runtime_endpoint if cfg else "unix:///run/containerd/containerd.sock"
    node_name = ctx.node_name or (cfg.node_name if cfg else "")
    run_checks(ctx, checks(role or "node", minor, endpoint, node_name), env or Env(ctx.root))
