"""init's API phases: wait for the control plane, upload the configs, mark the node, bootstrap tokens and the
objects that let nodes join (kubeadm-compatible), the add-ons, and the join command."""

from __future__ import annotations

import base64
import datetime
import ipaddress
import os
import shutil
import tempfile
import urllib.parse
from typing import Any, Dict, List, Optional, Tuple

from . import api
from .kubeconfig import b64, read_kubeconfig
from .master import ADMIN_GROUP, narrowed_kubelet_client
from .workflow import Context, PhaseError

NODE_GROUP = "system:bootstrappers:kubeadm:default-node-token"
RBAC = "rbac.authorization.k8s.io/v1"
# (apiVersion, kind) -> (plural, namespaced) for what init and kubeadm's add-ons create; add-on manifests of
# other kinds are looked up through API discovery.
KINDS = {
    ("v1", "ConfigMap"): ("configmaps", True),
    ("v1", "Secret"): ("secrets", True),
    ("v1", "Service"): ("services", True),
    ("v1", "ServiceAccount"): ("serviceaccounts", True),
    ("v1", "Namespace"): ("namespaces", False),
    ("v1", "Node"): ("nodes", False),
    ("apps/v1", "Deployment"): ("deployments", True),
    ("apps/v1", "DaemonSet"): ("daemonsets", True),
    (RBAC, "Role"): ("roles", True),
    (RBAC, "RoleBinding"): ("rolebindings", True),
    (RBAC, "ClusterRole"): ("clusterroles", False),
    (RBAC, "ClusterRoleBinding"): ("clusterrolebindings", False),
}


