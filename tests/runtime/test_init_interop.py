"""kubeadm interop of init (issue 12): IPv6 host:port formats, kubelet-finalize, the host's CA directories
mounted only where they exist, and the image list (`kubeseed images list`, CoreDNS on mirrors)."""

from __future__ import annotations

import argparse
import base64
import contextlib
import io
import ipaddress
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from cryptography import x509

from kubeseed.generator import imagescli
from kubeseed.runtime.config import NodeConfig
from kubeseed.runtime.init import addons
from kubeseed.runtime.init.versions import images
from kubeseed.runtime.workflow import Context
from tests.support.helpers import kubeseed
from tests.support.master import API_PHASES, MASTER, flags, make_master, manifest

PEM = "/var/lib/kubelet/pki/kubelet-client-current.pem"


def init(root: Path, *args: str, advertise: str = "127.0.0.2") -> subprocess.CompletedProcess[str]:
    pyz = root / "opt/kubeseed/kubeseed-runtime.pyz"
    cmd = [sys.executable, str(pyz), "init", "--root", str(root), "--ignore-preflight-errors", "all"]
    return subprocess.run([*cmd, "--advertise-address", advertise, *args], capture_output=True, text=True, timeout=120)


def split_host_port(text: str) -> tuple[str, str]:
    """Go's net.SplitHostPort: a host with a colon must be in brackets."""
    host, sep, port = text.rpartition(":")
    assert sep and port.isdigit(), text
    if host.startswith("["):
        assert host.endswith("]"), text
        return host[1:-1], port
    assert ":" not in host, f"missing brackets in address {text}"
    return host, port


# --- IPv6 ----------------------------------------------------------------------------------------------------


def test_ipv6_master_writes_bracketed_host_ports(tmp_path: Path) -> None:
    root = make_master(tmp_path, endpoint="[fd00::10]:6443")
    r = init(root, "--skip-phases", API_PHASES, advertise="fd00::10")
    assert r.returncode == 0, r.stdout + r.stderr
    api = manifest(root, "kube-apiserver")
    endpoint = api["metadata"]["annotations"]["kubeadm.kubernetes.io/kube-apiserver.advertise-address.endpoint"]
    assert endpoint == "[fd00::10]:6443" and split_host_port(endpoint) == ("fd00::10", "6443")
    assert flags(api)["etcd-servers"] == "https://[::1]:2379"
    assert flags(api)["advertise-address"] == "fd00::10"
    etcd = manifest(root, "etcd")
    assert etcd["metadata"]["annotations"]["kubeadm.kubernetes.io/etcd.advertise-client-urls"] == (
        "https://[fd00::10]:2379"
    )
    f = flags(etcd)
    assert f["advertise-client-urls"] == "https://[fd00::10]:2379"
    assert f["listen-client-urls"] == "https://[::1]:2379,https://[fd00::10]:2379"
    assert f["listen-peer-urls"] == f["initial-advertise-peer-urls"] == "https://[fd00::10]:2380"
    assert f["initial-cluster"] == f"{MASTER}=https://[fd00::10]:2380"
    assert f["listen-metrics-urls"] == "http://[::1]:2381"
    for key in ("advertise-client-urls", "listen-client-urls", "listen-peer-urls", "listen-metrics-urls"):
        for u in f[key].split(","):
            assert ipaddress.ip_address(urlsplit(u).hostname or "").version == 6, u
    assert etcd["spec"]["containers"][0]["livenessProbe"]["httpGet"]["host"] == "::1"
    # certificates: the IPv6 addresses as IP SANs
    pki = root / "etc/kubernetes/pki"

    def ips(name: str) -> set[str]:
        c = x509.load_pem_x509_certificate((pki / f"{name}.crt").read_bytes())
        ext = c.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        return {str(a) for a in ext.get_values_for_type(x509.IPAddress)}

    assert {"fd00::10", "10.96.0.1"} <= ips("apiserver")
    assert {"fd00::10", "::1", "127.0.0.1"} <= ips("etcd/server") and "fd00::10" in ips("etcd/peer")
    # kubeconfigs: the local ones name the advertise address, the others the endpoint, both bracketed
    servers = {
        name: yaml.safe_load((root / "etc/kubernetes" / name).read_text())["clusters"][0]["cluster"]["server"]
        for name in ("admin.conf", "super-admin.conf", "controller-manager.conf", "scheduler.conf", "kubelet.conf")
    }
    assert set(servers.values()) == {"https://[fd00::10]:6443"}, servers
    assert all(urlsplit(s).hostname == "fd00::10" and urlsplit(s).port == 6443 for s in servers.values())


