"""kube-vip's static pod for the control plane's virtual IP (runtime/init/kubevip.py): the manifest a rendered master
payload's init writes under --root, field by field against kube-vip's documented static-pod form, checked by
kubernetes-validate; which kubeconfig it mounts; the interface, read from this machine's kernel and compared with
`ip -o addr`; and nothing at all without a virtual IP."""

from __future__ import annotations

import io
import ipaddress
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubeseed.runtime.config import NodeConfig
from kubeseed.runtime.init.kubevip import interface_of, kube_vip_pod, vip_interface
from kubeseed.runtime.versions import MAX_MINOR, MIN_MINOR
from kubeseed.runtime.workflow import Context, PhaseError
from tests.support.helpers import cloud_init_files, kubeseed, lay_out, need_tool, venv_tool
from tests.support.master import API_PHASES, MASTER, make_master, manifest, run

VIP = "10.0.0.100"
MANIFESTS = "etc/kubernetes/manifests"


def expected_pod(kubeconfig: str, interface: str = "eth1", image: str = "ghcr.io/kube-vip/kube-vip:v1.2.3") -> Any:
    """kube-vip's static pod for VIP, written out from kube-vip's documentation, not from kubeseed's code:

    - https://kube-vip.io/docs/installation/static/ ("Example ARP Manifest", the output of `kube-vip manifest pod
      --interface $INTERFACE --address $VIP --controlplane --arp --leaderElection`, here without --services): args
      ``manager``; env vip_arp, port, vip_interface, vip_subnet, cp_enable, cp_namespace, vip_leaderelection, the
      lease timings, address; NET_ADMIN and NET_RAW; the volume ``kubeconfig`` mounted at
      /etc/kubernetes/admin.conf; hostAliases kubernetes -> 127.0.0.1; hostNetwork. Its note: "Since Kubernetes
      v1.29 ... admin.conf isn't usable immediately ... using the super-admin.conf for initialization" (kube-vip
      issue #684), i.e. the host path is super-admin.conf on the first master, the mount path unchanged.
    - what that command writes in the release pinned here, v1.2.3 (https://kube-vip.io/docs/installation/flags/
      and the repository's pkg/kubevip/config_generator.go): vip_nodename from spec.nodeName, vip_leasename
      plndr-cp-lock, client-go's timings 15/10/2 (the page's older example shows 5/3/1), vip_subnet 32 for IPv4,
      prometheus_server :2112, capabilities drop ALL, imagePullPolicy IfNotPresent; no vip_ddns (false is the
      default, written only when true); vip_cidr gone since v0.9.0 (replaced by vip_subnet)."""
    text = f"""
apiVersion: v1
kind: Pod
metadata:
  name: kube-vip
  namespace: kube-system
spec:
  containers:
  - args:
    - manager
    env:
    - name: vip_arp
      value: "true"
    - name: port
      value: "6443"
    - name: vip_nodename
      valueFrom:
        fieldRef:
          fieldPath: spec.nodeName
    - name: vip_interface
      value: {interface}
    - name: vip_subnet
      value: "32"
    - name: cp_enable
      value: "true"
    - name: cp_namespace
      value: kube-system
    - name: vip_leaderelection
      value: "true"
    - name: vip_leasename
      value: plndr-cp-lock
    - name: vip_leaseduration
      value: "15"
    - name: vip_renewdeadline
      value: "10"
    - name: vip_retryperiod
      value: "2"
    - name: address
      value: {VIP}
    - name: prometheus_server
      value: :2112
    image: {image}
    imagePullPolicy: IfNotPresent
    name: kube-vip
    resources: {{}}
    securityContext:
      capabilities:
        add:
        - NET_ADMIN
        - NET_RAW
        drop:
        - ALL
    volumeMounts:
    - mountPath: /etc/kubernetes/admin.conf
      name: kubeconfig
  hostAliases:
  - hostnames:
    - kubernetes
    ip: 127.0.0.1
  hostNetwork: true
  volumes:
  - hostPath:
      path: {kubeconfig}
    name: kubeconfig
status: {{}}
"""
    return yaml.safe_load(text)


def init_files(root: Path) -> subprocess.CompletedProcess[str]:
    """init's file phases under --root, as a first boot runs them (tests/support/master.py)."""
    args = ["init", "--root", str(root), "--ignore-preflight-errors", "all", "--advertise-address", "127.0.0.2"]
    r = run(root / "opt/kubeseed/kubeseed-runtime.pyz", *args, "--skip-phases", API_PHASES)
    assert r.returncode == 0, r.stdout + r.stderr
    return r


