"""upgrade's phases before the kubelet's: pre-flight checks, the control-plane static pods one at a time (the etcd
data and each old manifest backed up under /etc/kubernetes/tmp, as kubeadm keeps them; a component that is not
healthy in time is rolled back), the cluster's configuration, RBAC and add-ons at the new version, and this
machine's kubelet configuration. Object names and annotations are kubeadm's, so that kubeadm and kubeseed can
upgrade each other's clusters."""

from __future__ import annotations

import os
import shutil
import time
from typing import Any, Callable, List, Optional, Tuple, cast

from ..init.certcmd import COMPONENTS
from ..init.controlplane import MANIFESTS, read
from ..preflight import Env, run_checks
from ..versions import Version
from ..workflow import Context, PhaseError, confine, write_atomic
from .machine import TMP, Upgrade, machine_api, ready, target

HASH = "kubernetes.io/config.hash"  # the kubelet's hash of a static pod, on its mirror pod
ETCD_DATA = "/var/lib/etcd"
Call = Callable[..., Tuple[int, Any]]


def _up(ctx: Context) -> Upgrade:
    return cast(Upgrade, ctx)


def _cluster_version(call: Call) -> Optional[Version]:
    """The version kube-system/kubeadm-config says the control plane runs (None when unreadable)."""
    import yaml

    status, cm = call("GET", "/api/v1/namespaces/kube-system/configmaps/kubeadm-config")
    try:
        doc = yaml.safe_load((cm.get("data") or {}).get("ClusterConfiguration") or "") if status == 200 else None
        return Version(doc["kubernetesVersion"]) if isinstance(doc, dict) else None
    except (yaml.YAMLError, KeyError, TypeError, ValueError):
        return None


def preflight(ctx: Context) -> None:
    """kubeadm's upgrade checks: a master's control plane is healthy, no kubelet would fall more than three minors
    behind, there is room to back etcd up; a node's control plane already runs the target."""
    up, call = _up(ctx), machine_api(ctx)
    new = up.target
    checks: List[Tuple[str, Callable[[Env], List[Tuple[str, str]]]]] = []

    def control_plane_version(env: Env) -> List[Tuple[str, str]]:
        have = _cluster_version(call)
        if have is None:
            return [("warning", "cannot read kube-system/kubeadm-config: the control plane's version is unknown")]
        if (have.minor, have.patch) < (new.minor, new.patch):
            return [("error", f"the control plane runs {have.text}: upgrade the masters to {new.text} first")]
        return []

    def healthy(env: Env) -> List[Tuple[str, str]]:
        status, out = call("GET", "/livez")
        if status != 200:
            return [("error", f"the API server is not live (HTTP {status}): {out.get('message', '')}")]
        pods = [(name, _pod(call, ctx, name)[1]) for name in COMPONENTS]
        return [
            ("error", f"{name} is not Ready; fix it before upgrading (crictl ps -a; crictl logs CONTAINERID)")
            for name, pod in pods
            if pod is not None and not ready(pod)
        ]

    def kubelet_skew(env: Env) -> List[Tuple[str, str]]:
        status, nodes = call("GET", "/api/v1/nodes")
        found = []
        for node in nodes.get("items", []) if status == 200 else []:
            text = ((node.get("status") or {}).get("nodeInfo") or {}).get("kubeletVersion", "")
            try:
                minor = Version(text.split("+")[0].split("-")[0]).minor
            except ValueError:
                continue
            if not new.kubelet_skew_ok(minor):
                name = node["metadata"]["name"]
                found.append(("error", f"node {name}'s kubelet {text} would be over three minors behind {new.text}"))
        return found

    def disk_space(env: Env) -> List[Tuple[str, str]]:
        need = _size(ctx.path(ETCD_DATA)) + (64 << 20)
        where = ctx.path("/etc/kubernetes")
        free = shutil.disk_usage(where).free if os.path.isdir(where) else need
        if free < need:
            return [("error", f"{where} has {free >> 20} MiB free; backing up etcd needs {need >> 20} MiB")]
        return []

    if ctx.config is not None and ctx.config.role == "master":
        checks += [("ControlPlaneHealthy", healthy), ("KubeletVersionSkew", kubelet_skew), ("DiskSpace", disk_space)]
    else:
        checks.append(("ControlPlaneVersion", control_plane_version))
    run_checks(ctx, checks, Env(ctx.root))


def _size(path: str) -> int:
    total = 0
    for top, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(top, f)).st_size
            except OSError:
                pass
    return total


def _pod(call: Call, ctx: Context, name: str) -> Tuple[str, Optional[dict]]:
    """The mirror pod of this machine's static pod ``name``, or why there is none to see."""
    try:
        status, pod = call("GET", f"/api/v1/namespaces/kube-system/pods/{name}-{ctx.name()}", timeout=5)
    except PhaseError as e:  # the API server restarting
        return str(e), None
    return (f"no mirror pod {name}-{ctx.name()} (HTTP {status})", None) if status != 200 else ("", pod)


def _hash(pod: Optional[dict]) -> Optional[str]:
    return (((pod or {}).get("metadata") or {}).get("annotations") or {}).get(HASH)


def _wait_healthy(ctx: Context, call: Call, name: str, before: Optional[str], seconds: float) -> None:
    """Until the kubelet runs the new manifest (the mirror pod's config hash is no longer ``before``) and it is
    Ready, as kubeadm waits; PhaseError saying what was last seen when ``seconds`` pass."""
    end = min(time.monotonic() + seconds, ctx.deadline)
    while True:
        last, pod = _pod(call, ctx, name)
        if pod is not None:
            if before is not None and _hash(pod) == before:
                last = "the kubelet still runs the old manifest"
            elif not ready(pod):
                last = "it is not Ready"
            else:
                return
        if time.monotonic() > end:
            raise PhaseError(last)
        time.sleep(0.5)