class Client:
    """The API server at the kubeconfig's server, as that kubeconfig's user (client certificate)."""

    def __init__(self, ctx: Context, conf: str) -> None:
        with open(ctx.path(f"/etc/kubernetes/{conf}")) as f:
            self.server, self.ca, creds = read_kubeconfig(f.read(), conf)
        self.ctx, self.dir = ctx, tempfile.mkdtemp(prefix="kubeseed-")
        self.cert = (os.path.join(self.dir, "crt"), os.path.join(self.dir, "key"))
        for path, field in zip(self.cert, ("client-certificate-data", "client-key-data")):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(base64.b64decode(creds[field]))
        self.found: Dict[Tuple[str, str], Tuple[str, bool]] = {}

    def close(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    def call(self, method: str, path: str, body: Any = None, content_type: str = "application/json") -> Tuple[int, Any]:
        """One request, retried while the server is unreachable or answers 5xx (it may still be settling)."""

        def attempt() -> Tuple[int, Any]:
            try:
                status, obj = api.call(self.server + path, self.ca, "", method, body, 15, self.cert, content_type)
            except api.Untrusted as e:
                raise PhaseError(f"{self.server} does not present a certificate of this cluster's CA ({e})") from None
            if status >= 500 or status == 429:
                raise api.Unreachable(f"HTTP {status} for {method} {path}: {obj.get('message', '')}")
            return status, obj

        return api.wait(self.ctx, f"the API server at {self.server}", attempt)

    def path(self, obj: dict) -> str:
        version, kind = obj.get("apiVersion", ""), obj.get("kind", "")
        meta = obj.get("metadata") or {}
        plural, namespaced = KINDS.get((version, kind)) or self._discover(version, kind)
        base = "/api/v1" if version == "v1" else f"/apis/{version}"
        ns = f"/namespaces/{meta.get('namespace') or 'default'}" if namespaced else ""
        return f"{base}{ns}/{plural}/{meta['name']}"

    def _discover(self, version: str, kind: str) -> Tuple[str, bool]:
        if (version, kind) not in self.found:
            status, doc = self.call("GET", "/api/v1" if version == "v1" else f"/apis/{version}")
            for r in doc.get("resources", []) if status == 200 else []:
                if r.get("kind") == kind and "/" not in r.get("name", "/"):
                    self.found[(version, kind)] = (r["name"], bool(r.get("namespaced")))
                    break
            else:
                raise PhaseError(f"the API server does not serve {kind} in {version} (is its CRD applied first?)")
        return self.found[(version, kind)]

    def apply(self, obj: dict) -> None:
        """Server-side apply: creates the object or brings it to this content; safe to repeat."""
        query = "?" + urllib.parse.urlencode({"fieldManager": "kubeseed", "force": "true"})
        status, out = self.call("PATCH", self.path(obj) + query, obj, "application/apply-patch+yaml")
        if status not in (200, 201):
            name = f"{obj.get('kind')} {(obj.get('metadata') or {}).get('name')}"
            raise PhaseError(f"the API server refused {name} (HTTP {status}): {out.get('message', '')}")


def _with(ctx: Context, conf: str, work: Any) -> Any:
    client = Client(ctx, conf)
    try:
        return work(client)
    finally:
        client.close()


def wait_control_plane(ctx: Context) -> None:
    """Poll the API server's /livez at the configured endpoint until it answers, or say what to look at."""
    assert ctx.config is not None
    cri = ctx.config.kubelet.container_runtime_endpoint

    def ready(client: Client) -> None:
        def attempt() -> None:
            status, out = api.call(client.server + "/livez", client.ca, cert=client.cert)
            if status != 200:
                raise api.Unreachable(f"HTTP {status}: {out.get('message', '')}")

        try:
            api.wait(ctx, f"the control plane at {client.server}", attempt, 1, 5)
        except api.Untrusted as e:
            raise PhaseError(f"{client.server} does not present a certificate of this cluster's CA ({e})") from None
        except PhaseError as e:
            raise PhaseError(
                f"{e}. The kubelet runs the control plane from /etc/kubernetes/manifests; look at: systemctl status "
                f"kubelet; journalctl -xeu kubelet; crictl --runtime-endpoint {cri} ps -a | grep kube | grep -v "
                f"pause; crictl --runtime-endpoint {cri} logs CONTAINERID"
            ) from None

    _with(ctx, "admin.conf", ready)


def _meta(name: str, namespace: str = "", **labels: str) -> dict:
    meta: Dict[str, Any] = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    if labels:
        meta["labels"] = labels
    return meta


def role(kind: str, name: str, rules: List[dict], namespace: str = "") -> dict:
    return {"apiVersion": RBAC, "kind": kind, "metadata": _meta(name, namespace), "rules": rules}


def binding(
    kind: str, name: str, role_kind: str, role_name: str, subjects: List[Tuple[str, str]], ns: str = ""
) -> dict:
    subs = []
    for sub_kind, sub_name in subjects:
        if sub_kind == "ServiceAccount":
            subs.append({"kind": sub_kind, "name": sub_name, "namespace": "kube-system"})
        else:
            subs.append({"apiGroup": "rbac.authorization.k8s.io", "kind": sub_kind, "name": sub_name})
    ref = {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role_name}
    return {"apiVersion": RBAC, "kind": kind, "metadata": _meta(name, ns), "roleRef": ref, "subjects": subs}


def rule(groups: List[str], resources: List[str], verbs: List[str], names: Optional[List[str]] = None) -> dict:
    r: Dict[str, Any] = {"apiGroups": groups, "resources": resources, "verbs": verbs}
    if names:
        r["resourceNames"] = names
    return r


def configmap(name: str, namespace: str, data: Dict[str, str]) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta(name, namespace), "data": data}


