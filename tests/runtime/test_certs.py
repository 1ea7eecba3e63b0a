"""A control plane's certificate lifecycle (issue 13): `certs check-expiration` prints kubeadm's table, `certs
renew` signs every leaf and kubeconfig again (same key, subject, names and usages) and has the kubelet restart the
static pods, and the systemd timer init installs renews what expires within 30 days, not before: checked with the
clock moved (faketime) and with a real etcd that keeps accepting the renewed client certificates. The node's
first-boot runtime has no `certs` (its kubelet renews its own certificate)."""

from __future__ import annotations

import base64
import datetime
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from cryptography import x509

from kubeseed.runtime import pki
from kubeseed.runtime.init.certcmd import CERTS
from tests.support.etcd import etcdctl, wait_healthy
from tests.support.helpers import need_tool
from tests.support.join import node_zipapp
from tests.support.master import init_file_phases, make_master

PKI = "etc/kubernetes/pki"
CA_FILES = {"ca": "ca", "etcd-ca": "etcd/ca", "front-proxy-ca": "front-proxy-ca"}


def runtime(root: Path, *args: str, faketime: str = "") -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, str(root / "opt/kubeseed/kubeseed-runtime.pyz"), *args, "--root", str(root)]
    if faketime:
        cmd = [need_tool("faketime", install="apt-get install faketime"), "-f", faketime, *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A master that ran init's file phases and the timer phase (its API phases need an API server)."""
    root = make_master(tmp_path_factory.mktemp("master"))
    init_file_phases(root)
    return root


@pytest.fixture
def master(template: Path, tmp_path: Path) -> Path:
    root = tmp_path / "master"
    shutil.copytree(template, root, symlinks=True)
    return root


def leaf(root: Path, c: str) -> tuple[x509.Certificate, bytes]:
    """(certificate, key PEM) of a kubeadm certificate name, from its files or its kubeconfig."""
    path = next(x.path for x in CERTS if x.name == c)
    file = root / path.lstrip("/")
    if path.endswith(".crt"):
        return pki.load_cert(file.read_bytes()), file.with_suffix(".key").read_bytes()
    user = yaml.safe_load(file.read_text())["users"][0]["user"]
    return pki.load_cert(base64.b64decode(user["client-certificate-data"])), base64.b64decode(user["client-key-data"])


def not_after(c: x509.Certificate) -> datetime.datetime:
    return c.not_valid_after_utc


def test_check_expiration_prints_kubeadms_table(master: Path) -> None:
    r = runtime(master, "certs", "check-expiration")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    head = (
        "CERTIFICATE                EXPIRES                  RESIDUAL TIME   CERTIFICATE AUTHORITY   EXTERNALLY MANAGED"
    )
    assert lines[0] == head
    names = [line.split()[0] for line in lines[1:12]]
    assert names == sorted(c.name for c in CERTS) and "super-admin.conf" in names
    row = re.compile(
        r"[a-z.-]+ +[A-Z][a-z]{2} \d\d, \d{4} \d\d:\d\d UTC   (364d|365d) +(ca|etcd-ca|front-proxy-ca) +no"
    )
    assert all(row.fullmatch(line) for line in lines[1:12]), lines[1:12]
    assert lines[12] == ""
    assert lines[13] == "CERTIFICATE AUTHORITY   EXPIRES                  RESIDUAL TIME   EXTERNALLY MANAGED"
    assert [line.split()[0] for line in lines[14:17]] == ["ca", "etcd-ca", "front-proxy-ca"]
    assert all(re.search(r"UTC   9y +no$", line) for line in lines[14:17])
    assert lines[-1].startswith("Renewal timer: kubeseed-certs.timer installed")

    # a CA whose key is elsewhere is externally managed; a missing certificate is marked as kubeadm does
    (master / PKI / "front-proxy-ca.key").unlink()
    (master / PKI / "etcd/peer.crt").unlink()
    out = runtime(master, "certs", "check-expiration").stdout
    assert re.search(r"^front-proxy-client .* front-proxy-ca +yes$", out, re.M)
    assert re.search(r"^front-proxy-ca .* yes$", out, re.M)
    assert re.search(r"^!MISSING! etcd-peer\s*$", out, re.M)


def test_renew_all_keeps_keys_names_and_usages(master: Path) -> None:
    before = {c.name: leaf(master, c.name) for c in CERTS}
    root_config = (master / "root/.kube/config").read_bytes()
    r = runtime(master, "certs", "renew", "all")
    assert r.returncode == 0, r.stdout + r.stderr
    for c in CERTS:
        old, old_key = before[c.name]
        new, key = leaf(master, c.name)
        assert key == old_key, c.name  # the key stays
        assert new.serial_number != old.serial_number and not_after(new) >= not_after(old), c.name
        assert new.subject == old.subject and new.issuer == old.issuer, c.name
        for ext in (x509.SubjectAlternativeName, x509.ExtendedKeyUsage, x509.KeyUsage, x509.BasicConstraints):
            try:
                assert new.extensions.get_extension_for_class(ext) == old.extensions.get_extension_for_class(ext)
            except x509.ExtensionNotFound:
                with pytest.raises(x509.ExtensionNotFound):
                    old.extensions.get_extension_for_class(ext)
        new.verify_directly_issued_by(pki.load_cert((master / PKI / f"{CA_FILES[c.ca]}.crt").read_bytes()))
    assert (master / "root/.kube/config").read_bytes() != root_config  # root's kubectl gets the renewed admin.conf
    assert (master / "root/.kube/config").read_bytes() == (master / "etc/kubernetes/admin.conf").read_bytes()
    for component in ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"):
        pod = yaml.safe_load((master / f"etc/kubernetes/manifests/{component}.yaml").read_text())
        assert "kubeseed.io/certificates-renewed" in pod["metadata"]["annotations"], component
    assert "the kubelet restarts etcd, kube-apiserver, kube-controller-manager, kube-scheduler" in r.stdout


def test_renew_one_with_a_new_key(master: Path) -> None:
    old, old_key = leaf(master, "apiserver")
    other = leaf(master, "etcd-server")
    r = runtime(master, "certs", "renew", "apiserver", "--new-key")
    assert r.returncode == 0, r.stdout + r.stderr
    new, key = leaf(master, "apiserver")
    assert key != old_key and pki.load_key(key).public_key().public_numbers() == new.public_key().public_numbers()
    assert (master / PKI / "apiserver.key").stat().st_mode & 0o777 == 0o600
    assert leaf(master, "etcd-server") == other  # only what was named


def test_timer_renews_within_30_days_and_not_before(master: Path) -> None:
    """What kubeseed-certs.service runs, with the clock where the certificates have 25 days left, and 40."""
    before = {c.name: leaf(master, c.name)[0].serial_number for c in CERTS}
    r = runtime(master, "certs", "renew", "all", "--expiring-within", "30", faketime="+325d")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "nothing expires within 30 days" in r.stdout
    assert {c.name: leaf(master, c.name)[0].serial_number for c in CERTS} == before
    r = runtime(master, "certs", "renew", "all", "--expiring-within", "30", faketime="+340d")
    assert r.returncode == 0, r.stdout + r.stderr
    for c in CERTS:
        cert = leaf(master, c.name)[0]
        assert cert.serial_number != before[c.name], c.name
        assert not_after(cert) > datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=690)


