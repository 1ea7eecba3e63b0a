"""init's etcd and control-plane phases: the static pod manifests, with kubeadm's flags, probes and host paths."""

from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Tuple

from ..workflow import Context, write_atomic
from .controlplane import MANIFESTS, PKI, advertise_address, config, host_port, localhost, url, version
from .kubevip import kube_vip_pod
from .versions import image

P = PKI + "/"
ADVERTISED = "kubeadm.kubernetes.io/kube-apiserver.advertise-address.endpoint"  # where kubeadm's upgrade reads it
Mount = Tuple[str, str, str, bool]  # (volume, host path = mount path, hostPath type, read-only)
CA_CERTS = "/etc/ssl/certs"  # always mounted (volume ca-certs)
# kubeadm's caCertsExtraVolumePaths (phases/controlplane/volumes.go), mounted only where they exist: up to 1.30
# /etc/pki whole; from 1.31 (PR #124361) only its CA parts, /etc/pki/ca-trust and /etc/pki/tls/certs
CA_EXTRA_DIRS = ("/etc/ca-certificates", "/usr/share/ca-certificates", "/usr/local/share/ca-certificates")
ETC_PKI_DIRS = {False: ("/etc/pki",), True: ("/etc/pki/ca-trust", "/etc/pki/tls/certs")}


def _probe(host: str, path: str, port: int, scheme: str, failures: int, period: int = 10, delay: int = 10) -> dict:
    probe = {
        "failureThreshold": failures,
        "httpGet": {"host": host, "path": path, "port": port, "scheme": scheme},
        "periodSeconds": period,
        "timeoutSeconds": 15,
    }
    if delay:
        probe["initialDelaySeconds"] = delay
    return probe


def static_pod(
    ctx: Context,
    name: str,
    flags: Dict[str, str],
    image: str,
    probes: Tuple[dict, dict, dict],
    cpu: str,
    mounts: List[Mount],
    annotations: Dict[str, str],
    memory: str = "",
) -> dict:
    """A control-plane static pod: command = the binary and its flags sorted by name, host network, critical;
    volumes and mounts sorted by name, as kubeadm's VolumeMapToSlice and VolumeMountMapToSlice do."""
    live, ready, startup = probes
    mounts = sorted(mounts)
    container: Dict[str, Any] = {
        "command": [name] + [f"--{k}={v}" for k, v in sorted(flags.items())],
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "livenessProbe": live,
        "name": name,
        "resources": {"requests": dict({"cpu": cpu}, **({"memory": memory} if memory else {}))},
        "startupProbe": startup,
        "volumeMounts": [
            dict({"mountPath": path, "name": vol}, **({"readOnly": True} if ro else {})) for vol, path, _, ro in mounts
        ],
    }
    if ready:
        container["readinessProbe"] = ready
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "annotations": annotations,
            "labels": {"component": name, "tier": "control-plane"},
            "name": name,
            "namespace": "kube-system",
        },
        "spec": {
            "containers": [container],
            "hostNetwork": True,
            "priority": 2000001000,
            "priorityClassName": "system-node-critical",
            "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
            "volumes": [{"hostPath": {"path": path, "type": kind}, "name": vol} for vol, path, kind, _ in mounts],
        },
        "status": {},
    }


def _write(ctx: Context, pod: dict) -> None:
    import yaml

    write_atomic(ctx.path(f"{MANIFESTS}/{pod['metadata']['name']}.yaml"), yaml.safe_dump(pod), 0o600)


def _image(ctx: Context, name: str) -> str:
    cfg = config(ctx)
    return image(name, cfg.kubernetes_version, cfg.image_repository)


def ca_mounts(ctx: Context) -> List[Mount]:
    """The host's CA bundles, read-only, as kubeadm mounts them into kube-apiserver and kube-controller-manager:
    /etc/ssl/certs always, each of the other CA directories only if it exists on this machine (under --root:
    inside the root). Volume names are the paths with "/" as "-" (``etc-pki``, ``etc-pki-ca-trust``, ...)."""
    extra = ETC_PKI_DIRS[version(ctx).ca_trust_dirs] + CA_EXTRA_DIRS
    found = [d for d in extra if os.path.exists(ctx.path(d))]
    return [("ca-certs", CA_CERTS, "DirectoryOrCreate", True)] + [
        (d.replace("/", "-")[1:], d, "DirectoryOrCreate", True) for d in found
    ]