def vip_master_root(base: Path, vip: str, interface: str = "") -> Path:
    """`cluster create --virtual-ip`, cluster.yaml's controlPlane.virtualIPInterface set to ``interface`` (if any),
    and the master payload laid out under base/machine; returns the root."""
    r = kubeseed("cluster", "create", "demo", "--virtual-ip", vip, cwd=base)
    assert r.returncode == 0, r.stderr
    if interface:
        cfg = base / "demo/cluster.yaml"
        cfg.write_text(cfg.read_text() + f"  virtualIPInterface: {interface}\n")
    r = kubeseed("render", "master", "demo", "--hostname", MASTER, "-o", "master.yaml", cwd=base)
    assert r.returncode == 0, r.stderr
    lay_out(cloud_init_files((base / "master.yaml").read_bytes()), base / "machine")
    return base / "machine"


@pytest.fixture(scope="module")
def vip_master(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A master of a cluster with a virtual IP and its interface set, after init's file phases under --root."""
    root = vip_master_root(tmp_path_factory.mktemp("vip"), VIP, "eth1")
    init_files(root)
    return root


def test_manifest_is_kube_vips_documented_static_pod(vip_master: Path) -> None:
    pod = manifest(vip_master, "kube-vip")
    want = expected_pod("/etc/kubernetes/super-admin.conf")
    for key in ("apiVersion", "kind", "metadata", "status"):
        assert pod[key] == want[key], key
    assert set(pod["spec"]) == set(want["spec"])
    for key in ("hostAliases", "hostNetwork", "volumes"):
        assert pod["spec"][key] == want["spec"][key], key
    (got,), (container,) = pod["spec"]["containers"], want["spec"]["containers"]
    assert set(got) == set(container)
    for key in container:
        if key != "env":
            assert got[key] == container[key], key
    assert [e["name"] for e in got["env"]] == [e["name"] for e in container["env"]]  # kube-vip's order
    for have, expected in zip(got["env"], container["env"]):
        assert have == expected, expected["name"]
    assert pod == want
    text = (vip_master / MANIFESTS / "kube-vip.yaml").read_text()
    assert (vip_master / MANIFESTS / "kube-vip.yaml").stat().st_mode & 0o777 == 0o600  # as the other manifests
    assert "vip_cidr" not in text and "vip_address" not in text  # removed in v0.9.0 / deprecated


def test_manifest_validates_against_the_kubernetes_schema(vip_master: Path) -> None:
    validate = need_tool("kubernetes-validate", venv_tool("kubernetes-validate"), "pip install kubernetes-validate")
    path = vip_master / MANIFESTS / "kube-vip.yaml"
    r = subprocess.run([validate, "--strict", "-k", "1.35.0", str(path)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


def test_the_endpoint_everything_uses_is_the_virtual_ip(vip_master: Path) -> None:
    """kubeconfigs point at VIP:6443; the API server's certificate names the VIP and ``kubernetes`` (kube-vip
    connects to https://kubernetes:6443 through its host alias)."""
    from cryptography import x509

    for conf in ("admin.conf", "super-admin.conf", "kubelet.conf"):
        kubeconfig = yaml.safe_load((vip_master / "etc/kubernetes" / conf).read_text())
        assert kubeconfig["clusters"][0]["cluster"]["server"] == f"https://{VIP}:6443", conf
    cert = x509.load_pem_x509_certificate((vip_master / "etc/kubernetes/pki/apiserver.crt").read_bytes())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "kubernetes" in sans.get_values_for_type(x509.DNSName)
    assert VIP in {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)}


def test_no_virtual_ip_no_kube_vip(tmp_path: Path) -> None:
    root = make_master(tmp_path)
    r = init_files(root)
    pods = sorted(p.name for p in (root / MANIFESTS).iterdir())
    assert pods == ["etcd.yaml", "kube-apiserver.yaml", "kube-controller-manager.yaml", "kube-scheduler.yaml"]
    assert "kube-vip" not in r.stdout + r.stderr


def test_without_an_interface_under_root_kube_vip_picks_it(tmp_path: Path) -> None:
    """Under --root the machine's interfaces are not the target's: without virtualIPInterface, vip_interface is
    left out (kube-vip then takes the default route's interface) and init says so."""
    root = vip_master_root(tmp_path, "fd00::100")
    out = init_files(root)
    assert "--root: no vip_interface, kube-vip takes the default route's" in out.stdout
    env = {e["name"]: e.get("value") for e in manifest(root, "kube-vip")["spec"]["containers"][0]["env"]}
    assert "vip_interface" not in env
    assert (env["address"], env["vip_subnet"]) == ("fd00::100", "128")


def _ctx(command: str, version: str, root: str = "", interface: str = "", advertise: str = "") -> Context:
    """``command``'s context for a master of ``version`` with the virtual IP (under ``root`` if given)."""
    cfg = NodeConfig(
        role="master",
        cluster_name="demo",
        control_plane_endpoint=f"{VIP}:6443",
        kubernetes_version=version,
        advertise_address=advertise,
        virtual_ip=VIP,
        virtual_ip_interface=interface,
    )
    return Context(command, cfg, root, out=io.StringIO())


SUPPORTED = [f"v1.{minor}.0" for minor in range(MIN_MINOR, MAX_MINOR + 1)]


@pytest.mark.parametrize("version", SUPPORTED)
def test_first_master_mounts_super_admin_conf_a_joining_one_admin_conf(tmp_path: Path, version: str) -> None:
    """From kubeadm 1.29 admin.conf has no rights until init's upload-config binds kubeadm:cluster-admins, after
    the API answers at the virtual IP that kube-vip must hold first: the first master (init) mounts super-admin.conf;
    a master joining later (join --control-plane) admin.conf. Either is mounted where kube-vip reads admin.conf."""
    for command, conf in (("init", "super-admin.conf"), ("join", "admin.conf")):
        pod = kube_vip_pod(_ctx(command, version, str(tmp_path), interface="eth1"))
        assert pod == expected_pod(f"/etc/kubernetes/{conf}"), command


def test_every_supported_version_has_super_admin_conf() -> None:
    """kubeadm writes super-admin.conf and binds admin.conf late from v1.29; kubevip.kubeconfig relies on every
    version kubeseed supports being that recent. Lowering MIN_MINOR below 29 must bring back admin.conf there."""
    assert MIN_MINOR >= 29


def test_a_mirror_serves_kube_vip_too(tmp_path: Path) -> None:
    ctx = _ctx("init", SUPPORTED[-1], str(tmp_path), interface="eth1")
    assert ctx.config is not None
    ctx.config.image_repository = "mirror.local:5000/k8s"
    image = kube_vip_pod(ctx)["spec"]["containers"][0]["image"]
    assert image == "mirror.local:5000/k8s/kube-vip:v1.2.3"


def _ip_addr() -> set[tuple[str, str]]:
    """(interface, address/prefix) of every address as iproute2's `ip -o addr show` prints them."""
    ip = need_tool("ip", None, "apt-get install iproute2")
    out = subprocess.run([ip, "-o", "addr", "show"], capture_output=True, text=True, check=True).stdout
    found = set()
    for line in out.splitlines():
        m = re.match(r"\d+: (\S+?)(@\S+)?\s+inet6? (\S+)", line)
        assert m, line
        found.add((m[1], m[3]))
    return found


def test_each_address_is_on_the_interface_ip_addr_names() -> None:
    """interface_of asks the kernel as iproute2 does: for every address `ip -o addr` lists, the same interface and
    prefix length (secondary and IPv6 ones too); for an address no interface holds, none."""
    listed = _ip_addr()
    assert ("lo", "127.0.0.1/8") in listed
    for name, address in listed:
        ip, prefix = address.split("/")
        assert interface_of(ipaddress.ip_address(ip)) == (name, int(prefix)), address
    assert interface_of(ipaddress.ip_address("203.0.113.77")) == ("", 0)


def test_the_interface_is_the_advertise_addresss_on_this_machine() -> None:
    """Not under --root: the interface holding the advertise address (here the loopback's, with a warning that the
    virtual IP is outside its network); an address on no interface is an error that says how to fix it."""
    ctx = _ctx("init", SUPPORTED[-1], advertise="127.0.0.1")
    assert vip_interface(ctx) == "lo"
    assert isinstance(ctx.out, io.StringIO)
    assert "warning: the virtual IP is outside lo's network 127.0.0.1/8" in ctx.out.getvalue()
    with pytest.raises(
        PhaseError, match="203.0.113.77 is on no interface here: .* set controlPlane.virtualIPInterface"
    ):
        vip_interface(_ctx("init", SUPPORTED[-1], advertise="203.0.113.77"))
    assert vip_interface(_ctx("init", SUPPORTED[-1], interface="bond0")) == "bond0"  # the setting wins
