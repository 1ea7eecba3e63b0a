"""Stacked etcd's membership, as kubeadm's etcd client (cmd/kubeadm/app/util/etcd) manages it, over etcd's v3 JSON
gateway: POST /v3/cluster/member/{list,add,promote,remove} and /v3/maintenance/status, JSON in and out, with mutual
TLS (api.call's bounds), so no gRPC library is needed. The paths and fields are the same in etcd 3.4, 3.5 and 3.6
(api/etcdserverpb/rpc.proto); answers use the proto's field names, with member IDs (uint64) as decimal strings and
false or empty fields left out. Each request goes to the endpoints in order and takes the first answer; each
operation is retried as kubeadm retries it, until the run's deadline."""

from __future__ import annotations

import os
import urllib.parse
from typing import Any, Dict, List, NamedTuple, Optional, TypedDict

from . import api
from .workflow import Context, PhaseError

PKI = "/etc/kubernetes/pki"
CA = f"{PKI}/etcd/ca.crt"
# kubeadm's client (NewFromCluster) uses the health-check client certificate; the API server's etcd client
# certificate, from the same CA, serves where that one is missing
CLIENTS = (f"{PKI}/etcd/healthcheck-client", f"{PKI}/apiserver-etcd-client")
MANIFEST = "/etc/kubernetes/manifests/etcd.yaml"
ANNOTATION = "kubeadm.kubernetes.io/etcd.advertise-client-urls"  # on etcd's static pod: its member's client URL
PODS = "/api/v1/namespaces/kube-system/pods?labelSelector=component%3Detcd%2Ctier%3Dcontrol-plane"
TIMEOUT = 5.0  # seconds for one request (kubeadm: 2 s per call, on a connection already made)
PROBE = 2.0  # seconds for one member's status


class Member(TypedDict):
    """One member as etcd lists it. A learner added but not started yet has no name and no client URLs."""

    ID: str
    name: str
    peerURLs: List[str]
    clientURLs: List[str]
    isLearner: bool


class Health(NamedTuple):
    member: Member
    healthy: bool
    detail: str  # "healthy", or why not


class Refused(PhaseError):
    """etcd answered, and said no (HTTP 4xx); ``str()`` is its reason (``etcdserver: ...``)."""


def hex_id(member_id: str) -> str:
    """A member ID as etcdctl prints it (hexadecimal)."""
    return format(int(member_id), "x") if member_id.isdigit() else member_id


def quorum(voters: int) -> int:
    """How many voting members a cluster of ``voters`` needs healthy to work."""
    return voters // 2 + 1


def has_quorum(health: List[Health]) -> bool:
    """Whether enough voting members are healthy for etcd to serve writes."""
    voters = [h for h in health if not h.member["isLearner"]]
    return sum(h.healthy for h in voters) >= quorum(len(voters))


def endpoints_from_pods(pods: List[Any]) -> List[str]:
    """The members' client URLs as kubeadm finds them: the annotation on etcd's static pod, read off its mirror pods
    (kube-system, labels component=etcd and tier=control-plane: list them with PODS); other pods, and etcd pods
    without the annotation, are skipped. Each URL once, in the pods' order."""
    found: List[str] = []
    for pod in pods:
        meta = (pod.get("metadata") if isinstance(pod, dict) else None) or {}
        labels = meta.get("labels") or {}
        if meta.get("namespace", "kube-system") != "kube-system":
            continue
        if labels.get("component") != "etcd" or labels.get("tier") != "control-plane":
            continue
        for url in str((meta.get("annotations") or {}).get(ANNOTATION, "")).split(","):
            if url.strip() and url.strip() not in found:
                found.append(url.strip())
    return found


def local_flags(ctx: Context) -> Dict[str, str]:
    """The flags of this machine's etcd static pod ({} without one): its member's name, URLs, ..."""
    import yaml

    try:
        with open(ctx.path(MANIFEST)) as f:
            pod = yaml.safe_load(f)
        command = pod["spec"]["containers"][0]["command"]
    except FileNotFoundError:
        return {}
    except (TypeError, KeyError, IndexError, ValueError, yaml.YAMLError) as e:
        raise PhaseError(f"{MANIFEST} is not an etcd static pod kubeseed can read ({type(e).__name__})") from None
    return dict(str(a)[2:].split("=", 1) for a in command if str(a).startswith("--") and "=" in str(a))


