"""``kubeseed upgrade plan|apply CLUSTER``: the Kubernetes versions a cluster may go to, by kubeadm's rules (a newer
patch of its minor or the next minor: one minor at a time, never down, only minors this kubeseed supports), and the
upgrade itself: the full runtime and the target published to the cluster (kube-system/kubeseed-runtime, readable by
nodes), cluster.yaml's kubernetesVersion set (payloads rendered from then on carry it), and the one command each
machine runs, masters first. The cluster's version is what kubeadm reads: kube-system/kubeadm-config's
ClusterConfiguration.kubernetesVersion."""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kubeseed.runtime.config import RUNTIME_PATH
from kubeseed.runtime.versions import MAX_MINOR, MIN_MINOR, Version

from .args import CLUSTER_HELP, cluster_dir_arg, text_arg
from .console import progress, say
from .errors import UserError, shown
from .tokencli import KUBECONFIG_HELP, ClusterUnchanged, connect_args, table

if TYPE_CHECKING:  # the API client and the cluster model are imported by the commands, when they run
    from .clusterapi import ClusterAPI
    from .model import Cluster

# The newest patch of each supported minor that this kubeseed knows of (there is no network to ask): what `upgrade
# plan` offers. `upgrade apply --to` takes any patch of a supported minor, newer ones included.
NEWEST_PATCH = {30: 14, 31: 14, 32: 12, 33: 12, 34: 8, 35: 5, 36: 1}
KUBEADM_CONFIG = "/api/v1/namespaces/kube-system/configmaps/kubeadm-config"
NODES = "/api/v1/nodes"
CONTROL_PLANE_LABEL = "node-role.kubernetes.io/control-plane"
RELEASE = re.compile(r"v1\.(\d+)\.(\d+)")
RUNTIME = f"sudo python3 {RUNTIME_PATH}"
FROM_API = "kube-system/kubeadm-config"
CONTROL_PLANE = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "etcd")


def _release(version: str) -> tuple[int, int]:
    """(minor, patch) of a ``v1.MINOR.PATCH`` version (any minor); ValueError for anything else."""
    m = RELEASE.fullmatch(version)
    if not m:
        raise ValueError(version)
    return int(m.group(1)), int(m.group(2))


def targets(current: str) -> list[str]:
    """The versions kubeadm's rules let a cluster at ``current`` go to that this kubeseed knows: the newest patch of
    its own minor when newer, and the newest of the next minor, where supported."""
    minor, patch = _release(current)
    found = []
    if minor in NEWEST_PATCH and NEWEST_PATCH[minor] > patch:
        found.append(f"v1.{minor}.{NEWEST_PATCH[minor]}")
    if minor + 1 in NEWEST_PATCH:
        found.append(f"v1.{minor + 1}.{NEWEST_PATCH[minor + 1]}")
    return found


def rule_broken(current: str, target: str) -> str:
    """'' when kubeadm's rules let a cluster at ``current`` go to ``target`` (a supported version), else the rule
    ``target`` breaks, as the rest of a sentence that starts with it."""
    (minor, patch), (to_minor, to_patch) = _release(current), _release(target)
    if (to_minor, to_patch) < (minor, patch):
        return f"is older than the cluster's {current}: kubeseed never downgrades a cluster"
    if to_minor > minor + 1:
        return (
            f"skips a minor: the cluster runs {current} and an upgrade goes one minor at a time (to a v1.{minor + 1} "
            "release first)"
        )
    return ""


def target_arg(text: str) -> str:
    """``--to``'s version (kubeadm's 1.36.1 is v1.36.1), if it is one of a minor this kubeseed supports."""
    value = text_arg(text, "--to")
    if not re.fullmatch(r"v?\d+\.\d+\.\d+", value):
        raise UserError(f"--to: {shown(value)} is not a version: give v1.MINOR.PATCH, e.g. v1.{MAX_MINOR}.0")
    version = value if value.startswith("v") else f"v{value}"
    try:
        Version(version)
    except ValueError as e:
        raise UserError(f"--to: {e}") from None
    return version