def test_init_installs_the_timer(master: Path) -> None:
    units = master / "etc/systemd/system"
    service = (units / "kubeseed-certs.service").read_text()
    timer = (units / "kubeseed-certs.timer").read_text()
    assert "ExecStart=/usr/bin/env python3 /opt/kubeseed/kubeseed-runtime.pyz certs renew all --expiring-within 30" in (
        service
    )
    assert "OnCalendar=daily" in timer and "Persistent=true" in timer and "WantedBy=timers.target" in timer
    analyze = need_tool("systemd-analyze", install="apt-get install systemd")
    check = subprocess.run(
        [analyze, "verify", "--man=no", str(units / "kubeseed-certs.timer"), str(units / "kubeseed-certs.service")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    bad = [line for line in check.stderr.splitlines() if "kubeseed-certs" in line]
    assert not bad, check.stderr
    status = runtime(master, "status")
    assert "Renewal timer: kubeseed-certs.timer installed" in status.stdout


def test_a_real_etcd_accepts_the_renewed_client_certificates(master: Path, etcd: Path) -> None:
    wait_healthy(master, etcd)
    assert etcdctl(master, "put", "/registry/kubeseed", "before").returncode == 0
    r = runtime(master, "certs", "renew", "apiserver-etcd-client")
    assert r.returncode == 0, r.stdout + r.stderr
    r = runtime(master, "certs", "renew", "etcd-healthcheck-client", "--new-key")
    assert r.returncode == 0, r.stdout + r.stderr
    assert etcdctl(master, "put", "/registry/kubeseed", "after").returncode == 0
    got = etcdctl(master, "get", "/registry/kubeseed", client="etcd/healthcheck-client")
    assert got.returncode == 0 and got.stdout.splitlines()[-1] == "after", got.stderr


def test_renew_refuses_what_it_cannot_do(master: Path) -> None:
    (master / PKI / "etcd/ca.key").unlink()
    r = runtime(master, "certs", "renew", "etcd-server")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "/etc/kubernetes/pki/etcd/ca.key is not on this machine (an externally managed CA)" in r.stderr
    r = runtime(master, "certs", "renew", "bogus")
    assert r.returncode == 2 and "invalid choice: 'bogus'" in r.stderr
    r = runtime(master, "certs", "renew", "all", "--expiring-within", "0")
    assert r.returncode == 2 and "error: --expiring-within: must be a number of days of at least 1, not 0" in r.stderr


def test_certs_on_a_machine_without_a_control_plane(master: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    (empty / "opt/kubeseed").mkdir(parents=True)
    shutil.copy(master / "opt/kubeseed/kubeseed-runtime.pyz", empty / "opt/kubeseed/")
    r = runtime(empty, "certs", "check-expiration")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "/etc/kubernetes/pki/ca.crt does not exist: this is not a control-plane machine" in r.stderr


def test_the_nodes_first_boot_runtime_has_no_certs_command(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, str(node_zipapp()), "certs", "check-expiration"], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 2 and "invalid choice: 'certs'" in r.stderr
