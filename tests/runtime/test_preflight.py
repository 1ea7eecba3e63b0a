"""Pre-flight checks against injected machines: what each finds, its level, and the fix it prints."""

from __future__ import annotations

import io
from typing import Any

import pytest

from kubeseed.runtime import preflight
from kubeseed.runtime.cli import load_role
from kubeseed.runtime.config import parse_node_config
from kubeseed.runtime.workflow import Context, PhaseError

ALL_BINARIES = {
    "kubelet",
    "mount",
    "nsenter",
    "touch",
    "crictl",
    "conntrack",
    "socat",
    "ebtables",
    "ip",
    "iptables",
    "ethtool",
    "tc",
}


class FakeEnv(preflight.Env):
    """A machine ready for Kubernetes; tests take things away from it."""

    def __init__(self, **changes: Any) -> None:
        super().__init__("")
        self.binaries = set(ALL_BINARIES)
        self.kubelet_version = "Kubernetes v1.35.5"
        self.files: dict[str, str] = {
            "/proc/sys/net/ipv4/ip_forward": "1\n",
            "/proc/sys/net/bridge/bridge-nf-call-iptables": "1\n",
            "/proc/filesystems": "nodev\tsysfs\n\text4\nnodev\toverlay\n",
            "/proc/swaps": "Filename\tType\tSize\tUsed\tPriority\n",
            "/proc/meminfo": "MemTotal:       8000000 kB\n",
        }
        self.existing: set[str] = set()
        self.busy_ports: set[int] = set()
        self.uid, self.ncpu, self.host, self.resolvable = 0, 4, "node-1", True
        self.missing_modules: set[str] = set()
        self.sockets = {"/run/containerd/containerd.sock"}
        self.__dict__.update(changes)

    def which(self, name: str) -> str | None:
        return f"/usr/bin/{name}" if name in self.binaries else None

    def read(self, p: str) -> str | None:
        return self.files.get(p)

    def exists(self, p: str) -> bool:
        return p in self.existing

    def listdir(self, p: str) -> list[str]:
        return sorted(x[len(p) + 1 :] for x in self.existing if x.startswith(p + "/"))

    def is_socket(self, p: str) -> bool:
        return p in self.sockets

    def euid(self) -> int:
        return self.uid

    def cpus(self) -> int:
        return self.ncpu

    def port_in_use(self, port: int) -> bool:
        return port in self.busy_ports

    def version_of(self, binary: str) -> str:
        return self.kubelet_version

    def hostname(self) -> str:
        return self.host

    def resolves(self, name: str) -> bool:
        return self.resolvable

    def module_missing(self, name: str) -> bool:
        return name in self.missing_modules


def run(env: FakeEnv, doc: dict[str, Any], ignore: str = "", version: str = "") -> tuple[str, str | None]:
    """Run the preflight phase; return (printed lines, PhaseError text or None)."""
    if version:
        doc = dict(doc, kubernetesVersion=version)
    out = io.StringIO()
    ignored = frozenset(x.lower() for x in ignore.split(",") if x)
    role = load_role(doc["role"])
    ctx = Context("join", parse_node_config(doc, role.CONFIG), "", "", ignored, out)
    try:
        preflight.phase(ctx, role.checks(), env)
    except PhaseError as e:
        return out.getvalue(), str(e)
    return out.getvalue(), None


def test_ready_machine_passes(node_doc: dict[str, Any], master_doc: dict[str, Any]) -> None:
    assert run(FakeEnv(), node_doc) == ("", None)
    assert run(FakeEnv(host="master-1"), master_doc) == ("", None)


def test_missing_kubelet_says_how_to_install(node_doc: dict[str, Any]) -> None:
    out, err = run(FakeEnv(binaries=ALL_BINARIES - {"kubelet"}), node_doc)
    assert "\t[ERROR FileExisting-kubelet]: kubelet not found in system path. Install kubelet v1.35 from" in out
    assert "https://pkgs.k8s.io/core:/stable:/v1.35/deb/" in out and "apt-get install kubelet" in out
    assert err == "1 pre-flight error(s); fix them, or skip with --ignore-preflight-errors=FileExisting-kubelet"


@pytest.mark.parametrize(
    "found,ok",
    [
        ("Kubernetes v1.35.0", True),
        ("Kubernetes v1.32.9", True),
        ("Kubernetes v1.31.2", False),
        ("Kubernetes v1.36.0", False),
    ],
)
def test_kubelet_version_skew(master_doc: dict[str, Any], node_doc: dict[str, Any], found: str, ok: bool) -> None:
    """A master's kubelet must suit the version it creates. A node's preflight only asks for a kubelet: which
    versions suit is the cluster's to say (join's kubelet-config phase checks it against kubeadm-config)."""
    out, err = run(FakeEnv(kubelet_version=found), master_doc)
    assert (err is None) == ok, out
    if not ok:
        assert "[ERROR FileExisting-kubelet]" in out and "Install kubelet v1.35" in out
    out, err = run(FakeEnv(kubelet_version=found), node_doc)
    assert err is None and "FileExisting-kubelet" not in out, out


