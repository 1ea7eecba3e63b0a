"""Issue 12 items 9 and 13: bootstrap tokens and user bindings reach the running cluster.

The cluster here is a master that ran init under --root against the in-test API server (tests/support/master.py:
RBAC on, cluster-info kept by its bootstrapsigner); `kubeseed token create` makes the Secret there through the API,
as kubeseed's own short-lived admin or a --kubeconfig's user, and a node payload's runtime then joins with the
new token. No kube-apiserver binary is available here: the API side is that in-test server throughout."""

from __future__ import annotations

import base64
import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubeseed.generator.clusterapi import token_secret
from kubeseed.generator.tokens import load_tokens, new_token, save_tokens
from kubeseed.runtime.tokens import ca_pin
from tests.support.clientcert_server import kubectl
from tests.support.helpers import cloud_init_files, free_port, ks, lay_out
from tests.support.join import join
from tests.support.master import WORKER, Cluster, run

README = Path(__file__).resolve().parents[2] / "README.md"
TOKEN = re.compile(r"[a-z0-9]{6}\.[a-z0-9]{16}")
RBAC = "rbac.authorization.k8s.io/v1"
BOOTSTRAP_KEYS = {
    "token-id",
    "token-secret",
    "expiration",
    "description",
    "usage-bootstrap-authentication",
    "usage-bootstrap-signing",
    "auth-extra-groups",
}
# The part of kube-apiserver's bootstrap "view" ClusterRole these tests use (the in-test server starts with only
# the roles kubeadm's init relies on).
VIEW = {
    "apiVersion": RBAC,
    "kind": "ClusterRole",
    "metadata": {"name": "view"},
    "rules": [{"apiGroups": [""], "resources": ["pods", "services", "configmaps"], "verbs": ["get", "list", "watch"]}],
}


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def decoded(secret: dict[str, Any]) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}


def records(cluster_dir: Path) -> dict[str, str]:
    """token id -> what tokens.yaml records about the cluster ('' for tokens.yaml only)."""
    return {t.id: t.cluster for t in load_tokens(cluster_dir)}


def token_secret_on(c: Cluster, token_id: str) -> dict[str, Any] | None:
    return c.api.get_object("v1", "Secret", f"bootstrap-token-{token_id}", "kube-system")


def signed_ids(c: Cluster) -> set[str]:
    """The token ids cluster-info carries a JWS for (the bootstrapsigner's work)."""
    cm = c.api.get_object("v1", "ConfigMap", "cluster-info", "kube-public")
    assert cm is not None
    return {k[len("jws-kubeconfig-") :] for k in cm["data"] if k.startswith("jws-kubeconfig-")}


def node_payload(c: Cluster, *args: str) -> tuple[subprocess.CompletedProcess[str], dict[str, tuple[bytes, int]]]:
    r = ks("render", "node", "demo", "--hostname", WORKER, "-o", "node.yaml", *args, cwd=c.base)
    assert r.returncode == 0, r.stderr
    return r, cloud_init_files((c.base / "node.yaml").read_bytes())


def carried_token(files: dict[str, tuple[bytes, int]]) -> str:
    return str(yaml.safe_load(files["/etc/kubeseed/config.yaml"][0])["discovery"]["token"])


def first_boot(files: dict[str, tuple[bytes, int]], root: Path) -> subprocess.CompletedProcess[str]:
    """The node payload's files under ``root`` and its runtime's join, as a first boot does it."""
    pyz = lay_out(files, root)
    return run(pyz, "join", "--root", str(root), "--ignore-preflight-errors", "all", "--timeout", "30")


def set_endpoint(c: Cluster, endpoint: str) -> None:
    cfg = c.dir / "cluster.yaml"
    text = cfg.read_text()
    new = re.sub(r'controlPlaneEndpoint: "[^"]*"', f'controlPlaneEndpoint: "{endpoint}"', text)
    assert new != text
    cfg.write_text(new)


# -- item 9: token create reaches the cluster, and a node joins with the new token ------------------------------