def live_version(api: ClusterAPI) -> str:
    """The version the cluster runs, as kubeadm reads it: kube-system/kubeadm-config's
    ClusterConfiguration.kubernetesVersion. NotReached, or Refused (also when the cluster has no such version)."""
    import yaml

    from kubeseed.runtime.config import load_yaml

    from .clusterapi import Refused

    cm = api.get(KUBEADM_CONFIG, f"ConfigMap {FROM_API}")
    if cm is None:
        raise Refused(f"the cluster at {api.server} has no ConfigMap {FROM_API} (a master's init makes it)")
    text = (cm.get("data") or {}).get("ClusterConfiguration")
    try:
        doc = load_yaml(text) if isinstance(text, str) else None
    except yaml.YAMLError:
        doc = None
    version = doc.get("kubernetesVersion") if isinstance(doc, dict) else None
    if not isinstance(version, str) or not RELEASE.fullmatch(version):
        found = shown(version) if isinstance(version, str) else "none"
        raise Refused(f"{FROM_API} on the cluster holds no kubernetesVersion like v1.{MAX_MINOR}.0 (found {found})")
    return version


def list_nodes(api: ClusterAPI) -> list[tuple[str, bool, str]]:
    """The cluster's Nodes as (name, master, kubelet version or ''), masters first, each group by name."""
    out = api.get(NODES, "the Nodes") or {}
    nodes = []
    for item in out.get("items") or []:
        meta = item.get("metadata") or {} if isinstance(item, dict) else {}
        name = meta.get("name")
        if not isinstance(name, str) or not name.isprintable():
            continue
        master = CONTROL_PLANE_LABEL in (meta.get("labels") or {})
        kubelet = ((item.get("status") or {}).get("nodeInfo") or {}).get("kubeletVersion")
        nodes.append((name, master, kubelet if isinstance(kubelet, str) and kubelet.isprintable() else ""))
    return sorted(nodes, key=lambda n: (not n[1], n[0]))


@dataclass
class Seen:
    """What the workstation knows of a cluster: its version and where that came from (``problem``: why not from
    the API), its Nodes (None when they could not be listed), and the target and runtime version that `upgrade
    apply` published ('' when none)."""

    version: str
    source: str
    problem: str = ""
    nodes: list[tuple[str, bool, str]] | None = None
    published: tuple[str, str] = ("", "")


def look(api: ClusterAPI, cluster: Cluster, cluster_dir: Path) -> Seen:
    """The cluster's version from its API, else cluster.yaml's (``problem`` says why); its Nodes and what is
    published for its machines when the API tells."""
    from kubeseed.runtime.published import PATH

    from .clusterapi import NotReached, Refused
    from .model import CLUSTER_FILE

    try:
        seen = Seen(live_version(api), FROM_API)
    except (NotReached, Refused) as e:
        return Seen(cluster.kubernetes_version, f"{cluster_dir}/{CLUSTER_FILE}", str(e))
    try:
        seen.nodes = list_nodes(api)
    except (NotReached, Refused):
        pass  # the table says "every master", "every machine"
    try:
        data = ((api.get(PATH, "the published runtime") or {}).get("data")) or {}
    except (NotReached, Refused):
        return seen
    target, runtime = data.get("kubernetesVersion"), data.get("runtimeVersion")
    if isinstance(target, str) and RELEASE.fullmatch(target):
        seen.published = (target, str(runtime) if isinstance(runtime, str) and runtime.isprintable() else "?")
    return seen


# -- plan ------------------------------------------------------------------------------------------------------------


def _tags(version: str, repository: str) -> dict[str, str]:
    """Component -> image tag (for the kubelet: version) of ``version``; only the Kubernetes components' for a
    version of a minor this kubeseed does not know."""
    from kubeseed.runtime.init.versions import KUBERNETES_IMAGES, images

    tags = {"kubelet": version, **{name: version for name in KUBERNETES_IMAGES}}
    try:
        refs = images(version, repository)
    except (ValueError, KeyError):
        return tags
    for ref in refs:
        name, tag = ref.rsplit("/", 1)[1].split(":", 1)
        tags[name] = tag
    return tags