@pytest.mark.parametrize(
    "version,binary,line",
    [
        ("v1.30.4", "crictl", "[ERROR FileExisting-crictl]"),
        ("v1.31.0", "crictl", "[WARNING FileExisting-crictl]"),
        ("v1.32.0", "crictl", None),
        ("v1.31.0", "socat", "[WARNING FileExisting-socat]"),
        ("v1.32.0", "socat", None),
        ("v1.31.0", "conntrack", "[ERROR FileExisting-conntrack]"),
        ("v1.32.0", "conntrack", None),
        ("v1.32.0", "iptables", "[ERROR FileExisting-iptables]"),
        ("v1.32.0", "tc", "[WARNING FileExisting-tc]"),
        ("v1.33.0", "iptables", None),
        ("v1.33.0", "ethtool", None),
        ("v1.36.0", "nsenter", "[ERROR FileExisting-nsenter]"),
        ("v1.36.0", "touch", "[WARNING FileExisting-touch]"),
    ],
)
def test_required_binaries_follow_the_kubernetes_version(
    node_doc: dict[str, Any], version: str, binary: str, line: str | None
) -> None:
    minor = int(version.split(".")[1])
    env = FakeEnv(binaries=ALL_BINARIES - {binary}, kubelet_version=f"Kubernetes v1.{minor}.0")
    out, err = run(env, node_doc, version=version)
    if line is None:
        assert binary not in out and err is None
    else:
        assert f"\t{line}: {binary} not found in system path. Install it: apt-get install " in out
        assert (err is not None) == ("ERROR" in line)


def test_kernel_and_host_checks(node_doc: dict[str, Any]) -> None:
    env = FakeEnv(busy_ports={10250}, resolvable=False, sockets=set())
    env.files["/proc/sys/net/ipv4/ip_forward"] = "0\n"
    env.files["/proc/swaps"] += "/swapfile file 1024 0 -2\n"
    del env.files["/proc/sys/net/bridge/bridge-nf-call-iptables"]
    out, err = run(env, node_doc)
    forward = "[ERROR FileContent--proc-sys-net-ipv4-ip_forward]: /proc/sys/net/ipv4/ip_forward contents are not set"
    assert forward + " to 1. Fix: sysctl -w net.ipv4.ip_forward=1" in out
    assert "[WARNING Swap]: swap is on" in out and "swapoff -a" in out
    assert "KernelModules" not in out  # not kubeadm's: gone to keep node payloads in EC2's budget
    assert "[ERROR Port-10250]: Port 10250 is in use" in out
    assert '[WARNING Hostname]: hostname "node-1" could not be reached' in out
    assert "[ERROR CRI]: container runtime is not running: no socket at /run/containerd/containerd.sock" in out
    assert err is not None and err.endswith(
        "--ignore-preflight-errors=CRI,FileContent--proc-sys-net-ipv4-ip_forward,Port-10250"
    )


def test_ignore_preflight_errors_downgrades_to_warnings(node_doc: dict[str, Any]) -> None:
    env = FakeEnv(binaries=ALL_BINARIES - {"kubelet"}, busy_ports={10250})
    out, err = run(env, node_doc, ignore="fileexisting-kubelet,port-10250")
    assert err is None
    assert "[WARNING FileExisting-kubelet]" in out and "[WARNING Port-10250]" in out
    out, err = run(env, node_doc, ignore="all")
    assert err is None
    out, err = run(env, node_doc, ignore="Port-10250")
    assert err is not None and "FileExisting-kubelet" in err and "Port-10250" not in err


def test_missing_python_module_names_the_package(node_doc: dict[str, Any]) -> None:
    out, err = run(FakeEnv(missing_modules={"cryptography"}), node_doc)
    assert (
        "[ERROR Python]: Python module cryptography is missing. Install it: apt-get install python3-cryptography" in out
    )


def test_non_root_is_refused(node_doc: dict[str, Any]) -> None:
    out, _ = run(FakeEnv(uid=1000), node_doc)
    assert "[ERROR IsPrivilegedUser]: user is not running as root" in out


def test_node_left_over_from_another_cluster(node_doc: dict[str, Any]) -> None:
    env = FakeEnv(existing={"/etc/kubernetes/kubelet.conf", "/etc/kubernetes/manifests/etcd.yaml"})
    out, err = run(env, node_doc)
    assert "[ERROR FileAvailable--etc-kubernetes-kubelet.conf]: /etc/kubernetes/kubelet.conf already exists" in out
    assert "[ERROR DirAvailable--etc-kubernetes-manifests]: /etc/kubernetes/manifests is not empty" in out


def test_master_checks(master_doc: dict[str, Any]) -> None:
    env = FakeEnv(host="master-1", ncpu=1, busy_ports={6443, 2379}, existing={"/var/lib/etcd/member"})
    env.files["/proc/meminfo"] = "MemTotal:        1024000 kB\n"
    out, err = run(env, master_doc)
    assert "[ERROR NumCPU]: the number of available CPUs 1 is less than the required 2" in out
    assert "[ERROR Mem]: the system RAM (1000 MB) is less than the minimum 1700 MB" in out
    assert "[ERROR Port-6443]" in out and "[ERROR Port-2379]" in out
    assert "[ERROR DirAvailable--var-lib-etcd]: /var/lib/etcd is not empty" in out


def test_invalid_host_name(node_doc: dict[str, Any]) -> None:
    node_doc["nodeName"] = ""
    out, err = run(FakeEnv(host="Bad_Host"), node_doc)
    assert '[ERROR Hostname]: node name "bad_host" is not a lower-case DNS name' in out
