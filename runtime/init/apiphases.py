"""init's API phases: wait for the control plane, upload the configs, mark the node, bootstrap tokens and the
objects that let nodes join (kubeadm-compatible), and the join command."""

from __future__ import annotations

import datetime
from typing import Any, Dict, List

from .. import api
from ..kubeconfig import b64
from ..workflow import Context, PhaseError, Timeout
from .apiclient import Client, with_client
from .controlplane import ADMIN_GROUP, config, version
from .objects import NODE_GROUP, binding, configmap, meta, role, rule


def wait_control_plane(ctx: Context) -> None:
    """Poll the API server's /livez at the configured endpoint until it answers, or say what to look at."""
    assert ctx.config is not None
    cri = ctx.config.kubelet.container_runtime_endpoint

    def ready(client: Client) -> None:
        def attempt() -> None:
            status, out = api.call(client.server + "/livez", client.ca, cert=client.cert, deadline=ctx.deadline)
            if status != 200:
                raise api.Unreachable(f"HTTP {status}: {out.get('message', '')}")

        try:
            api.wait(ctx, f"the control plane at {client.server}", attempt, 1, 5)
        except api.Untrusted as e:
            raise PhaseError(f"{client.server} does not present a certificate of this cluster's CA ({e})") from None
        except Timeout as e:
            raise PhaseError(
                f"{e}. The kubelet runs the control plane from /etc/kubernetes/manifests; look at: systemctl status "
                f"kubelet; journalctl -xeu kubelet; crictl --runtime-endpoint {cri} ps -a | grep kube | grep -v "
                f"pause; crictl --runtime-endpoint {cri} logs CONTAINERID"
            ) from None

    with_client(ctx, "admin.conf", ready)


def cluster_configuration(ctx: Context) -> dict:
    """kubeadm's ClusterConfiguration for this cluster (v1beta4 from 1.31, v1beta3 before)."""
    cfg, v = config(ctx), version(ctx)
    net = cfg.networking
    doc: Dict[str, Any] = {
        "apiServer": {},
        "apiVersion": v.kubeadm_api,
        "certificatesDir": "/etc/kubernetes/pki",
        "clusterName": "kubernetes",
        "controlPlaneEndpoint": cfg.control_plane_endpoint,
        "controllerManager": {},
        "dns": {},
        "etcd": {"local": {"dataDir": "/var/lib/etcd"}},
        "imageRepository": cfg.image_repository,
        "kind": "ClusterConfiguration",
        "kubernetesVersion": cfg.kubernetes_version,
        "networking": {"dnsDomain": net.dns_domain, "podSubnet": net.pod_subnet, "serviceSubnet": net.service_subnet},
        "proxy": {},
        "scheduler": {},
    }
    if v.kubeadm_v1beta4:
        doc.update(caCertificateValidityPeriod="87600h0m0s", certificateValidityPeriod="8760h0m0s")
        doc["encryptionAlgorithm"] = cfg.key_algorithm
    return doc


def upload_config(ctx: Context) -> None:
    """kubeadm-config and kubelet-config ConfigMaps (a real `kubeadm join` reads them), the Roles that let
    joining nodes read them, and the ClusterRoleBindings for admin.conf's group and the kubelet client."""
    import yaml

    from ..kubelet import kubelet_configuration

    # admin.conf's group has no rights until this binding exists: make it as the super admin, as kubeadm does.
    admins = binding("ClusterRoleBinding", ADMIN_GROUP, "ClusterRole", "cluster-admin", [("Group", ADMIN_GROUP)])
    with_client(ctx, "super-admin.conf", lambda c: c.apply(admins))
    readers = [("Group", NODE_GROUP), ("Group", "system:nodes")]
    objects = [
        configmap(
            "kubeadm-config", "kube-system", {"ClusterConfiguration": yaml.safe_dump(cluster_configuration(ctx))}
        ),
        configmap("kubelet-config", "kube-system", {"kubelet": yaml.safe_dump(kubelet_configuration(ctx))}),
        role(
            "Role",
            "kubeadm:nodes-kubeadm-config",
            [rule([""], ["configmaps"], ["get"], ["kubeadm-config"])],
            "kube-system",
        ),
        binding(
            "RoleBinding",
            "kubeadm:nodes-kubeadm-config",
            "Role",
            "kubeadm:nodes-kubeadm-config",
            readers,
            "kube-system",
        ),
        role(
            "Role", "kubeadm:kubelet-config", [rule([""], ["configmaps"], ["get"], ["kubelet-config"])], "kube-system"
        ),
        binding("RoleBinding", "kubeadm:kubelet-config", "Role", "kubeadm:kubelet-config", readers, "kube-system"),
    ]
    if version(ctx).narrowed_kubelet_client:
        user = [("User", "kube-apiserver-kubelet-client")]
        objects.append(
            binding(
                "ClusterRoleBinding",
                "kubeadm:apiserver-kubelet-client",
                "ClusterRole",
                "system:kubelet-api-admin",
                user,
            )
        )
    with_client(ctx, "admin.conf", lambda c: c.apply_all(objects))