def test_token_create_reaches_the_cluster_and_a_node_joins_with_it(live: Cluster, tmp_path: Path) -> None:
    scratch = tmp_path / "tmpdir"
    scratch.mkdir()
    before = {p for p in live.base.rglob("*")}
    r = ks("token", "create", "demo", "--description", "rack 4", cwd=live.base, env={"TMPDIR": str(scratch)})
    assert r.returncode == 0, r.stderr
    tok = r.stdout.strip()
    assert TOKEN.fullmatch(tok)
    tid, secret = tok.split(".")
    assert "Traceback" not in r.stderr and "warning" not in r.stderr and secret not in r.stderr
    assert f"Created bootstrap token {tid} on the cluster" in r.stderr and "kubeseed-admin" in r.stderr

    # kubeadm's Secret, exactly: the same format init wrote for the cluster's first token
    made = token_secret_on(live, tid)
    assert made is not None and made["type"] == "bootstrap.kubernetes.io/token"
    data = decoded(made)
    assert set(data) == BOOTSTRAP_KEYS
    assert data["token-id"] == tid and data["token-secret"] == secret and data["description"] == "rack 4"
    assert data["usage-bootstrap-authentication"] == data["usage-bootstrap-signing"] == "true"
    assert data["auth-extra-groups"] == "system:bootstrappers:kubeadm:default-node-token"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", data["expiration"])
    first = load_tokens(live.dir)[0]
    init_made = token_secret_on(live, first.id)
    assert init_made is not None and set(decoded(init_made)) == set(data)
    # as kubeseed's own admin: a client certificate of the cluster CA in group kubeadm:cluster-admins
    (post,) = [q for q in live.api.requests if q["method"] == "POST" and q["path"].endswith("/secrets")]
    assert post["user"] == "kubeseed-admin" and post["status"] == 201
    # that certificate and its key were never written anywhere
    assert list(scratch.iterdir()) == []
    assert {p for p in live.base.rglob("*")} - before == set()
    assert mode(live.dir / "tokens.yaml") == 0o600
    assert records(live.dir) == {first.id: "master-payload", tid: "api"}

    # the bootstrapsigner signs cluster-info for it; render node picks it; the node's runtime joins with it
    assert tid in signed_ids(live)
    rendered, files = node_payload(live)
    assert carried_token(files) == tok
    assert f"bootstrap token {tid}" in rendered.stderr and "note:" not in rendered.stderr
    assert secret not in rendered.stderr
    joined = first_boot(files, tmp_path / "node")
    assert joined.returncode == 0, joined.stdout + joined.stderr
    (csr,) = live.api.csrs.values()
    assert csr["spec"]["username"] == f"system:bootstrap:{tid}"
    assert (tmp_path / "node/var/lib/kubelet/pki/kubelet-client-current.pem").exists()


def test_admin_credential_is_short_lived_and_in_memory(cluster: Path) -> None:
    import datetime

    from cryptography import x509

    from kubeseed.generator.clusterapi import connect
    from kubeseed.generator.secrets import load

    model, secrets = load(cluster)
    with connect(model, secrets, cluster, None) as api:
        assert api._files is not None and api._cert is not None
        cert_path, key_path = api._cert
        assert cert_path.startswith("/proc/self/fd/") and key_path.startswith("/proc/self/fd/")  # memfd, no file
        cert = x509.load_pem_x509_certificate(Path(cert_path).read_bytes())
        assert b"PRIVATE KEY" in Path(key_path).read_bytes()
        scratch = Path(api._files.fallback_dir)
        assert [p for p in scratch.rglob("*") if p.is_file()] == []
    assert not scratch.exists()
    subject = cert.subject.rfc4514_string()
    assert subject == "CN=kubeseed-admin,O=kubeadm:cluster-admins"
    cert.verify_directly_issued_by(x509.load_pem_x509_certificate((cluster / "pki/ca.crt").read_bytes()))
    now = datetime.datetime.now(datetime.timezone.utc)
    assert cert.not_valid_after_utc - now <= datetime.timedelta(minutes=10)
    assert api.server == "https://10.0.0.10:6443"


