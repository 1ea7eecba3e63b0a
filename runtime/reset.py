"""``reset``: what ``kubeadm reset`` does, on a master or a node: stop the kubelet, remove the pods' containers,
unmount and empty the kubelet's directory, remove the static pods' manifests, the PKI, the kubeconfigs, etcd's
data and kubeseed's own state and timer; then say what it leaves (CNI configuration, iptables and IPVS rules,
kubeconfigs in home directories), as kubeadm does. The payload's files stay (/opt/kubeseed, /etc/kubeseed), so
``init`` or ``join`` can run again. Idempotent: a second run finds nothing and says so."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from typing import Any, List

from .workflow import Context, PhaseError, confine

# what init and join write, and kubeadm's reset removes; a directory's contents go, the directory stays
EMPTIED = ("/etc/kubernetes/manifests", "/var/lib/kubelet", "/var/lib/etcd")
REMOVED = (
    "/etc/kubernetes/pki",
    "/etc/kubernetes/admin.conf",
    "/etc/kubernetes/super-admin.conf",
    "/etc/kubernetes/kubelet.conf",
    "/etc/kubernetes/bootstrap-kubelet.conf",
    "/etc/kubernetes/controller-manager.conf",
    "/etc/kubernetes/scheduler.conf",
    "/etc/kubernetes/tmp",
    "/etc/systemd/system/kubelet.service.d/10-kubeadm.conf",
    "/etc/systemd/system/kubeseed-certs.service",
    "/etc/systemd/system/kubeseed-certs.timer",
    "/var/lib/kubeseed",
    "/var/log/kubeseed.log",
)
ROOT_KUBECONFIG = "/root/.kube/config"  # init's copy of admin.conf for root's kubectl
LEFT = """The reset process does not clean CNI configuration. To do so, you must remove /etc/cni/net.d
The reset process does not reset or clean up iptables rules or IPVS tables.
If you wish to reset iptables, you must do so manually by using the "iptables" command.
If your cluster was setup to utilize IPVS, run ipvsadm --clear (or similar) to reset your system's IPVS tables.
The reset process does not clean your kubeconfig files and you must remove them manually.
Please, check the contents of the $HOME/.kube/config file."""


def add_parser(sub: Any) -> None:
    r = sub.add_parser(
        "reset",
        help="undo init or join on this machine, as kubeadm reset (asks first unless -f)",
        description="Stop the kubelet, remove the pods' containers, and remove what init or join wrote (static pod "
        "manifests, PKI, kubeconfigs, kubelet and etcd data, kubeseed's state); the payload's files stay, so init "
        "or join can run again.",
    )
    r.add_argument("--root", default="", metavar="DIR", help="read and write every path inside DIR")
    r.add_argument("-f", "--force", action="store_true", help="reset without asking")
    r.add_argument("-v", "--verbose", action="store_true", help="print the traceback of an unexpected error")


def run(args: argparse.Namespace) -> int:
    ctx = Context("reset", None, args.root, verbose=args.verbose)
    if not args.force:
        if not sys.stdin.isatty():
            raise PhaseError("reset asks before it removes anything, and there is no terminal to ask on: pass -f")
        where = f" under {args.root}" if args.root else ""
        ctx.say(f"[reset] WARNING: changes made to this host by 'init' or 'join' will be reverted{where}.")
        if input("[reset] Are you sure you want to proceed? [y/N]: ").strip().lower() not in ("y", "yes"):
            ctx.say("[reset] aborted: nothing was changed")
            return 1
    reset(ctx)
    return 0


def _systemctl(ctx: Context, *args: str) -> None:
    """systemctl ARGS; a failure is a warning: reset goes on with what it can do."""
    from .kubelet import systemctl

    try:
        r = systemctl(*args, timeout=120)
    except PhaseError as e:
        ctx.say(f"[reset] WARNING: {e}")
        return
    if r.returncode != 0 and "not loaded" not in r.stderr and "does not exist" not in r.stderr:
        ctx.say(f"[reset] WARNING: systemctl {' '.join(args)}: {r.stderr.strip()}")


def _remove_containers(ctx: Context) -> None:
    """kubeadm's: every pod sandbox the CRI runtime has, stopped and removed (crictl), so nothing keeps running."""
    crictl = shutil.which("crictl")
    if not crictl:
        ctx.say("[reset] WARNING: no crictl here: stop and remove the pods' containers with your container runtime")
        return
    try:
        r = subprocess.run((crictl, "rmp", "--all", "--force"), capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.SubprocessError) as e:
        ctx.say(f"[reset] WARNING: crictl rmp --all --force failed: {e}")
        return
    if r.returncode != 0:
        ctx.say(f"[reset] WARNING: crictl rmp --all --force: {r.stderr.strip()}")