def mark_control_plane(ctx: Context) -> None:
    """Label and taint this node as a control-plane node once its kubelet has registered it; before v1.34, annotate
    it with its CRI socket as kubeadm's upload-config does."""
    cfg = ctx.config
    assert cfg is not None
    name = ctx.name()
    labels = {
        "node-role.kubernetes.io/control-plane": "",
        "node.kubernetes.io/exclude-from-external-load-balancers": "",
    }
    taint = {"effect": "NoSchedule", "key": "node-role.kubernetes.io/control-plane"}

    def mark(c: Client) -> None:
        def registered() -> dict:
            status, node = c.call("GET", f"/api/v1/nodes/{name}")
            if status == 404:
                raise api.Unreachable(f"node {name} is not registered yet (the kubelet registers it)")
            if status != 200:
                raise PhaseError(f"cannot read node {name} (HTTP {status}): {node.get('message', '')}")
            return node

        node = api.wait(ctx, f"node {name} to register", registered)
        taints = [t for t in (node.get("spec") or {}).get("taints") or [] if t.get("key") != taint["key"]] + [taint]
        patch: Dict[str, Any] = {"metadata": {"labels": labels}, "spec": {"taints": taints}}
        if cfg.version.minor < 34:  # kubeadm's upgrade reads it there before NodeLocalCRISocket (v1.34)
            cri = cfg.kubelet.container_runtime_endpoint
            patch["metadata"]["annotations"] = {"kubeadm.alpha.kubernetes.io/cri-socket": cri}
        status, out = c.call("PATCH", f"/api/v1/nodes/{name}", patch, "application/merge-patch+json")
        if status != 200:
            raise PhaseError(f"cannot label node {name} (HTTP {status}): {out.get('message', '')}")

    with_client(ctx, "admin.conf", mark)


def live_tokens(ctx: Context) -> List[dict]:
    """The payload's bootstrap tokens that have not expired."""
    assert ctx.config is not None
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return [t for t in ctx.config.bootstrap_tokens if not t.get("expires") or t["expires"] > now]


def token_secret(token: dict) -> dict:
    """A bootstrap token as kubeadm stores it: Secret bootstrap-token-<id> in kube-system."""
    token_id, secret = token["token"].split(".")
    data = {"token-id": token_id, "token-secret": secret}
    if token.get("expires"):
        data["expiration"] = token["expires"]
    if token.get("description"):
        data["description"] = token["description"]
    for usage in token.get("usages") or ["signing", "authentication"]:
        data[f"usage-bootstrap-{usage}"] = "true"
    groups = token.get("groups") or [NODE_GROUP]
    data["auth-extra-groups"] = ",".join(groups)
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": meta(f"bootstrap-token-{token_id}", "kube-system"),
        "type": "bootstrap.kubernetes.io/token",
        "data": {k: b64(v.encode()) for k, v in data.items()},
    }


def cluster_info(ctx: Context) -> str:
    """kube-public/cluster-info's kubeconfig, byte for byte as kubeadm writes it (the JWS is over these bytes)."""
    assert ctx.config is not None
    prefs = "preferences: {}\n" if version(ctx).kubeconfig_preferences else ""
    return (
        "apiVersion: v1\nclusters:\n- cluster:\n"
        f"    certificate-authority-data: {b64(ctx.config.pki['ca.crt'].encode())}\n"
        f"    server: https://{ctx.config.control_plane_endpoint}\n"
        '  name: ""\ncontexts: null\ncurrent-context: ""\nkind: Config\n'
        f"{prefs}users: null\n"
    )