def test_print_join_command_joins_a_node(live: Cluster, tmp_path: Path) -> None:
    r = ks("token", "create", "demo", "--print-join-command", cwd=live.base)
    assert r.returncode == 0, r.stderr
    (line,) = r.stdout.splitlines()
    words = shlex.split(line)
    assert words[:4] == ["python3", "/opt/kubeseed/kubeseed-runtime.pyz", "join", live.api.endpoint]
    assert words[4] == "--token" and TOKEN.fullmatch(words[5])
    assert words[6:] == ["--discovery-token-ca-cert-hash", ca_pin((live.dir / "pki/ca.crt").read_bytes())]
    assert "kubeadm join" in r.stderr and words[5] not in r.stderr
    (tmp_path / "node").mkdir()
    joined = join(tmp_path / "node", *words[3:], timeout=20)  # the node zipapp, with exactly those arguments
    assert joined.returncode == 0, joined.stdout + joined.stderr
    (csr,) = live.api.csrs.values()
    assert csr["spec"]["username"] == f"system:bootstrap:{words[5].split('.')[0]}"


def test_token_delete_revokes_it_on_the_cluster(live: Cluster, tmp_path: Path) -> None:
    tok = ks("token", "create", "demo", cwd=live.base).stdout.strip()
    tid = tok.split(".")[0]
    assert token_secret_on(live, tid) is not None and tid in signed_ids(live)
    r = ks("token", "delete", "demo", tid, cwd=live.base)
    assert r.returncode == 0, r.stderr
    assert f'bootstrap token "{tid}" deleted' in r.stdout and tok.split(".")[1] not in r.stdout + r.stderr
    assert "no node can join with them any more" in r.stderr and "warning" not in r.stderr
    assert token_secret_on(live, tid) is None and tid not in signed_ids(live)
    assert tid not in records(live.dir) and mode(live.dir / "tokens.yaml") == 0o600
    pin = ca_pin((live.dir / "pki/ca.crt").read_bytes())
    (tmp_path / "node").mkdir()
    refused = join(
        tmp_path / "node", live.api.endpoint, "--token", tok, "--discovery-token-ca-cert-hash", pin, timeout=3
    )
    assert refused.returncode == 1
    assert f'token id "{tid}" is invalid for this cluster' in refused.stderr
    assert not (tmp_path / "node/etc/kubernetes/kubelet.conf").exists()
    assert live.api.csrs == {}


def test_token_list_shows_what_the_cluster_holds(live: Cluster) -> None:
    made = ks("token", "create", "demo", "--description", "via api", cwd=live.base).stdout.strip()
    local = new_token(description="local only")  # in tokens.yaml, never sent
    save_tokens(live.dir, load_tokens(live.dir) + [local])
    theirs = new_token(description="kubeadm token create")  # on the cluster only, as kubeadm makes them
    live.api.put_object(token_secret(theirs))
    first = load_tokens(live.dir)[0]

    r = ks("token", "list", "demo", cwd=live.base)
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    header, *lines = r.stdout.splitlines()
    assert header.split()[:5] == ["TOKEN", "TTL", "EXPIRES", "USAGES", "DESCRIPTION"]
    assert header.rstrip().endswith("CLUSTER")
    rows = {line.split()[0]: line for line in lines}
    assert set(rows) == {first.token, made, local.token, theirs.token}
    assert rows[first.token].endswith("   yes") and rows[made].endswith("   yes")
    assert rows[local.token].endswith("   no")
    assert rows[theirs.token].endswith("   yes (not in tokens.yaml)") and "kubeadm token create" in rows[theirs.token]
    # what the cluster holds is recorded: render node picks from those
    assert records(live.dir) == {first.id: "api", made.split(".")[0]: "api", local.id: ""}
    assert mode(live.dir / "tokens.yaml") == 0o600

    up = ks("token", "upload", "demo", cwd=live.base)
    assert up.returncode == 0, up.stderr
    assert f'bootstrap token "{local.id}" created on the cluster' in up.stdout
    assert token_secret_on(live, local.id) is not None and local.id in signed_ids(live)
    assert records(live.dir)[local.id] == "api"
    again = ks("token", "upload", "demo", cwd=live.base)
    assert again.returncode == 0 and again.stdout == "" and "on the cluster already" in again.stderr

    gone = ks("token", "delete", "demo", theirs.id, cwd=live.base)  # a token only the cluster holds
    assert gone.returncode == 0, gone.stderr
    assert token_secret_on(live, theirs.id) is None
    missing = ks("token", "delete", "demo", "zzzzzz", cwd=live.base)
    assert (
        missing.returncode == 2
        and 'no token with id "zzzzzz"' in missing.stderr
        and "or on the cluster" in missing.stderr
    )


