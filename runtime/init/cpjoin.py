"""``join --control-plane``: another master joins a running control plane, as ``kubeadm join --control-plane`` does
with stacked etcd. Its payload (``kubeseed render master CLUSTER --join``) carries the CA keys, so no certificates
are copied (a kubeadm-made control plane's come from its kube-system/kubeadm-certs with --certificate-key): it
discovers the cluster as a node does (token and CA pin), checks that the cluster's CA is its own,
makes this machine's certificates and kubeconfigs, writes the control-plane static pods, starts the kubelet, joins
etcd as a learner and promotes itself once caught up, and marks itself a control-plane node. Only the full runtime
carries it (generator/zipapp.py FULL_ONLY); the role interface is init's (cli picks this module for it)."""

from __future__ import annotations

import os
from typing import Callable, Dict, List

from ..workflow import Context, Phase, PhaseError, write_atomic
from . import CONFIG, checks  # noqa: F401 (the role interface: a master's config and checks)
from .controlplane import MANIFESTS, PKI, advertise_address, config, url

KUBEADM_CONFIG = "/api/v1/namespaces/kube-system/configmaps/kubeadm-config"
CLUSTER = "/var/lib/kubeseed/cluster-configuration.yaml"  # the cluster's ClusterConfiguration, as discovery read it


def phases() -> List[Phase]:
    from . import apiphases, kubelet_start

    def shared(run: Callable[[Context], None]) -> Callable[[Context], None]:
        """``run`` with the cluster's settings and keys first (_cluster): each phase may be run alone."""

        def phase(ctx: Context) -> None:
            _cluster(ctx)
            run(ctx)

        return phase

    return [
        Phase("discovery", "Discovering the cluster", discovery),
        Phase("control-plane-prepare", "Preparing this machine's control plane", shared(prepare)),
        Phase("kubelet-start", "Starting the kubelet", shared(kubelet_start)),
        Phase("control-plane-join", "Joining etcd and the control plane", shared(join_etcd)),
        Phase("mark-control-plane", "Marking the control-plane node", shared(apiphases.mark_control_plane)),
    ]


def discovery(ctx: Context) -> None:
    """A node's discovery (token signature, CA pin); then, with --certificate-key (a kubeadm-made control plane),
    the CA and SA keys from its kube-system/kubeadm-certs, checked against the pinned CA; else the cluster's CA must
    be this payload's, whose keys sign this machine's certificates. The token leaves the disk: a master needs no
    bootstrap kubeconfig."""
    from ..join.discovery import BOOTSTRAP_CONF
    from ..join.discovery import discovery as discover
    from ..tokens import ca_pin
    from . import copycerts

    discover(ctx)
    path = ctx.path(BOOTSTRAP_CONF)
    cfg = config(ctx)
    call, ca = copycerts.bootstrap_call(ctx, BOOTSTRAP_CONF)  # the token's client, and the CA discovery pinned
    status, cm = call(KUBEADM_CONFIG)  # the token's group may read it (kubeadm's Role): the cluster's settings
    if status == 200:
        write_atomic(ctx.path(CLUSTER), str((cm.get("data") or {}).get("ClusterConfiguration") or ""), 0o600)
        _cluster(ctx, settings_only=True)
    if cfg.certificate_key:
        copycerts.download_certs(ctx, call, cfg.certificate_key, ca)
        os.unlink(path)
        ctx.say(f"\t[download-certs] the cluster's CA and service-account keys are in {PKI}")
        return
    os.unlink(path)
    mine = cfg.pki["ca.crt"].encode()
    if ca_pin(ca) != ca_pin(mine):
        raise PhaseError(
            f"the cluster at {cfg.control_plane_endpoint} has another CA ({ca_pin(ca)}) than this payload "
            f"({ca_pin(mine)}): render this master's payload from that cluster's directory"
        )