def _unmount_kubelet(ctx: Context) -> None:
    """Unmount what pods mounted under /var/lib/kubelet, deepest first, before its contents are removed."""
    try:
        with open("/proc/mounts") as f:
            points = [line.split()[1] for line in f if len(line.split()) > 1]
    except OSError:
        return
    for point in sorted((p for p in points if p.startswith("/var/lib/kubelet/")), key=len, reverse=True):
        r = subprocess.run(("umount", point), capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            raise PhaseError(f"cannot unmount {point} ({r.stderr.strip()}); unmount it, then run reset again")


def _remove(path: str) -> bool:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
        return True
    if os.path.lexists(path):
        os.unlink(path)
        return True
    return False


def leave_etcd(ctx: Context) -> None:
    """On a master with stacked etcd and other members: remove this machine's member first, as kubeadm's reset does,
    so the others keep their quorum without it (etcd itself refuses a removal that would lose it). When etcd does
    not answer or refuses, say how to remove the member from another master, and go on (kubeadm's warning)."""
    from .etcd import Etcd, local_flags

    flags = local_flags(ctx)
    if not flags:
        return
    name, peer = flags.get("name", ""), flags.get("initial-advertise-peer-urls", "")
    try:
        quick = Context("reset", None, ctx.root, out=ctx.out, timeout=5)
        etcd = Etcd(quick, flags.get("advertise-client-urls", "").split(","))
        members = etcd.members()
        mine = [m for m in members if m["name"] == name or peer in m["peerURLs"]]
        if not mine or len(members) == 1:
            ctx.say("[reset] etcd: this master's member is its cluster's only one; its data goes with /var/lib/etcd")
            return
        etcd.remove(mine[0]["ID"])
        ctx.say(f"[reset] Removed etcd member {name}: {len(members) - 1} member(s) remain")
    except PhaseError as e:
        ctx.say(
            f"[reset] WARNING: could not remove etcd member {name} ({e}). If other masters remain, remove it from "
            f"one of them: kubeseed-runtime remove-control-plane {name}"
        )


def reset(ctx: Context) -> List[str]:
    """Undo init or join under ctx.root; the paths removed (or emptied)."""
    leave_etcd(ctx)
    if ctx.root:
        ctx.say(
            "[reset] --root: not stopping services or containers; a machine would stop the kubelet, disable "
            "kubeseed-certs.timer and remove the pods' containers (crictl rmp --all --force)"
        )
    else:
        ctx.say("[reset] Stopping the kubelet service")
        _systemctl(ctx, "disable", "--now", "kubeseed-certs.timer")
        _systemctl(ctx, "stop", "kubelet")
        _remove_containers(ctx)
        _unmount_kubelet(ctx)
    done = []
    admin = ctx.path("/etc/kubernetes/admin.conf")
    root_kubeconfig = confine(ctx.path(ROOT_KUBECONFIG))
    if os.path.isfile(admin) and os.path.isfile(root_kubeconfig):
        with open(admin, "rb") as a, open(root_kubeconfig, "rb") as r:
            if a.read() == r.read():  # init's copy; one the user changed stays
                os.unlink(root_kubeconfig)
                done.append(ROOT_KUBECONFIG)
    for directory in EMPTIED:
        path = ctx.path(directory)
        if os.path.isdir(confine(path)):
            for entry in sorted(os.listdir(path)):
                _remove(os.path.join(path, entry))
                done.append(f"{directory}/{entry}")
    for path in REMOVED:
        if _remove(confine(ctx.path(path))):
            done.append(path)
    if not ctx.root and any(p.startswith("/etc/systemd/") for p in done):
        _systemctl(ctx, "daemon-reload")
    ctx.say(f"[reset] Deleted {', '.join(done)}" if done else "[reset] nothing of init or join was left to delete")
    ctx.say(*LEFT.split("\n"))
    return done