def etcd_pod(ctx: Context, members: Optional[Dict[str, str]] = None) -> dict:
    """etcd's static pod: the first member of a new cluster, or (``members``: name -> peer URL of the members, this
    one included) one joining an existing cluster, as kubeadm's join writes it (--initial-cluster-state=existing)."""
    ip, node, v = advertise_address(ctx), ctx.name(), version(ctx)
    lo = localhost(ip)
    cluster = ",".join(f"{name}={peer}" for name, peer in (members or {node: url(ip, 2380)}).items())
    flags = {
        "advertise-client-urls": url(ip, 2379),
        "cert-file": P + "etcd/server.crt",
        "client-cert-auth": "true",
        "data-dir": "/var/lib/etcd",
        "initial-advertise-peer-urls": url(ip, 2380),
        "initial-cluster": cluster,
        "key-file": P + "etcd/server.key",
        "listen-client-urls": f"{url(lo, 2379)},{url(ip, 2379)}",
        "listen-metrics-urls": url(lo, 2381, "http"),
        "listen-peer-urls": url(ip, 2380),
        "name": node,
        "peer-cert-file": P + "etcd/peer.crt",
        "peer-client-cert-auth": "true",
        "peer-key-file": P + "etcd/peer.key",
        "peer-trusted-ca-file": P + "etcd/ca.crt",
        "snapshot-count": "10000",
        "trusted-ca-file": P + "etcd/ca.crt",
    }
    if members:
        flags["initial-cluster-state"] = "existing"
    if v.etcd_36:
        flags.update({"feature-gates": "InitialCorruptCheck=true", "watch-progress-notify-interval": "5s"})
        live = _probe(lo, "/livez", 2381, "HTTP", 8)
        ready, startup = (
            _probe(lo, "/readyz", 2381, "HTTP", 3, 1, 0),
            _probe(lo, "/readyz", 2381, "HTTP", 24),
        )
    else:
        flags.update(
            {"experimental-initial-corrupt-check": "true", "experimental-watch-progress-notify-interval": "5s"}
        )
        live = _probe(lo, "/health?exclude=NOSPACE&serializable=true", 2381, "HTTP", 8)
        ready, startup = {}, _probe(lo, "/health?serializable=false", 2381, "HTTP", 24)
    mounts = [
        ("etcd-certs", P + "etcd", "DirectoryOrCreate", False),
        ("etcd-data", "/var/lib/etcd", "DirectoryOrCreate", False),
    ]
    annotations = {"kubeadm.kubernetes.io/etcd.advertise-client-urls": url(ip, 2379)}
    return static_pod(
        ctx,
        "etcd",
        flags,
        _image(ctx, "etcd"),
        (live, ready, startup),
        "100m",
        mounts,
        annotations,
        "100Mi",
    )


