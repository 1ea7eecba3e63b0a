"""The version contract, control-plane half (runtime/versions.py has the rest): the image tags kubeadm uses and
the kubeadm formats that changed between the minors this runtime supports, as named predicates."""

from __future__ import annotations

from ..versions import Version

# kubeadm's image tags per Kubernetes minor (constants.go: SupportedEtcdVersion; CoreDNS per release)
ETCD = {30: "3.5.15-0", 31: "3.5.24-0", 32: "3.5.24-0", 33: "3.5.24-0", 34: "3.6.5-0", 35: "3.6.5-0", 36: "3.6.5-0"}
COREDNS = {30: "v1.11.1", 31: "v1.11.3", 32: "v1.11.3", 33: "v1.12.0", 34: "v1.12.1", 35: "v1.12.1", 36: "v1.12.1"}
# kubeadm PR #138957 (1.37, backported): apiserver-kubelet-client loses O=kubeadm:cluster-admins, bound instead
NARROWED_KUBELET_CLIENT = {33: 12, 34: 8, 35: 5, 36: 1}  # minor -> first patch with it


class ControlPlaneVersion(Version):
    @property
    def etcd_tag(self) -> str:
        return ETCD[self.minor]

    @property
    def coredns_tag(self) -> str:
        return COREDNS[self.minor]

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
