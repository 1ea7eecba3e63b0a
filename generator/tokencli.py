"""``kubeseed token``: bootstrap tokens in CLUSTER/tokens.yaml and on the running cluster (through its API as
kubeseed's own short-lived admin, or --kubeconfig's user), and what other commands that change the cluster share
(``user create --clusterrole``)."""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Sequence
from typing import TYPE_CHECKING

from kubeseed.runtime.tokens import TOKEN_ID_RE

from .args import CLUSTER_HELP, cluster_dir_arg, text_arg, ttl_arg
from .console import say
from .errors import UserError, shown
from .tokens import (
    MASTER_PAYLOAD,
    TOKENS_FILE,
    VIA_API,
    BootstrapToken,
    find_token,
    format_time,
    format_ttl,
    new_token,
    now_utc,
    save_tokens,
)

if TYPE_CHECKING:  # the API client is imported by the commands that talk to a cluster, when they run
    from .clusterapi import ClusterAPI
    from .model import Cluster
    from .secrets import ClusterSecrets


def exit_codes(local: str) -> str:
    """The exit status of a command that changes ``local`` and then the cluster, for its --help."""
    return (
        f"Exit status: 0 when {local} and the cluster was changed too, or when the cluster's API could not be "
        "reached (a master that has not booted yet is the usual case: a warning says that the cluster was not "
        "changed and prints the kubectl command that does it); 1 when the API answered and refused (the local "
        "change is kept; the same message and command); 2 for bad input (nothing is written)."
    )


KUBECONFIG_HELP = (
    "talk to the cluster as this kubeconfig's first user (client-certificate-data and client-key-data, or a token; "
    "server and CA from it) instead of kubeseed's own short-lived admin certificate from CLUSTER's CA key"
)


class ClusterUnchanged(UserError):
    """A command whose only work is on the cluster could not do it: exit code 1."""

    exit_code = 1


def connect_args(args: argparse.Namespace, cluster: Cluster, secrets: ClusterSecrets) -> ClusterAPI:
    from .clusterapi import connect

    return connect(cluster, secrets, cluster_dir_arg(args.cluster), args.kubeconfig)


def unchanged(problem: Exception, kept: str, commands: list[str]) -> int:
    """Say that the cluster was not changed and why, what stayed in the cluster directory, and the kubectl
    commands that make the change; the exit code: 1 when the API server refused, 0 when it did not answer."""
    from .clusterapi import Refused

    refused = isinstance(problem, Refused)
    say(f"{'error' if refused else 'warning'}: the cluster was not changed: {problem}")
    say(kept)
    say("To make the change on the cluster, run as a cluster admin (e.g. kubectl --kubeconfig kubeconfig-admin):")
    for command in commands:
        say(f"  {command}")
    return 1 if refused else 0


def _kubectl_create(tok: BootstrapToken) -> str:
    """The kubectl command that creates ``tok``'s Secret exactly as kubeseed does (it holds the secret)."""
    from .clusterapi import TOKEN_TYPE, secret_literals

    args = ["kubectl", "-n", "kube-system", "create", "secret", "generic", f"bootstrap-token-{tok.id}"]
    args += [f"--type={TOKEN_TYPE}"] + [f"--from-literal={k}={v}" for k, v in secret_literals(tok)]
    return shlex.join(args)


def _kubectl_delete(token_id: str) -> str:
    return f"kubectl -n kube-system delete secret bootstrap-token-{token_id}"


def join_command(cluster: Cluster, secrets: ClusterSecrets, tok: BootstrapToken) -> str:
    return (
        f"python3 /opt/kubeseed/kubeseed-runtime.pyz join {cluster.control_plane_endpoint} --token {tok.token} "
        f"--discovery-token-ca-cert-hash {secrets.ca_pin}"
    )


