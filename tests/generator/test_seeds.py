"""``kubeseed seed``: inventories, NoCloud and config-drive seeds as ISOs and directories, read back by pycdlib,
by isoinfo (genisoimage) and by Debian's own cloud-init datasources."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import stat
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pycdlib
import pytest
import yaml
from pycdlib.dr import DirectoryRecord

from kubeseed.generator.inventory import parse_inventory
from kubeseed.generator.iso import build_iso
from kubeseed.generator.secrets import load
from kubeseed.generator.seeds import instance_id
from kubeseed.generator.zipapp import unpack_sources
from kubeseed.runtime.config import NODE_CONFIG_PATH, RUNTIME_PATH
from tests.support.helpers import cloud_init_files, kubeseed, need_tool, unavailable

CONSUMER = Path(__file__).parents[1] / "consumers" / "cloudinit_seed.py"
KEY_OPS = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGn4kubeseedtestkey ops@example"
KEY_ADMIN = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAdminkubeseedtestkey admin@example"
MAC_CP, MAC_W1 = "52:54:00:12:34:01", "52:54:00:12:34:21"
NICS = [f"{MAC_CP}=enp1s0", f"{MAC_W1}=eno1"]  # the target machines' NICs, for cloud-init's MAC lookup
NOCLOUD_FILES = {
    "cp-1": ["user-data", "meta-data", "network-config"],
    "worker-1": ["user-data", "meta-data", "network-config"],
    "worker-2": ["user-data", "meta-data"],
}
CD = "openstack/latest/"
CONFIGDRIVE_FILES = {
    "cp-1": [CD + "meta_data.json", CD + "user_data", CD + "network_data.json"],
    "worker-1": [CD + "meta_data.json", CD + "user_data", CD + "network_data.json"],
    "worker-2": [CD + "meta_data.json", CD + "user_data"],
}
FILES = {"nocloud": NOCLOUD_FILES, "configdrive": CONFIGDRIVE_FILES}
LABELS = {"nocloud": "cidata", "configdrive": "config-2"}
SEED_DIRS = {"nocloud": "nocloud", "configdrive": "config_drive"}  # under /var/lib/cloud/seed
INVENTORY = f"""\
apiVersion: kubeseed.io/v1alpha1
kind: Inventory
hosts:
  - hostname: cp-1
    role: master
    mac: "{MAC_CP.upper()}"
    addresses: [10.0.0.10/24, "fd00::10/64"]
    gateway: 10.0.0.1
    nameservers: [10.0.0.1, "fd00::53"]
    sshAuthorizedKeys: ["{KEY_OPS}"]
  - hostname: worker-1
    role: node
    mac: "{MAC_W1}"
    addresses: [10.0.0.21/24]
    gateway: 10.0.0.1
    nameservers: [1.1.1.1]
    sshAuthorizedKeys: ["{KEY_OPS}", "{KEY_ADMIN}"]
  - hostname: worker-2
    role: node
"""


def tree(path: Path) -> dict[str, bytes]:
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def seed(cwd: Path, out: Path, *extra: str, inventory: str = "hosts.yaml") -> subprocess.CompletedProcess[str]:
    return kubeseed("seed", "demo", "--inventory", inventory, "--out", str(out), *extra, cwd=cwd)


@pytest.fixture(scope="module")
def built(cluster_template: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One cluster and INVENTORY, seeded by the real CLI in every way: "nocloud", "nocloud-dir",
    "configdrive", "configdrive-dir" -> output directory; "cwd" -> the directory holding demo/ and hosts.yaml."""
    base = tmp_path_factory.mktemp("seeds")
    shutil.copytree(cluster_template, base / "demo")
    (base / "hosts.yaml").write_text(INVENTORY)
    outs = {"cwd": base}
    for kind in ("nocloud", "configdrive"):
        for name, extra in ((kind, []), (f"{kind}-dir", ["--dir"])):
            out = base / "out" / name
            r = seed(base, out, "--kind", kind, *extra)
            assert r.returncode == 0, r.stderr
            outs[name] = out
    return outs


@dataclass
class IsoView:
    """One seed ISO as pycdlib reads it back."""

    label: str
    joliet_label: str
    by_name: dict[str, dict[str, bytes]]  # "rr" | "joliet" | "iso9660" -> relative path -> content
    rock_ridge: dict[str, tuple[str, int]]  # relative path -> (Rock Ridge name, mode)


def iso9660_path(rel: str) -> str:
    parts = [p.upper().replace("-", "_") for p in rel.split("/")]
    leaf = parts[-1] if "." in parts[-1] else parts[-1] + "."
    return "/" + "/".join(parts[:-1] + [leaf + ";1"])


