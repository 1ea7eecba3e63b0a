"""``certs check-expiration`` and ``certs renew`` on a control-plane machine, as kubeadm's (same names, same
table), and the systemd timer init installs so that the control plane's certificates never lapse: every day it
renews those with less than RENEW_WITHIN days left. Renewal signs a new certificate for the same subject, names,
usages and key (kubeadm's renewal keeps them too) with the CA under /etc/kubernetes/pki, so a kubeadm-made master
renews as well; the CAs themselves are not renewed."""

from __future__ import annotations

import argparse
import base64
import datetime
import os
from typing import Any, Dict, List, NamedTuple, Optional, Tuple

from ..config import ConfigError
from ..kubeconfig import b64
from ..workflow import Context, PhaseError, write_atomic
from .controlplane import MANIFESTS, PKI, read

RENEW_WITHIN = 30  # days: what the timer renews
TIMER = "kubeseed-certs.timer"
UNITS = "/etc/systemd/system"
SERVICE_TEXT = """[Unit]
Description=kubeseed: renew the control-plane certificates that expire within {days} days
ConditionPathExists=/etc/kubernetes/pki/ca.key

[Service]
Type=oneshot
ExecStart=/usr/bin/env python3 /opt/kubeseed/kubeseed-runtime.pyz certs renew all --expiring-within {days}
"""
TIMER_TEXT = """[Unit]
Description=kubeseed: check the control-plane certificates every day

[Timer]
OnCalendar=daily
RandomizedDelaySec=1h
Persistent=true

[Install]
WantedBy=timers.target
"""
RESTARTED = "kubeseed.io/certificates-renewed"  # pod annotation: the kubelet restarts a static pod whose file changes


class Cert(NamedTuple):
    """One certificate kubeadm's renewal manager knows: a file pair under PKI, or a kubeconfig's client cert."""

    name: str  # kubeadm's name (certs renew NAME)
    ca: str  # kubeadm's CA name
    path: str  # PKI/<file>.crt, or /etc/kubernetes/<name> for a kubeconfig


CERTS = sorted(
    [
        Cert("apiserver", "ca", f"{PKI}/apiserver.crt"),
        Cert("apiserver-kubelet-client", "ca", f"{PKI}/apiserver-kubelet-client.crt"),
        Cert("front-proxy-client", "front-proxy-ca", f"{PKI}/front-proxy-client.crt"),
        Cert("etcd-server", "etcd-ca", f"{PKI}/etcd/server.crt"),
        Cert("etcd-peer", "etcd-ca", f"{PKI}/etcd/peer.crt"),
        Cert("etcd-healthcheck-client", "etcd-ca", f"{PKI}/etcd/healthcheck-client.crt"),
        Cert("apiserver-etcd-client", "etcd-ca", f"{PKI}/apiserver-etcd-client.crt"),
        Cert("admin.conf", "ca", "/etc/kubernetes/admin.conf"),
        Cert("super-admin.conf", "ca", "/etc/kubernetes/super-admin.conf"),
        Cert("controller-manager.conf", "ca", "/etc/kubernetes/controller-manager.conf"),
        Cert("scheduler.conf", "ca", "/etc/kubernetes/scheduler.conf"),
    ]
)
CAS = {"ca": f"{PKI}/ca", "etcd-ca": f"{PKI}/etcd/ca", "front-proxy-ca": f"{PKI}/front-proxy-ca"}
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")  # what loads these at start


def add_parser(sub: Any) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--root", default="", metavar="DIR", help="read and write every path inside DIR")
    common.add_argument("-v", "--verbose", action="store_true", help="print the traceback of an unexpected error")
    c = sub.add_parser("certs", help="a control plane's certificates: check-expiration, renew (as kubeadm certs)")
    actions = c.add_subparsers(dest="action", metavar="ACTION", required=True)
    actions.add_parser(
        "check-expiration",
        parents=[common],
        help="when each control-plane certificate and CA expires, and the renewal timer's next run",
    )
    r = actions.add_parser(
        "renew",
        parents=[common],
        help="sign the control-plane certificates again for a year (same key, subject, names, usages)",
        description="Renew with the CAs under /etc/kubernetes/pki, then restart the control-plane static pods "
        "(etcd, kube-apiserver, kube-controller-manager, kube-scheduler) so they load the new certificates.",
    )
    r.add_argument("name", metavar="all|NAME", choices=["all"] + [c.name for c in CERTS], help="what to renew")
    r.add_argument(
        "--expiring-within",
        type=int,
        metavar="DAYS",
        help="renew only certificates with fewer than DAYS days left (what the daily timer runs, with 30)",
    )
    r.add_argument("--new-key", action="store_true", help="make a new key for each (default: keep the key)")