# --- kubelet-finalize ---------------------------------------------------------------------------------------


@pytest.fixture
def master(tmp_path: Path) -> Path:
    root = make_master(tmp_path)
    r = init(root, "--skip-phases", API_PHASES)
    assert r.returncode == 0, r.stdout + r.stderr
    return root


def place_kubelet_pem(root: Path) -> None:
    """What the kubelet does at its first start with rotation on: the embedded certificate and key to
    kubelet-client-<time>.pem, and kubelet-client-current.pem an absolute link to it."""
    user = yaml.safe_load((root / "etc/kubernetes/kubelet.conf").read_text())["users"][0]["user"]
    data = base64.b64decode(user["client-certificate-data"]) + base64.b64decode(user["client-key-data"])
    pki = root / "var/lib/kubelet/pki"
    pki.mkdir(parents=True, exist_ok=True)
    (pki / "kubelet-client-2030-01-01-00-00-00.pem").write_bytes(data)
    (pki / "kubelet-client-current.pem").symlink_to("/var/lib/kubelet/pki/kubelet-client-2030-01-01-00-00-00.pem")


def test_kubelet_finalize_is_between_bootstrap_token_and_addon() -> None:
    from kubeseed.runtime import init as role

    names = [p.name for p in role.phases()]
    assert names[names.index("bootstrap-token") + 1 : names.index("bootstrap-token") + 3] == [
        "kubelet-finalize",
        "addon",
    ]


def test_kubelet_finalize_points_kubelet_conf_at_the_rotated_certificate(master: Path) -> None:
    conf = master / "etc/kubernetes/kubelet.conf"
    before = yaml.safe_load(conf.read_text())
    place_kubelet_pem(master)
    r = init(master, "--phase", "kubelet-finalize")
    assert r.returncode == 0, r.stdout + r.stderr
    assert 'Updating "/etc/kubernetes/kubelet.conf" to point to a rotatable kubelet client certificate' in r.stdout
    after = yaml.safe_load(conf.read_text())
    assert after["users"] == [{"name": f"system:node:{MASTER}", "user": {"client-certificate": PEM, "client-key": PEM}}]
    assert {k: v for k, v in after.items() if k != "users"} == {k: v for k, v in before.items() if k != "users"}
    assert conf.stat().st_mode & 0o777 == 0o600
    assert "not starting services" in r.stdout  # the kubelet restart kubeadm does, under --root only said
    # idempotent: again, nothing changes
    data = conf.read_bytes()
    again = init(master, "--phase", "kubelet-finalize")
    assert again.returncode == 0 and "already points to" in again.stdout and conf.read_bytes() == data


def test_kubelet_finalize_resumes_in_order(master: Path) -> None:
    place_kubelet_pem(master)
    r = init(master, "--skip-phases", API_PHASES.replace("kubelet-finalize,", ""))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "kubelet-finalize" in r.stdout
    assert yaml.safe_load((master / "etc/kubernetes/kubelet.conf").read_text())["users"][0]["user"] == {
        "client-certificate": PEM,
        "client-key": PEM,
    }
    again = init(master, "--skip-phases", API_PHASES.replace("kubelet-finalize,", ""))
    assert again.returncode == 0 and again.stdout.count("already done, skipping") == 8, again.stdout


def test_kubelet_finalize_without_the_certificate_changes_nothing(master: Path) -> None:
    """kubeadm: no kubelet-client-current.pem means rotation is off; kubelet.conf keeps its embedded certificate
    (nobody writes the pem for the kubelet). kubeseed says so and how to run the phase later."""
    conf = master / "etc/kubernetes/kubelet.conf"
    data = conf.read_bytes()
    r = init(master, "--phase", "kubelet-finalize")
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"{PEM} not found" in r.stdout and "init --phase kubelet-finalize" in r.stdout
    assert conf.read_bytes() == data
    assert not (master / "var/lib/kubelet/pki/kubelet-client-current.pem").exists()


