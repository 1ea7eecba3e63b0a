"""The version contract, control-plane half (runtime/versions.py has the rest): the image tags kubeadm uses and
the kubeadm formats that changed between the minors this runtime supports, as named predicates."""

from __future__ import annotations

from typing import List

from ..versions import Version

# kubeadm's image tags per Kubernetes minor (constants.go: SupportedEtcdVersion; CoreDNS per release)
ETCD = {30: "3.5.15-0", 31: "3.5.24-0", 32: "3.5.24-0", 33: "3.5.24-0", 34: "3.6.5-0", 35: "3.6.5-0", 36: "3.6.5-0"}
COREDNS = {30: "v1.11.1", 31: "v1.11.3", 32: "v1.11.3", 33: "v1.12.0", 34: "v1.12.1", 35: "v1.12.1", 36: "v1.12.1"}
# constants.go PauseVersion per minor (what `kubeadm config images list` prints for pause)
PAUSE = {30: "3.9", 31: "3.10", 32: "3.10", 33: "3.10", 34: "3.10.1", 35: "3.10.1", 36: "3.10.2"}
DEFAULT_REPOSITORY = "registry.k8s.io"  # kubeadm's DefaultImageRepository
# kube-vip's release for the control plane's virtual IP (init/kubevip.py), ghcr.io/kube-vip/kube-vip:<tag>: pinned,
# not per minor (one kube-vip release serves every supported Kubernetes version)
KUBE_VIP = "v1.2.3"
# kubeadm PR #138957 (1.37, backported): apiserver-kubelet-client loses O=kubeadm:cluster-admins, bound instead
NARROWED_KUBELET_CLIENT = {33: 12, 34: 8, 35: 5, 36: 1}  # minor -> first patch with it


def images(version: str, repository: str = DEFAULT_REPOSITORY) -> List[str]:
    """The images a cluster of ``version`` needs, in `kubeadm config images list` order (images.go
    GetControlPlaneImages): apiserver, controller-manager, scheduler, kube-proxy, CoreDNS, pause, etcd. CoreDNS is
    ``coredns/coredns`` only in the default repository (GetDNSImage); a mirror has it as ``<repo>/coredns``."""
    v = ControlPlaneVersion(version)
    dns = f"{repository}/coredns" if repository == DEFAULT_REPOSITORY else repository
    return [f"{repository}/{name}:{version}" for name in KUBERNETES_IMAGES] + [
        f"{dns}/coredns:{v.coredns_tag}",
        f"{repository}/pause:{v.pause_tag}",
        f"{repository}/etcd:{v.etcd_tag}",
    ]


def image(name: str, version: str, repository: str = DEFAULT_REPOSITORY) -> str:
    """One image of :func:`images` by name (``coredns``, ``etcd``, ``kube-apiserver``, ...)."""
    for ref in images(version, repository):
        if ref.rsplit("/", 1)[1].split(":", 1)[0] == name:
            return ref
    raise KeyError(name)


KUBERNETES_IMAGES = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy")


class ControlPlaneVersion(Version):
    @property
    def key_algorithm_error(self) -> str:
        """'' if kubeadm of this version can make keys of every algorithm kubeseed offers, else why not: kubeadm
        before 1.34 cannot generate ECDSA-P384 keys, so its `join --control-plane` and `certs renew` fail on such
        a cluster (kubeadm's EncryptionAlgorithmECDSAP384, added in 1.34)."""
        return "" if self.minor >= 34 else f"kubeadm v1.{self.minor} cannot make ECDSA-P384 keys for joins and renewals"

    @property
    def etcd_tag(self) -> str:
        return ETCD[self.minor]

    @property
    def coredns_tag(self) -> str:
        return COREDNS[self.minor]

    @property
    def pause_tag(self) -> str:
        return PAUSE[self.minor]

    @property
    def ca_trust_dirs(self) -> bool:
        """kubeadm 1.31 (PR #124361) mounts /etc/pki/ca-trust and /etc/pki/tls/certs, no longer all of /etc/pki."""
        return self.minor >= 31

    @property
    def etcd_36(self) -> bool:
        """etcd 3.6 dropped the experimental- flag prefixes and serves /livez and /readyz."""
        return self.etcd_tag.startswith("3.6")

    @property
    def kubeadm_v1beta4(self) -> bool:
        """kubeadm 1.31 writes ClusterConfiguration v1beta4 (validity periods, encryptionAlgorithm)."""
        return self.minor >= 31

    @property
    def kubeadm_api(self) -> str:
        return "kubeadm.k8s.io/v1beta4" if self.kubeadm_v1beta4 else "kubeadm.k8s.io/v1beta3"

    @property
    def kubeconfig_preferences(self) -> bool:
        """client-go wrote ``preferences: {}`` into kubeconfigs (cluster-info's JWS covers it) up to 1.33."""
        return self.minor <= 33

    @property
    def narrowed_kubelet_client(self) -> bool:
        """apiserver-kubelet-client has no O and a binding to system:kubelet-api-admin instead."""
        first = NARROWED_KUBELET_CLIENT.get(self.minor)
        return self.minor > 36 or (first is not None and self.patch >= first)