def cluster_configuration(ctx: Context) -> dict:
    """kubeadm's ClusterConfiguration for this cluster (v1beta4 from 1.31, v1beta3 before)."""
    cfg = ctx.config
    assert cfg is not None
    net = cfg.networking
    doc: Dict[str, Any] = {
        "apiServer": {},
        "apiVersion": "kubeadm.k8s.io/v1beta4" if cfg.minor >= 31 else "kubeadm.k8s.io/v1beta3",
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
    if cfg.minor >= 31:
        doc.update(caCertificateValidityPeriod="87600h0m0s", certificateValidityPeriod="8760h0m0s")
        doc["encryptionAlgorithm"] = cfg.key_algorithm
    return doc


def upload_config(ctx: Context) -> None:
    """kubeadm-config and kubelet-config ConfigMaps (a real `kubeadm join` reads them), the Roles that let
    joining nodes read them, and the ClusterRoleBindings for admin.conf's group and the kubelet client."""
    import yaml

    from .kubelet import kubelet_configuration

    cfg = ctx.config
    assert cfg is not None
    # admin.conf's group has no rights until this binding exists: make it as the super admin, as kubeadm does.
    admins = binding("ClusterRoleBinding", ADMIN_GROUP, "ClusterRole", "cluster-admin", [("Group", ADMIN_GROUP)])
    _with(ctx, "super-admin.conf", lambda c: c.apply(admins))
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
    if narrowed_kubelet_client(cfg.kubernetes_version):
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
    _with(ctx, "admin.conf", lambda c: [c.apply(o) for o in objects])


def mark_control_plane(ctx: Context) -> None:
    """Label and taint this node as a control-plane node once its kubelet has registered it."""
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
        patch = {"metadata": {"labels": labels}, "spec": {"taints": taints}}
        status, out = c.call("PATCH", f"/api/v1/nodes/{name}", patch, "application/merge-patch+json")
        if status != 200:
            raise PhaseError(f"cannot label node {name} (HTTP {status}): {out.get('message', '')}")

    _with(ctx, "admin.conf", mark)


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
        "metadata": _meta(f"bootstrap-token-{token_id}", "kube-system"),
        "type": "bootstrap.kubernetes.io/token",
        "data": {k: b64(v.encode()) for k, v in data.items()},
    }


def cluster_info(ctx: Context) -> str:
    """kube-public/cluster-info's kubeconfig, byte for byte as kubeadm writes it (the JWS is over these bytes)."""
    assert ctx.config is not None
    prefs = "preferences: {}\n" if ctx.config.minor <= 33 else ""  # client-go stopped writing it in 1.34
    return (
        "apiVersion: v1\nclusters:\n- cluster:\n"
        f"    certificate-authority-data: {b64(ctx.config.pki['ca.crt'].encode())}\n"
        f"    server: https://{ctx.config.control_plane_endpoint}\n"
        '  name: ""\ncontexts: null\ncurrent-context: ""\nkind: Config\n'
        f"{prefs}users: null\n"
    )


