"""init's addon phase: CoreDNS and kube-proxy as kubeadm installs them, then the cluster's own add-on manifests."""

from __future__ import annotations

from typing import List

from ..workflow import Context, PhaseError, confine
from .apiclient import with_client
from .controlplane import ADDON_DIR, config
from .objects import NODE_GROUP, binding, configmap, meta, role, rule
from .versions import image

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
    cfg = config(ctx)
    app = {"k8s-app": "kube-dns"}
    control_plane = {"effect": "NoSchedule", "key": "node-role.kubernetes.io/control-plane"}
    container = {
        "name": "coredns",
        "image": image("coredns", cfg.kubernetes_version, cfg.image_repository),
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
        "metadata": meta("coredns", "kube-system", **app),
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
            meta(
                "kube-dns",
                "kube-system",
                **app,
                **{"kubernetes.io/cluster-service": "true", "kubernetes.io/name": "CoreDNS"},
            ),
            annotations={"prometheus.io/port": "9153", "prometheus.io/scrape": "true"},
        ),
        "spec": {
            "clusterIP": cfg.networking.cluster_dns_ip,
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
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta("coredns", "kube-system")},
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

    cfg = config(ctx)
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
    proxy_config = {
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
        "metadata": meta("kube-proxy", "kube-system", **app),
        "spec": {
            "selector": {"matchLabels": app},
            "updateStrategy": {"type": "RollingUpdate"},
            "template": {
                "metadata": {"labels": app},
                "spec": {
                    "containers": [
                        {
                            "name": "kube-proxy",
                            "image": image("kube-proxy", cfg.kubernetes_version, cfg.image_repository),
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
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta("kube-proxy", "kube-system")},
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
            {"config.conf": yaml.safe_dump(proxy_config), "kubeconfig.conf": yaml.safe_dump(kubeconfig)},
        ),
        daemonset,
    ]


def addon(ctx: Context) -> None:
    """CoreDNS and kube-proxy, then the cluster's own add-on manifests (a CNI, say) in order."""
    import yaml

    cfg = config(ctx)
    objects = coredns(ctx) + kube_proxy(ctx)
    for path in cfg.addons:
        file = confine(ctx.path(path), ctx.path(ADDON_DIR))  # no symlink may lead out of the add-on directory
        try:
            with open(file) as f:
                text = f.read()
            if any(isinstance(e, yaml.AliasEvent) for e in yaml.parse(text, yaml.SafeLoader)):
                raise yaml.YAMLError("aliases (*name) are not accepted")  # nested ones expand to gigabytes
            docs = [d for d in yaml.safe_load_all(text) if d]
        except (OSError, yaml.YAMLError) as e:
            raise PhaseError(f"add-on {path}: {str(e).splitlines()[0]}") from None
        for d in docs:
            if not isinstance(d, dict) or not d.get("kind") or not (d.get("metadata") or {}).get("name"):
                raise PhaseError(f"add-on {path}: every document must be an object with kind and metadata.name")
        objects += docs
    with_client(ctx, "admin.conf", lambda c: c.apply_all(objects))
    ctx.say(f"\t[addons] applied CoreDNS, kube-proxy and {len(cfg.addons)} add-on manifest(s)")