def read_iso(path: Path, names: list[str]) -> IsoView:
    """Every file in ``names`` read back by pycdlib through each of its three names."""
    iso = pycdlib.PyCdlib()
    iso.open(str(path))
    try:
        by_name: dict[str, dict[str, bytes]] = {"rr": {}, "joliet": {}, "iso9660": {}}
        rock_ridge = {}
        for rel in names:
            for how, where in (("rr", {"rr_path": "/" + rel}), ("joliet", {"joliet_path": "/" + rel})):
                buf = io.BytesIO()
                iso.get_file_from_iso_fp(buf, **where)
                by_name[how][rel] = buf.getvalue()
            buf = io.BytesIO()
            iso.get_file_from_iso_fp(buf, iso_path=iso9660_path(rel))
            by_name["iso9660"][rel] = buf.getvalue()
            rec = iso.get_record(rr_path="/" + rel)
            assert isinstance(rec, DirectoryRecord) and rec.rock_ridge is not None
            rock_ridge[rel] = (rec.rock_ridge.name().decode(), rec.rock_ridge.get_file_mode())
        assert iso.joliet_vd is not None, "no Joliet volume descriptor"
        return IsoView(
            label=iso.pvd.volume_identifier.decode().rstrip(" "),
            joliet_label=iso.joliet_vd.volume_identifier.decode("utf-16-be").rstrip(" "),
            by_name=by_name,
            rock_ridge=rock_ridge,
        )
    finally:
        iso.close()


# --- the seeds' contents ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["nocloud", "configdrive"])
def test_seed_directories_hold_exactly_the_expected_files(built: dict[str, Path], kind: str) -> None:
    out = built[f"{kind}-dir"]
    assert sorted(p.name for p in out.iterdir()) == ["cp-1", "worker-1", "worker-2"]
    for host, names in FILES[kind].items():
        assert sorted(tree(out / host)) == sorted(names)
        assert mode(out / host) == 0o700
        assert all(mode(out / host / n) == 0o600 for n in names)
    assert mode(out) == 0o700


@pytest.mark.parametrize("kind", ["nocloud", "configdrive"])
def test_isos_read_back_by_pycdlib_equal_the_directories(built: dict[str, Path], kind: str) -> None:
    out = built[kind]
    assert sorted(p.name for p in out.iterdir()) == ["cp-1.iso", "worker-1.iso", "worker-2.iso"]
    for host, names in FILES[kind].items():
        iso = out / f"{host}.iso"
        assert mode(iso) == 0o600
        expected = tree(built[f"{kind}-dir"] / host)
        view = read_iso(iso, names)
        assert view.label == view.joliet_label == LABELS[kind]
        assert view.by_name["rr"] == expected, "Rock Ridge names"
        assert view.by_name["joliet"] == expected, "Joliet names"
        assert view.by_name["iso9660"] == expected, "plain ISO 9660 names"
        for rel in expected:
            private = rel.endswith(("user-data", "user_data"))
            assert view.rock_ridge[rel] == (rel.rpartition("/")[2], 0o100400 if private else 0o100444)


@pytest.mark.parametrize("kind", ["nocloud", "configdrive"])
def test_isos_read_back_by_isoinfo(built: dict[str, Path], kind: str) -> None:
    isoinfo = need_tool("isoinfo", install="apt-get install genisoimage")
    for host, names in FILES[kind].items():
        iso = str(built[kind] / f"{host}.iso")
        expected = tree(built[f"{kind}-dir"] / host)
        info = subprocess.run([isoinfo, "-d", "-i", iso], capture_output=True, text=True, check=True).stdout
        assert f"Volume id: {LABELS[kind]}\n" in info
        assert "Rock Ridge signatures" in info and "Joliet" in info
        dirs = {"/" + "/".join(n.split("/")[: i + 1]) for n in names for i in range(n.count("/"))}
        for flag in ("-R", "-J"):
            listing = subprocess.run([isoinfo, "-i", iso, flag, "-f"], capture_output=True, text=True, check=True)
            assert sorted(listing.stdout.split()) == sorted(["/" + n for n in names] + list(dirs))
            for rel in names:
                got = subprocess.run([isoinfo, "-i", iso, flag, "-x", "/" + rel], capture_output=True, check=True)
                assert got.stdout == expected[rel], f"{host}: {flag} /{rel}"


def test_user_data_is_the_rendered_payload_plus_the_hosts_keys(built: dict[str, Path]) -> None:
    cwd = built["cwd"]
    for host, role in (("cp-1", "master"), ("worker-1", "node"), ("worker-2", "node")):
        rendered = kubeseed_out(cwd, "render", role, "demo", "--hostname", host)
        nocloud = (built["nocloud-dir"] / host / "user-data").read_bytes()
        configdrive = (built["configdrive-dir"] / host / CD / "user_data").read_bytes()
        assert configdrive == rendered  # config drive: keys travel in meta_data.json, as OpenStack puts them
        doc = yaml.safe_load(nocloud)
        keys = doc.pop("ssh_authorized_keys", None)
        assert doc == yaml.safe_load(rendered)
        assert keys == {"cp-1": [KEY_OPS], "worker-1": [KEY_OPS, KEY_ADMIN], "worker-2": None}[host]
        if keys is None:
            assert nocloud == rendered
        assert list(doc)[:2] == ["hostname", "preserve_hostname"] and doc["hostname"] == host
        files = cloud_init_files(nocloud)
        cfg = yaml.safe_load(files[NODE_CONFIG_PATH][0])
        assert (cfg["role"], cfg["nodeName"]) == (role, host)
        assert RUNTIME_PATH in files