def plan_rows(seen: Seen, target: str, repository: str) -> list[tuple[str, str, str, str]]:
    """kubeadm's upgrade plan table, simply: (COMPONENT, WHERE, CURRENT, TARGET), the kubelet per node when the
    Nodes are known."""
    now, then = _tags(seen.version, repository), _tags(target, repository)
    masters = ", ".join(name for name, master, _ in seen.nodes or [] if master) or "every master"
    rows = [("COMPONENT", "WHERE", "CURRENT", "TARGET")]
    if seen.nodes:
        rows += [("kubelet", name, kubelet or "unknown", target) for name, _, kubelet in seen.nodes]
    else:
        rows.append(("kubelet", "every machine", seen.version, target))
    where = {"kube-proxy": "every machine (DaemonSet)", "pause": "every machine", "coredns": "cluster (Deployment)"}
    for name in then:
        if name != "kubelet":
            rows.append((name, masters if name in CONTROL_PLANE else where[name], now.get(name, "unknown"), then[name]))
    return rows


def cmd_upgrade_plan(args: argparse.Namespace) -> int:
    from kubeseed.runtime.init.versions import images
    from kubeseed.runtime.published import NAME

    from .model import CLUSTER_FILE
    from .secrets import load

    cluster_dir = cluster_dir_arg(args.cluster)
    cluster, secrets = load(cluster_dir)
    with connect_args(args, cluster, secrets) as api:
        seen = look(api, cluster, cluster_dir)
    if seen.problem:
        print(
            f"Cluster {cluster.name} runs Kubernetes {seen.version}, as {seen.source} says (the cluster's API could "
            f"not tell: {seen.problem})"
        )
        say("note: that is the version payloads render; `kubeseed upgrade apply` needs the cluster's API")
    else:
        print(f"Cluster {cluster.name} ({api.server}) runs Kubernetes {seen.version}, as {FROM_API} says")
        target, runtime = seen.published
        if target:
            print(
                f"Published for its machines by `kubeseed upgrade apply`: target {target}, runtime {runtime} "
                f"(kube-system/{NAME}); each machine not at {target} yet upgrades with: {RUNTIME} upgrade {target}"
            )
        if cluster.kubernetes_version != seen.version:
            say(
                f"note: {cluster_dir}/{CLUSTER_FILE} says {cluster.kubernetes_version}: payloads rendered now carry "
                f"that; `kubeseed upgrade apply` sets it to the version it upgrades to"
            )
    known = ", ".join(f"v1.{m}.{p}" for m, p in NEWEST_PATCH.items())
    print(
        f"An upgrade goes one minor at a time, never down: to a newer patch of v1.{_release(seen.version)[0]} or to "
        f"the next minor. This kubeseed supports v1.{MIN_MINOR} to v1.{MAX_MINOR}; the newest patches it knows: "
        f"{known}."
    )
    found = targets(seen.version)
    if not found:
        print(
            f"\nNo newer version known to this kubeseed for a cluster at {seen.version}. A newer patch of a supported "
            f"minor can be named: kubeseed upgrade apply {args.cluster} --to v1.MINOR.PATCH"
        )
        return 0
    minor = _release(seen.version)[0]
    for target in found:
        kind = f"a newer patch of v1.{minor}" if _release(target)[0] == minor else "the next minor"
        print(f"\nUpgrade to {target} ({kind}):\n")
        print(table(plan_rows(seen, target, cluster.image_repository)))
        print(f"\nImages {target} uses (pull them into your mirror first on an air-gapped site):")
        for ref in images(target, cluster.image_repository):
            print(f"  {ref}")
    print(f"\nApply it with:\n\n    kubeseed upgrade apply {args.cluster} --to {found[-1]}")
    if len(found) > 1:
        print(f"(or --to {found[0]}, the newer patch alone)")
    return 0


# -- apply -----------------------------------------------------------------------------------------------------------