def run(args: argparse.Namespace) -> int:
    ctx = Context("certs", None, args.root, verbose=args.verbose)
    if not os.path.exists(ctx.path(f"{PKI}/ca.crt")):
        raise PhaseError(
            f"{PKI}/ca.crt does not exist: this is not a control-plane machine (a node's kubelet renews its own "
            "certificate)"
        )
    if args.action == "renew" and args.expiring_within is not None and args.expiring_within < 1:
        raise ConfigError("--expiring-within", f"must be a number of days of at least 1, not {args.expiring_within}")
    if args.action == "check-expiration":
        check_expiration(ctx)
        return 0
    renew(ctx, args.name, args.expiring_within, args.new_key)
    return 0


def not_after(cert: Any) -> datetime.datetime:
    from ..pki import not_after  # cryptography only when a certificate is read: --help needs none

    return not_after(cert)


def _load(ctx: Context, c: Cert) -> Optional[Tuple[Any, bytes, Dict[str, Any]]]:
    """(certificate, key PEM, kubeconfig document or {}) of ``c``, None if missing."""
    import yaml

    from .. import pki

    data = read(ctx.path(c.path))
    if data is None:
        return None
    if c.path.endswith(".crt"):
        key = read(ctx.path(c.path[: -len(".crt")] + ".key"))
        if key is None:
            raise PhaseError(f"{c.path[:-4]}.key is missing: {c.name} cannot be renewed without its key")
        return pki.load_cert(data), key, {}
    try:
        doc = yaml.safe_load(data)
        user = doc["users"][0]["user"]
        cert_pem, key_pem = (base64.b64decode(user[k]) for k in ("client-certificate-data", "client-key-data"))
        return pki.load_cert(cert_pem), key_pem, doc
    except Exception as e:  # not YAML, or no embedded client certificate
        raise PhaseError(f"{c.path} holds no client certificate kubeseed can renew ({type(e).__name__})") from None


def _residual(left: datetime.timedelta) -> str:
    """kubeadm's (k8s.io/apimachinery duration.ShortHumanDuration) rendering of the time left."""
    seconds = int(left.total_seconds())
    if seconds < -1:
        return "<invalid>"
    if seconds < 0:
        return "0s"
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m"
    if seconds < 86400:
        return f"{seconds // 3600}h"
    if seconds < 86400 * 365:
        return f"{seconds // 86400}d"
    return f"{seconds // (86400 * 365)}y"


def _table(rows: List[List[str]]) -> List[str]:
    """Go's tabwriter as kubeadm sets it up (minimum width 10, padding 3, spaces): each column as wide as its
    widest cell plus 3; the last column is not padded."""
    widths = [max(max(len(r[i]) for r in rows if i < len(r) - 1), 7) + 3 for i in range(len(rows[0]) - 1)]
    return ["".join(cell.ljust(w) for cell, w in zip(r, widths)) + r[-1] for r in rows]


def _expires(when: datetime.datetime) -> str:
    return when.astimezone(datetime.timezone.utc).strftime("%b %d, %Y %H:%M UTC")