def _cluster(ctx: Context, settings_only: bool = False) -> None:
    """What this control plane must share with the others, as kubeadm's join takes it from the cluster's
    ClusterConfiguration (kept by discovery): the Kubernetes version, image repository and networking; and the CA
    and SA keys, downloaded by discovery when they came from kubeadm-certs."""
    import yaml

    from ..versions import Version
    from .controlplane import PKI_FILES, read

    cfg = config(ctx)
    text = read(ctx.path(CLUSTER))
    doc = yaml.safe_load(text) if text else None
    if isinstance(doc, dict):
        net = doc.get("networking") or {}
        try:
            cfg.kubernetes_version = Version(str(doc.get("kubernetesVersion") or cfg.kubernetes_version)).text
        except ValueError as e:
            raise PhaseError(f"kube-system/kubeadm-config: {e}") from None
        cfg.image_repository = str(doc.get("imageRepository") or cfg.image_repository)
        cfg.networking.pod_subnet = str(net.get("podSubnet") or cfg.networking.pod_subnet)
        cfg.networking.service_subnet = str(net.get("serviceSubnet") or cfg.networking.service_subnet)
        cfg.networking.dns_domain = str(net.get("dnsDomain") or cfg.networking.dns_domain)
    if not cfg.pki and not settings_only:
        found = {f: read(ctx.path(f"{PKI}/{f}")) for f in PKI_FILES}
        missing = [f for f, data in found.items() if not data]
        if missing:
            raise PhaseError(f"{PKI}/{missing[0]} is missing: run the discovery phase again (--phase discovery)")
        cfg.pki = {f: (data or b"").decode() for f, data in found.items()}


def prepare(ctx: Context) -> None:
    """kubeadm's control-plane-prepare: this machine's certificates and kubeconfigs, signed here by the CAs the
    payload carries, and the control-plane static pods (etcd's comes with the etcd join)."""
    from .certs import certs
    from .kubeconfigs import kubeconfigs
    from .staticpods import control_plane_phase

    certs(ctx)
    kubeconfigs(ctx)
    control_plane_phase(ctx)


def member_endpoints(ctx: Context) -> List[str]:
    """The etcd members' client URLs, as kubeadm finds them: the annotation of the etcd static pods' mirror pods,
    read through the API as this machine's admin."""
    from ..etcd import ANNOTATION, PODS, endpoints_from_pods
    from .apiclient import Client, with_client

    def find(c: Client) -> List[str]:
        status, pods = c.call("GET", PODS)
        if status != 200:
            raise PhaseError(f"cannot list the etcd pods (HTTP {status}): {pods.get('message', '')}")
        return endpoints_from_pods(pods.get("items") or [])

    endpoints = with_client(ctx, "admin.conf", find)
    if not endpoints:
        raise PhaseError(
            f"no etcd pod of the cluster has the {ANNOTATION} annotation: this joins a stacked etcd that kubeseed or "
            "kubeadm made; is the first master's kubelet reporting its pods?"
        )
    return endpoints


def join_etcd(ctx: Context) -> None:
    """kubeadm's control-plane-join etcd step: this machine added as a learner (once: a re-run finds it), etcd's
    manifest written with every member and --initial-cluster-state=existing, then, once the kubelet runs it and it
    has caught up, promoted to a voting member."""
    import yaml

    from ..etcd import Etcd
    from .staticpods import etcd_pod

    ip, name = advertise_address(ctx), ctx.name()
    peer = url(ip, 2380)
    cluster = Etcd(ctx, member_endpoints(ctx))
    me = cluster.add_learner(name, peer)
    members: Dict[str, str] = {}  # the others as etcd lists them, then this one
    for m in cluster.members():
        if m["peerURLs"] and peer not in m["peerURLs"]:
            members[m["name"] or m["ID"]] = m["peerURLs"][0]
    members[name] = peer
    path = ctx.path(f"{MANIFESTS}/etcd.yaml")
    if not os.path.exists(path):
        write_atomic(path, yaml.safe_dump(etcd_pod(ctx, members)), 0o600)
        ctx.say(f"\t[etcd] {name} added as a learner; the kubelet starts its member from {MANIFESTS}/etcd.yaml")
    if ctx.root:
        ctx.say("\t--root: the member runs when something starts it from that manifest, as a kubelet would")
    try:
        cluster.promote(me)  # once it has caught up with the leader (retried until the deadline)
    except PhaseError as e:
        raise PhaseError(
            f"{e}. Is this member running? crictl ps -a | grep etcd; crictl logs CONTAINERID (its data is in "
            f"/var/lib/etcd, its certificates in {PKI}/etcd)"
        ) from None
    ctx.say(f"\t[etcd] {name} is a voting member; {cluster.summary()}")


DONE = (
    "\nThis node has joined the cluster and a new control plane instance was created: see it with 'kubectl get "
    "nodes' (and `status` here for the etcd members)."
)