def _read(path: str) -> Optional[str]:
    data = read(path)
    return None if data is None else data.decode()


def backup_etcd(ctx: Context, dest: str) -> None:
    """A copy of etcd's data directory at ``dest``/etcd, made whole before it is named (as kubeadm backs it up
    before an etcd upgrade); an existing backup is kept."""
    final = ctx.path(dest)
    if os.path.isdir(final):
        return
    partial = confine(final + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    os.makedirs(partial, 0o700)
    shutil.copytree(confine(ctx.path(ETCD_DATA)), os.path.join(partial, "etcd"), symlinks=True)
    os.rename(partial, final)
    ctx.say(f"\t[upgrade/etcd] backed up {ETCD_DATA} to {dest}/etcd")


def static_pods(ctx: Context) -> None:
    """Renew the control-plane certificates, then replace each static pod's manifest with the target's, one at a
    time, each waited for; one not healthy within --component-timeout gets its old manifest back and the phase
    fails naming it."""
    import yaml

    from ..init.certcmd import renew
    from ..init.staticpods import control_plane_pods, etcd_pod

    up, call = _up(ctx), machine_api(ctx)
    renew(ctx, "all", restart=False)  # kubeadm renews them on upgrade; the new manifests restart the pods
    backups = f"{TMP}/kubeseed-backup-manifests-{up.target.text}"
    for pod in [etcd_pod(ctx)] + control_plane_pods(ctx):
        name = pod["metadata"]["name"]
        path = ctx.path(f"{MANIFESTS}/{name}.yaml")
        new, old = yaml.safe_dump(pod), _read(path)
        if old == new:
            _wait_healthy(ctx, call, name, None, up.component_timeout)
            ctx.say(f"\t[upgrade/staticpods] {name} already runs the {up.target.text} manifest")
            continue
        if old is None:
            raise PhaseError(f"{MANIFESTS}/{name}.yaml does not exist: this machine's control plane is not kubeseed's")
        backup = ctx.path(f"{backups}/{name}.yaml")
        if _read(backup) is None:
            write_atomic(backup, old, 0o600)
        saved = _read(backup) or old
        if name == "etcd" and _image(saved) != _image(new):
            backup_etcd(ctx, f"{TMP}/kubeseed-backup-etcd-{up.target.text}")
        before = _hash(_pod(call, ctx, name)[1])
        write_atomic(path, new, 0o600)
        ctx.say(f"\t[upgrade/staticpods] wrote {name}'s {up.target.text} manifest; waiting for it to be healthy")
        try:
            _wait_healthy(ctx, call, name, before, up.component_timeout)
        except PhaseError as e:
            write_atomic(path, saved, 0o600)
            raise PhaseError(
                f"{name} was not healthy within {up.component_timeout:g}s of its {up.target.text} manifest ({e}); "
                f"rolled it back to the old one (kept in {backups}). Look at: crictl ps -a | grep {name}; crictl logs "
                "CONTAINERID; then run upgrade again"
            ) from None
        ctx.say(f"\t[upgrade/staticpods] {name} is healthy at {up.target.text}")


def _image(manifest: str) -> str:
    import yaml

    try:
        return str(yaml.safe_load(manifest)["spec"]["containers"][0]["image"])
    except (yaml.YAMLError, KeyError, IndexError, TypeError):
        return ""


def bootstrap_token(ctx: Context) -> None:
    """The RBAC rules that let bootstrap tokens join nodes, as kubeadm's upgrade re-applies them (tokens and
    cluster-info are left as they are)."""
    from ..init.apiclient import with_client
    from ..init.apiphases import bootstrap_rbac

    with_client(ctx, "admin.conf", lambda c: c.apply_all(bootstrap_rbac()))


def addon(ctx: Context) -> None:
    """CoreDNS and kube-proxy at the new version's images; their ConfigMaps (the Corefile, kube-proxy's
    configuration) only where missing, so that changes made to them stay (kubeadm keeps a changed Corefile)."""
    from ..init.addons import coredns, kube_proxy
    from ..init.apiclient import Client, with_client

    def apply(c: Client) -> None:
        for obj in coredns(ctx) + kube_proxy(ctx):
            if obj["kind"] == "ConfigMap" and c.call("GET", c.path(obj))[0] == 200:
                continue
            c.apply(obj)

    with_client(ctx, "admin.conf", apply)
    ctx.say(f"\t[addons] CoreDNS and kube-proxy at {target(ctx)}")


def kubelet_config(ctx: Context) -> None:
    """The kubelet's configuration for the new version, the old one kept under /etc/kubernetes/tmp: a master's from
    its node config (as init writes it), a node's from the cluster's kubelet-config (as join reads it)."""
    from ..kubelet import CONFIG, config_phase

    old = _read(ctx.path(CONFIG))
    backup = ctx.path(f"{TMP}/kubeseed-backup-kubelet-config-{target(ctx)}/config.yaml")
    if old is not None and _read(backup) is None:
        write_atomic(backup, old, 0o600)
    if ctx.config is not None and ctx.config.role == "master":
        config_phase(ctx)
    else:
        from ..join.kubelet import kubelet_config as from_cluster

        from_cluster(ctx)