def control_plane_pods(ctx: Context) -> List[dict]:
    cfg = config(ctx)
    ip = advertise_address(ctx)
    net = cfg.networking
    cas = ca_mounts(ctx)
    pki_mount = [("k8s-certs", P.rstrip("/"), "DirectoryOrCreate", True)]
    api_flags = {
        "advertise-address": ip,
        "allow-privileged": "true",
        "authorization-mode": "Node,RBAC",
        "client-ca-file": P + "ca.crt",
        "enable-admission-plugins": "NodeRestriction",
        "enable-bootstrap-token-auth": "true",
        "etcd-cafile": P + "etcd/ca.crt",
        "etcd-certfile": P + "apiserver-etcd-client.crt",
        "etcd-keyfile": P + "apiserver-etcd-client.key",
        "etcd-servers": url(localhost(ip), 2379),
        "kubelet-client-certificate": P + "apiserver-kubelet-client.crt",
        "kubelet-client-key": P + "apiserver-kubelet-client.key",
        "kubelet-preferred-address-types": "InternalIP,ExternalIP,Hostname",
        "proxy-client-cert-file": P + "front-proxy-client.crt",
        "proxy-client-key-file": P + "front-proxy-client.key",
        "requestheader-allowed-names": "front-proxy-client",
        "requestheader-client-ca-file": P + "front-proxy-ca.crt",
        "requestheader-extra-headers-prefix": "X-Remote-Extra-",
        "requestheader-group-headers": "X-Remote-Group",
        "requestheader-username-headers": "X-Remote-User",
        "secure-port": "6443",
        "service-account-issuer": f"https://kubernetes.default.svc.{net.dns_domain}",
        "service-account-key-file": P + "sa.pub",
        "service-account-signing-key-file": P + "sa.key",
        "service-cluster-ip-range": net.service_subnet,
        "tls-cert-file": P + "apiserver.crt",
        "tls-private-key-file": P + "apiserver.key",
    }
    api_probes = (
        _probe(ip, "/livez", 6443, "HTTPS", 8),
        _probe(ip, "/readyz", 6443, "HTTPS", 3, 1, 0),
        _probe(ip, "/livez", 6443, "HTTPS", 24),
    )
    apiserver = static_pod(
        ctx,
        "kube-apiserver",
        api_flags,
        _image(ctx, "kube-apiserver"),
        api_probes,
        "250m",
        cas + pki_mount,
        {ADVERTISED: host_port(ip, 6443)},
    )
    cm_conf = "/etc/kubernetes/controller-manager.conf"
    cm_flags = {
        "allocate-node-cidrs": "true",
        "authentication-kubeconfig": cm_conf,
        "authorization-kubeconfig": cm_conf,
        "bind-address": "127.0.0.1",
        "client-ca-file": P + "ca.crt",
        "cluster-cidr": net.pod_subnet,
        "cluster-name": "kubernetes",
        "cluster-signing-cert-file": P + "ca.crt",
        "cluster-signing-key-file": P + "ca.key",
        "controllers": "*,bootstrapsigner,tokencleaner",
        "kubeconfig": cm_conf,
        "leader-elect": "true",
        "requestheader-client-ca-file": P + "front-proxy-ca.crt",
        "root-ca-file": P + "ca.crt",
        "service-account-private-key-file": P + "sa.key",
        "service-cluster-ip-range": net.service_subnet,
        "use-service-account-credentials": "true",
    }
    cm_probe = _probe("127.0.0.1", "/healthz", 10257, "HTTPS", 8)
    flex = [("flexvolume-dir", "/usr/libexec/kubernetes/kubelet-plugins/volume/exec", "DirectoryOrCreate", False)]
    manager = static_pod(
        ctx,
        "kube-controller-manager",
        cm_flags,
        _image(ctx, "kube-controller-manager"),
        (cm_probe, {}, _probe("127.0.0.1", "/healthz", 10257, "HTTPS", 24)),
        "200m",
        cas + flex + pki_mount + [("kubeconfig", cm_conf, "FileOrCreate", True)],
        {},
    )
    sched_conf = "/etc/kubernetes/scheduler.conf"
    sched_flags = {
        "authentication-kubeconfig": sched_conf,
        "authorization-kubeconfig": sched_conf,
        "bind-address": "127.0.0.1",
        "kubeconfig": sched_conf,
        "leader-elect": "true",
    }
    scheduler = static_pod(
        ctx,
        "kube-scheduler",
        sched_flags,
        _image(ctx, "kube-scheduler"),
        (
            _probe("127.0.0.1", "/livez", 10259, "HTTPS", 8),
            _probe("127.0.0.1", "/readyz", 10259, "HTTPS", 3, 1, 0),
            _probe("127.0.0.1", "/livez", 10259, "HTTPS", 24),
        ),
        "100m",
        [("kubeconfig", sched_conf, "FileOrCreate", True)],
        {},
    )
    return [apiserver, manager, scheduler]


def etcd_phase(ctx: Context) -> None:
    _write(ctx, etcd_pod(ctx))


def control_plane_phase(ctx: Context) -> None:
    """The control-plane static pods, and kube-vip's when the node config has a virtual IP (init/kubevip.py):
    every manifest is made before the first is written."""
    pods = control_plane_pods(ctx)
    if config(ctx).virtual_ip:
        pods.append(kube_vip_pod(ctx))
    for pod in pods:
        _write(ctx, pod)