def kubeseed_out(cwd: Path, *args: str) -> bytes:
    r = subprocess.run(
        [sys.executable, "-m", "kubeseed.generator.cli", *args],
        cwd=cwd,
        capture_output=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_meta_data_and_a_stable_instance_id(built: dict[str, Path], cluster: Path, tmp_path: Path) -> None:
    _, secrets = load(built["cwd"] / "demo")
    ids = {}
    for host in NOCLOUD_FILES:
        meta = yaml.safe_load((built["nocloud-dir"] / host / "meta-data").read_text())
        assert meta == {"instance-id": instance_id(secrets, host), "local-hostname": host}
        uuid.UUID(meta["instance-id"])
        od = json.loads((built["configdrive-dir"] / host / CD / "meta_data.json").read_text())
        keys = {"cp-1": [KEY_OPS], "worker-1": [KEY_OPS, KEY_ADMIN], "worker-2": []}[host]
        expected = {"uuid": meta["instance-id"], "name": host, "hostname": host, "launch_index": 0}
        if keys:
            expected["public_keys"] = {f"key-{i}": k for i, k in enumerate(keys)}
        assert od == expected
        ids[host] = meta["instance-id"]
    assert len(set(ids.values())) == 3
    # Stable: another run (another process, another time) gives the same ids ...
    (tmp_path / "hosts.yaml").write_text(INVENTORY)
    other = tmp_path / "again"
    r = seed(built["cwd"], other, "--dir", inventory=str(tmp_path / "hosts.yaml"))
    assert r.returncode == 0, r.stderr
    assert {h: yaml.safe_load((other / h / "meta-data").read_text())["instance-id"] for h in ids} == ids
    # ... and another cluster (another CA) gives other ids for the same host names.
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    assert kubeseed("cluster", "create", "demo", "--endpoint", "10.0.0.10:6443", cwd=fresh).returncode == 0
    (fresh / "hosts.yaml").write_text(INVENTORY)
    r = seed(fresh, fresh / "out", "--dir")
    assert r.returncode == 0, r.stderr
    theirs = {h: yaml.safe_load((fresh / "out" / h / "meta-data").read_text())["instance-id"] for h in ids}
    assert not set(theirs.values()) & set(ids.values())


def test_network_config_v2(built: dict[str, Path]) -> None:
    cp = yaml.safe_load((built["nocloud-dir"] / "cp-1" / "network-config").read_text())
    assert cp == {
        "version": 2,
        "ethernets": {
            "primary": {
                "match": {"macaddress": MAC_CP},
                "addresses": ["10.0.0.10/24", "fd00::10/64"],
                "routes": [{"to": "0.0.0.0/0", "via": "10.0.0.1"}],
                "nameservers": {"addresses": ["10.0.0.1", "fd00::53"]},
            }
        },
    }
    w1 = yaml.safe_load((built["nocloud-dir"] / "worker-1" / "network-config").read_text())
    assert w1["ethernets"]["primary"]["match"] == {"macaddress": MAC_W1}


def test_network_data_json(built: dict[str, Path]) -> None:
    nd = json.loads((built["configdrive-dir"] / "cp-1" / CD / "network_data.json").read_text())
    assert nd == {
        "links": [{"id": "primary", "type": "phy", "ethernet_mac_address": MAC_CP}],
        "networks": [
            {
                "id": "network0",
                "type": "ipv4",
                "link": "primary",
                "ip_address": "10.0.0.10",
                "netmask": "255.255.255.0",
                "routes": [{"network": "0.0.0.0", "netmask": "0.0.0.0", "gateway": "10.0.0.1"}],
            },
            {
                "id": "network1",
                "type": "ipv6",
                "link": "primary",
                "ip_address": "fd00::10",
                "netmask": "ffff:ffff:ffff:ffff::",
                "routes": [],
            },
        ],
        "services": [{"type": "dns", "address": "10.0.0.1"}, {"type": "dns", "address": "fd00::53"}],
    }


# --- cloud-init reads them --------------------------------------------------------------------------------


def cloudinit_python() -> str:
    """The interpreter Debian's cloud-init runs on: the one a machine's first boot has."""
    py = need_tool("python3", "/usr/bin/python3", "Debian's python3")
    if subprocess.run([py, "-c", "import cloudinit"], capture_output=True).returncode != 0:
        unavailable(f"{py} cannot import cloudinit (apt-get install cloud-init)")
    return py


def read_with_cloud_init(kind: str, files: dict[str, bytes], where: Path) -> dict[str, Any]:
    """Put ``files`` where cloud-init looks for a seed on disk and run the datasource over them."""
    seed_dir = where / "cloud" / "seed" / SEED_DIRS[kind]
    for rel, data in files.items():
        (seed_dir / rel).parent.mkdir(parents=True, exist_ok=True)
        (seed_dir / rel).write_bytes(data)
    r = subprocess.run(
        [cloudinit_python(), str(CONSUMER), kind, str(where / "cloud"), *NICS],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def isoinfo_extract(iso: Path, names: list[str]) -> dict[str, bytes]:
    """The files of an ISO as an independent reader (genisoimage's isoinfo, Rock Ridge names) sees them."""
    isoinfo = need_tool("isoinfo", install="apt-get install genisoimage")
    return {
        rel: subprocess.run([isoinfo, "-i", str(iso), "-R", "-x", "/" + rel], capture_output=True, check=True).stdout
        for rel in names
    }


EXPECTED_NET = {
    "cp-1": {
        "name": "enp1s0",
        "mac_address": MAC_CP,
        "addresses": [("10.0.0.10", 24), ("fd00::10", 64)],
        "default_via": "10.0.0.1",
        "nameservers": ["10.0.0.1", "fd00::53"],
    },
    "worker-1": {
        "name": "eno1",
        "mac_address": MAC_W1,
        "addresses": [("10.0.0.21", 24)],
        "default_via": "10.0.0.1",
        "nameservers": ["1.1.1.1"],
    },
}


def check_cloud_init_view(seen: dict[str, Any], host: str, kind: str, user_data: bytes, iid: str) -> None:
    assert seen["found"] is True
    assert seen["instance_id"] == iid
    assert seen["local_hostname"] == host
    assert seen["userdata_raw_sha256"] == hashlib.sha256(user_data).hexdigest()
    plain = gzip.decompress(user_data) if user_data[:2] == b"\x1f\x8b" else user_data
    assert seen["userdata_sha256"] == hashlib.sha256(plain).hexdigest()
    assert seen["part_type"] == "text/cloud-config"
    assert seen["cloud_config"]["hostname"] == host
    assert seen["cloud_config"]["runcmd"][-1][-1] == ("init" if host == "cp-1" else "join")
    keys = {"cp-1": [KEY_OPS], "worker-1": [KEY_OPS, KEY_ADMIN], "worker-2": []}[host]
    if kind == "nocloud":
        assert (seen["cloud_config"]["ssh_authorized_keys"] or []) == keys
    else:
        assert seen["public_keys"] == keys
    if host not in EXPECTED_NET:
        assert seen["network_config"] is None
        return
    want = EXPECTED_NET[host]
    [iface] = seen["interfaces"]
    assert (iface["name"], iface["mac_address"]) == (want["name"], want["mac_address"])
    assert [(s["address"], s["prefix"]) for s in iface["subnets"]] == want["addresses"]
    routes = [r for s in iface["subnets"] for r in s["routes"]]
    assert routes == [{"network": "0.0.0.0", "prefix": 0, "gateway": want["default_via"]}]
    assert seen["nameservers"] == want["nameservers"]
    netplan = seen["rendered"]["netplan"]["etc/netplan/50-cloud-init.yaml"]
    assert f"macaddress: '{want['mac_address']}'" in netplan
    eni = seen["rendered"]["eni"]["etc/network/interfaces"]
    address, prefix = want["addresses"][0]
    assert f"auto {want['name']}\niface {want['name']} inet static\n    address {address}/{prefix}\n" in eni
    assert f"route add default gw {want['default_via']}" in eni


@pytest.mark.parametrize("kind", ["nocloud", "configdrive"])
@pytest.mark.parametrize("medium", ["dir", "iso"])
def test_cloud_init_reads_the_seeds(built: dict[str, Path], kind: str, medium: str, tmp_path: Path) -> None:
    _, secrets = load(built["cwd"] / "demo")
    for host, names in FILES[kind].items():
        if medium == "dir":
            files = tree(built[f"{kind}-dir"] / host)
        else:
            files = isoinfo_extract(built[kind] / f"{host}.iso", names)
            assert files == tree(built[f"{kind}-dir"] / host)
        seen = read_with_cloud_init(kind, files, tmp_path / host)
        ud = files["user-data" if kind == "nocloud" else CD + "user_data"]
        check_cloud_init_view(seen, host, kind, ud, instance_id(secrets, host))


def test_cloud_init_reads_gzipped_user_data(cluster: Path, tmp_path: Path) -> None:
    (tmp_path / "hosts.yaml").write_text(INVENTORY)
    for kind in ("nocloud", "configdrive"):
        out = tmp_path / f"gz-{kind}"
        r = seed(tmp_path, out, "--kind", kind, "--dir", "--gzip")
        assert r.returncode == 0, r.stderr
        files = tree(out / "worker-1")
        ud = files["user-data" if kind == "nocloud" else CD + "user_data"]
        assert ud[:2] == b"\x1f\x8b"
        _, secrets = load(cluster)
        seen = read_with_cloud_init(kind, files, tmp_path / f"ci-{kind}")
        check_cloud_init_view(seen, "worker-1", kind, ud, instance_id(secrets, "worker-1"))


def test_cloud_init_schema_accepts_seed_user_data(built: dict[str, Path]) -> None:
    cloud_init = need_tool("cloud-init", install="apt-get install cloud-init")
    for host in ("cp-1", "worker-1"):
        path = built["nocloud-dir"] / host / "user-data"
        r = subprocess.run([cloud_init, "schema", "-c", str(path)], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "Valid cloud-config" in r.stdout
        assert "deprecat" not in (r.stdout + r.stderr).lower()


def test_without_a_mac_network_config_matches_by_name(cluster: Path, tmp_path: Path) -> None:
    text = INVENTORY.replace(f'    mac: "{MAC_W1}"\n', "")
    (tmp_path / "hosts.yaml").write_text(text)
    r = seed(tmp_path, tmp_path / "out", "--dir")
    assert r.returncode == 0, r.stderr
    assert "note: worker-1 has static addresses but no MAC" in r.stderr
    net = yaml.safe_load((tmp_path / "out" / "worker-1" / "network-config").read_text())
    assert net["ethernets"]["primary"]["match"] == {"name": "e*"}
    seen = read_with_cloud_init("nocloud", tree(tmp_path / "out" / "worker-1"), tmp_path / "ci")
    assert [(s["address"], s["prefix"]) for s in seen["interfaces"][0]["subnets"]] == [("10.0.0.21", 24)]
    assert "name: e*" in seen["rendered"]["netplan"]["etc/netplan/50-cloud-init.yaml"]
    # A config drive can only name the NIC by its MAC: refused, nothing written.
    r = seed(tmp_path, tmp_path / "cd", "--kind", "configdrive")
    assert r.returncode == 2
    assert r.stderr.strip().endswith("use --kind nocloud (which can match the NIC by name)")
    assert "hosts.yaml: hosts[1].mac: is required for --kind configdrive" in r.stderr
    assert not (tmp_path / "cd").exists()


# --- what the seeds must and must not hold ----------------------------------------------------------------


def test_a_nodes_seed_holds_no_private_key(built: dict[str, Path]) -> None:
    for kind in ("nocloud", "configdrive"):
        for host in FILES[kind]:
            raw = (built[kind] / f"{host}.iso").read_bytes()
            files = tree(built[f"{kind}-dir"] / host)
            ud = files["user-data" if kind == "nocloud" else CD + "user_data"]
            decoded = b"".join(content for content, _ in cloud_init_files(ud).values())
            if host == "cp-1":  # the check can see a key: the master's seed does carry the CA keys
                assert b"PRIVATE KEY" in decoded
            else:
                assert b"PRIVATE KEY" not in raw and b"PRIVATE KEY" not in decoded


def test_runtime_preinstalled_leaves_the_runtime_out(cluster: Path, tmp_path: Path) -> None:
    (tmp_path / "hosts.yaml").write_text(INVENTORY)
    r = seed(tmp_path, tmp_path / "out", "--dir", "--runtime", "preinstalled")
    assert r.returncode == 0, r.stderr
    files = cloud_init_files((tmp_path / "out" / "worker-1" / "user-data").read_bytes())
    assert RUNTIME_PATH not in files and NODE_CONFIG_PATH in files


def test_three_masters_one_init_and_two_control_plane_joins(cluster: Path, tmp_path: Path) -> None:
    """The first master listed creates the cluster; the others join its control plane (their payloads carry a
    token and the CA pin as a node's, the CA keys, and the full runtime, which has `join --control-plane`)."""
    masters = "".join(f"  - {{hostname: cp-{i}, role: master}}\n" for i in (1, 2, 3))
    (tmp_path / "hosts.yaml").write_text(HEAD + masters + GOOD_HOST)
    r = seed(tmp_path, tmp_path / "out", "--dir")
    assert r.returncode == 0, r.stderr
    for host in ("cp-1", "cp-2", "cp-3", "worker-1"):
        userdata = (tmp_path / "out" / host / "user-data").read_bytes()
        doc = yaml.safe_load(gzip.decompress(userdata) if userdata[:2] == b"\x1f\x8b" else userdata)
        files = cloud_init_files(userdata)
        cfg = yaml.safe_load(files[NODE_CONFIG_PATH][0])
        runtime = unpack_sources(files[RUNTIME_PATH][0])
        if host == "cp-1":
            assert doc["runcmd"] == [["python3", RUNTIME_PATH, "init"]]
            assert "discovery" not in cfg and cfg["bootstrapTokens"]
        elif host.startswith("cp-"):
            assert doc["runcmd"] == [["python3", RUNTIME_PATH, "join", "--control-plane"]]
            assert cfg["role"] == "master" and "ca.key" in cfg["pki"] and not cfg.get("bootstrapTokens")
            assert cfg["discovery"]["token"] and cfg["discovery"]["caCertHashes"]
            assert "kubeseed.runtime.init.cpjoin" in runtime
        else:
            assert doc["runcmd"] == [["python3", RUNTIME_PATH, "join"]]
        assert ("kubeseed.runtime.init.cpjoin" in runtime) == (host in ("cp-2", "cp-3"))


# --- reproducible bytes -----------------------------------------------------------------------------------


def test_same_inputs_same_iso_bytes_across_runs_clocks_and_time_zones(built: dict[str, Path]) -> None:
    cwd = built["cwd"]
    time.sleep(1.1)  # a later wall-clock second than the module fixture's build
    for kind in ("nocloud", "configdrive"):
        env_tz = {**os.environ, "TZ": "Asia/Kolkata"}
        out = cwd / "again" / kind
        r = subprocess.run(
            [sys.executable, "-m", "kubeseed.generator.cli", "seed", "demo"]
            + ["--inventory", "hosts.yaml", "--out", str(out), "--kind", kind],
            cwd=cwd,
            env=env_tz,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert r.returncode == 0, r.stderr
        assert tree(out) == tree(built[kind])


def test_build_iso_ignores_the_clock_and_the_time_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    files = {"user-data": b"#cloud-config\n", "meta-data": b"instance-id: x\n", "a/b/c.json": b"{}\n"}
    first = build_iso("cidata", files)
    monkeypatch.setenv("TZ", "America/St_Johns")  # UTC-3:30: a 15-minute-granular offset
    time.tzset()
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 86400 * 400 + 7)
    try:
        assert build_iso("cidata", files) == first
    finally:
        monkeypatch.undo()
        time.tzset()


def test_pycdlib_alone_is_not_reproducible(monkeypatch: pytest.MonkeyPatch) -> None:
    """The control for the test above: without kubeseed's fixed clock, the same files give other bytes."""

    def plain(now: float) -> bytes:
        monkeypatch.setattr(time, "time", lambda: now)
        iso = pycdlib.PyCdlib()
        iso.new(interchange_level=2, vol_ident="cidata", joliet=3, rock_ridge="1.09")
        iso.add_fp(io.BytesIO(b"x"), 1, iso_path="/X.;1", rr_name="x", joliet_path="/x", file_mode=0o100444)
        out = io.BytesIO()
        iso.write_fp(out)
        iso.close()
        return out.getvalue()

    assert plain(1_700_000_000.0) != plain(1_700_000_061.0)


def test_source_date_epoch_sets_the_stamped_time(monkeypatch: pytest.MonkeyPatch) -> None:
    files = {"user-data": b"#cloud-config\n"}
    default = build_iso("cidata", files)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    stamped = build_iso("cidata", files)
    assert stamped != default and stamped == build_iso("cidata", files)
    iso = pycdlib.PyCdlib()
    iso.open_fp(io.BytesIO(stamped))
    created = iso.pvd.volume_creation_date
    assert (created.year, created.month, created.dayofmonth, created.gmtoffset) == (2023, 11, 14, 0)
    iso.close()


# --- writing ----------------------------------------------------------------------------------------------


def test_a_rerun_replaces_seeds_in_place(cluster: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    for ns in ("1.1.1.1", "9.9.9.9"):  # the second run changes worker-1's seed
        (tmp_path / "hosts.yaml").write_text(INVENTORY.replace("[1.1.1.1]", f"[{ns}]"))
        for extra in ([], ["--dir"]):
            r = seed(tmp_path, out, *extra)
            assert r.returncode == 0, r.stderr
            assert "cidata" in r.stdout and "worker-2" in r.stdout
    names = sorted(p.name for p in out.iterdir())  # hidden staging directories included: none may remain
    assert names == ["cp-1", "cp-1.iso", "worker-1", "worker-1.iso", "worker-2", "worker-2.iso"]
    assert "9.9.9.9" in (out / "worker-1" / "network-config").read_text()
    assert b"9.9.9.9" in (out / "worker-1.iso").read_bytes()
    assert mode(out / "worker-1") == 0o700 and mode(out / "worker-1.iso") == 0o600


def test_seed_cli_help() -> None:
    r = kubeseed("seed", "--help", cwd=Path.cwd())
    assert r.returncode == 0
    for flag in ("--inventory", "--out", "--kind", "--dir", "--runtime", "--gzip"):
        assert flag in r.stdout


# --- bad inventories: exit 2, one line naming the field, nothing written ----------------------------------

GOOD_HOST = "  - {hostname: worker-1, role: node}\n"
HEAD = "apiVersion: kubeseed.io/v1alpha1\nkind: Inventory\nhosts:\n"
BAD_INVENTORIES = {
    "bad-cidr": (
        HEAD + GOOD_HOST + "  - {hostname: w2, role: node, addresses: [10.0.0.300/24]}\n",
        'hosts[1].addresses[0]: "10.0.0.300/24" is not an IP network',
    ),
    "no-prefix": (
        HEAD + "  - {hostname: w2, role: node, addresses: [10.0.0.3]}\n",
        'hosts[0].addresses[0]: "10.0.0.3" needs a prefix length',
    ),
    "network-address": (
        HEAD + "  - {hostname: w2, role: node, addresses: [10.0.0.0/24]}\n",
        'hosts[0].addresses[0]: "10.0.0.0/24" is the network address of 10.0.0.0/24',
    ),
    "bad-mac": (
        HEAD + '  - {hostname: w2, role: node, mac: "52:54:00:zz:00:01"}\n',
        'hosts[0].mac: "52:54:00:zz:00:01" is not a MAC address like aa:bb:cc:dd:ee:ff',
    ),
    "mac-read-as-number": (
        HEAD + "  - {hostname: w2, role: node, mac: 52:54:00:12:34:56}\n",
        "hosts[0].mac: was read as a number by YAML; quote it",
    ),
    "multicast-mac": (
        HEAD + '  - {hostname: w2, role: node, mac: "01:00:5e:00:00:01"}\n',
        'hosts[0].mac: "01:00:5e:00:00:01" is a multicast address',
    ),
    "gateway-outside": (
        HEAD + "  - {hostname: w2, role: node, addresses: [10.0.0.2/24], gateway: 10.1.0.1}\n",
        "hosts[0].gateway: 10.1.0.1 is outside the host's networks (10.0.0.0/24)",
    ),
    "gateway-family": (
        HEAD + '  - {hostname: w2, role: node, addresses: [10.0.0.2/24], gateway: "fd00::1"}\n',
        "hosts[0].gateway: fd00::1 is outside the host's networks (none of IPv6)",
    ),
    "gateway-without-addresses": (
        HEAD + "  - {hostname: w2, role: node, gateway: 10.0.0.1}\n",
        "hosts[0].gateway: needs static addresses",
    ),
    "bad-gateway": (
        HEAD + "  - {hostname: w2, role: node, addresses: [10.0.0.2/24], gateway: 10.0.0.256}\n",
        'hosts[0].gateway: "10.0.0.256" is not an IP address',
    ),
    "bad-nameserver": (
        HEAD + "  - {hostname: w2, role: node, addresses: [10.0.0.2/24], nameservers: [1.1.1.1, dns.google]}\n",
        'hosts[0].nameservers[1]: "dns.google" is not an IP address',
    ),
    "duplicate-hostname": (
        HEAD + GOOD_HOST + "  - {hostname: w2, role: node}\n" + GOOD_HOST,
        'hosts[2].hostname: "worker-1" is already hosts[0].hostname; host names must be unique',
    ),
    "duplicate-mac": (
        HEAD
        + '  - {hostname: w1, role: node, mac: "52:54:00:00:00:01"}\n'
        + '  - {hostname: w2, role: node, mac: "52:54:00:00:00:01"}\n',
        'hosts[1].mac: "52:54:00:00:00:01" is already hosts[0].mac; MACs must be unique',
    ),
    "duplicate-mac-case": (
        HEAD
        + '  - {hostname: w1, role: node, mac: "52:54:00:AB:00:01"}\n'
        + '  - {hostname: w2, role: node, mac: "52:54:00:ab:00:01"}\n',
        'hosts[1].mac: "52:54:00:ab:00:01" is already hosts[0].mac',
    ),
    "duplicate-address": (
        HEAD
        + "  - {hostname: w1, role: node, addresses: [10.0.0.5/24, 10.0.1.5/24]}\n"
        + "  - {hostname: w2, role: node, addresses: [10.0.1.5/16]}\n",
        "hosts[1].addresses[0]: 10.0.1.5 is already hosts[0].addresses[1]; addresses must be unique",
    ),
    "unknown-role": (
        HEAD + "  - {hostname: w2, role: worker}\n",
        'hosts[0].role: "worker" is not one of master, node',
    ),
    "unknown-field": (
        HEAD + GOOD_HOST + "  - {hostname: w2, role: node, ip: 10.0.0.2/24}\n",
        "hosts[1].ip: unknown field; known fields here: addresses, gateway, hostname, mac, nameservers, role, "
        "sshAuthorizedKeys",
    ),
    "unknown-top-field": (HEAD + GOOD_HOST + "cluster: demo\n", "cluster: unknown field"),
    "uppercase-hostname": (
        HEAD + "  - {hostname: Worker-1, role: node}\n",
        'hosts[0].hostname: "Worker-1" is not a lower-case DNS name',
    ),
    "missing-hostname": (HEAD + "  - {role: node}\n", "hosts[0].hostname: is required"),
    "bad-ssh-key": (
        HEAD + "  - {hostname: w2, role: node, sshAuthorizedKeys: [hunter2]}\n",
        "hosts[0].sshAuthorizedKeys[0]: is not an OpenSSH public key",
    ),
    "no-hosts": (HEAD.replace("hosts:\n", "hosts: []\n"), "hosts: lists no hosts"),
    "hosts-not-a-list": (HEAD.replace("hosts:\n", "hosts: worker-1\n"), "hosts: must be a list, found str"),
    "host-not-a-mapping": (HEAD + "  - worker-1\n", "hosts[0]: must be a mapping, found str"),
    "wrong-api-version": (
        HEAD.replace("v1alpha1", "v1beta9") + GOOD_HOST,
        'apiVersion: unknown version "kubeseed.io/v1beta9"; this kubeseed reads kubeseed.io/v1alpha1',
    ),
    "wrong-kind": (HEAD.replace("Inventory", "Cluster") + GOOD_HOST, 'kind: must be Inventory, found "Cluster"'),
    "not-yaml": (HEAD + "  - {hostname: w2, role: node\n", "hosts.yaml: (yaml): is not valid YAML at line"),
    "not-a-mapping": ("- just\n- a list\n", "hosts.yaml: : must be a mapping, found list"),
}


MODES = [[], ["--dir"], ["--kind", "configdrive"], ["--kind", "configdrive", "--dir"]]


@pytest.mark.parametrize("case", sorted(BAD_INVENTORIES))
def test_bad_inventory_exit_2_names_the_field_writes_nothing(cluster: Path, tmp_path: Path, case: str) -> None:
    text, message = BAD_INVENTORIES[case]
    (tmp_path / "hosts.yaml").write_text(text)
    extra = MODES[sorted(BAD_INVENTORIES).index(case) % len(MODES)]  # every output mode, over the cases
    r = seed(tmp_path, tmp_path / "seeds", *extra)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert r.stderr.startswith("error: hosts.yaml: "), r.stderr
    assert message in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert r.stdout == ""
    assert not (tmp_path / "seeds").exists()


def test_missing_inventory_file(cluster: Path, tmp_path: Path) -> None:
    r = seed(tmp_path, tmp_path / "seeds", inventory="nope.yaml")
    assert r.returncode == 2
    assert r.stderr.strip() == "error: nope.yaml: no such file; write an inventory (see README, Seeds for bare metal)"
    assert not (tmp_path / "seeds").exists()


def test_a_failed_run_leaves_earlier_seeds_untouched(cluster: Path, tmp_path: Path) -> None:
    (tmp_path / "hosts.yaml").write_text(INVENTORY)
    out = tmp_path / "seeds"
    assert seed(tmp_path, out).returncode == 0
    before = tree(out)
    (tmp_path / "hosts.yaml").write_text(INVENTORY.replace("10.0.0.21/24", "10.0.0.21/33"))
    r = seed(tmp_path, out)
    assert r.returncode == 2
    assert 'hosts[1].addresses[0]: "10.0.0.21/33" is not an IP network' in r.stderr
    assert tree(out) == before and sorted(p.name for p in out.iterdir()) == sorted(before)


def test_parse_inventory_normalises() -> None:
    inv = parse_inventory(yaml.safe_load(INVENTORY))
    cp = inv.hosts[0]
    assert cp.mac == MAC_CP  # lower-cased
    assert [str(a) for a in cp.addresses] == ["10.0.0.10/24", "fd00::10/64"]
    assert str(cp.gateway) == "10.0.0.1" and cp.static
    assert not inv.hosts[2].static and inv.hosts[2].mac is None


def test_out_must_be_a_directory(cluster: Path, tmp_path: Path) -> None:
    (tmp_path / "hosts.yaml").write_text(INVENTORY)
    (tmp_path / "seeds").write_text("not a directory\n")
    r = seed(tmp_path, tmp_path / "seeds")
    assert r.returncode == 2
    assert r.stderr.strip() == f"error: --out: {tmp_path / 'seeds'} exists and is not a directory"
    assert (tmp_path / "seeds").read_text() == "not a directory\n"


def test_host_names_that_look_like_staging_names(cluster: Path, tmp_path: Path) -> None:
    (tmp_path / "hosts.yaml").write_text(HEAD + "  - {hostname: new, role: node}\n  - {hostname: old, role: node}\n")
    for _ in range(2):
        r = seed(tmp_path, tmp_path / "out", "--dir")
        assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["new", "old"]
    assert sorted(tree(tmp_path / "out" / "old")) == ["meta-data", "user-data"]
