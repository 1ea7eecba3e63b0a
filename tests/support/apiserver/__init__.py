"""In-test fake kube-apiserver -- tests only; never part of the product.

No kube-apiserver binary can be had on this machine, so the runtime's API side is tested against this HTTPS
server. It plays a kube-apiserver with kubeadm's RBAC plus the kube-controller-manager controllers that node
join depends on (bootstrapsigner, csrapproving, csrsigning), as they look to a client:

* joining nodes: anonymous ``kube-public/cluster-info`` with ``jws-kubeconfig-<id>`` keys, bootstrap-token
  bearer authentication, CertificateSigningRequest create / auto-approve / sign / get;
* a master's ``init``: client-certificate authentication, a generic object store behind the REST paths init
  uses (ConfigMaps, Secrets, RBAC, add-on workloads, ...), merge patch and server-side apply, discovery and
  health endpoints, and (opt-in) RBAC authorization evaluated over the RBAC objects in the store;
* an ``upgrade``: field selectors on pod and node lists (drain's ``spec.nodeName=<node>``), cordon by merge patch,
  and the ``pods/<name>/eviction`` subresource with NodeRestriction and PodDisruptionBudgets; the mirror pods of a
  machine's static pods come from tests/support/standin_kubelet.py.

Byte-level reference: ../shared/protocol/README.md sections 1-3, 5-7, 10 and the vectors next to it. What is
simplified is said where it is done (e.g. no watch, no managedFields, apply = merge patch).

Modules: ``protocol`` (wire formats, Status bodies, the resource catalogue, discovery), ``auth`` (authentication
and the RBAC and Node authorizers), ``store`` (the object store and REST semantics), ``server`` (FakeAPIServer,
its TLS server and handler). Import from the package.
"""

from tests.support.apiserver.auth import Identity, authenticate_token_secret, signing_token, token_expired
from tests.support.apiserver.protocol import (
    BOOTSTRAP_TOKEN_TYPE,
    CLUSTER_INFO_PATH,
    CSR_PATH,
    KUBELET_SIGNER,
    cluster_info_kubeconfig,
    csr_object_name,
    detached_jws,
    merge_patch,
    status_body,
    validate_kubelet_client_csr,
)
from tests.support.apiserver.server import FakeAPIServer

__all__ = [
    "BOOTSTRAP_TOKEN_TYPE",
    "CLUSTER_INFO_PATH",
    "CSR_PATH",
    "KUBELET_SIGNER",
    "FakeAPIServer",
    "Identity",
    "authenticate_token_secret",
    "cluster_info_kubeconfig",
    "csr_object_name",
    "detached_jws",
    "merge_patch",
    "signing_token",
    "status_body",
    "token_expired",
    "validate_kubelet_client_csr",
]