# -- the cluster cannot be reached: say so, keep tokens.yaml, print the kubectl command ----------------------------


def test_unreachable_cluster_keeps_local_state_and_prints_kubectl(dead: Path) -> None:
    cwd = dead.parent
    r = ks("token", "create", "demo", "--description", "rack 4", "--ttl", "2h", cwd=cwd)
    assert r.returncode == 0, r.stderr
    tok = r.stdout.strip()
    tid = tok.split(".")[0]
    assert TOKEN.fullmatch(tok) and "Traceback" not in r.stderr
    assert "warning: the cluster was not changed: no answer from https://127.0.0.1:" in r.stderr
    assert f"demo/tokens.yaml keeps token {tid}" in r.stderr and f"kubeseed token upload demo {tid}" in r.stderr
    (command,) = [line.strip() for line in r.stderr.splitlines() if line.strip().startswith("kubectl ")]
    words = shlex.split(command)
    assert words[:8] == [
        "kubectl",
        "-n",
        "kube-system",
        "create",
        "secret",
        "generic",
        f"bootstrap-token-{tid}",
        "--type=bootstrap.kubernetes.io/token",
    ]
    tok_obj = next(t for t in load_tokens(dead) if t.id == tid)
    literals = dict(w[len("--from-literal=") :].split("=", 1) for w in words[8:])
    assert literals == decoded(token_secret(tok_obj))
    assert set(literals) == BOOTSTRAP_KEYS and literals["description"] == "rack 4"
    # the printed command makes exactly the Secret kubeseed makes (kubectl's own client-side rendering)
    dry = kubectl(*words[1:], "--dry-run=client", "-o", "json", "--kubeconfig", "/dev/null")
    assert dry.returncode == 0, dry.stderr
    made = yaml.safe_load(dry.stdout)
    assert made["type"] == "bootstrap.kubernetes.io/token" and decoded(made) == literals
    assert made["metadata"] == {"name": f"bootstrap-token-{tid}", "namespace": "kube-system"}
    assert records(dead)[tid] == "" and mode(dead / "tokens.yaml") == 0o600

    listing = ks("token", "list", "demo", cwd=cwd)
    assert listing.returncode == 0
    assert listing.stderr.count("could not ask the cluster") == 1
    assert listing.stdout.count("(tokens.yaml only)") == 2

    rendered = ks("render", "node", "demo", "-o", "n.yaml", cwd=cwd)  # only local-only tokens: the newest, said so
    assert rendered.returncode == 0, rendered.stderr
    assert carried_token(cloud_init_files((cwd / "n.yaml").read_bytes())) == tok
    (note,) = [line for line in rendered.stderr.splitlines() if line.startswith("note:")]
    assert f"token {tid} is in demo/tokens.yaml only" in note and "cannot join until it does" in note
    assert f"kubeseed token upload demo {tid}" in note and tok.split(".")[1] not in rendered.stderr

    up = ks("token", "upload", "demo", cwd=cwd)
    assert up.returncode == 1 and "no answer from" in up.stderr and len(up.stderr.splitlines()) == 1

    d = ks("token", "delete", "demo", tid, cwd=cwd)
    assert d.returncode == 0, d.stderr
    assert "warning: the cluster was not changed" in d.stderr
    assert f"  kubectl -n kube-system delete secret bootstrap-token-{tid}\n" in d.stderr
    assert tid not in records(dead)


