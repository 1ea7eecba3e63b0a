"""A stand-in kubelet for the upgrade tests (tests only; never part of the product).

No kubelet can run here, so this plays the part of one that the upgrade command relies on, against the in-test API
server (tests/support/apiserver): it registers its Node and keeps one mirror pod per static pod manifest in
``ROOT/etc/kubernetes/manifests``, polling the folder every ``interval`` seconds, as a kubelet's file source and
mirror-pod manager do:

* every regular file whose name does not start with ``.`` is a manifest (the kubelet reads them all, whatever the
  extension: a backup left in the folder runs too); of two manifests naming the same pod the first file in name
  order wins and the other is reported in ``problems``, as the kubelet refuses duplicates;
* the mirror pod is ``kube-system/<name>-<node>`` (the manifest's namespace, "default" when it has none), with the
  manifest's labels, annotations and spec plus ``spec.nodeName`` and the NoExecute toleration the kubelet adds,
  the annotations ``kubernetes.io/config.hash`` (an md5 of the decoded manifest, the node and the source: formatting
  alone does not change it), ``config.mirror`` (the same hash), ``config.seen`` and ``config.source: file``, and
  the Node as its controlling owner;
* a changed manifest replaces the mirror pod (a new uid, the new hash), which then shows phase Pending, Ready False
  and its containers ContainerCreating for ``ready_delay`` seconds before it is Running and Ready; a component
  made ``never_ready`` shows phase Running, Ready False and its containers in CrashLoopBackOff instead;
* a removed manifest deletes its mirror pod; a mirror pod deleted or evicted through the API comes back on the next
  pass, and an unreadable manifest keeps the pod of its last good version (both as the kubelet does).

Only the kubelet's status writes touch the objects afterwards (FakeAPIServer.update_object), so what API clients
change meanwhile (labels, a cordon) stays.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import fnmatch
import hashlib
import json
import threading
import time
from pathlib import Path
from typing import Any

import yaml

from tests.support.apiserver import FakeAPIServer
from tests.support.apiserver.protocol import now_utc, rfc3339

MANIFESTS = "etc/kubernetes/manifests"
HASH = "kubernetes.io/config.hash"
MIRROR = "kubernetes.io/config.mirror"
SEEN = "kubernetes.io/config.seen"
SOURCE = "kubernetes.io/config.source"
NO_EXECUTE = {"operator": "Exists", "effect": "NoExecute"}  # the toleration the kubelet gives static pods


def config_hash(manifest: dict[str, Any], node_name: str) -> str:
    """The stand-in's ``kubernetes.io/config.hash``: an md5 of the decoded manifest, the node and the source, as
    the kubelet hashes the decoded pod with them (its hex digest; the exact bytes hashed differ)."""
    digest = hashlib.md5(json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode())
    digest.update(node_name.encode() + b"file")
    return digest.hexdigest()


@dataclasses.dataclass
class _StaticPod:
    """What the stand-in runs for one manifest: its decoded content, hash, when it was seen and when it is up."""

    manifest: dict[str, Any]
    hash: str
    seen: dt.datetime
    delay: float  # seconds from seen to Ready (unless never_ready)
    ready_at: float  # time.monotonic() from which it is Ready

    @property
    def component(self) -> str:
        return str(self.manifest["metadata"]["name"])

    @property
    def namespace(self) -> str:
        return str(self.manifest["metadata"].get("namespace") or "default")

    def images(self) -> list[str]:
        return [str(c.get("image", "")) for c in self.manifest["spec"]["containers"]]


class StandinKubelet:
    """A kubelet's Node registration and mirror pods, kept in ``api``'s store by a polling thread (module doc).

    Knobs (plain attributes, read on every pass): ``kubelet_version`` (the Node's
    ``status.nodeInfo.kubeletVersion``), ``ready_delay`` (seconds a changed or new static pod stays unready; pods
    already there when the stand-in starts are Ready at once), ``broken`` (component -> image pattern; see
    never_ready). Records: ``problems`` (what a kubelet would log about the manifests: unreadable, duplicate).
    Use as a context manager or start()/stop(); sync() makes one pass at once.
    """

    def __init__(
        self,
        api: FakeAPIServer,
        root: Path,
        node_name: str,
        *,
        kubelet_version: str = "v1.35.0",
        ready_delay: float = 0.0,
        interval: float = 0.1,
        address: str = "127.0.0.1",
    ) -> None:
        self.api, self.node_name, self.address, self.interval = api, node_name, address, interval
        self.manifests = Path(root) / MANIFESTS
        self.kubelet_version = kubelet_version
        self.ready_delay = ready_delay
        self.broken: dict[str, str] = {}
        self.problems: list[str] = []
        self._pods: dict[str, _StaticPod] = {}  # by mirror pod name
        self._last_good: dict[str, dict[str, Any]] = {}  # manifest file name -> its last decodable content
        self._passes = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failure: BaseException | None = None

    # -- lifecycle -------------------------------------------------------------------------------------------
    def start(self) -> StandinKubelet:
        """Register the Node and mirror the manifests there now (Ready at once), then keep polling."""
        self.sync()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"standin-kubelet-{self.node_name}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop polling; raises if a pass failed (a bug in the stand-in must fail the test, not hide)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        if self._failure is not None:
            raise RuntimeError("the stand-in kubelet failed") from self._failure

    def __enter__(self) -> StandinKubelet:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.sync()
            except Exception as e:  # kept for stop() to raise
                self._failure = e
                return

    # -- knobs -----------------------------------------------------------------------------------------------
    def never_ready(self, component: str, image: str = "*") -> None:
        """From now on, ``component`` (a manifest's metadata.name, e.g. kube-apiserver) crash-loops whenever one of
        its containers' images matches the fnmatch pattern ``image`` (e.g. ``*:v1.36.0``; ``*``: always)."""
        self.broken[component] = image

    def heal(self, component: str) -> None:
        self.broken.pop(component, None)

    # -- reading it back -------------------------------------------------------------------------------------
    def pod_name(self, component: str) -> str:
        """The mirror pod's name for ``component``: ``<component>-<node name, lower case>``, as the kubelet names it."""
        return f"{component}-{self.node_name.lower()}"

    def mirror_pod(self, component: str, namespace: str = "kube-system") -> dict[str, Any] | None:
        return self.api.get_object("v1", "Pod", self.pod_name(component), namespace)

    # -- one pass --------------------------------------------------------------------------------------------
    def sync(self) -> None:
        """One pass: the Node's status, then each manifest's mirror pod created, replaced, updated or deleted."""
        with self._lock:
            node = self._sync_node()
            now = time.monotonic()
            delay = self.ready_delay if self._passes else 0.0
            wanted = self._read_manifests()
            for name, manifest in wanted.items():
                digest = config_hash(manifest, self.node_name)
                pod = self._pods.get(name)
                if pod is None or pod.hash != digest:
                    pod = self._pods[name] = _StaticPod(manifest, digest, now_utc(), delay, now + delay)
                self._publish(name, pod, node, now)
            for name in [n for n in self._pods if n not in wanted]:
                gone = self._pods.pop(name)
                self.api.delete_object("v1", "Pod", name, gone.namespace)
            self._passes += 1

    def _note(self, problem: str) -> None:
        if problem not in self.problems:
            self.problems.append(problem)

    def _read_manifests(self) -> dict[str, dict[str, Any]]:
        """Mirror pod name -> manifest, from every non-hidden regular file in the folder, in name order."""
        found: dict[str, dict[str, Any]] = {}
        files = sorted(p for p in self.manifests.glob("[!.]*") if p.is_file()) if self.manifests.is_dir() else []
        for path in files:
            manifest = self._decode(path)
            if manifest is None:
                continue
            name = self.pod_name(str(manifest["metadata"]["name"]))
            if name in found:
                self._note(f"{path.name}: duplicate pod {name}, ignored (the first manifest naming it runs)")
                continue
            found[name] = manifest
        self._last_good = {p.name: m for p in files if (m := self._last_good.get(p.name)) is not None}
        return found

    def _decode(self, path: Path) -> dict[str, Any] | None:
        """The manifest in ``path`` when it decodes to a Pod with a name and containers; else the last good one."""
        try:
            manifest = yaml.safe_load(path.read_text())
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
            self._note(f"{path.name}: could not process manifest file: {e}")
            return self._last_good.get(path.name)
        ok = isinstance(manifest, dict) and manifest.get("kind") == "Pod" and manifest.get("apiVersion") == "v1"
        meta, spec = (manifest.get(k) if ok else None for k in ("metadata", "spec"))
        if not (isinstance(meta, dict) and meta.get("name") and isinstance(spec, dict) and spec.get("containers")):
            self._note(f"{path.name}: could not process manifest file: not a v1 Pod with a name and containers")
            return self._last_good.get(path.name)
        self._last_good[path.name] = manifest
        return manifest

    # -- the Node --------------------------------------------------------------------------------------------
    def _node_status(self) -> dict[str, Any]:
        ready = {
            "type": "Ready",
            "status": "True",
            "reason": "KubeletReady",
            "message": "kubelet is posting ready status",
        }
        stamp = rfc3339(now_utc())
        node_info = {
            "kubeletVersion": self.kubelet_version,
            "containerRuntimeVersion": "containerd://1.7.24",
            "operatingSystem": "linux",
            "architecture": "amd64",
        }
        return {
            "conditions": [{**ready, "lastHeartbeatTime": stamp, "lastTransitionTime": stamp}],
            "addresses": [
                {"type": "InternalIP", "address": self.address},
                {"type": "Hostname", "address": self.node_name},
            ],
            "nodeInfo": node_info,
        }

    def _sync_node(self) -> dict[str, Any]:
        """Register the Node (as master.py's Cluster.register_node, with a status) or, when it is there, keep its
        kubelet version and Ready condition, leaving the rest (labels, taints, spec.unschedulable) as it is."""

        def refresh(node: dict[str, Any]) -> None:
            status = node.setdefault("status", {})
            status.setdefault("nodeInfo", {})["kubeletVersion"] = self.kubelet_version
            conditions = status.setdefault("conditions", [])
            if not any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions):
                ready = self._node_status()["conditions"][0]
                status["conditions"] = [c for c in conditions if c.get("type") != "Ready"] + [ready]

        node = self.api.update_object("v1", "Node", self.node_name, refresh)
        if node is None:
            meta = {"name": self.node_name, "labels": {"kubernetes.io/hostname": self.node_name}}
            node = self.api.put_object(
                {"apiVersion": "v1", "kind": "Node", "metadata": meta, "spec": {}, "status": self._node_status()}
            )
        return node

    # -- mirror pods -----------------------------------------------------------------------------------------
    def _state(self, pod: _StaticPod, now: float) -> str:
        pattern = self.broken.get(pod.component)
        if pattern is not None and any(fnmatch.fnmatchcase(image, pattern) for image in pod.images()):
            return "crashing"
        return "ready" if now >= pod.ready_at else "starting"

    def _status(self, name: str, pod: _StaticPod, state: str) -> dict[str, Any]:
        """The pod status a kubelet reports: starting (Pending, ContainerCreating), ready, or crashing."""
        seen = rfc3339(pod.seen)
        up = rfc3339(pod.seen + dt.timedelta(seconds=pod.delay)) if state == "ready" else seen
        containers = [str(c.get("name", "")) for c in pod.manifest["spec"]["containers"]]
        statuses = []
        for container, image in zip(containers, pod.images()):
            entry: dict[str, Any] = {"name": container, "image": image, "imageID": ""}
            if state == "ready":
                entry.update(containerID=f"containerd://{pod.hash}", ready=True, started=True, restartCount=0)
                entry["state"] = {"running": {"startedAt": up}}
            elif state == "starting":
                entry.update(
                    ready=False, started=False, restartCount=0, state={"waiting": {"reason": "ContainerCreating"}}
                )
            else:
                why = f"back-off 5m0s restarting failed container={container} pod={name}_{pod.namespace}({pod.hash})"
                entry.update(containerID=f"containerd://{pod.hash}", ready=False, started=False, restartCount=5)
                entry["state"] = {"waiting": {"reason": "CrashLoopBackOff", "message": why}}
                entry["lastState"] = {
                    "terminated": {"exitCode": 1, "reason": "Error", "startedAt": seen, "finishedAt": seen}
                }
            statuses.append(entry)

        def condition(kind: str, true: bool, at: str) -> dict[str, Any]:
            cond: dict[str, Any] = {"type": kind, "status": "True" if true else "False", "lastTransitionTime": at}
            if not true:
                cond.update(
                    reason="ContainersNotReady", message=f"containers with unready status: [{' '.join(containers)}]"
                )
            return cond

        ready = state == "ready"
        status: dict[str, Any] = {"phase": "Pending" if state == "starting" else "Running"}
        status["conditions"] = [
            condition("Initialized", True, seen),
            condition("Ready", ready, up),
            condition("ContainersReady", ready, up),
            condition("PodScheduled", True, seen),
        ]
        status.update(hostIP=self.address, startTime=seen, containerStatuses=statuses)
        if pod.manifest["spec"].get("hostNetwork"):
            status["podIP"] = self.address
        return status

    def _mirror(self, name: str, pod: _StaticPod, node: dict[str, Any], status: dict[str, Any]) -> dict[str, Any]:
        meta = copy.deepcopy(pod.manifest["metadata"])
        annotations = meta.get("annotations") or {}
        seen = pod.seen.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        meta.update(name=name, namespace=pod.namespace)
        meta["annotations"] = {**annotations, HASH: pod.hash, MIRROR: pod.hash, SEEN: seen, SOURCE: "file"}
        owner = {"apiVersion": "v1", "kind": "Node", "name": self.node_name, "uid": node["metadata"]["uid"]}
        meta["ownerReferences"] = [{**owner, "controller": True}]
        spec = copy.deepcopy(pod.manifest["spec"])
        spec["nodeName"] = self.node_name
        if NO_EXECUTE not in spec.setdefault("tolerations", []):
            spec["tolerations"].append(dict(NO_EXECUTE))
        return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec, "status": status}

    def _publish(self, name: str, pod: _StaticPod, node: dict[str, Any], now: float) -> None:
        """Create the mirror pod, replace one of another hash (or gone), or update its status when it changed."""
        status = self._status(name, pod, self._state(pod, now))
        stored = self.api.get_object("v1", "Pod", name, pod.namespace)
        annotations = ((stored or {}).get("metadata") or {}).get("annotations") or {}
        if stored is None or annotations.get(MIRROR) != pod.hash:
            if stored is not None:
                self.api.delete_object("v1", "Pod", name, pod.namespace)
            self.api.put_object(self._mirror(name, pod, node, status))
        elif stored.get("status") != status:
            self.api.update_object("v1", "Pod", name, lambda p: p.update(status=status), pod.namespace)