def check_expiration(ctx: Context, now: Optional[datetime.datetime] = None) -> None:
    """kubeadm's table: certificate, expires, residual time, CA, externally managed (a CA without its key here);
    then the CAs; then when the renewal timer runs next."""
    from .. import pki

    now = now or datetime.datetime.now(datetime.timezone.utc)
    rows = [["CERTIFICATE", "EXPIRES", "RESIDUAL TIME", "CERTIFICATE AUTHORITY", "EXTERNALLY MANAGED"]]
    for c in CERTS:
        found = _load(ctx, c)
        if found is None:
            rows.append([f"!MISSING! {c.name}", "", "", "", ""])
            continue
        until = not_after(found[0])
        external = "no" if read(ctx.path(CAS[c.ca] + ".key")) else "yes"
        rows.append([c.name, _expires(until), _residual(until - now), c.ca, external])
    cas = [["CERTIFICATE AUTHORITY", "EXPIRES", "RESIDUAL TIME", "EXTERNALLY MANAGED"]]
    for name, base in sorted(CAS.items()):
        data = read(ctx.path(base + ".crt"))
        if data is None:
            cas.append([f"!MISSING! {name}", "", "", ""])
            continue
        until = not_after(pki.load_cert(data))
        cas.append([name, _expires(until), _residual(until - now), "no" if read(ctx.path(base + ".key")) else "yes"])
    ctx.say(*_table(rows), "", *_table(cas), "", timer_status(ctx))


def timer_status(ctx: Context) -> str:
    """One line: whether the renewal timer is installed, and when it runs next."""
    if not os.path.exists(ctx.path(f"{UNITS}/{TIMER}")):
        return f"Renewal timer: not installed ({UNITS}/{TIMER}); certificates are renewed only by hand"
    if ctx.root:
        return f"Renewal timer: {TIMER} installed (--root: not asking systemd when it runs next)"
    from ..kubelet import systemctl

    try:
        r = systemctl("show", TIMER, "--property=ActiveState,NextElapseUSecRealtime", timeout=30)
        props = dict(line.split("=", 1) for line in r.stdout.splitlines() if "=" in line)
    except PhaseError:
        props = {}
    if props.get("ActiveState") != "active":
        state = props.get("ActiveState") or "unknown"
        return f"Renewal timer: {TIMER} is {state}; enable it: systemctl enable --now {TIMER}"
    return (
        f"Renewal timer: {TIMER} renews what expires within {RENEW_WITHIN} days; next run "
        f"{props.get('NextElapseUSecRealtime') or 'not scheduled'}"
    )


def renew(
    ctx: Context,
    name: str,
    within: Optional[int] = None,
    new_key: bool = False,
    now: Optional[datetime.datetime] = None,
    restart: bool = True,
) -> List[str]:
    """Renew ``name`` (or all), only those with fewer than ``within`` days left when given; restart the static
    pods when any was renewed (unless ``restart`` is False: upgrade replaces them anyway). The names renewed."""
    from .. import pki
    from ..keys import key_pem, load_key
    from ..keys import new_key as make_key

    now = now or datetime.datetime.now(datetime.timezone.utc)
    renewed = []
    for c in CERTS:
        if name not in ("all", c.name):
            continue
        found = _load(ctx, c)
        if found is None:
            if name == c.name:
                raise PhaseError(f"{c.path} does not exist: nothing to renew")
            continue
        old, key_data, doc = found
        if within is not None and not_after(old) - now >= datetime.timedelta(days=within):
            continue
        ca_cert_pem, ca_key_pem = (read(ctx.path(CAS[c.ca] + ext)) for ext in (".crt", ".key"))
        if ca_cert_pem is None or ca_key_pem is None:
            raise PhaseError(
                f"{CAS[c.ca]}.key is not on this machine (an externally managed CA): renew {c.name} with that CA"
            )
        ca_key = load_key(ca_key_pem)
        key = load_key(key_data)
        if new_key:
            key = make_key(_algorithm(key))
        cert = _resign(old, pki.load_cert(ca_cert_pem), ca_key, key.public_key(), now)
        if doc:
            doc["users"][0]["user"].update(
                {"client-certificate-data": b64(pki.cert_pem(cert)), "client-key-data": b64(key_pem(key))}
            )
            _write_kubeconfig(ctx, c, doc)
        else:
            if new_key:
                write_atomic(ctx.path(c.path[: -len(".crt")] + ".key"), key_pem(key), 0o600)
            write_atomic(ctx.path(c.path), pki.cert_pem(cert), 0o644)
        renewed.append(c.name)
        ctx.say(f"[renew] {c.name} renewed, valid until {_expires(not_after(cert))}")
    if not renewed:
        ctx.say(f"[renew] nothing expires within {within} days" if within is not None else "[renew] nothing to renew")
        return renewed
    if restart:
        restart_static_pods(ctx, now)
    return renewed