def test_kubectl_commands_printed_do_the_change(live: Cluster, tmp_path: Path) -> None:
    """The cluster's API is unreachable for kubeseed (cluster.yaml names a dead port); an admin runs the printed
    commands against the real server, and the node joins with the token they made."""
    endpoint = live.api.endpoint
    set_endpoint(live, f"127.0.0.1:{free_port()}")
    r = ks("token", "create", "demo", cwd=live.base)
    assert r.returncode == 0 and "warning: the cluster was not changed" in r.stderr, r.stderr
    tok = r.stdout.strip()
    tid = tok.split(".")[0]
    (command,) = [line.strip() for line in r.stderr.splitlines() if line.strip().startswith("kubectl ")]
    admin = str(live.root / "etc/kubernetes/admin.conf")
    # kubectl's typed create speaks protobuf, which the in-test server does not: the same object, through -f
    made = kubectl(*shlex.split(command)[1:], "--kubeconfig", admin, "--dry-run=client", "-o", "json")
    assert made.returncode == 0, made.stderr
    (tmp_path / "secret.json").write_text(made.stdout)
    made = kubectl("create", "-f", str(tmp_path / "secret.json"), "--validate=false", "--kubeconfig", admin)
    assert made.returncode == 0, made.stderr
    assert decoded(token_secret_on(live, tid) or {}) == decoded(token_secret(load_tokens(live.dir)[-1]))
    set_endpoint(live, endpoint)
    assert ks("token", "list", "demo", cwd=live.base).returncode == 0  # sees it there, records it
    assert records(live.dir)[tid] == "api"
    _, files = node_payload(live)
    assert carried_token(files) == tok
    joined = first_boot(files, tmp_path / "node")
    assert joined.returncode == 0, joined.stdout + joined.stderr

    set_endpoint(live, f"127.0.0.1:{free_port()}")
    d = ks("token", "delete", "demo", tid, cwd=live.base)
    (command,) = [line.strip() for line in d.stderr.splitlines() if line.strip().startswith("kubectl ")]
    assert kubectl(*shlex.split(command)[1:], "--kubeconfig", admin).returncode == 0
    assert token_secret_on(live, tid) is None


# -- --kubeconfig: another credential ------------------------------------------------------------------------------


def test_kubeconfig_token_credential_and_its_server(live: Cluster) -> None:
    live.api.static_tokens["robot-token-0123456789"] = ("robot", ["ops"])
    live.api.put_object(
        {
            "apiVersion": RBAC,
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "robot-admin"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "robot"}],
        }
    )
    ca = base64.b64encode((live.dir / "pki/ca.crt").read_bytes()).decode()
    kc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "c", "cluster": {"server": f"https://{live.api.endpoint}", "certificate-authority-data": ca}}
        ],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "robot"}}],
        "current-context": "x",
        "users": [{"name": "robot", "user": {"token": "robot-token-0123456789"}}],
    }
    (live.base / "kc-robot").write_text(yaml.safe_dump(kc))
    set_endpoint(live, f"127.0.0.1:{free_port()}")  # only the kubeconfig's server answers
    r = ks("token", "create", "demo", "--kubeconfig", "kc-robot", cwd=live.base)
    assert r.returncode == 0, r.stderr
    tid = r.stdout.strip().split(".")[0]
    assert "the first user of --kubeconfig kc-robot" in r.stderr and "robot-token-0123456789" not in r.stderr
    (post,) = [q for q in live.api.requests if q["method"] == "POST" and q["path"].endswith("/secrets")]
    assert post["user"] == "robot"
    assert token_secret_on(live, tid) is not None and records(live.dir)[tid] == "api"
    listing = ks("token", "list", "demo", "--kubeconfig", "kc-robot", cwd=live.base)
    assert listing.returncode == 0 and listing.stderr == ""
    d = ks("token", "delete", "demo", tid, "--kubeconfig", "kc-robot", cwd=live.base)
    assert d.returncode == 0 and token_secret_on(live, tid) is None


