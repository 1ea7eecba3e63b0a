"""Stacked etcd membership with real etcd (Debian's 3.4), three members on 127.0.0.1-3: the runtime's etcd client
(kubeseed.runtime.etcd, etcd's v3 JSON gateway over mutual TLS) adds the second and third as learners and promotes
them; `status` shows the members and quorum; `remove-control-plane` removes a failed master's member and Node, a
fourth master replaces it, and losing quorum is refused. The Node objects live in the in-test API server that plays
kube-apiserver (no kube-apiserver binary can be had here)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kubeseed.runtime.etcd import Etcd, Health, Member, endpoints_from_pods, hex_id, summary
from kubeseed.runtime.init.removecp import lost_quorum
from kubeseed.runtime.workflow import Context, PhaseError
from tests.support.apiserver import FakeAPIServer
from tests.support.etcd import etcdctl
from tests.support.etcd_cluster import Machine, Masters
from tests.support.helpers import free_port

CONTROL_PLANE = {"node-role.kubernetes.io/control-plane": ""}


def runtime(*args: str) -> subprocess.CompletedProcess[str]:
    """The runtime's CLI (the full runtime's commands) in a fresh interpreter."""
    return subprocess.run(
        [sys.executable, "-m", "kubeseed.runtime", *args], capture_output=True, text=True, timeout=120
    )


def remove_cp(m: Machine, node: str) -> subprocess.CompletedProcess[str]:
    return runtime("remove-control-plane", node, "--root", str(m.root), "--timeout", "20")


def client(m: Machine) -> Etcd:
    return Etcd(Context("test", None, str(m.root), timeout=30), [m.client_url])


def join(masters: Masters, via: Etcd, m: Machine) -> Member:
    """What a control-plane join does with etcd: add the learner, start it, promote it once it has caught up, wait
    for every member to be healthy."""
    learner = via.add_learner(m.name, m.peer_url)
    assert learner["isLearner"] and learner["name"] == m.name
    masters.start(m, join=True)
    via.promote(learner)
    assert all(h.healthy for h in via.wait_healthy())
    return learner


def status_until(m: Machine, text: str) -> str:
    """`status` on ``m`` until it says ``text`` (a member stopped a moment ago may still be counted healthy)."""
    deadline = time.monotonic() + 15
    while True:
        out = runtime("status", "--root", str(m.root)).stdout
        if text in out or time.monotonic() > deadline:
            return out
        time.sleep(0.5)


@pytest.fixture
def masters(tmp_path: Path) -> Iterator[tuple[Masters, FakeAPIServer]]:
    port = free_port()
    masters = Masters(tmp_path, f"127.0.0.1:{port}")
    pki = masters["cp-1"].root / "etc/kubernetes/pki"
    api = FakeAPIServer(
        (pki / "ca.crt").read_bytes(),
        (pki / "ca.key").read_bytes(),
        [],
        serving_cert=((pki / "apiserver.crt").read_bytes(), (pki / "apiserver.key").read_bytes()),
        port=port,
    ).start()
    for name in ("cp-1", "cp-2", "cp-3", "cp-4", "worker-1"):
        labels = {"kubernetes.io/hostname": name, **(CONTROL_PLANE if name.startswith("cp-") else {})}
        api.put_object({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels}})
    try:
        yield masters, api
    finally:
        masters.close()
        api.stop()


def test_three_masters_join_lose_one_replace_it_and_refuse_quorum_loss(
    masters: tuple[Masters, FakeAPIServer],
) -> None:
    cluster, api = masters
    cp1, cp2, cp3 = cluster["cp-1"], cluster.add("cp-2", "127.0.0.2"), cluster.add("cp-3", "127.0.0.3")
    cluster.start(cp1)
    etcd = client(cp1)
    try:
        join(cluster, etcd, cp2)
        # a join killed after adding its learner runs again: the same member comes back, none is added twice
        first = etcd.add_learner("cp-3", cp3.peer_url)
        again = etcd.add_learner("cp-3", cp3.peer_url)
        assert again == first and len(etcd.members()) == 3
        cluster.start(cp3, join=True)
        etcd.promote(again)
        etcd.promote(again)  # promoted already: nothing to do
        assert etcd.add_learner("cp-3", cp3.peer_url)["ID"] == first["ID"] and len(etcd.members()) == 3
    except Exception:
        print(cluster.logs())
        raise
    members = {m["name"]: m for m in etcd.members()}
    assert sorted(members) == ["cp-1", "cp-2", "cp-3"] and not any(m["isLearner"] for m in members.values())
    assert members["cp-2"]["clientURLs"] == [cp2.client_url] and members["cp-2"]["peerURLs"] == [cp2.peer_url]

    # a key written through one member is read from the others
    assert etcdctl(cp1.root, "put", "/registry/ha", "one", endpoint=cp1.client_url).returncode == 0
    for m in (cp2, cp3):
        assert etcdctl(m.root, "get", "/registry/ha", endpoint=m.client_url).stdout.split() == ["/registry/ha", "one"]
    out = status_until(cp2, "3 of 3 voting members healthy, quorum 2")
    assert "3 of 3 voting members healthy, quorum 2" in out and out.count(" started ") == 3, out

    # one master fails: etcd keeps its quorum, writes go on, status says so
    cluster.kill(cp3)
    assert etcdctl(cp1.root, "put", "/registry/ha", "two", endpoint=cp1.client_url).returncode == 0
    out = status_until(cp1, "2 of 3 voting members healthy")
    assert "2 of 3 voting members healthy, quorum 2" in out, out
    assert [line.split()[0] for line in out.splitlines() if "unreachable" in line] == ["cp-3"], out

    # remove-control-plane on a healthy master takes the failed one out; a second run finds nothing left to do
    r = remove_cp(cp1, "cp-3")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "removed etcd member cp-3" in r.stdout and "deleted the Node cp-3" in r.stdout
    assert "kubeseed render master CLUSTER --hostname NEW --join" in r.stdout
    assert sorted(m["name"] for m in etcd.members()) == ["cp-1", "cp-2"]
    assert api.get_object("v1", "Node", "cp-3") is None
    r = remove_cp(cp2, "cp-3")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "no member named cp-3" in r.stdout and "the Node cp-3 is gone already" in r.stdout
    # what it is not for: this machine, and a worker (no etcd member, no control-plane label)
    for node, why in (("cp-1", "cp-1 is this machine"), ("worker-1", "worker-1 is not a control-plane node")):
        r = remove_cp(cp1, node)
        assert r.returncode == 1 and why in r.stderr and len(r.stderr.splitlines()) == 1, r.stderr
    assert api.get_object("v1", "Node", "cp-1") and api.get_object("v1", "Node", "worker-1")

    # a join that died after adding its learner leaves one that never starts: it blocks the next join (etcd allows
    # one learner) until remove-control-plane removes it by the ID status shows
    stale = etcd.add_learner("cp-9", "https://127.0.0.9:2380")
    with pytest.raises(PhaseError, match="too many learner members in cluster; let [0-9a-f]+ be promoted first"):
        etcd.add_learner("cp-8", "https://127.0.0.8:2380")
    out = runtime("status", "--root", str(cp1.root)).stdout
    row = next(line.split() for line in out.splitlines() if line.startswith("https://127.0.0.9:2380"))
    assert row[1:4] == [hex_id(stale["ID"]), "not", "started"] and "(and 1 learner)" in out, out
    r = remove_cp(cp1, row[1])
    assert r.returncode == 0 and f"{row[1]} was a learner that never started" in r.stdout, r.stdout + r.stderr
    assert sorted(m["name"] for m in etcd.members()) == ["cp-1", "cp-2"]

    # a fourth master replaces it, and has the data
    cp4 = cluster.add("cp-4", "127.0.0.4")
    join(cluster, etcd, cp4)
    assert etcdctl(cp4.root, "get", "/registry/ha", endpoint=cp4.client_url).stdout.split() == ["/registry/ha", "two"]
    assert sorted(m["name"] for m in etcd.members() if not m["isLearner"]) == ["cp-1", "cp-2", "cp-4"]

    # two of three fail: removing one would leave etcd without quorum; refused, nothing changed
    cluster.kill(cp2)
    cluster.kill(cp4)
    r = remove_cp(cp1, "cp-2")
    assert r.returncode == 1 and len(r.stderr.splitlines()) == 1, r.stdout + r.stderr
    assert "removing cp-2 would lose etcd's quorum: 3 members" in r.stderr, r.stderr
    assert "after removing it, 2 members need 2 healthy for quorum" in r.stderr, r.stderr
    assert sorted(m["name"] for m in etcd.members()) == ["cp-1", "cp-2", "cp-4"]
    assert api.get_object("v1", "Node", "cp-2") is not None


def _health(name: str, healthy: bool, learner: bool = False) -> Health:
    m = Member(ID=str(len(name) * 1000 + ord(name[-1])), name=name, peerURLs=[], clientURLs=[], isLearner=learner)
    return Health(m, healthy, "healthy" if healthy else "unreachable")


def test_quorum_arithmetic_and_endpoints_from_pods() -> None:
    three = [_health("a", True), _health("b", True), _health("c", False)]
    assert summary(three) == "2 of 3 voting members healthy, quorum 2"
    assert lost_quorum("c", three[2].member, three) == ""  # 2 left, both healthy
    assert "2 members need 2 healthy for quorum and 0 are (b: unreachable, c: unreachable)" in lost_quorum(
        "a", three[0].member, [three[0], _health("b", False), three[2]]
    )
    learner = _health("d", False, learner=True)
    assert lost_quorum("d", learner.member, [*three, learner]) == ""  # a learner does not vote
    assert summary([*three, learner]) == "2 of 3 voting members healthy (and 1 learner), quorum 2"
    five = [_health(n, n in "abc") for n in "abcde"]
    assert lost_quorum("d", five[3].member, five) == ""  # 4 left need 3: a, b, c
    assert lost_quorum("a", five[0].member, five).startswith("removing a would lose etcd's quorum: 5 members, 3")

    def pod(name: str, url: str, **labels: str) -> dict:
        meta = {"name": name, "namespace": "kube-system", "labels": labels}
        return {"metadata": dict(meta, annotations={"kubeadm.kubernetes.io/etcd.advertise-client-urls": url})}

    etcd = {"component": "etcd", "tier": "control-plane"}
    pods = [
        pod("etcd-cp-1", "https://10.0.0.1:2379", **etcd),
        pod("etcd-cp-2", "https://[fd00::2]:2379", **etcd),
        pod("kube-apiserver-cp-1", "https://10.9.9.9:2379", component="kube-apiserver", tier="control-plane"),
        pod("etcd-cp-1-again", "https://10.0.0.1:2379", **etcd),
        {"metadata": {"name": "etcd-cp-3", "namespace": "kube-system", "labels": etcd}},  # no annotation yet
    ]
    assert endpoints_from_pods(pods) == ["https://10.0.0.1:2379", "https://[fd00::2]:2379"]


def test_reset_on_a_master_leaves_etcd_first(masters: tuple[Masters, FakeAPIServer]) -> None:
    """kubeadm's reset on one of several masters: its etcd member is removed first, so the others go on without it;
    on the last one, there is nothing to leave."""
    ms, _ = masters
    first, second = ms["cp-1"], ms.add("cp-2", "127.0.0.2")
    ms.start(first)
    join(ms, client(first), second)
    r = runtime("reset", "-f", "--root", str(second.root))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "[reset] Removed etcd member cp-2: 1 member(s) remain" in r.stdout
    assert [m["name"] for m in client(first).members()] == ["cp-1"]
    assert etcdctl(first.root, "put", "/after", "reset", endpoint=first.client_url).returncode == 0
    r = runtime("reset", "-f", "--root", str(first.root))
    assert r.returncode == 0 and "this master's member is its cluster's only one" in r.stdout, r.stdout