def _algorithm(key: Any) -> str:
    from cryptography.hazmat.primitives.asymmetric import ec

    if isinstance(key, ec.EllipticCurvePrivateKey):
        return "ECDSA-P384" if key.curve.key_size > 256 else "ECDSA-P256"
    return f"RSA-{key.key_size}"


def _resign(old: Any, ca: Any, ca_key: Any, public_key: Any, now: datetime.datetime) -> Any:
    """``old``'s subject, names and usages, for another year (not past the CA), signed by ``ca_key``."""
    from cryptography import x509

    from ..pki import BACKDATE, LEAF_DAYS, signing_hash

    b = (
        x509.CertificateBuilder()
        .subject_name(old.subject)
        .issuer_name(ca.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(min(now + datetime.timedelta(days=LEAF_DAYS), not_after(ca)))
    )
    for ext in old.extensions:
        if ext.oid == x509.oid.ExtensionOID.AUTHORITY_KEY_IDENTIFIER:
            continue
        if ext.oid == x509.oid.ExtensionOID.SUBJECT_KEY_IDENTIFIER:
            continue
        b = b.add_extension(ext.value, ext.critical)
    b = b.add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
    return b.sign(ca_key, signing_hash(ca_key))


def _write_kubeconfig(ctx: Context, c: Cert, doc: Dict[str, Any]) -> None:
    """The kubeconfig with its new certificate; admin.conf's copy for root's kubectl too, when it is one."""
    import yaml

    before = read(ctx.path(c.path))
    text = yaml.safe_dump(doc, sort_keys=False)
    write_atomic(ctx.path(c.path), text, 0o600)
    root_config = ctx.path("/root/.kube/config")
    if c.name == "admin.conf" and read(root_config) == before:
        write_atomic(root_config, text, 0o600)


def restart_static_pods(ctx: Context, now: datetime.datetime) -> None:
    """Make the kubelet restart the control-plane static pods, so they load the renewed certificates: stamp
    each manifest with the renewal time (the kubelet restarts a static pod whose file changed)."""
    import yaml

    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    done = []
    for component in COMPONENTS:
        path = ctx.path(f"{MANIFESTS}/{component}.yaml")
        data = read(path)
        if data is None:
            continue
        pod = yaml.safe_load(data)
        if not isinstance(pod, dict) or not isinstance(pod.get("metadata"), dict):
            raise PhaseError(f"{MANIFESTS}/{component}.yaml is not a pod manifest; restart {component} by hand")
        pod["metadata"].setdefault("annotations", {})[RESTARTED] = stamp
        write_atomic(path, yaml.safe_dump(pod), 0o600)  # as the control-plane phases write it
        done.append(component)
    if done:
        ctx.say(f"[renew] the kubelet restarts {', '.join(done)} to load the new certificates")


def install_timer(ctx: Context) -> None:
    """init's certs-timer phase: kubeseed-certs.service and .timer, enabled (under --root: written only)."""
    write_atomic(ctx.path(f"{UNITS}/kubeseed-certs.service"), SERVICE_TEXT.format(days=RENEW_WITHIN), 0o644)
    write_atomic(ctx.path(f"{UNITS}/{TIMER}"), TIMER_TEXT, 0o644)
    steps = (("daemon-reload",), ("enable", "--now", TIMER))
    if ctx.root:
        ctx.say("\t--root: not starting services; a machine would run systemctl daemon-reload, enable --now " + TIMER)
        return
    from ..kubelet import systemctl

    for step in steps:
        r = systemctl(*step)
        if r.returncode != 0:
            raise PhaseError(f"systemctl {' '.join(step)}: {r.stderr.strip()}")
    ctx.say(f"\t{TIMER} renews the control-plane certificates that expire within {RENEW_WITHIN} days, daily")


def status(ctx: Context) -> None:
    """What ``status`` adds on a control-plane machine: when its certificates are renewed next."""
    if os.path.exists(ctx.path(f"{PKI}/ca.crt")):
        ctx.say(timer_status(ctx))