def test_kubeconfig_without_rights_is_refused_and_keeps_the_token(live: Cluster) -> None:
    made = ks("user", "create", "demo", "carol", "-o", "kc-carol", cwd=live.base)  # no binding: no rights
    assert made.returncode == 0, made.stderr
    r = ks("token", "create", "demo", "--kubeconfig", "kc-carol", cwd=live.base)
    assert r.returncode == 1, r.stderr
    tok = r.stdout.strip()
    tid = tok.split(".")[0]
    assert "error: the cluster was not changed: the API server at https://" in r.stderr
    assert f"refused to create Secret kube-system/bootstrap-token-{tid} as the first user of --kubeconfig" in r.stderr
    assert "HTTP 403" in r.stderr and 'User \\"carol\\"' not in r.stderr and 'User "carol"' in r.stderr
    assert f"bootstrap-token-{tid} --type=bootstrap.kubernetes.io/token" in r.stderr
    assert token_secret_on(live, tid) is None and records(live.dir)[tid] == ""
    rendered, files = node_payload(live)  # the held tokens come first: the one init created
    assert carried_token(files) == load_tokens(live.dir)[0].token and "note:" not in rendered.stderr


@pytest.mark.parametrize(
    "content,expected",
    [
        (None, '--kubeconfig: "kc": cannot read it'),
        ("not: [a, kubeconfig", "is not a kubeconfig kubeseed can use"),
        ("other-ca", "is not this cluster's"),
        ("no-credential", "neither client-certificate-data and client-key-data nor a token"),
    ],
)
def test_bad_kubeconfig_is_one_message_and_writes_nothing(dead: Path, content: str | None, expected: str) -> None:
    from kubeseed.runtime import pki

    ca = (dead / "pki/ca.crt").read_bytes()
    if content == "other-ca":
        ca = pki.cert_pem(pki.new_ca("kubernetes", pki.new_key("ECDSA-P256")))
    if content in ("other-ca", "no-credential"):
        content = yaml.safe_dump(
            {
                "clusters": [
                    {
                        "cluster": {
                            "server": "https://127.0.0.1:1",
                            "certificate-authority-data": base64.b64encode(ca).decode(),
                        }
                    }
                ],
                "users": [
                    {"name": "u", "user": {"token": "t"} if content == "other-ca" else {"exec": {"command": "x"}}}
                ],
            }
        )
    if content is not None:
        (dead.parent / "kc").write_text(content)
    before = {p: p.read_bytes() for p in dead.rglob("*") if p.is_file()}
    for args in (
        ["token", "create", "demo"],
        ["token", "delete", "demo", load_tokens(dead)[0].id],
        ["user", "create", "demo", "bob", "--clusterrole", "view"],
    ):
        r = ks(*args, "--kubeconfig", "kc", cwd=dead.parent)
        assert r.returncode == 2, r.stdout + r.stderr
        assert expected in r.stderr and len(r.stderr.splitlines()) == 1 and "Traceback" not in r.stderr
        assert r.stdout == ""
    assert {p: p.read_bytes() for p in dead.rglob("*") if p.is_file()} == before
    assert not (dead.parent / "kubeconfig-bob").exists()


# -- render node picks a token the cluster holds -------------------------------------------------------------------