def cmd_token_create(args: argparse.Namespace) -> int:
    from .clusterapi import NotReached, Refused
    from .secrets import load

    cluster_dir = cluster_dir_arg(args.cluster)
    cluster, secrets = load(cluster_dir)
    tokens = secrets.tokens
    usages = [u for u in args.usages.split(",") if u] if args.usages is not None else None
    groups = [g for g in args.groups.split(",") if g] if args.groups is not None else None
    description = text_arg(args.description or "", "--description")
    tok = new_token(ttl_arg(args.ttl), description, usages, groups)
    while any(t.id == tok.id for t in tokens):
        tok = new_token(ttl_arg(args.ttl), description, usages, groups)
    failure: Exception | None = None
    with connect_args(args, cluster, secrets) as api:  # a bad --kubeconfig stops here, before anything is written
        save_tokens(cluster_dir, tokens + [tok])
        try:
            api.create_token(tok)
        except (NotReached, Refused) as e:
            failure = e
        else:
            tok.cluster = VIA_API
            save_tokens(cluster_dir, tokens + [tok])
            say(
                f"Created bootstrap token {tok.id} on the cluster at {api.server} (Secret kube-system/bootstrap-token-"
                f"{tok.id}), as {api.who}"
            )
    print(join_command(cluster, secrets, tok) if args.print_join_command else tok.token)
    expires = format_time(tok.expires) if tok.expires else "never"
    if args.print_join_command:
        say(
            "(`kubeadm join` takes the same arguments: "
            "kubeadm join ENDPOINT --token TOKEN --discovery-token-ca-cert-hash PIN)"
        )
    say(f"token {tok.id} expires {expires}; `kubeseed render node {args.cluster}` picks it (or --token {tok.id})")
    if failure is None:
        return 0
    kept = (
        f"{cluster_dir}/{TOKENS_FILE} keeps token {tok.id}: a master payload rendered from now on carries it, and "
        f"`kubeseed token upload {args.cluster} {tok.id}` creates it on the cluster once its API answers."
    )
    return unchanged(failure, kept, [_kubectl_create(tok)])


def cmd_token_upload(args: argparse.Namespace) -> int:
    from .clusterapi import NotReached, Refused
    from .secrets import load

    cluster_dir = cluster_dir_arg(args.cluster)
    cluster, secrets = load(cluster_dir)
    tokens, now = secrets.tokens, now_utc()
    chosen = [find_token(tokens, ident) for ident in args.tokens] if args.tokens else None
    for t in chosen or []:
        if t.expired(now):
            raise UserError(f'token "{t.id}" has expired; an expired token is never uploaded (`kubeseed token create`)')
    done: list[str] = []
    with connect_args(args, cluster, secrets) as api:
        try:
            held = api.tokens()
            todo = chosen if chosen is not None else [t for t in tokens if not t.expired(now) and t.id not in held]
            for t in todo:
                if t.id in held and held[t.id].token != t.token:
                    raise Refused(f"the cluster holds another token with id {t.id} (another secret); delete one")
                if t.id not in held:
                    api.create_token(t)
                    done.append(t.id)
                t.cluster = VIA_API
        except (NotReached, Refused) as e:
            if done:
                save_tokens(cluster_dir, tokens)
            raise ClusterUnchanged(
                f"{e}. Uploaded {', '.join(done) or 'no token'}; run this again once the cluster's API answers"
            ) from None
    save_tokens(cluster_dir, tokens)
    for tid in done:
        print(f'bootstrap token "{tid}" created on the cluster at {api.server}')
    there = sorted({t.id for t in todo} - set(done))
    if there:
        say(f"already on the cluster: {', '.join(there)}")
    if not todo:
        say(f"every unexpired token in {TOKENS_FILE} is on the cluster already")
    return 0


