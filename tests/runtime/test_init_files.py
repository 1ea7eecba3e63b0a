"""init's file phases (certs, kubeconfig, etcd, control-plane, kubelet-start) under --root: checked with
cryptography, `openssl verify`, kubectl, kubernetes-validate and a real etcd started with the certificates."""

from __future__ import annotations

import datetime
import ipaddress
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kubeseed.generator.zipapp import build_zipapp
from kubeseed.runtime.init.versions import ControlPlaneVersion
from tests.support.clientcert_server import kubectl, serve
from tests.support.etcd import etcdctl, wait_healthy
from tests.support.helpers import cloud_init_files, kubeseed, lay_out, need_tool, venv_tool
from tests.support.master import API_PHASES, MASTER, flags, make_master, manifest

KILLER = Path(__file__).with_name("killer.py")
FILE_PHASES = ["preflight", "certs", "kubeconfig", "etcd", "control-plane", "kubelet-start", "certs-timer"]
ADVERTISE = "127.0.0.2"  # a loopback address of its own, so the real etcd below can listen on it


def init(root: Path, *args: str, kill: tuple[str, int, str] | None = None) -> subprocess.CompletedProcess[str]:
    if kill:
        cmd = [sys.executable, str(KILLER), kill[0], str(kill[1]), kill[2], "--"]
    else:
        cmd = [sys.executable, str(root / "opt/kubeseed/kubeseed-runtime.pyz")]
    full = [*cmd, "init", "--root", str(root), "--ignore-preflight-errors", "all", "--advertise-address", ADVERTISE]
    return subprocess.run([*full, *args], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def master(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A master's file phases run once (ECDSA cluster, Kubernetes v1.35.5)."""
    root = make_master(tmp_path_factory.mktemp("master"))
    r = init(root, "--skip-phases", API_PHASES)
    assert r.returncode == 0, r.stdout + r.stderr
    return root


PKI = "etc/kubernetes/pki"


def cert(root: Path, name: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate((root / PKI / f"{name}.crt").read_bytes())


def cn(c: x509.Certificate) -> str:
    return str(c.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def orgs(c: x509.Certificate) -> list[str]:
    return [str(a.value) for a in c.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]


def sans(c: x509.Certificate) -> set[str]:
    try:
        ext = c.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    return {str(v) for v in ext.get_values_for_type(x509.DNSName)} | {
        str(v) for v in ext.get_values_for_type(x509.IPAddress)
    }


def ekus(c: x509.Certificate) -> set[str]:
    names = {ExtendedKeyUsageOID.SERVER_AUTH: "server", ExtendedKeyUsageOID.CLIENT_AUTH: "client"}
    return {names[u] for u in c.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value}


LEAVES = [
    ("apiserver", "ca", "kube-apiserver", [], {"server"}),
    ("apiserver-kubelet-client", "ca", "kube-apiserver-kubelet-client", [], {"client"}),  # v1.35.5: no O
    ("front-proxy-client", "front-proxy-ca", "front-proxy-client", [], {"client"}),
    ("etcd/server", "etcd/ca", MASTER, [], {"server", "client"}),
    ("etcd/peer", "etcd/ca", MASTER, [], {"server", "client"}),
    ("etcd/healthcheck-client", "etcd/ca", "kube-etcd-healthcheck-client", [], {"client"}),
    ("apiserver-etcd-client", "etcd/ca", "kube-apiserver-etcd-client", [], {"client"}),
]


@pytest.mark.parametrize("name,ca,common_name,o,usages", LEAVES, ids=[leaf[0] for leaf in LEAVES])
def test_leaf_certificates_are_kubeadms(
    master: Path, name: str, ca: str, common_name: str, o: list[str], usages: set[str]
) -> None:
    c, issuer = cert(master, name), cert(master, ca)
    assert (cn(c), orgs(c), ekus(c)) == (common_name, o, usages)
    assert c.issuer == issuer.subject
    lifetime = c.not_valid_after_utc - c.not_valid_before_utc
    assert datetime.timedelta(days=364) < lifetime <= datetime.timedelta(days=365, minutes=5)
    assert (master / PKI / f"{name}.key").stat().st_mode & 0o777 == 0o600
    openssl = need_tool("openssl", install="apt-get install openssl")
    r = subprocess.run(
        [openssl, "verify", "-CAfile", str(master / PKI / f"{ca}.crt"), str(master / PKI / f"{name}.crt")],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0 and r.stdout.strip().endswith(": OK"), r.stdout + r.stderr
    if name in ("apiserver", "etcd/server"):
        assert cert(master, ca).not_valid_after_utc - cert(master, ca).not_valid_before_utc > datetime.timedelta(
            days=3600
        )


def test_subject_alternative_names(master: Path) -> None:
    api = sans(cert(master, "apiserver"))
    assert {
        MASTER,
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
        "10.96.0.1",
        ADVERTISE,
        "10.0.0.10",
    } <= api
    assert sans(cert(master, "etcd/server")) == {MASTER, "localhost", ADVERTISE, "127.0.0.1", "::1"}
    assert sans(cert(master, "apiserver-etcd-client")) == set()


def test_kubelet_client_organization_follows_the_version() -> None:
    """PR #138957 dropped O=kubeadm:cluster-admins from apiserver-kubelet-client in these patch releases."""
    assert [
        ControlPlaneVersion(v).narrowed_kubelet_client
        for v in (
            "v1.33.11",
            "v1.33.12",
            "v1.34.7",
            "v1.34.8",
            "v1.35.4",
            "v1.35.5",
            "v1.36.0",
            "v1.36.1",
            "v1.32.9",
            "v1.30.0",
        )
    ] == [False, True, False, True, False, True, False, True, False, False]


def test_rsa_cluster_and_older_version(tmp_path: Path) -> None:
    root = make_master(tmp_path, "--key-algorithm", "RSA-2048", "--kubernetes-version", "v1.33.4")
    r = init(root, "--phase", "certs")
    assert r.returncode == 0, r.stdout + r.stderr
    c = cert(root, "apiserver-kubelet-client")
    assert orgs(c) == ["kubeadm:cluster-admins"]
    assert c.public_key().key_size == 2048  # type: ignore[union-attr]


def kubeconfig_user(root: Path, name: str) -> tuple[str, list[str], str]:
    doc = yaml.safe_load((root / "etc/kubernetes" / name).read_text())
    import base64

    c = x509.load_pem_x509_certificate(base64.b64decode(doc["users"][0]["user"]["client-certificate-data"]))
    return cn(c), orgs(c), doc["clusters"][0]["cluster"]["server"]


def test_kubeconfigs(master: Path) -> None:
    expect = {
        "admin.conf": ("kubernetes-admin", ["kubeadm:cluster-admins"], "https://10.0.0.10:6443"),
        "super-admin.conf": ("kubernetes-super-admin", ["system:masters"], "https://10.0.0.10:6443"),
        "controller-manager.conf": ("system:kube-controller-manager", [], f"https://{ADVERTISE}:6443"),
        "scheduler.conf": ("system:kube-scheduler", [], f"https://{ADVERTISE}:6443"),
        "kubelet.conf": (f"system:node:{MASTER}", ["system:nodes"], "https://10.0.0.10:6443"),
    }
    for name, want in expect.items():
        assert kubeconfig_user(master, name) == want, name
        assert (master / "etc/kubernetes" / name).stat().st_mode & 0o777 == 0o600
        doc = yaml.safe_load((master / "etc/kubernetes" / name).read_text())
        assert doc["current-context"] == f"{want[0]}@kubernetes" and doc["clusters"][0]["name"] == "kubernetes"
    assert (master / "root/.kube/config").read_bytes() == (master / "etc/kubernetes/admin.conf").read_bytes()


def test_kubectl_reads_admin_conf(master: Path, tmp_path: Path) -> None:
    r = kubectl(
        "--kubeconfig", str(master / "etc/kubernetes/admin.conf"), "config", "view", "-o", "jsonpath={.users[0].name}"
    )
    assert r.returncode == 0 and r.stdout == "kubernetes-admin", r.stderr
    cluster_dir = tmp_path / "pki-view"  # serve() reads pki/ca.crt and pki/ca.key below a directory
    (cluster_dir / "pki").mkdir(parents=True)
    for f in ("ca.crt", "ca.key"):
        shutil.copy(master / PKI / f, cluster_dir / "pki" / f)
    for url, seen in serve(cluster_dir, tmp_path):
        r = kubectl(
            "--kubeconfig", str(master / "etc/kubernetes/admin.conf"), "--server", url, "get", "--raw", "/version"
        )
        assert r.returncode == 0, r.stderr
        assert seen[0]["cn"] == "kubernetes-admin" and seen[0]["orgs"] == ["kubeadm:cluster-admins"]


@pytest.mark.parametrize("name", ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"])
def test_manifests_validate_against_the_kubernetes_schema(master: Path, name: str) -> None:
    validate = need_tool("kubernetes-validate", venv_tool("kubernetes-validate"), "pip install kubernetes-validate")
    path = master / "etc/kubernetes/manifests" / f"{name}.yaml"
    r = subprocess.run([validate, "--strict", "-k", "1.35.0", str(path)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    pod = manifest(master, name)
    assert pod["spec"]["hostNetwork"] is True and pod["spec"]["priorityClassName"] == "system-node-critical"
    assert pod["metadata"]["namespace"] == "kube-system"
    command = pod["spec"]["containers"][0]["command"]
    assert command[1:] == sorted(command[1:])  # kubeadm sorts flags by name


def test_manifests_reject_a_broken_pod(tmp_path: Path) -> None:
    """The schema check has teeth: a container without a name fails."""
    validate = need_tool("kubernetes-validate", venv_tool("kubernetes-validate"), "pip install kubernetes-validate")
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: v1\nkind: Pod\nmetadata: {name: x}\nspec: {containers: [{image: x, bogus: 1}]}\n")
    r = subprocess.run([validate, "--strict", "-k", "1.35.0", str(bad)], capture_output=True, text=True, timeout=120)
    assert r.returncode != 0


def test_flags_that_matter(master: Path) -> None:
    api = flags(manifest(master, "kube-apiserver"))
    assert api["authorization-mode"] == "Node,RBAC" and api["enable-bootstrap-token-auth"] == "true"
    assert api["client-ca-file"] == "/etc/kubernetes/pki/ca.crt"
    assert api["etcd-servers"] == "https://127.0.0.1:2379"
    assert (api["etcd-certfile"], api["etcd-keyfile"], api["etcd-cafile"]) == (
        "/etc/kubernetes/pki/apiserver-etcd-client.crt",
        "/etc/kubernetes/pki/apiserver-etcd-client.key",
        "/etc/kubernetes/pki/etcd/ca.crt",
    )
    assert api["service-account-key-file"] == "/etc/kubernetes/pki/sa.pub"
    assert api["service-account-signing-key-file"] == "/etc/kubernetes/pki/sa.key"
    assert api["service-account-issuer"] == "https://kubernetes.default.svc.cluster.local"
    assert api["advertise-address"] == ADVERTISE and api["service-cluster-ip-range"] == "10.96.0.0/12"
    assert api["enable-admission-plugins"] == "NodeRestriction"
    image = manifest(master, "kube-apiserver")["spec"]["containers"][0]["image"]
    assert image == "registry.k8s.io/kube-apiserver:v1.35.5"
    cm = flags(manifest(master, "kube-controller-manager"))
    assert cm["controllers"] == "*,bootstrapsigner,tokencleaner"
    assert cm["cluster-signing-cert-file"] == "/etc/kubernetes/pki/ca.crt"
    assert cm["cluster-signing-key-file"] == "/etc/kubernetes/pki/ca.key"
    assert cm["service-account-private-key-file"] == "/etc/kubernetes/pki/sa.key"
    assert cm["cluster-cidr"] == "10.244.0.0/16" and cm["allocate-node-cidrs"] == "true"
    assert cm["kubeconfig"] == "/etc/kubernetes/controller-manager.conf"
    sched = flags(manifest(master, "kube-scheduler"))
    assert sched["kubeconfig"] == "/etc/kubernetes/scheduler.conf" and sched["bind-address"] == "127.0.0.1"
    etcd = flags(manifest(master, "etcd"))
    assert etcd["client-cert-auth"] == "true" and etcd["peer-client-cert-auth"] == "true"
    assert etcd["trusted-ca-file"] == "/etc/kubernetes/pki/etcd/ca.crt"
    assert etcd["listen-client-urls"] == f"https://127.0.0.1:2379,https://{ADVERTISE}:2379"
    assert etcd["initial-cluster"] == f"{MASTER}=https://{ADVERTISE}:2380"


def test_kubelet_on_the_master(master: Path) -> None:
    cfg = yaml.safe_load((master / "var/lib/kubelet/config.yaml").read_text())
    assert cfg["staticPodPath"] == "/etc/kubernetes/manifests"
    assert "--hostname-override=cp-1" in (master / "var/lib/kubelet/kubeadm-flags.env").read_text()


# --- etcd, for real ------------------------------------------------------------------------------------------


def test_real_etcd_with_the_generated_certificates(master: Path, etcd: Path) -> None:
    wait_healthy(master, etcd)
    assert etcdctl(master, "put", "/registry/kubeseed", "ok").returncode == 0
    assert (
        etcdctl(master, "get", "/registry/kubeseed", client="etcd/healthcheck-client").stdout.splitlines()[-1] == "ok"
    )
    anonymous = etcdctl(master, "get", "/registry/kubeseed", client=None)
    assert anonymous.returncode != 0  # client-cert-auth: no certificate, no data
    stranger = etcdctl(master, "get", "/registry/kubeseed", client="front-proxy-client")  # another CA's client
    assert stranger.returncode != 0


# --- re-runs and crashes ----------------------------------------------------------------------------------------


def keys(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in (root / PKI).rglob("*.key")} | {
        name: (root / "etc/kubernetes" / name).read_bytes()
        for name in ("admin.conf", "super-admin.conf", "controller-manager.conf", "scheduler.conf", "kubelet.conf")
    }


def test_rerun_keeps_every_key(tmp_path: Path) -> None:
    root = make_master(tmp_path)
    assert init(root, "--skip-phases", API_PHASES).returncode == 0
    before = keys(root)
    again = init(root, "--skip-phases", API_PHASES)
    assert again.returncode == 0 and again.stdout.count("already done, skipping") == len(FILE_PHASES)
    forced = init(root, "--phase", "certs")
    assert forced.returncode == 0 and "all certificates exist already" in forced.stdout
    assert init(root, "--phase", "kubeconfig").returncode == 0
    assert keys(root) == before


@pytest.mark.parametrize("nth", [1, 4, 9])
def test_killed_while_making_certificates(tmp_path: Path, nth: int) -> None:
    """A power cut after the nth file of the certs phase: the re-run keeps every key written before it."""
    root = make_master(tmp_path)
    r = init(root, "--skip-phases", API_PHASES, kill=("workflow.write_atomic", nth, "after"))
    assert r.returncode == -9, r.stdout + r.stderr
    written = {str(p.relative_to(root)): p.read_bytes() for p in (root / PKI).rglob("*.key")}
    r = init(root, "--skip-phases", API_PHASES)
    assert r.returncode == 0, r.stdout + r.stderr
    after = {str(p.relative_to(root)): p.read_bytes() for p in (root / PKI).rglob("*.key")}
    assert all(after[name] == data for name, data in written.items())
    for leaf in LEAVES:
        c = cert(root, leaf[0])
        key = (root / PKI / f"{leaf[0]}.key").read_bytes()
        from kubeseed.runtime import pki

        assert c.public_key().public_numbers() == pki.load_key(key).public_key().public_numbers()


def test_pki_of_another_cluster_is_refused(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    root, other = make_master(tmp_path / "a"), make_master(tmp_path / "b")
    assert init(other, "--phase", "certs").returncode == 0
    (root / PKI).mkdir(parents=True)
    shutil.copy(other / PKI / "ca.crt", root / PKI / "ca.crt")  # left behind by the other cluster
    r = init(root, "--phase", "certs")
    assert r.returncode == 1
    assert "/etc/kubernetes/pki/ca.crt exists and is not this cluster's" in r.stderr


def test_bad_advertise_address(tmp_path: Path) -> None:
    root = make_master(tmp_path)
    zipapp = root / "opt/kubeseed/kubeseed-runtime.pyz"
    assert zipapp.read_bytes() == build_zipapp("master")
    r = subprocess.run(
        [sys.executable, str(zipapp), "init", "--root", str(root), "--advertise-address", "10.0.0.300"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2 and '--advertise-address: "10.0.0.300" is not an IP address' in r.stderr
    assert ipaddress.ip_address(ADVERTISE).is_loopback


def test_images_come_from_the_configured_registry(tmp_path: Path) -> None:
    """Air-gapped clusters point imageRepository at their mirror; every image follows it."""
    r = kubeseed("cluster", "create", "demo", "--endpoint", "10.0.0.10:6443", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    cfg = tmp_path / "demo/cluster.yaml"
    text = cfg.read_text()
    assert "imageRepository: registry.k8s.io" in text
    cfg.write_text(text.replace("imageRepository: registry.k8s.io", "imageRepository: mirror.example:5000/k8s"))
    r = kubeseed("render", "master", "demo", "--hostname", MASTER, "-o", "master.yaml", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    root = tmp_path / "machine"
    lay_out(cloud_init_files((tmp_path / "master.yaml").read_bytes()), root)
    assert init(root, "--skip-phases", API_PHASES).returncode == 0
    images = {
        manifest(root, n)["spec"]["containers"][0]["image"]
        for n in ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")
    }
    assert images == {
        "mirror.example:5000/k8s/etcd:3.6.5-0",
        "mirror.example:5000/k8s/kube-apiserver:v1.35.5",
        "mirror.example:5000/k8s/kube-controller-manager:v1.35.5",
        "mirror.example:5000/k8s/kube-scheduler:v1.35.5",
    }