def test_render_node_prefers_tokens_the_cluster_holds(cluster: Path) -> None:
    cwd = cluster.parent
    first = load_tokens(cluster)[0]
    alone = ks("render", "node", "demo", "-o", "n.yaml", cwd=cwd)  # no master payload yet: said so
    assert alone.returncode == 0 and f"note: token {first.id} is in demo/tokens.yaml only" in alone.stderr
    second = new_token()
    save_tokens(cluster, load_tokens(cluster) + [second])
    master = ks("render", "master", "demo", "-o", "m.yaml", cwd=cwd)
    assert master.returncode == 0, master.stderr
    assert records(cluster) == {first.id: "master-payload", second.id: "master-payload"}
    assert mode(cluster / "tokens.yaml") == 0o600
    doc = yaml.safe_load(cloud_init_files((cwd / "m.yaml").read_bytes())["/etc/kubeseed/config.yaml"][0])
    assert all(set(t) == {"token", "description", "expires", "usages", "groups"} for t in doc["bootstrapTokens"])

    third = new_token()  # made after the master payload: tokens.yaml only
    save_tokens(cluster, load_tokens(cluster) + [third])
    r = ks("render", "node", "demo", "-o", "n.yaml", cwd=cwd)
    assert r.returncode == 0 and "note:" not in r.stderr, r.stderr
    assert carried_token(cloud_init_files((cwd / "n.yaml").read_bytes())) == second.token
    forced = ks("render", "node", "demo", "--token", third.id, "-o", "n.yaml", cwd=cwd)
    assert forced.returncode == 0
    assert carried_token(cloud_init_files((cwd / "n.yaml").read_bytes())) == third.token
    assert f"note: token {third.id} is in demo/tokens.yaml only" in forced.stderr

    # a tokens.yaml written before the field existed still reads (its tokens: tokens.yaml only)
    old = {
        "tokens": [
            {k: v for k, v in t.items() if k != "cluster"}
            for t in yaml.safe_load((cluster / "tokens.yaml").read_text())["tokens"]
        ]
    }
    (cluster / "tokens.yaml").write_text(yaml.safe_dump(old))
    assert set(records(cluster).values()) == {""}
    r = ks("render", "node", "demo", "-o", "n.yaml", cwd=cwd)
    assert r.returncode == 0 and f"note: token {third.id}" in r.stderr
    bad = (cluster / "tokens.yaml").read_text().replace("usages:", "cluster: maybe\n  usages:", 1)
    (cluster / "tokens.yaml").write_text(bad)
    r = ks("render", "node", "demo", cwd=cwd)
    assert r.returncode == 2 and 'tokens[0].cluster: "maybe" is not one of master-payload, api' in r.stderr


# -- the cluster directory: one message when it is missing; the pin; the essentials ----------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["token", "create", "nope"],
        ["token", "list", "nope"],
        ["token", "delete", "nope", "abcdef"],
        ["token", "upload", "nope"],
        ["render", "master", "nope"],
        ["render", "node", "nope"],
        ["user", "create", "nope", "bob"],
        ["cluster", "pin", "nope"],
        ["cluster", "show", "nope"],
    ],
)
def test_missing_cluster_folder_is_one_message(tmp_path: Path, args: list[str]) -> None:
    r = ks(*args, cwd=tmp_path)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr == (
        "error: nope: no cluster.yaml here; create the cluster with "
        "`kubeseed cluster create nope --endpoint HOST:6443`\n"
    )
    assert list(tmp_path.iterdir()) == []


def test_cluster_pin_and_show(cluster: Path) -> None:
    pin = ca_pin((cluster / "pki/ca.crt").read_bytes())
    r = ks("cluster", "pin", "demo", cwd=cluster.parent)
    assert r.returncode == 0 and r.stdout == pin + "\n" and r.stderr == ""
    tok = load_tokens(cluster)[0]
    r = ks("cluster", "show", "demo", cwd=cluster.parent)
    assert r.returncode == 0, r.stderr
    shown = dict(line.split(": ", 1) for line in r.stdout.splitlines())
    shown = {k.rstrip(": ").strip(): v.strip() for k, v in shown.items()}
    assert shown["name"] == "demo" and shown["endpoint"] == "10.0.0.10:6443"
    assert shown["kubernetes version"].startswith("v1.") and shown["key algorithm"] == "ECDSA-P256"
    assert shown["pod subnet"] == "10.244.0.0/16" and shown["service subnet"] == "10.96.0.0/12"
    assert shown["CA pin"] == pin
    assert shown["bootstrap tokens"].startswith("1 unexpired")
    assert f"next expiry {tok.expires:%Y-%m-%dT%H:%M:%SZ} (token {tok.id})" in shown["bootstrap tokens"]
    assert tok.token.split(".")[1] not in r.stdout


# -- item 13: user create --clusterrole binds the user; the README's bob example works ---------------------------