def bootstrap_token(ctx: Context) -> None:
    """Token Secrets, cluster-info for anonymous discovery, and the bindings that let token holders create
    CSRs and get node client certificates approved (and renewed)."""
    anonymous = [("User", "system:anonymous")]
    nodes = [("Group", NODE_GROUP)]
    csrs = "system:certificates.k8s.io:certificatesigningrequests:"
    objects = [token_secret(t) for t in live_tokens(ctx)] + [
        configmap("cluster-info", "kube-public", {"kubeconfig": cluster_info(ctx)}),
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
    _with(ctx, "admin.conf", lambda c: [c.apply(o) for o in objects])


COREFILE = """.:53 {
    errors
    health {
       lameduck 5s
    }
    ready
    kubernetes DOMAIN in-addr.arpa ip6.arpa {
       pods insecure
       fallthrough in-addr.arpa ip6.arpa
       ttl 30
    }
    prometheus :9153
    forward . /etc/resolv.conf {
       max_concurrent 1000
    }
    cache 30 {
       disable success DOMAIN
       disable denial DOMAIN
    }
    loop
    reload
    loadbalance
}
"""


def coredns(ctx: Context) -> List[dict]:
    """CoreDNS as kubeadm installs it: service kube-dns at the tenth address of the service range."""
    from .manifests import COREDNS

    cfg = ctx.config
    assert cfg is not None
    dns_ip = str(ipaddress.ip_network(cfg.networking.service_subnet)[10])
    app = {"k8s-app": "kube-dns"}
    control_plane = {"effect": "NoSchedule", "key": "node-role.kubernetes.io/control-plane"}
    container = {
        "name": "coredns",
        "image": f"{cfg.image_repository}/coredns/coredns:{COREDNS[cfg.minor]}",
        "imagePullPolicy": "IfNotPresent",
        "args": ["-conf", "/etc/coredns/Corefile"],
        "ports": [
            {"containerPort": 53, "name": "dns", "protocol": "UDP"},
            {"containerPort": 53, "name": "dns-tcp", "protocol": "TCP"},
            {"containerPort": 9153, "name": "metrics", "protocol": "TCP"},
        ],
        "resources": {"limits": {"memory": "170Mi"}, "requests": {"cpu": "100m", "memory": "70Mi"}},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"add": ["NET_BIND_SERVICE"], "drop": ["ALL"]},
            "readOnlyRootFilesystem": True,
        },
        "livenessProbe": {
            "httpGet": {"path": "/health", "port": 8080, "scheme": "HTTP"},
            "initialDelaySeconds": 60,
            "timeoutSeconds": 5,
            "successThreshold": 1,
            "failureThreshold": 5,
        },
        "readinessProbe": {"httpGet": {"path": "/ready", "port": 8181, "scheme": "HTTP"}},
        "volumeMounts": [{"mountPath": "/etc/coredns", "name": "config-volume", "readOnly": True}],
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta("coredns", "kube-system", **app),
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": app},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
            "template": {
                "metadata": {"labels": app},
                "spec": {
                    "priorityClassName": "system-cluster-critical",
                    "serviceAccountName": "coredns",
                    "affinity": {
                        "podAntiAffinity": {
                            "preferredDuringSchedulingIgnoredDuringExecution": [
                                {
                                    "weight": 100,
                                    "podAffinityTerm": {
                                        "labelSelector": {
                                            "matchExpressions": [
                                                {"key": "k8s-app", "operator": "In", "values": ["kube-dns"]}
                                            ]
                                        },
                                        "topologyKey": "kubernetes.io/hostname",
                                    },
                                }
                            ]
                        }
                    },
                    "tolerations": [{"key": "CriticalAddonsOnly", "operator": "Exists"}, control_plane],
                    "nodeSelector": {"kubernetes.io/os": "linux"},
                    "containers": [container],
                    "dnsPolicy": "Default",
                    "volumes": [
                        {
                            "name": "config-volume",
                            "configMap": {"name": "coredns", "items": [{"key": "Corefile", "path": "Corefile"}]},
                        }
                    ],
                },
            },
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": dict(
            _meta(
                "kube-dns",
                "kube-system",
                **app,
                **{"kubernetes.io/cluster-service": "true", "kubernetes.io/name": "CoreDNS"},
            ),
            annotations={"prometheus.io/port": "9153", "prometheus.io/scrape": "true"},
        ),
        "spec": {
            "clusterIP": dns_ip,
            "ports": [
                {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
                {"name": "metrics", "port": 9153, "protocol": "TCP", "targetPort": 9153},
            ],
            "selector": app,
        },
    }
    watch = ["list", "watch"]
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta("coredns", "kube-system")},
        role(
            "ClusterRole",
            "system:coredns",
            [
                rule([""], ["endpoints", "services", "pods", "namespaces"], watch),
                rule([""], ["nodes"], ["get"]),
                rule(["discovery.k8s.io"], ["endpointslices"], watch),
            ],
        ),
        binding(
            "ClusterRoleBinding", "system:coredns", "ClusterRole", "system:coredns", [("ServiceAccount", "coredns")]
        ),
        configmap("coredns", "kube-system", {"Corefile": COREFILE.replace("DOMAIN", cfg.networking.dns_domain)}),
        deployment,
        service,
    ]