def table(rows: Sequence[tuple[str, ...]]) -> str:
    """``rows`` (the first: the headings) as kubeadm prints tables: columns three spaces apart, the last unpadded."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join("   ".join(c.ljust(w) for c, w in zip(r, widths)) + "   " + r[-1] for r in rows)


def _list_rows(tokens: list[BootstrapToken], held: dict[str, BootstrapToken] | None) -> list[tuple[str, ...]]:
    now = now_utc()
    rows: list[tuple[str, ...]] = [("TOKEN", "TTL", "EXPIRES", "USAGES", "DESCRIPTION", "EXTRA GROUPS", "CLUSTER")]

    def row(t: BootstrapToken, cluster: str) -> tuple[str, ...]:
        expires = format_time(t.expires) if t.expires else "<never>"
        groups = ",".join(t.groups) or "<none>"
        return (t.token, format_ttl(t, now), expires, ",".join(t.usages), t.description or "<none>", groups, cluster)

    recorded = {MASTER_PAYLOAD: "(master payload)", VIA_API: "(api)", "": "(tokens.yaml only)"}
    for t in tokens:
        if held is None:
            state = recorded[t.cluster]
        elif t.id not in held:
            state = "no"
        else:
            state = "yes" if held[t.id].token == t.token else "no (another secret has this id)"
        rows.append(row(t, state))
    local = {t.id for t in tokens}
    for tid, t in sorted((held or {}).items()):
        if tid not in local:
            rows.append(row(t, "yes (not in tokens.yaml)"))
    return rows


def cmd_token_list(args: argparse.Namespace) -> int:
    from .clusterapi import NotReached, Refused
    from .secrets import load

    cluster_dir = cluster_dir_arg(args.cluster)
    cluster, secrets = load(cluster_dir)
    tokens = secrets.tokens
    held: dict[str, BootstrapToken] | None = None
    with connect_args(args, cluster, secrets) as api:
        try:
            held = api.tokens()
        except (NotReached, Refused) as e:
            say(
                f"note: could not ask the cluster which tokens it holds: {e}. CLUSTER shows, in parentheses, what "
                f"{TOKENS_FILE} records: how the cluster learns each token"
            )
    if held is not None:  # record what the cluster holds: render node picks from these
        changed = False
        for t in tokens:
            state = VIA_API if t.id in held and held[t.id].token == t.token else ""
            if t.cluster != state:
                t.cluster, changed = state, True
        if changed:
            save_tokens(cluster_dir, tokens)
    print(table(_list_rows(tokens, held)))
    return 0


def cmd_token_delete(args: argparse.Namespace) -> int:
    from .clusterapi import NotReached, Refused
    from .secrets import load

    cluster_dir = cluster_dir_arg(args.cluster)
    cluster, secrets = load(cluster_dir)
    tokens = secrets.tokens
    local = {t.id: t for t in tokens}
    ids: list[str] = []
    for ident in args.tokens:
        tid = ident.split(".", 1)[0]
        if not TOKEN_ID_RE.fullmatch(tid):
            raise UserError(f"{shown(tid)} is not a token id ([a-z0-9]{{6}}); see `kubeseed token list {args.cluster}`")
        if tid not in ids:
            ids.append(tid)
    failure: Exception | None = None
    deleted: list[str] = []
    with connect_args(args, cluster, secrets) as api:
        unknown = [tid for tid in ids if tid not in local]
        if unknown:  # only the cluster can say whether these exist: ask before changing anything
            try:
                held = api.tokens()
            except (NotReached, Refused) as e:
                raise UserError(
                    f'no token with id "{unknown[0]}" in {cluster_dir}/{TOKENS_FILE}, and the cluster could not be '
                    f"asked whether it holds one ({e}); see `kubeseed token list {args.cluster}`"
                ) from None
            missing = [tid for tid in unknown if tid not in held]
            if missing:
                raise UserError(
                    f'no token with id "{missing[0]}" in {cluster_dir}/{TOKENS_FILE} or on the cluster; see '
                    f"`kubeseed token list {args.cluster}`"
                )
        save_tokens(cluster_dir, [t for t in tokens if t.id not in ids])
        absent: list[str] = []
        for tid in ids:
            try:
                (deleted if api.delete_token(tid) else absent).append(tid)
            except (NotReached, Refused) as e:
                failure = e
                break
    for tid in ids:
        print(f'bootstrap token "{tid}" deleted')
    if deleted:
        say(f"Deleted on the cluster at {api.server}: {', '.join(deleted)}; no node can join with them any more")
    if absent:
        say(f"The cluster held no Secret for {', '.join(absent)}")
    left = [tid for tid in ids if tid not in deleted and tid not in absent]
    again = [tid for tid in left if tid in local and local[tid].cluster == MASTER_PAYLOAD]
    if again:
        say(
            f"Master payloads rendered before this still carry {', '.join(again)}: a master that has not booted yet "
            "creates it at its first boot; render its payload again"
        )
    if failure is None:
        return 0
    kept = (
        f"{cluster_dir}/{TOKENS_FILE} no longer lists {', '.join(ids)}; the cluster may still accept {', '.join(left)}."
    )
    return unchanged(failure, kept, [_kubectl_delete(tid) for tid in left])


def add_token_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    t = sub.add_parser(
        "token",
        help="manage bootstrap tokens (like kubeadm token), in tokens.yaml and on the running cluster",
        description="Bootstrap tokens live in CLUSTER/tokens.yaml and, once created there, in the running cluster "
        "(Secrets kube-system/bootstrap-token-<id>, as kubeadm makes them). create, delete, list and upload reach "
        "the cluster's API as kubeseed's own admin: a client certificate from CLUSTER's CA key, valid 10 minutes, "
        "kept in memory (or as --kubeconfig's user).",
    )
    tsub = t.add_subparsers(dest="action", metavar="ACTION", required=True)
    tc = tsub.add_parser(
        "create",
        help="create a bootstrap token, in tokens.yaml and on the cluster, and print it",
        description="Create a bootstrap token: add it to CLUSTER/tokens.yaml, then create its Secret on the "
        "running cluster through the API. If the API cannot be reached (a master that has not booted yet), the "
        "token stays in tokens.yaml (a master payload rendered later carries it) and the kubectl command that "
        "creates it is printed. " + exit_codes("tokens.yaml was changed"),
    )
    tc.add_argument("cluster", metavar="CLUSTER", help=CLUSTER_HELP)
    tc.add_argument("--ttl", default="24h", help="lifetime, e.g. 24h, 1h30m (0 = never expires)")
    tc.add_argument("--description", help="free text shown by token list")
    tc.add_argument("--usages", help="comma-separated: signing,authentication (default both)")
    tc.add_argument("--groups", help="extra groups (default system:bootstrappers:kubeadm:default-node-token)")
    tc.add_argument(
        "--print-join-command",
        action="store_true",
        help="print the node's join command with the new token instead of the token (kubeadm join takes the same "
        "arguments)",
    )
    tc.add_argument("--kubeconfig", metavar="FILE", help=KUBECONFIG_HELP)
    tc.set_defaults(func=cmd_token_create)
    tl = tsub.add_parser(
        "list",
        help="list bootstrap tokens, and which the cluster holds",
        description="List the tokens of CLUSTER/tokens.yaml and every bootstrap token the running cluster holds "
        "(those made by kubeadm token create too). CLUSTER says whether the cluster holds each; when its API "
        "cannot be asked, it shows in parentheses what tokens.yaml records. What the cluster holds is recorded in "
        "tokens.yaml (render node picks from those tokens).",
    )
    tl.add_argument("cluster", metavar="CLUSTER", help=CLUSTER_HELP)
    tl.add_argument("--kubeconfig", metavar="FILE", help=KUBECONFIG_HELP)
    tl.set_defaults(func=cmd_token_list)
    td = tsub.add_parser(
        "delete",
        help="delete bootstrap tokens by id or whole token, in tokens.yaml and on the cluster",
        description="Delete tokens from CLUSTER/tokens.yaml and their Secrets from the running cluster (no node "
        "can join with them afterwards); a token only the cluster holds is deleted there. "
        + exit_codes("tokens.yaml was changed"),
    )
    td.add_argument("cluster", metavar="CLUSTER", help=CLUSTER_HELP)
    td.add_argument("tokens", nargs="+", metavar="TOKEN", help="token id or whole token; several allowed")
    td.add_argument("--kubeconfig", metavar="FILE", help=KUBECONFIG_HELP)
    td.set_defaults(func=cmd_token_delete)
    tu = tsub.add_parser(
        "upload",
        help="create tokens of tokens.yaml on the cluster (default: every unexpired one it lacks)",
        description="Create the Secrets of tokens that are in CLUSTER/tokens.yaml but not on the running cluster "
        "(e.g. made while it was unreachable). Exit status 1 when the cluster's API cannot be reached or refuses.",
    )
    tu.add_argument("cluster", metavar="CLUSTER", help=CLUSTER_HELP)
    tu.add_argument("tokens", nargs="*", metavar="TOKEN", help="token id or whole token (default: all it lacks)")
    tu.add_argument("--kubeconfig", metavar="FILE", help=KUBECONFIG_HELP)
    tu.set_defaults(func=cmd_token_upload)