def bootstrap_rbac() -> List[dict]:
    """The RBAC rules bootstrap tokens need (anonymous reads of cluster-info; token holders create CSRs and have
    node client certificates approved and renewed; they read nodes), as kubeadm's init makes and upgrade renews
    them."""
    anonymous = [("User", "system:anonymous")]
    nodes = [("Group", NODE_GROUP)]
    csrs = "system:certificates.k8s.io:certificatesigningrequests:"
    return [
        role(
            "Role",
            "kubeadm:bootstrap-signer-clusterinfo",
            [rule([""], ["configmaps"], ["get"], ["cluster-info"])],
            "kube-public",
        ),
        binding(
            "RoleBinding",
            "kubeadm:bootstrap-signer-clusterinfo",
            "Role",
            "kubeadm:bootstrap-signer-clusterinfo",
            anonymous,
            "kube-public",
        ),
        binding("ClusterRoleBinding", "kubeadm:kubelet-bootstrap", "ClusterRole", "system:node-bootstrapper", nodes),
        binding("ClusterRoleBinding", "kubeadm:node-autoapprove-bootstrap", "ClusterRole", csrs + "nodeclient", nodes),
        binding(
            "ClusterRoleBinding",
            "kubeadm:node-autoapprove-certificate-rotation",
            "ClusterRole",
            csrs + "selfnodeclient",
            [("Group", "system:nodes")],
        ),
        role("ClusterRole", "kubeadm:get-nodes", [rule([""], ["nodes"], ["get"])]),
        binding("ClusterRoleBinding", "kubeadm:get-nodes", "ClusterRole", "kubeadm:get-nodes", nodes),
    ]


def bootstrap_token(ctx: Context) -> None:
    """Token Secrets, cluster-info for anonymous discovery, and the bindings that let token holders create
    CSRs and get node client certificates approved (and renewed)."""
    cluster = configmap("cluster-info", "kube-public", {"kubeconfig": cluster_info(ctx)})
    objects = [token_secret(t) for t in live_tokens(ctx)] + [cluster] + bootstrap_rbac()
    with_client(ctx, "admin.conf", lambda c: c.apply_all(objects))


def show_join_command(ctx: Context) -> None:
    """What kubeadm init prints: where the admin kubeconfig is, and the join command for nodes."""
    from ..tokens import ca_pin
    from .controlplane import CERTIFICATE_KEY as KEY_FILE
    from .controlplane import read

    cfg = config(ctx)
    usable = [t for t in live_tokens(ctx) if {"signing", "authentication"} <= set(t.get("usages") or [])]
    pin = ca_pin(cfg.pki["ca.crt"].encode())
    lines = [
        "",
        "Your Kubernetes control-plane has initialized successfully!",
        "",
        "To start using your cluster, run kubectl as root here (/root/.kube/config is admin.conf), or copy",
        "/etc/kubernetes/admin.conf to $HOME/.kube/config of a regular user.",
        "",
        'You should now deploy a pod network to the cluster ("addons" in cluster.yaml, or kubectl apply -f).',
        "",
    ]
    if usable:
        token = usable[-1]["token"]
        terminal = getattr(ctx.out, "isatty", lambda: False)()
        if not terminal:  # first-boot output lands in logs: keep the secret out
            token = token.split(".")[0] + ".<secret: kubeseed token list, or /etc/kubeseed/config.yaml>"
        lines += [
            "More masters join with payloads rendered by `kubeseed render master CLUSTER --hostname NAME --join`.",
            "",
        ]
        key = read(ctx.path(KEY_FILE))
        if key:  # init --upload-certs: kubeadm's control-plane join works for 2 hours
            shown = key.decode().strip() if terminal else f"<key: {KEY_FILE}>"
            lines += [
                "You can now join any number of control-plane nodes running the following command on each as root:",
                "",
                f"kubeadm join {cfg.control_plane_endpoint} --token {token} \\",
                f"\t--discovery-token-ca-cert-hash {pin} \\",
                f"\t--control-plane --certificate-key {shown}",
                "",
                "Please note that the certificate-key gives access to cluster sensitive data, keep it secret!",
                "As a safeguard, uploaded-certs will be deleted in two hours; If necessary, you can use",
                '"init --phase upload-certs --upload-certs" to reload certs afterward.',
                "",
            ]
        lines += [
            "Then you can join any number of worker nodes by running the following on each as root:",
            "",
            f"kubeadm join {cfg.control_plane_endpoint} --token {token} \\",
            f"\t--discovery-token-ca-cert-hash {pin}",
            "",
            "(or: python3 /opt/kubeseed/kubeseed-runtime.pyz join with the same arguments; kubeseed node payloads",
            "carry all of it)",
        ]
    else:
        lines += ["No unexpired bootstrap token is left: create one to join nodes (kubeseed token create)."]
    ctx.say(*lines)