def test_user_create_clusterrole_binds_and_bob_can_read(live: Cluster) -> None:
    live.api.put_object(VIEW)
    r = ks("user", "create", "demo", "bob", "--group", "dev", "-o", "kubeconfig-bob", cwd=live.base)
    assert r.returncode == 0, r.stderr
    bob = str(live.base / "kubeconfig-bob")
    before = kubectl("--kubeconfig", bob, "get", "pods", "-n", "default")
    assert before.returncode != 0 and "Forbidden" in before.stderr

    # the README's walkthrough, word for word
    walkthrough = README.read_text()
    (create,) = re.findall(r"^ *(kubeseed user create demo bob .*?) *#", walkthrough, re.M)
    (get,) = re.findall(r"^ *(kubectl --kubeconfig kubeconfig-bob .*?) *#", walkthrough, re.M)
    assert "--clusterrole view" in create
    r = ks(*shlex.split(create)[1:], "--force", cwd=live.base)
    assert r.returncode == 0, r.stderr
    assert "ClusterRoleBinding kubeseed:bob:view: user bob has ClusterRole view; created" in r.stderr
    assert mode(live.base / "kubeconfig-bob") == 0o600
    made = live.api.get_object(RBAC, "ClusterRoleBinding", "kubeseed:bob:view")
    assert made is not None
    assert made["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"}
    assert made["subjects"] == [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "bob"}]
    after = kubectl(*[bob if w == "kubeconfig-bob" else w for w in shlex.split(get)[1:]])
    assert after.returncode == 0, after.stderr
    assert live.api.allows("bob", ["dev", "system:authenticated"], "list", "pods", namespace="kube-system")
    assert not live.api.allows("bob", ["dev", "system:authenticated"], "create", "pods", namespace="default")
    assert "PRIVATE KEY" not in r.stdout + r.stderr

    again = ks(
        "user", "create", "demo", "bob", "--clusterrole", "view", "-o", "kubeconfig-bob", "--force", cwd=live.base
    )
    assert again.returncode == 0 and "already there" in again.stderr, again.stderr
    bindings = [
        b for b in live.api.objects(RBAC, "ClusterRoleBinding") if b["metadata"]["name"].startswith("kubeseed:")
    ]
    assert len(bindings) == 1


def test_user_create_clusterrole_in_one_namespace(live: Cluster) -> None:
    live.api.put_object(VIEW)
    live.api.put_object({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"}})
    r = ks("user", "create", "demo", "dana", "--clusterrole", "view", "--namespace", "team-a", cwd=live.base)
    assert r.returncode == 0, r.stderr
    made = live.api.get_object(RBAC, "RoleBinding", "kubeseed:dana:view", "team-a")
    assert made is not None and made["roleRef"]["kind"] == "ClusterRole" and made["roleRef"]["name"] == "view"
    groups = ["system:authenticated"]
    assert live.api.allows("dana", groups, "list", "pods", namespace="team-a")
    assert not live.api.allows("dana", groups, "list", "pods", namespace="default")
    missing = ks("user", "create", "demo", "eve", "--clusterrole", "view", "--namespace", "nowhere", cwd=live.base)
    assert missing.returncode == 1 and "error: the cluster was not changed" in missing.stderr
    assert "kubectl -n nowhere create rolebinding kubeseed:eve:view --clusterrole=view --user=eve" in missing.stderr
    assert (live.base / "kubeconfig-eve").exists()


def test_user_create_clusterrole_unreachable_prints_the_binding(dead: Path) -> None:
    r = ks("user", "create", "demo", "bob", "--group", "dev", "--clusterrole", "view", cwd=dead.parent)
    assert r.returncode == 0, r.stderr
    assert "warning: the cluster was not changed: no answer from" in r.stderr
    assert "  kubectl create clusterrolebinding kubeseed:bob:view --clusterrole=view --user=bob\n" in r.stderr
    assert mode(dead.parent / "kubeconfig-bob") == 0o600
    bad = ks("user", "create", "demo", "carl", "--namespace", "dev", cwd=dead.parent)
    assert bad.returncode == 2 and "--namespace: goes with --clusterrole" in bad.stderr
    assert not (dead.parent / "kubeconfig-carl").exists()
    bad = ks("user", "create", "demo", "carl", "--clusterrole", "view", "--namespace", "Dev_1", cwd=dead.parent)
    assert bad.returncode == 2 and "--namespace: " in bad.stderr and not (dead.parent / "kubeconfig-carl").exists()
