"""The master role: ``init`` (kubeadm's init phases), the checks only a control-plane machine needs, and the
node-config fields only a master's payload carries (the CA and service-account keys, tokens, add-ons, the virtual
IP)."""

from __future__ import annotations

import datetime
import ipaddress
import posixpath
import re
from typing import TYPE_CHECKING, Any, Dict, List

from ..config import CONTROL, ConfigError, Doc, NodeConfig, check, split_endpoint
from ..preflight import Env, dir_available, file_available, port
from ..tokens import parse_token
from ..workflow import Context, Phase, write_atomic
from . import kubevip
from .controlplane import ADDON_DIR, MANIFESTS, PKI_FILES, host_port
from .versions import ControlPlaneVersion

if TYPE_CHECKING:
    from ..preflight import Check


def phases() -> List[Phase]:
    from . import addons, apiphases, certcmd, certs, kubeconfigs, staticpods

    return [
        Phase("certs", "Generating certificates", certs.certs),
        Phase("kubeconfig", "Writing kubeconfig files", kubeconfigs.kubeconfigs),
        Phase("etcd", "Writing the etcd static pod", staticpods.etcd_phase),
        Phase("control-plane", "Writing the control-plane static pods", staticpods.control_plane_phase),
        Phase("kubelet-start", "Starting the kubelet", kubelet_start),
        Phase("wait-control-plane", "Waiting for the control plane", apiphases.wait_control_plane),
        Phase("upload-config", "Uploading the configuration", apiphases.upload_config),
        Phase("upload-certs", "Uploading the certificates for kubeadm's control-plane joins", upload_certs),
        Phase("mark-control-plane", "Marking the control-plane node", apiphases.mark_control_plane),
        Phase("bootstrap-token", "Configuring bootstrap tokens", apiphases.bootstrap_token),
        Phase(
            "kubelet-finalize", "Pointing kubelet.conf at the rotated client certificate", kubeconfigs.kubelet_finalize
        ),
        Phase("addon", "Installing add-ons", addons.addon),
        Phase("certs-timer", "Installing the certificate renewal timer", certcmd.install_timer),
        Phase("show-join-command", "Printing the join command", apiphases.show_join_command),
    ]


def upload_certs(ctx: Context) -> None:
    """kubeadm's upload-certs, when asked (--upload-certs, or uploadCerts in the node config): the CA and SA keys
    in kube-system/kubeadm-certs, encrypted with the certificate key, for 2 hours, so that `kubeadm join
    --control-plane --certificate-key KEY` can join. A kubeseed master's join payload carries the keys instead."""
    from . import copycerts
    from .controlplane import CERTIFICATE_KEY, config, read

    cfg = config(ctx)
    if not cfg.upload_certs:
        ctx.say("\tnot asked (init --upload-certs); kubeseed's join payloads carry the keys, kubeadm's joins need it")
        return
    path = ctx.path(CERTIFICATE_KEY)
    key = cfg.certificate_key or (read(path) or b"").decode().strip() or copycerts.certificate_key()
    write_atomic(path, key + "\n", 0o600)  # for show-join-command, and a later upload with the same key
    copycerts.upload_certs(ctx, key)
    ctx.say(f"\t[upload-certs] the certificate key is in {CERTIFICATE_KEY} (show-join-command prints it)")


def kubelet_start(ctx: Context) -> None:
    """The same kubelet configuration as a node's, then start it: it runs the static pods."""
    from ..kubelet import config_phase, start_phase

    config_phase(ctx)
    start_phase(ctx)


def checks() -> List[Check]:
    """kubeadm's CPU and memory minimums, the control-plane ports, a clean slate."""

    def cpus(env: Env) -> list:
        n = env.cpus()
        return [("error", f"the number of available CPUs {n} is less than the required 2")] if n < 2 else []

    def memory(env: Env) -> list:
        m = re.search(r"MemTotal:\s+(\d+) kB", env.read("/proc/meminfo") or "")
        mb = int(m.group(1)) // 1024 if m else 0
        return [("error", f"the system RAM ({mb} MB) is less than the minimum 1700 MB")] if mb < 1700 else []

    pods = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "etcd")
    return (
        [("NumCPU", cpus), ("Mem", memory)]
        + [port(p) for p in (6443, 10259, 10257, 2379, 2380)]
        + [file_available(f"{MANIFESTS}/{c}.yaml") for c in pods]
        + [dir_available("/var/lib/etcd")]
    )