def with_version(text: str, version: str) -> str:
    """cluster.yaml's ``text`` with its top-level kubernetesVersion set to ``version``, every other byte kept
    (comments, layout, quoting); a line added after ``kind:`` where it has none. ValueError when the edit would
    not give exactly that document."""
    from kubeseed.runtime.config import load_yaml

    line = re.compile(r"^(kubernetesVersion[ \t]*:[ \t]*)(\"[^\"\r\n]*\"|'[^'\r\n]*'|[^\s#]+)?", re.M)
    m = line.search(text)
    if m is None:
        new = re.sub(r"^(kind[ \t]*:[^\r\n]*\r?\n)", rf"\g<1>kubernetesVersion: {version}\n", text, count=1, flags=re.M)
    else:
        quote = (m.group(2) or "")[:1] if (m.group(2) or "")[:1] in "\"'" else ""
        new = text[: m.start()] + m.group(1) + f"{quote}{version}{quote}" + text[m.end() :]
    old_doc, new_doc = load_yaml(text), load_yaml(new)
    if not isinstance(new_doc, dict) or new_doc.get("kubernetesVersion") != version:
        raise ValueError("no kubernetesVersion line to edit")
    if {**old_doc, "kubernetesVersion": version} != new_doc:
        raise ValueError("the edit would change more than kubernetesVersion")
    return new


def _apply_all(api: ClusterAPI, objects: list[dict[str, Any]], cluster_file: str, old: str) -> None:
    """Apply the readers first and the ConfigMap last: machines see the new target only once nodes may read it.
    ClusterUnchanged when the API does not take one (what was applied said)."""
    from .clusterapi import NotReached, Refused

    done: list[str] = []
    for obj in objects[1:] + objects[:1]:
        try:
            api.apply(obj)
        except (NotReached, Refused) as e:
            before = f" (applied before that: {', '.join(done)}; nothing machines read)" if done else ""
            raise ClusterUnchanged(
                f"the runtime was not published: {e}{before}. {cluster_file} still says {old}"
            ) from None
        done.append(f"{obj['kind']} {obj['metadata']['name']}")


def machine_commands(nodes: list[tuple[str, bool, str]] | None, target: str) -> list[str]:
    """The lines that say what to run on each machine, masters first, then the nodes; each drains itself around its
    kubelet (a node with its own credentials, which may evict its own pods), and says how to drain it from a master
    where a cluster refuses that. Without the Nodes, the same for each master and each node."""
    if nodes:
        machines = [f"{name} ({'master' if master else 'node'})" for name, master, _ in nodes]
    else:
        machines = ["each master, one at a time", "each node, one at a time"]
    return [f"  on {where}: {RUNTIME} upgrade {target}" for where in machines]


def cmd_upgrade_apply(args: argparse.Namespace) -> int:
    from kubeseed.runtime.cli import VERSION
    from kubeseed.runtime.upgrade.publish import READER, objects

    from .clusterapi import NotReached, Refused
    from .fsutil import atomic_write
    from .model import CLUSTER_FILE
    from .secrets import load
    from .yamlfile import read_text
    from .zipcache import cached_zipapp

    target = target_arg(args.to)
    cluster_dir = cluster_dir_arg(args.cluster)
    cluster, secrets = load(cluster_dir)
    path = cluster_dir / CLUSTER_FILE
    text, old = read_text(path), cluster.kubernetes_version
    try:
        new_text = with_version(text, target)
    except ValueError as e:
        raise UserError(
            f"{path}: cannot set kubernetesVersion to {target} ({e}); write it as a top-level line "
            f"`kubernetesVersion: {old}` and run this again"
        ) from None
    with connect_args(args, cluster, secrets) as api:
        try:
            current = live_version(api)
        except (NotReached, Refused) as e:
            again = ": publishing the runtime needs the cluster's API; run this again once it answers"
            raise ClusterUnchanged(
                f"the cluster was not changed: {e}. {path} still says {old}{again if isinstance(e, NotReached) else ''}"
            ) from None
        broken = rule_broken(current, target)
        if broken:
            raise UserError(
                f"--to: {target} {broken}; `kubeseed upgrade plan {args.cluster}` lists the versions it may go to"
            )
        pyz = cached_zipapp(None)
        published = objects(pyz, target, VERSION)
        _apply_all(api, published, str(path), old)
        sha = published[0]["data"]["sha256"]
        progress(
            f"Published the runtime (kubeseed-runtime {VERSION}, {len(pyz):,} bytes, sha256 {sha[:12]}...) and the "
            f"target {target} to kube-system/{published[0]['metadata']['name']} on the cluster at {api.server}, "
            f"readable by nodes (Role and RoleBinding {READER}), as {api.who}"
        )
        try:
            nodes: list[tuple[str, bool, str]] | None = list_nodes(api)
        except (NotReached, Refused) as e:
            say(f"note: could not list the cluster's Nodes ({e}); the commands below name no machine")
            nodes = None
    if new_text != text:
        mode = path.stat().st_mode & 0o777
        try:
            atomic_write(path, new_text, mode)
        except OSError as e:
            raise ClusterUnchanged(
                f"the cluster has target {target}, but {path} could not be written ({e.strerror or e}): set "
                f"kubernetesVersion: {target} in it, or payloads rendered from now on carry {old}"
            ) from None
        say(f"{path}: kubernetesVersion {old} -> {target}; payloads rendered from now on carry it")
    else:
        say(f"{path} says {target} already")
    if current == target:
        print(
            f"The cluster runs {target} already: nothing to upgrade; the runtime was published again. Each machine "
            "takes it with the same command:"
        )
    else:
        print(f"Upgrade from {current} to {target}: run one command on each machine, one at a time, masters first:")
    print("\n".join(machine_commands(nodes, target)))
    return 0