def _member(m: Dict[str, Any]) -> Member:
    return Member(
        ID=str(m.get("ID", "")),
        name=str(m.get("name") or ""),
        peerURLs=[str(u) for u in m.get("peerURLs") or []],
        clientURLs=[str(u) for u in m.get("clientURLs") or []],
        isLearner=bool(m.get("isLearner")),
    )


def _named(m: Member, name: str) -> Member:
    named = m.copy()
    named["name"] = name
    return named


def summary(health: List[Health]) -> str:
    """``N of M voting members healthy, quorum K`` (and the learners)."""
    voters = [h for h in health if not h.member["isLearner"]]
    ok = sum(h.healthy for h in voters)
    learners = len(health) - len(voters)
    more = f" (and {learners} learner{'s' if learners > 1 else ''})" if learners else ""
    lost = "" if has_quorum(health) else ": quorum lost, etcd serves no writes"
    return f"{ok} of {len(voters)} voting members healthy{more}, quorum {quorum(len(voters))}{lost}"


class Etcd:
    """The etcd cluster reached at ``endpoints`` (client URLs), as this control-plane machine's etcd client."""

    def __init__(self, ctx: Context, endpoints: List[str]) -> None:
        self.ctx, self.endpoints = ctx, list(dict.fromkeys(e.strip() for e in endpoints if e.strip()))
        pairs = [(ctx.path(c + ".crt"), ctx.path(c + ".key")) for c in CLIENTS]
        pair = next((p for p in pairs if os.path.exists(p[0]) and os.path.exists(p[1])), None)
        if not self.endpoints or pair is None or not os.path.exists(ctx.path(CA)):
            what = "no etcd endpoint" if not self.endpoints else f"no {CA} and etcd client certificate"
            raise PhaseError(f"{what} here: run this on a control-plane machine of the cluster (a master)")
        with open(ctx.path(CA), "rb") as f:
            self.ca, self.cert = f.read(), pair

    def _call(self, url: str, body: Dict[str, Any], timeout: float) -> Any:
        try:
            return api.call(url, self.ca, "", "POST", body, timeout, self.cert, deadline=self.ctx.deadline)
        except api.Untrusted as e:
            raise PhaseError(f"{url}: not this cluster's etcd: its certificate is not from {CA} ({e})") from None

    def post(self, path: str, body: Dict[str, Any]) -> Dict[str, Any]:
        """etcd's answer to ``path`` from the first endpoint that answers. A member that cannot serve it (HTTP 5xx:
        a learner, one without a leader) is no answer; Refused when etcd says no; api.Unreachable when none answers
        (api.wait retries that)."""
        reasons = []
        for endpoint in list(self.endpoints):
            try:
                status, obj = self._call(endpoint.rstrip("/") + path, body, TIMEOUT)
            except api.Unreachable as e:
                reasons.append(f"{endpoint}: {e}")
                continue
            message = obj["message"]
            if status == 200:
                self.endpoints.remove(endpoint)
                self.endpoints.insert(0, endpoint)  # asked first from now on
                return dict(obj)
            if status >= 500 or status == 429:
                reasons.append(f"{endpoint}: HTTP {status} {message}")
                continue
            if not message.startswith("etcdserver:"):
                raise PhaseError(
                    f"{endpoint}{path}: HTTP {status} {message}: etcd serves no v3 JSON gateway there (is it started "
                    "with --enable-grpc-gateway=false?)"
                )
            raise Refused(message)
        raise api.Unreachable("no etcd member answered: " + "; ".join(reasons))

    def _list(self) -> List[Member]:
        members = [_member(m) for m in self.post("/v3/cluster/member/list", {}).get("members") or []]
        for m in members:  # kubeadm's Sync: every member's client URLs become endpoints
            self.endpoints += [u for u in m["clientURLs"] if u not in self.endpoints]
        return members

    def members(self) -> List[Member]:
        """The members, as etcd lists them (ListMembers)."""
        return list(api.wait(self.ctx, "etcd's member list", self._list))

    def add_learner(self, name: str, peer_url: str) -> Member:
        """Add a learner at ``peer_url`` (AddMemberAsLearner), named ``name`` until it starts and names itself. A
        member with that peer URL already there is returned, not added again: a re-run after a kill converges."""
        parts = urllib.parse.urlsplit(peer_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise PhaseError(f"{peer_url!r} is not an etcd peer URL (https://ADDRESS:2380)")

        def attempt() -> Member:
            for m in self._list():
                if peer_url in m["peerURLs"]:
                    return _named(m, m["name"] or name)
            try:
                added = self.post("/v3/cluster/member/add", {"peerURLs": [peer_url], "isLearner": True})
            except Refused as e:
                if "already exist" in str(e):  # added meanwhile (a kill between etcd's answer and ours): list again
                    raise api.Unreachable(str(e)) from None
                learners = [m["name"] or hex_id(m["ID"]) for m in self._list() if m["isLearner"]]
                fix = "".join(  # etcd takes one learner at a time (3.4; 3.5's --max-learners, default 1)
                    f"; let {x} be promoted first, or remove it: kubeseed-runtime remove-control-plane {x}"
                    for x in learners[:1]
                    if "too many learner" in str(e)
                )
                raise PhaseError(f"etcd refused to add {name} ({peer_url}) as a learner: {e}{fix}") from None
            return _named(_member(added.get("member") or {}), name)

        return api.wait(self.ctx, f"etcd to add {name} ({peer_url}) as a learner", attempt)

    def promote(self, learner: Member) -> None:
        """Make ``learner`` (as add_learner returned it) a voting member (MemberPromote); one that votes already is
        done. etcd refuses while the learner is behind its leader: that is retried until the run's deadline."""
        member_id = learner["ID"]

        def attempt() -> None:
            found = [m for m in self._list() if m["ID"] == member_id]
            if not found:
                raise PhaseError(f"etcd has no member {hex_id(member_id)} to promote: it was removed; add it again")
            if not found[0]["isLearner"]:
                return
            try:
                self.post("/v3/cluster/member/promote", {"ID": member_id})
            except Refused as e:  # "can only promote a learner member which is in sync with leader", ...
                if str(e).endswith("can only promote a learner member"):
                    return  # promoted meanwhile
                raise api.Unreachable(str(e)) from None

        api.wait(
            self.ctx,
            f"etcd learner {learner['name'] or hex_id(member_id)} to catch up and be promoted",
            attempt,
            most=2,
        )

    def remove(self, member_id: str) -> bool:
        """Remove member ``member_id`` (RemoveMember); False if there is none (removed already)."""

        def attempt() -> bool:
            try:
                self.post("/v3/cluster/member/remove", {"ID": member_id})
            except Refused as e:
                if "member not found" in str(e):
                    return False
                raise PhaseError(f"etcd refused to remove member {hex_id(member_id)}: {e}") from None
            return True

        return bool(api.wait(self.ctx, f"etcd to remove member {hex_id(member_id)}", attempt))

    def probe(self, member: Member) -> Health:
        """Whether ``member`` is healthy: its own status (at its client URLs) answers, as that member, with a leader
        and no alarm."""
        why = "not started"
        for url in member["clientURLs"]:
            try:
                status, obj = self._call(url.rstrip("/") + "/v3/maintenance/status", {}, PROBE)
            except (api.Unreachable, PhaseError) as e:
                why = f"unreachable at {url}: {e}"
                continue
            if status != 200:
                why = f"{url}: HTTP {status} {obj['message']}"
            elif str((obj.get("header") or {}).get("member_id")) != member["ID"]:
                why = f"{url} is another member"
            elif obj.get("errors"):
                return Health(member, False, "alarm: " + ", ".join(map(str, obj["errors"])))
            elif str(obj.get("leader", "0")) == "0":
                return Health(member, False, "no leader")
            else:
                return Health(member, True, "healthy")
        return Health(member, False, why)

    def health(self, members: Optional[List[Member]] = None) -> List[Health]:
        """Each member's health (of ``members``, default: the list etcd gives now)."""
        return [self.probe(m) for m in (self.members() if members is None else members)]

    def summary(self) -> str:
        return summary(self.health())

    def wait_healthy(self) -> List[Health]:
        """Each member's health once all are healthy (kubeadm's WaitForClusterAvailable), until the deadline."""

        def attempt() -> List[Health]:
            health = self.health()
            sick = [f"{h.member['name'] or hex_id(h.member['ID'])}: {h.detail}" for h in health if not h.healthy]
            if sick:
                raise api.Unreachable("; ".join(sick))
            return health

        return list(api.wait(self.ctx, "every etcd member to be healthy", attempt, most=2))