def parse_fields(d: Doc, cfg: NodeConfig) -> None:
    """The master's part of the node config: the CA and SA keys, bootstrap tokens, add-on paths, and the API
    server's address on this machine (--advertise-address sets it)."""
    why = ControlPlaneVersion(cfg.kubernetes_version).key_algorithm_error
    check(cfg.key_algorithm != "ECDSA-P384" or not why, "keyAlgorithm", f"ECDSA-P384 needs v1.34 or later: {why}")
    cfg.certificate_key = d.get("certificateKey", str, "")
    check(
        not cfg.certificate_key or bool(re.fullmatch("[0-9a-fA-F]{64}", cfg.certificate_key)),
        "certificateKey",
        "must be 64 hexadecimal characters (32 bytes), as `kubeadm certs certificate-key` prints one",
    )
    # a control-plane join with --certificate-key takes the keys from kubeadm-certs: none in the config then
    pki: Any = d.get("pki", dict, {} if cfg.certificate_key and "discovery" in d.data else None, required=True)
    if pki:
        for f in PKI_FILES:
            check(isinstance(pki.get(f), str) and "-----BEGIN" in pki[f], f"pki.{f}", "must hold a PEM block")
        check(set(pki) <= set(PKI_FILES), "pki", f"unknown files {sorted(set(pki) - set(PKI_FILES))}")
        _check_pki(pki)
    cfg.pki = pki
    tokens = d.get("bootstrapTokens", list, [])
    cfg.bootstrap_tokens = [_token(Doc(t, f"bootstrapTokens[{i}]", TOKEN_FIELDS)) for i, t in enumerate(tokens)]
    addons = d.get("addons", list, [])
    for i, a in enumerate(addons):
        check(
            isinstance(a, str)
            and a.startswith(ADDON_DIR + "/")
            and posixpath.normpath(a) == a
            and not CONTROL.search(a),
            f"addons[{i}]",
            f'must be a file in {ADDON_DIR}/ (an absolute, normalized path: no "..", "//" or "./"), found {a!r}',
        )
    cfg.addons = addons
    cfg.advertise_address = d.get("advertiseAddress", str, "")
    if cfg.advertise_address:
        try:
            ipaddress.ip_address(cfg.advertise_address)
        except ValueError:
            raise ConfigError("advertiseAddress", f'"{cfg.advertise_address}" is not an IP address') from None
    _virtual_ip(d, cfg)
    cfg.upload_certs = d.get("uploadCerts", bool, False)


def _virtual_ip(d: Doc, cfg: NodeConfig) -> None:
    """The control plane's virtual IP that kube-vip holds (init/kubevip.py): the endpoint is that address, port 6443
    (the generator's cluster model says more about what is wrong; these checks keep the runtime from writing a
    kube-vip manifest that cannot work)."""
    vip = cfg.virtual_ip = d.get("virtualIP", str, "")
    iface = cfg.virtual_ip_interface = d.get("virtualIPInterface", str, "")
    if vip:
        try:
            ip = ipaddress.ip_address(vip)
        except ValueError:
            raise ConfigError("virtualIP", f'"{vip}" is not an IP address') from None
        host, port = split_endpoint(cfg.control_plane_endpoint)
        try:
            same = ipaddress.ip_address(host) == ip and port == kubevip.API_PORT
        except ValueError:  # a DNS name
            same = False
        want = host_port(str(ip), kubevip.API_PORT)
        check(same, "controlPlaneEndpoint", f'must be the virtual IP at the API server\'s port, "{want}"')
    check(
        not iface or bool(vip and kubevip.INTERFACE.fullmatch(iface)),
        "virtualIPInterface",
        f'"{iface}" must be a network interface name (e.g. eth0), with virtualIP',
    )


TOKEN_FIELDS = ("token", "description", "expires", "usages", "groups")
RFC3339 = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)")
GROUP = re.compile(r"system:bootstrappers:[a-z0-9:-]{0,255}[a-z0-9]")  # kubeadm's BootstrapGroupPattern


def _token(t: Doc) -> Dict[str, Any]:
    """One bootstrap token as the API phases use it; ``expires`` normalized to UTC (``...Z``), so that comparing
    it with the time as text tells whether it expired."""
    try:
        parse_token(t.get("token", str, ""))
    except ValueError as e:
        raise ConfigError(t.at("token"), str(e)) from None
    t.get("description", str)  # a string, if given
    expires = t.data.get("expires")
    out = dict(t.data)
    if expires is not None:
        m = RFC3339.fullmatch(expires) if isinstance(expires, str) else None
        try:
            when = datetime.datetime.strptime(m[1] + m[3], "%Y-%m-%dT%H:%M:%S%z") if m else None
        except ValueError:  # no such date or time
            when = None
        if not when:
            raise ConfigError(t.at("expires"), f'{expires!r} is not an RFC 3339 time such as "2030-01-31T12:00:00Z"')
        out["expires"] = when.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    usages = t.get("usages", list, [])
    check(
        all(u in ("signing", "authentication") for u in usages),
        t.at("usages"),
        'each usage must be "signing" or "authentication"',
    )
    groups = t.get("groups", list, [])
    check(
        all(isinstance(g, str) and GROUP.fullmatch(g) for g in groups),
        t.at("groups"),
        "each group must match system:bootstrappers:[a-z0-9:-]*[a-z0-9]",
    )
    return out


def _check_pki(pki: Dict[str, str]) -> None:
    """Each pki entry must load as what its name says (certificate, private key, public key) and each key must
    belong to its certificate: caught here, not as a traceback in the certs phase."""
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization
    except ImportError:  # preflight says how to install it
        return
    from ..keys import load_key, spki

    loaded: Dict[str, Any] = {}
    for f in PKI_FILES:
        load: Any = load_key
        kind = "ECDSA or RSA private key without a password"
        if f.endswith(".crt"):
            load, kind = x509.load_pem_x509_certificate, "certificate"
        elif f.endswith(".pub"):
            load, kind = serialization.load_pem_public_key, "public key"
        try:
            loaded[f] = load(pki[f].encode())
        except Exception:  # whatever cryptography raises for data it cannot load
            raise ConfigError(f"pki.{f}", f"is not a PEM {kind}; render the payload again") from None
    for key in ("ca.key", "etcd/ca.key", "front-proxy-ca.key", "sa.key"):
        pub = key[:-4] + (".pub" if key == "sa.key" else ".crt")
        check(spki(loaded[key]) == spki(loaded[pub]), f"pki.{key}", f"is not the key of pki.{pub}")


FIELDS = ("pki", "bootstrapTokens", "addons", "advertiseAddress", "virtualIP", "virtualIPInterface")
CONFIG = (FIELDS + ("uploadCerts", "certificateKey"), parse_fields)
DONE = ""  # show-join-command says it all