def kube_proxy(ctx: Context) -> List[dict]:
    """kube-proxy as kubeadm installs it: its config and in-cluster kubeconfig, RBAC, the DaemonSet."""
    import yaml

    cfg = ctx.config
    assert cfg is not None
    sa = "/var/run/secrets/kubernetes.io/serviceaccount/"
    kubeconfig = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "cluster": {"certificate-authority": sa + "ca.crt", "server": f"https://{cfg.control_plane_endpoint}"},
                "name": "default",
            }
        ],
        "contexts": [{"context": {"cluster": "default", "namespace": "default", "user": "default"}, "name": "default"}],
        "current-context": "default",
        "users": [{"name": "default", "user": {"tokenFile": sa + "token"}}],
    }
    config = {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "bindAddress": "0.0.0.0",
        "clientConnection": {"kubeconfig": "/var/lib/kube-proxy/kubeconfig.conf"},
        "clusterCIDR": cfg.networking.pod_subnet,
        "mode": "",
    }
    app = {"k8s-app": "kube-proxy"}
    daemonset = {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": _meta("kube-proxy", "kube-system", **app),
        "spec": {
            "selector": {"matchLabels": app},
            "updateStrategy": {"type": "RollingUpdate"},
            "template": {
                "metadata": {"labels": app},
                "spec": {
                    "containers": [
                        {
                            "name": "kube-proxy",
                            "image": f"{cfg.image_repository}/kube-proxy:{cfg.kubernetes_version}",
                            "imagePullPolicy": "IfNotPresent",
                            "command": [
                                "/usr/local/bin/kube-proxy",
                                "--config=/var/lib/kube-proxy/config.conf",
                                "--hostname-override=$(NODE_NAME)",
                            ],
                            "env": [{"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
                            "securityContext": {"privileged": True},
                            "volumeMounts": [
                                {"mountPath": "/var/lib/kube-proxy", "name": "kube-proxy"},
                                {"mountPath": "/run/xtables.lock", "name": "xtables-lock"},
                                {"mountPath": "/lib/modules", "name": "lib-modules", "readOnly": True},
                            ],
                        }
                    ],
                    "hostNetwork": True,
                    "nodeSelector": {"kubernetes.io/os": "linux"},
                    "priorityClassName": "system-node-critical",
                    "serviceAccountName": "kube-proxy",
                    "tolerations": [{"operator": "Exists"}],
                    "volumes": [
                        {"name": "kube-proxy", "configMap": {"name": "kube-proxy"}},
                        {"name": "xtables-lock", "hostPath": {"path": "/run/xtables.lock", "type": "FileOrCreate"}},
                        {"name": "lib-modules", "hostPath": {"path": "/lib/modules"}},
                    ],
                },
            },
        },
    }
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta("kube-proxy", "kube-system")},
        binding(
            "ClusterRoleBinding",
            "kubeadm:node-proxier",
            "ClusterRole",
            "system:node-proxier",
            [("ServiceAccount", "kube-proxy")],
        ),
        role("Role", "kube-proxy", [rule([""], ["configmaps"], ["get"], ["kube-proxy"])], "kube-system"),
        binding("RoleBinding", "kube-proxy", "Role", "kube-proxy", [("Group", NODE_GROUP)], "kube-system"),
        configmap(
            "kube-proxy",
            "kube-system",
            {"config.conf": yaml.safe_dump(config), "kubeconfig.conf": yaml.safe_dump(kubeconfig)},
        ),
        daemonset,
    ]


def addon(ctx: Context) -> None:
    """CoreDNS and kube-proxy, then the cluster's own add-on manifests (a CNI, say) in order."""
    import yaml

    cfg = ctx.config
    assert cfg is not None
    objects = coredns(ctx) + kube_proxy(ctx)
    for path in cfg.addons:
        try:
            with open(ctx.path(path)) as f:
                docs = [d for d in yaml.safe_load_all(f) if d]
        except (OSError, yaml.YAMLError) as e:
            raise PhaseError(f"add-on {path}: {e}") from None
        for d in docs:
            if not isinstance(d, dict) or not d.get("kind") or not (d.get("metadata") or {}).get("name"):
                raise PhaseError(f"add-on {path}: every document must be an object with kind and metadata.name")
        objects += docs
    _with(ctx, "admin.conf", lambda c: [c.apply(o) for o in objects])
    ctx.say(f"\t[addons] applied CoreDNS, kube-proxy and {len(cfg.addons)} add-on manifest(s)")


def show_join_command(ctx: Context) -> None:
    """What kubeadm init prints: where the admin kubeconfig is, and the join command for nodes."""
    from .tokens import ca_pin

    cfg = ctx.config
    assert cfg is not None
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
        if not getattr(ctx.out, "isatty", lambda: False)():  # first-boot output lands in logs: keep the secret out
            token = token.split(".")[0] + ".<secret: kubeseed token list, or /etc/kubeseed/config.yaml>"
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
    ctx.say("\n".join(lines))