def test_kubelet_finalize_refuses_a_kubelet_conf_for_another_node(master: Path) -> None:
    conf = master / "etc/kubernetes/kubelet.conf"
    conf.write_text(conf.read_text().replace(f"system:node:{MASTER}", "system:node:other"))
    place_kubelet_pem(master)
    r = init(master, "--phase", "kubelet-finalize")
    assert r.returncode == 1
    assert f'the file "/etc/kubernetes/kubelet.conf" does not contain authentication for user "{MASTER}"' in r.stderr
    assert len([line for line in r.stderr.splitlines() if "error" in line.lower()]) == 1


# --- the host's CA directories ------------------------------------------------------------------------------


def volumes(pod: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {v["name"]: (v["hostPath"]["path"], v["hostPath"]["type"]) for v in pod["spec"]["volumes"]}


def mounts(pod: dict[str, Any]) -> dict[str, tuple[str, bool]]:
    return {m["name"]: (m["mountPath"], m.get("readOnly", False)) for m in pod["spec"]["containers"][0]["volumeMounts"]}


CA_VOLUMES = {
    "etc-pki",
    "etc-pki-ca-trust",
    "etc-pki-tls-certs",
    "etc-ca-certificates",
    "usr-share-ca-certificates",
    "usr-local-share-ca-certificates",
}


def control_plane(tmp_path: Path, dirs: list[str], *create_args: str) -> tuple[dict[str, Any], dict[str, Any]]:
    root = make_master(tmp_path, *create_args)
    for d in dirs:
        (root / d.lstrip("/")).mkdir(parents=True)
    r = init(root, "--skip-phases", API_PHASES)
    assert r.returncode == 0, r.stdout + r.stderr
    for name in ("kube-apiserver", "kube-controller-manager", "kube-scheduler"):
        pod = manifest(root, name)
        names = [v["name"] for v in pod["spec"]["volumes"]]
        assert names == sorted(names) == sorted(mounts(pod)), name  # kubeadm's VolumeMapToSlice order
        if name == "kube-scheduler":
            assert not CA_VOLUMES & set(names) and "ca-certs" not in names
    return manifest(root, "kube-apiserver"), manifest(root, "kube-controller-manager")


def test_ca_directories_are_mounted_only_where_they_exist(tmp_path: Path) -> None:
    (tmp_path / "none").mkdir()
    for pod in control_plane(tmp_path / "none", []):
        assert volumes(pod)["ca-certs"] == ("/etc/ssl/certs", "DirectoryOrCreate")
        assert not CA_VOLUMES & set(volumes(pod))
    (tmp_path / "some").mkdir()
    for pod in control_plane(tmp_path / "some", ["/etc/pki/ca-trust", "/etc/pki/tls/certs", "/etc/ca-certificates"]):
        found = CA_VOLUMES & set(volumes(pod))
        assert found == {"etc-pki-ca-trust", "etc-pki-tls-certs", "etc-ca-certificates"}  # v1.35: not all /etc/pki
        for name in found | {"ca-certs"}:
            path = volumes(pod)[name][0]
            assert volumes(pod)[name] == (path, "DirectoryOrCreate") and mounts(pod)[name] == (path, True)
        assert volumes(pod)["etc-pki-ca-trust"][0] == "/etc/pki/ca-trust"


def test_etc_pki_is_mounted_whole_up_to_1_30(tmp_path: Path) -> None:
    """kubeadm 1.30 mounts /etc/pki as etc-pki; 1.31 (PR #124361) only /etc/pki/ca-trust and /etc/pki/tls/certs."""
    dirs = ["/etc/pki/ca-trust", "/usr/share/ca-certificates"]
    for pod in control_plane(tmp_path, dirs, "--kubernetes-version", "v1.30.4"):
        assert CA_VOLUMES & set(volumes(pod)) == {"etc-pki", "usr-share-ca-certificates"}
        assert volumes(pod)["etc-pki"] == ("/etc/pki", "DirectoryOrCreate")
        assert mounts(pod)["etc-pki"] == ("/etc/pki", True)


# --- images --------------------------------------------------------------------------------------------------

MIRROR = "mirror.local:5000/k8s"


def test_images_default_repository() -> None:
    assert images("v1.35.5") == [
        "registry.k8s.io/kube-apiserver:v1.35.5",
        "registry.k8s.io/kube-controller-manager:v1.35.5",
        "registry.k8s.io/kube-scheduler:v1.35.5",
        "registry.k8s.io/kube-proxy:v1.35.5",
        "registry.k8s.io/coredns/coredns:v1.12.1",
        "registry.k8s.io/pause:3.10.1",
        "registry.k8s.io/etcd:3.6.5-0",
    ]
    assert images("v1.30.4", "registry.k8s.io") == [
        "registry.k8s.io/kube-apiserver:v1.30.4",
        "registry.k8s.io/kube-controller-manager:v1.30.4",
        "registry.k8s.io/kube-scheduler:v1.30.4",
        "registry.k8s.io/kube-proxy:v1.30.4",
        "registry.k8s.io/coredns/coredns:v1.11.1",
        "registry.k8s.io/pause:3.9",
        "registry.k8s.io/etcd:3.5.15-0",
    ]


def test_images_on_a_mirror_have_coredns_at_the_top() -> None:
    """kubeadm's GetDNSImage: coredns/coredns only in registry.k8s.io; a mirror has <repo>/coredns:<tag>."""
    assert images("v1.35.5", MIRROR) == [
        f"{MIRROR}/kube-apiserver:v1.35.5",
        f"{MIRROR}/kube-controller-manager:v1.35.5",
        f"{MIRROR}/kube-scheduler:v1.35.5",
        f"{MIRROR}/kube-proxy:v1.35.5",
        f"{MIRROR}/coredns:v1.12.1",
        f"{MIRROR}/pause:3.10.1",
        f"{MIRROR}/etcd:3.6.5-0",
    ]
    assert images("v1.30.4", MIRROR)[4:6] == [f"{MIRROR}/coredns:v1.11.1", f"{MIRROR}/pause:3.9"]


@pytest.mark.parametrize("repo", ["registry.k8s.io", MIRROR])
@pytest.mark.parametrize("version", ["v1.30.4", "v1.35.5"])
def test_the_addons_use_the_listed_images(repo: str, version: str) -> None:
    cfg = NodeConfig("master", "demo", "10.0.0.10:6443", kubernetes_version=version, image_repository=repo)
    ctx = Context("init", cfg, node_name=MASTER)
    listed = images(version, repo)
    deployment = next(o for o in addons.coredns(ctx) if o["kind"] == "Deployment")
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == listed[4]
    proxy = next(o for o in addons.kube_proxy(ctx) if o["kind"] == "DaemonSet")
    assert proxy["spec"]["template"]["spec"]["containers"][0]["image"] == listed[3]


def run_images(*argv: str) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="kubeseed")
    imagescli.add_parser(parser.add_subparsers())
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        from kubeseed.generator.console import run_command

        args = parser.parse_args(list(argv))
        code = run_command(args.func, args)
    return code, out.getvalue(), err.getvalue()


def test_images_list_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    r = kubeseed("cluster", "create", "demo", "--endpoint", "10.0.0.10:6443", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    monkeypatch.chdir(tmp_path)
    code, out, err = run_images("images", "list", "demo")
    assert (code, err) == (0, "") and out.splitlines() == images("v1.35.5")
    cfg = tmp_path / "demo/cluster.yaml"
    cfg.write_text(cfg.read_text().replace("imageRepository: registry.k8s.io", f"imageRepository: {MIRROR}"))
    code, out, err = run_images("images", "list", "demo")
    assert code == 0 and out.splitlines() == images("v1.35.5", MIRROR) and f"{MIRROR}/coredns:v1.12.1\n" in out
    # the module runs alone too, and a missing cluster is one line, exit 2
    r = subprocess.run(
        [sys.executable, "-m", "kubeseed.generator.imagescli", "list", "nowhere"], capture_output=True, text=True
    )
    assert r.returncode == 2 and r.stdout == "" and len(r.stderr.splitlines()) == 1 and "cluster.yaml" in r.stderr