def add_upgrade_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    u = sub.add_parser(
        "upgrade",
        help="upgrade the cluster's Kubernetes version: plan it, then publish it (one command per machine after)",
        description="Upgrade a running cluster, one minor at a time as kubeadm does: `plan` shows the versions it "
        "may go to and the images each uses, `apply --to VERSION` publishes the runtime and the target to the "
        "cluster, sets cluster.yaml's kubernetesVersion, and prints the one command each machine runs. Both reach "
        "the cluster's API as kubeseed's own admin (a client certificate from CLUSTER's CA key, valid 10 minutes, "
        "kept in memory) or as --kubeconfig's user.",
    )
    usub = u.add_subparsers(dest="action", metavar="ACTION", required=True)
    up = usub.add_parser(
        "plan",
        help="the cluster's version, the versions it may go to, and the images each would use",
        description="The version the cluster runs (kube-system/kubeadm-config through its API; cluster.yaml's when "
        "the API cannot be reached, as it says), the versions it may go to (a newer patch of its minor, or the "
        f"next minor; v1.{MIN_MINOR} to v1.{MAX_MINOR}) and, for each, its components' current and target versions "
        "and images. Changes nothing. Exit status 0, also when the API cannot be reached; 2 for bad input.",
    )
    up.add_argument("cluster", metavar="CLUSTER", help=CLUSTER_HELP)
    up.add_argument("--kubeconfig", metavar="FILE", help=KUBECONFIG_HELP)
    up.set_defaults(func=cmd_upgrade_plan)
    ua = usub.add_parser(
        "apply",
        help="publish the runtime and --to VERSION to the cluster, set cluster.yaml's version, print each "
        "machine's command",
        description="Check --to against kubeadm's rules (a newer patch of the cluster's minor or the next minor; "
        "never a downgrade, never a skipped minor), publish the full runtime and the target to the cluster "
        "(ConfigMap kube-system/kubeseed-runtime, with its sha256, readable by nodes), set cluster.yaml's "
        "kubernetesVersion (payloads rendered from then on carry it; its comments and layout are kept), and print "
        "the command each machine runs, masters first. --to the version the cluster runs publishes the runtime "
        "again. Exit status: 0 when done; 1 when the cluster's API could not be reached or refused (nothing "
        "changed: cluster.yaml keeps its version); 2 for a --to the rules refuse or other bad input (nothing "
        "changed).",
    )
    ua.add_argument("cluster", metavar="CLUSTER", help=CLUSTER_HELP)
    ua.add_argument("--to", required=True, metavar="VERSION", help="the version to upgrade to, e.g. v1.36.1")
    ua.add_argument("--kubeconfig", metavar="FILE", help=KUBECONFIG_HELP)
    ua.set_defaults(func=cmd_upgrade_apply)
