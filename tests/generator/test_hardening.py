"""Issue 11, the generator's side: what adversarial testing broke, each case through the real CLI where it is about
the CLI. A refusal is one line, exit code 2, no traceback, and nothing written or lost."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubeseed.generator.errors import FieldError, shown
from kubeseed.generator.inventory import parse_inventory
from kubeseed.generator.model import default_cluster_text, parse_cluster
from kubeseed.runtime import pki
from tests.support.helpers import SSH_KEY, cloud_init_files, kubeseed_with

INVENTORY = """\
apiVersion: kubeseed.io/v1alpha1
kind: Inventory
hosts:
  - {hostname: worker-1, role: node}
  - {hostname: worker-2, role: node}
"""


def snapshot(root: Path) -> dict[str, tuple[int, bytes]]:
    """Every path under ``root`` -> (mode, content): what a refused command must leave as it was."""
    out = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        out[str(p.relative_to(root))] = (st.st_mode, p.read_bytes() if stat.S_ISREG(st.st_mode) else b"")
    return out


def refused(r: subprocess.CompletedProcess[bytes], *expected: str) -> str:
    """The one-line error of a refused command (exit 2, nothing on stdout), checked to hold each of ``expected``."""
    err = r.stderr.decode(errors="replace")
    assert r.returncode == 2, (r.returncode, err)
    assert err.startswith("error: ") and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert r.stdout == b""
    for text in expected:
        assert text in err, err
    return err


def run(cwd: Path, *args: str, **kw: Any) -> subprocess.CompletedProcess[bytes]:
    return kubeseed_with(*args, cwd=cwd, **kw)


def bomb() -> str:
    """A billion laughs in one flow sequence: nine levels of nine aliases each, about 400 bytes."""
    levels = ["&l0 [" + ", ".join(["lol"] * 9) + "]"]
    levels += [f"&l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, 9)]
    return "[" + ", ".join(levels) + "]"


def edit_cluster(cluster: Path, old: str, new: str) -> None:
    text = (cluster / "cluster.yaml").read_text()
    assert old in text
    (cluster / "cluster.yaml").write_text(text.replace(old, new))


# --- 4. --out: devices and pipes are written, not replaced; directories and empty paths refused -------------


def _read_all(fd: int, into: list[bytes]) -> None:
    with os.fdopen(fd, "rb") as f:
        into.append(f.read())


@pytest.mark.parametrize(
    "args,head",
    [(["render", "node", "demo", "-o"], b"#cloud-config\n"), (["user", "create", "demo", "bob", "-o"], b"apiVersion")],
)
def test_out_into_a_fifo_keeps_the_fifo(cluster: Path, args: list[str], head: bytes) -> None:
    fifo = cluster.parent / "out.fifo"
    os.mkfifo(fifo, 0o640)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: _read_all(os.open(fifo, os.O_RDONLY), got), daemon=True)
    reader.start()
    r = run(cluster.parent, *args, str(fifo))
    reader.join(timeout=30)
    assert r.returncode == 0, r.stderr
    assert got and got[0].startswith(head)
    st = fifo.lstat()
    assert stat.S_ISFIFO(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o640


def test_out_to_dev_fd_n_a_process_substitution(cluster: Path) -> None:
    """``--out >(cmd)`` is /dev/fd/N, a pipe."""
    rfd, wfd = os.pipe()
    got: list[bytes] = []
    reader = threading.Thread(target=_read_all, args=(rfd, got), daemon=True)
    reader.start()
    try:
        r = run(cluster.parent, "render", "node", "demo", "--out", f"/dev/fd/{wfd}", pass_fds=(wfd,))
    finally:
        os.close(wfd)
    reader.join(timeout=30)
    assert r.returncode == 0, r.stderr
    assert "/etc/kubeseed/config.yaml" in cloud_init_files(got[0])


def test_out_to_dev_null_leaves_it_a_device(cluster: Path) -> None:
    before = os.stat("/dev/null")
    r = run(cluster.parent, "render", "master", "demo", "-o", "/dev/null")
    after = os.stat("/dev/null")
    if not stat.S_ISCHR(after.st_mode) and os.geteuid() == 0:  # the bug is back: give the machine its /dev/null
        os.unlink("/dev/null")
        os.mknod("/dev/null", stat.S_IFCHR | 0o666, before.st_rdev)
        os.chmod("/dev/null", 0o666)
    assert r.returncode == 0, r.stderr
    assert stat.S_ISCHR(after.st_mode) and after.st_rdev == before.st_rdev
    assert (after.st_ino, after.st_mode) == (before.st_ino, before.st_mode)


@pytest.mark.parametrize(
    "args,expected",
    [
        (["render", "node", "demo", "--out", ""], "--out: the path is empty"),
        (["render", "node", "demo", "--out", "outdir"], '--out: "outdir" is a directory'),
        (["user", "create", "demo", "bob", "-o", ""], "-o: the path is empty"),
        (["user", "create", "demo", "bob", "-o", "outdir"], '-o: "outdir" is a directory'),
        (["seed", "demo", "-i", "hosts.yaml", "--out", ""], "--out: the path is empty"),
        (["image", "runtime", "--out", ""], "--out: the path is empty"),
        (["image", "build", "--out", "/dev/null"], '--out: "/dev/null" is not a regular file'),
        (["image", "build", "--out", "outdir"], '--out: "outdir" is a directory'),
    ],
)
def test_out_refuses_an_empty_path_and_a_directory(cluster: Path, args: list[str], expected: str) -> None:
    (cluster.parent / "outdir").mkdir()
    (cluster.parent / "hosts.yaml").write_text(INVENTORY)
    before = snapshot(cluster.parent)
    refused(run(cluster.parent, *args), expected)
    assert snapshot(cluster.parent) == before


# --- 5. seed --out replaces only the seeds kubeseed wrote ------------------------------------------------------


def _own_dir(out: Path) -> None:
    (out / "worker-2" / "photos").mkdir(parents=True)
    (out / "worker-2" / "user-data").write_text("#cloud-config\n")
    (out / "worker-2" / "photos" / "cat.jpg").write_bytes(b"\xff\xd8 not a seed")


def _dir_named_like_an_iso(out: Path) -> None:
    (out / "worker-2.iso").mkdir(parents=True)
    (out / "worker-2.iso" / "notes.txt").write_text("mine\n")


def _foreign_iso(out: Path) -> None:
    out.mkdir()
    (out / "worker-2.iso").write_bytes(b"\0" * 40000)  # someone's image, not labelled cidata or config-2


@pytest.mark.parametrize(
    "setup,extra,expected",
    [
        (_own_dir, ["--dir"], 'worker-2 holds "photos", which is no seed file'),
        (_dir_named_like_an_iso, [], "worker-2.iso exists and is not a seed ISO"),
        (_foreign_iso, [], "worker-2.iso is not a seed ISO"),
    ],
)
def test_seed_never_replaces_what_it_did_not_write(
    cluster: Path, tmp_path: Path, setup: Callable[[Path], None], extra: list[str], expected: str
) -> None:
    (tmp_path / "hosts.yaml").write_text(INVENTORY)
    out = tmp_path / "seeds"
    setup(out)
    before = snapshot(out)
    refused(run(tmp_path, "seed", "demo", "-i", "hosts.yaml", "--out", str(out), *extra), expected)
    assert snapshot(out) == before  # nothing lost, and no other host's seed written either


def test_seed_replaces_its_own_seeds_of_either_kind(cluster: Path, tmp_path: Path) -> None:
    (tmp_path / "hosts.yaml").write_text(INVENTORY)
    for kind in ("configdrive", "nocloud", "configdrive"):
        for extra in ([], ["--dir"]):
            r = run(tmp_path, "seed", "demo", "-i", "hosts.yaml", "--out", "seeds", "--kind", kind, *extra)
            assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (tmp_path / "seeds").iterdir()) == [
        "worker-1",
        "worker-1.iso",
        "worker-2",
        "worker-2.iso",
    ]
    assert sorted(
        str(p.relative_to(tmp_path / "seeds/worker-1")) for p in (tmp_path / "seeds/worker-1").rglob("*")
    ) == [
        "openstack",
        "openstack/latest",
        "openstack/latest/meta_data.json",
        "openstack/latest/user_data",
    ]


# --- 6. add-ons stay inside the cluster directory ---------------------------------------------------------------


@pytest.mark.parametrize(
    "entry,link,expected",
    [
        ("/etc/passwd", None, '"/etc/passwd" must be a path inside the cluster directory'),
        ("../other/pki/ca.key", None, '"../other/pki/ca.key" must be a path inside the cluster directory'),
        ("addons/../../other/pki/ca.key", None, "must be a path inside the cluster directory"),
        ("addons/cni.yaml", "../../other/pki/ca.key", '"addons/cni.yaml" is a link leading out'),
        ("addons/passwd", "/etc", '"addons/passwd" is a link leading out'),  # a linked directory
    ],
)
def test_addons_outside_the_cluster_directory_are_refused(
    cluster: Path, entry: str, link: str | None, expected: str
) -> None:
    other = cluster.parent / "other"
    shutil.copytree(cluster, other)
    if link == "/etc":
        (cluster / "addons").symlink_to("/etc")
    elif link:
        (cluster / "addons").mkdir()
        (cluster / "addons" / "cni.yaml").symlink_to(link)
    edit_cluster(cluster, "addons: []", f"addons: [{entry}]")
    r = run(cluster.parent, "render", "master", "demo")
    refused(r, "addons[0]: ", expected)


def test_a_link_inside_the_cluster_directory_is_fine(cluster: Path) -> None:
    (cluster / "manifests").mkdir()
    (cluster / "manifests" / "cni.yaml").write_text("apiVersion: v1\nkind: Namespace\nmetadata: {name: cni}\n---\n")
    (cluster / "addons").mkdir()
    (cluster / "addons" / "cni.yaml").symlink_to("../manifests/cni.yaml")
    edit_cluster(cluster, "addons: []", "addons: [addons/cni.yaml]")
    r = run(cluster.parent, "render", "master", "demo")
    assert r.returncode == 0, r.stderr
    assert b"name: cni" in cloud_init_files(r.stdout)["/etc/kubeseed/addons/00-cni.yaml"][0]


# --- 10. every directory kubeseed makes is 0700, whatever the umask ---------------------------------------------


def test_directories_are_private_under_umask_0(tmp_path: Path) -> None:
    umask0 = {"preexec_fn": lambda: os.umask(0)}
    steps = [
        ["cluster", "create", "clusters/prod/demo", "--endpoint", "10.0.0.10:6443"],
        ["render", "master", "clusters/prod/demo", "-o", "out/payloads/master.yaml"],
        ["user", "create", "clusters/prod/demo", "admin", "-o", "creds/admin/kubeconfig"],
        ["quickstart", "--dir", "quick/start"],
        ["seed", "clusters/prod/demo", "-i", "hosts.yaml", "--out", "seeds/new", "--dir"],
        ["seed", "clusters/prod/demo", "-i", "hosts.yaml", "--out", "isos/new"],
    ]
    (tmp_path / "hosts.yaml").write_text(INVENTORY)
    os.chmod(tmp_path / "hosts.yaml", 0o600)
    for args in steps:
        r = run(tmp_path, *args, **umask0)
        assert r.returncode == 0, (args, r.stderr)
    made = [p for p in tmp_path.rglob("*") if p.is_dir()]
    assert len(made) >= 16
    for p in made:
        assert stat.S_IMODE(p.stat().st_mode) == 0o700, p
    for p in tmp_path.rglob("*"):
        assert not p.stat().st_mode & 0o022, p  # nothing group- or world-writable
        if p.is_file() and p.suffix not in (".crt", ".pub") and p.name != "cluster.yaml":
            assert stat.S_IMODE(p.stat().st_mode) == 0o600, p


# --- 11 and 15. node names, addresses, usages, key pairs -------------------------------------------------------

LONG_NAME = "n" * 53  # a valid DNS label; "system:node:" + it is 65 bytes, over a certificate's common name


@pytest.mark.parametrize(
    "hostname,expected",
    [
        (LONG_NAME, "is 53 characters; a host name here has at most 52"),
        (".".join(["a" * 63] * 3) + "." + "b" * 61, "is 253 characters"),
        ("cp-1\nx", '"cp-1\\nx" is not a lower-case DNS name'),
        ("\u212aube", '"\\u212aube" is not a lower-case DNS name'),
        ("Cp-1", '"Cp-1" is not a lower-case DNS name'),
        ("", "is not a lower-case DNS name"),
    ],
)
def test_render_hostname_must_be_a_node_name(cluster: Path, hostname: str, expected: str) -> None:
    refused(run(cluster.parent, "render", "node", "demo", "--hostname", hostname), "--hostname: ", expected)


def test_a_52_character_hostname_renders(cluster: Path) -> None:
    r = run(cluster.parent, "render", "node", "demo", "--hostname", "n" * 52)
    assert r.returncode == 0, r.stderr
    assert yaml.safe_load(cloud_init_files(r.stdout)["/etc/kubeseed/config.yaml"][0])["nodeName"] == "n" * 52


@pytest.mark.parametrize(
    "host,expected",
    [
        (f"{{hostname: {LONG_NAME}, role: node}}", "hosts[0].hostname: "),
        (
            '{hostname: w1, role: node, addresses: ["fe80::1%eth0/64"]}',
            'hosts[0].addresses[0]: "fe80::1%eth0/64" has a',
        ),
        (
            '{hostname: w1, role: node, addresses: ["fe80::2/64"], gateway: "fe80::1%eth0"}',
            'hosts[0].gateway: "fe80::1%eth0" has a zone',
        ),
        ('{hostname: w1, role: node, addresses: ["fd00::2/64"], nameservers: ["fe80::1%2"]}', "nameservers[0]: "),
    ],
)
def test_inventory_refuses_long_host_names_and_scoped_addresses(
    cluster: Path, tmp_path: Path, host: str, expected: str
) -> None:
    (tmp_path / "hosts.yaml").write_text(INVENTORY.split("  - ")[0] + f"  - {host}\n")
    refused(run(tmp_path, "seed", "demo", "-i", "hosts.yaml", "--out", "seeds"), "hosts.yaml: ", expected)
    assert not (tmp_path / "seeds").exists()


@pytest.mark.parametrize(
    "old,new,where",
    [
        ("unix:///run/containerd/containerd.sock", '"unix:///run/containerd/containerd.sock\\x01"', "kubelet.contai"),
        ("extraArgs: {}", 'extraArgs: {node-labels: "a=b\\x85c"}', "kubelet.extraArgs.node-labels: "),
        ("extraArgs: {}", 'extraArgs: {max-pods: "1\\u2028--v=9"}', "kubelet.extraArgs.max-pods: "),
        ("extraArgs: {}", 'extraArgs: {"v\\n--anonymous-auth": "true"}', 'kubelet.extraArgs: "v\\n--anon'),
    ],
)
def test_control_characters_never_reach_the_kubelets_files(cluster: Path, old: str, new: str, where: str) -> None:
    edit_cluster(cluster, old, new)
    refused(run(cluster.parent, "render", "node", "demo"), where, "must be a one-line string")


def test_token_create_refuses_empty_usages(cluster: Path) -> None:
    before = snapshot(cluster)
    refused(run(cluster.parent, "token", "create", "demo", "--usages", ""), "--usages: name at least one")
    assert snapshot(cluster) == before


@pytest.mark.parametrize("command", [["user", "create", "demo", "bob"], ["render", "master", "demo"]])
def test_a_ca_key_that_is_not_the_certificates_is_refused(cluster: Path, command: list[str]) -> None:
    (cluster / "pki" / "ca.key").write_bytes(pki.key_pem(pki.new_key("ECDSA-P256")))
    err = refused(run(cluster.parent, *command))
    assert "demo/pki/ca.key is not the key of demo/pki/ca.crt" in err
    assert not (cluster.parent / "kubeconfig-bob").exists()


# --- 12. an SSH key is one printable line -----------------------------------------------------------------------


@pytest.mark.parametrize("sep", ["\r", "\v", "\f", "\x85", "\u2028", "\u2029", "\x1c", "\t"])
def test_ssh_keys_with_a_hidden_line_break_are_refused(sep: str) -> None:
    key = f'{SSH_KEY}{sep}command="/bin/sh" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE evil@x'
    doc = yaml.safe_load(default_cluster_text("demo", "10.0.0.10:6443"))
    doc["users"] = [{"name": "ops", "sshAuthorizedKeys": [key]}]
    with pytest.raises(FieldError, match=r"users\[0\]\.sshAuthorizedKeys\[0\]: "):
        parse_cluster(doc)
    inventory = yaml.safe_load(INVENTORY)
    inventory["hosts"][0]["sshAuthorizedKeys"] = [key]
    with pytest.raises(FieldError, match=r"hosts\[0\]\.sshAuthorizedKeys\[0\]"):
        parse_inventory(inventory)


def test_ordinary_ssh_keys_still_pass() -> None:
    doc = yaml.safe_load(default_cluster_text("demo", "10.0.0.10:6443"))
    keys = [SSH_KEY, "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ==", "ecdsa-sha2-nistp256 AAAAE2VjZHNh= me@host (laptop)"]
    doc["users"] = [{"name": "ops", "sshAuthorizedKeys": keys}]
    assert parse_cluster(doc).users[0].ssh_authorized_keys == keys


# --- 13. aliases are refused in every file kubeseed reads; messages quote at most ~60 characters ------------------


def test_alias_bomb_in_cluster_yaml(cluster: Path) -> None:
    edit_cluster(cluster, "extraArgs: {}", f"extraArgs: {{max-pods: {bomb()}}}")
    refused(run(cluster.parent, "render", "node", "demo"), "cluster.yaml: (yaml): is not valid YAML at line", "aliases")


def test_alias_bomb_in_an_inventory(cluster: Path, tmp_path: Path) -> None:
    host = f"  - {{hostname: w1, role: node, addresses: [10.0.0.2/24], gateway: {bomb()}}}\n"
    (tmp_path / "hosts.yaml").write_text(INVENTORY.split("  - ")[0] + host)
    refused(run(tmp_path, "seed", "demo", "-i", "hosts.yaml", "--out", "seeds"), "hosts.yaml: (yaml): ", "aliases")
    assert not (tmp_path / "seeds").exists()


def test_alias_bomb_in_tokens_yaml(cluster: Path) -> None:
    text = (cluster / "tokens.yaml").read_text().replace("description: ", f"description: {bomb()} #", 1)
    (cluster / "tokens.yaml").write_text(text)
    refused(run(cluster.parent, "token", "list", "demo"), "tokens.yaml: (yaml): ", "aliases")


def test_alias_bomb_in_an_addon_manifest(cluster: Path) -> None:
    (cluster / "addons").mkdir()
    manifest = f"apiVersion: v1\nkind: Namespace\nmetadata: {{name: a}}\n---\nkind: ConfigMap\ndata: {bomb()}\n"
    (cluster / "addons" / "a.yaml").write_text(manifest)
    edit_cluster(cluster, "addons: []", "addons: [addons/a.yaml]")
    refused(run(cluster.parent, "render", "master", "demo"), '"addons/a.yaml" is not a YAML manifest: at line 6')


def test_messages_quote_at_most_about_60_characters(cluster: Path) -> None:
    assert shown("x" * 10_000) == '"' + "x" * 60 + '..."'
    assert len(shown([[list(range(1000))] * 1000] * 1000)) < 70  # never walks the whole value
    err = refused(run(cluster.parent, "render", "node", "demo", "--hostname", "Q" * 100_000))
    assert len(err) < 300
    edit_cluster(cluster, "name: demo", f"name: {'Z' * 50_000}")
    err = refused(run(cluster.parent, "render", "node", "demo"), 'name: "ZZZZ')
    assert len(err) < 300


# --- 14. bad bytes and bad flags: one line, exit 2, nothing written ---------------------------------------------


def test_non_utf8_cluster_and_tokens_files(cluster: Path) -> None:
    for name, command in (("cluster.yaml", "render"), ("tokens.yaml", "token")):
        path = cluster / name
        good = path.read_bytes()
        path.write_bytes(good + b"# caf\xe9\n")
        args = ["render", "node", "demo"] if command == "render" else ["token", "list", "demo"]
        refused(run(cluster.parent, *args), f"{name}: (yaml): is not UTF-8 text")
        path.write_bytes(good)


@pytest.mark.parametrize(
    "args,expected",
    [
        (["user", "create", "demo", "bob\udcff"], "NAME: "),  # a byte that is not UTF-8 (surrogateescape)
        (["user", "create", "demo", "b" * 65], "is 65 bytes; a certificate's common name (the user name) holds"),
        (["user", "create", "demo", "bob\nsystem:masters"], "NAME: "),
        (["user", "create", "demo", "bob", "--group", "dev\udcff"], "--group: "),
        (["user", "create", "demo", "bob", "--ttl", "99999999999999h"], "--ttl: "),
        (["token", "create", "demo", "--description", "rack \udcff"], "--description: "),
        (["token", "create", "demo", "--ttl", "99999999999999h"], "is longer than 876000h"),
    ],
)
def test_bad_names_descriptions_and_ttls(cluster: Path, args: list[str], expected: str) -> None:
    before = snapshot(cluster.parent)
    refused(run(cluster.parent, *args), expected)
    assert snapshot(cluster.parent) == before


@pytest.mark.parametrize(
    "args,expected",
    [
        (["--pod-subnet", "x: y"], '--pod-subnet: "x: y" is not a CIDR'),
        (["--kubernetes-version", "[v1"], '--kubernetes-version: "[v1" is not a version'),
        (
            ["--kubernetes-version", "v1.35.5\nusers: [{name: evil, sudo: true}]"],
            '--kubernetes-version: "v1.35.5\\nusers',
        ),
        (["--service-subnet", "10.96.0.0/12\n  dnsDomain: evil.example"], "--service-subnet: "),
        (["--name", "demo\nkeyAlgorithm: RSA-2048"], '--name: "demo\\nkeyAlgorithm'),
    ],
)
def test_cluster_create_values_cannot_add_keys(tmp_path: Path, args: list[str], expected: str) -> None:
    refused(run(tmp_path, "cluster", "create", "demo", "--endpoint", "10.0.0.10:6443", *args), expected)
    assert list(tmp_path.iterdir()) == []


def test_quickstart_endpoint_cannot_add_keys(tmp_path: Path) -> None:
    refused(run(tmp_path, "quickstart", "--endpoint", '10.0.0.10:6443"\nusers: [{name: evil}]'), "--endpoint: ")
    assert list(tmp_path.iterdir()) == []
