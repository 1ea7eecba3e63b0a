"""The ``kubeseed`` command line (operator side)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from kubeseed.runtime.config import KEY_ALGORITHMS, ROLES
from kubeseed.runtime.versions import DEFAULT

from . import __version__
from .args import CLUSTER_HELP, cluster_dir_arg, text_arg, ttl_arg
from .console import progress, run_command, say, tty
from .errors import FieldError, UserError, shown
from .imagecli import add_parser as add_image_parser
from .imagescli import add_parser as add_images_parser
from .plan import RUNTIMES
from .platforms import PLATFORMS, check_size
from .render import FORMATS
from .seedcli import add_seed_parser
from .statuscli import add_cluster_status
from .tokencli import KUBECONFIG_HELP, add_token_parser, exit_codes
from .upgradecli import add_upgrade_parser

# Start-up time: this module imports only what building the parser needs. Each command imports the modules that do
# its work (cryptography, Jinja2, pycdlib, passlib and the runtime's roles among them) when it runs, so `kubeseed
# --help`, and every command, starts without loading what another command uses (tests/generator/test_startup.py).
if TYPE_CHECKING:
    from .secrets import ClusterSecrets

CLUSTER_ROLES = ("view", "edit", "admin", "cluster-admin")  # the user-facing ClusterRoles of every cluster
CN_MAX = 64  # bytes of a certificate's common name (RFC 5280's ub-common-name)
DEMO_ENDPOINT = "10.0.0.10:6443"
# the cluster.yaml field each `cluster create` flag fills: an error in the field names the flag
CREATE_FLAGS = {
    "name": "--name",
    "controlPlaneEndpoint": "--endpoint",
    "kubernetesVersion": "--kubernetes-version",
    "keyAlgorithm": "--key-algorithm",
    "networking.podSubnet": "--pod-subnet",
    "networking.serviceSubnet": "--service-subnet",
    "controlPlane.virtualIP": "--virtual-ip",
}


def _cluster_text(flags: dict[str, str], *values: str) -> str:
    """The cluster.yaml ``cluster create`` writes for ``values`` (default_cluster_text's), checked before any key
    is made: an error names the flag that ``flags`` maps its field to (in its message too)."""
    from kubeseed.runtime.config import load_yaml

    from .model import default_cluster_text, parse_cluster

    text = default_cluster_text(*values)
    try:
        parse_cluster(load_yaml(text), "")
    except FieldError as e:
        message = e.message
        for field, flag in flags.items():
            if "." in field:  # a dotted path cannot be a word of the message by chance
                message = message.replace(field, flag)
        raise UserError(f"{flags.get(e.path, e.path)}: {message}") from None
    return text


def _virtual_ip_endpoint(virtual_ip: str | None) -> str:
    """The endpoint ``cluster create --virtual-ip IP`` without --endpoint makes: IP:6443, the API server's port."""
    import ipaddress

    from kubeseed.runtime.init.controlplane import host_port
    from kubeseed.runtime.init.kubevip import API_PORT

    from .model import virtual_ip_error

    if not virtual_ip:
        raise UserError("--endpoint HOST:PORT is required (or --virtual-ip IP: the masters hold IP, and IP:6443 is it)")
    why = virtual_ip_error(virtual_ip)
    if why:
        raise UserError(f"--virtual-ip: {shown(virtual_ip)} {why}")
    return host_port(str(ipaddress.ip_address(virtual_ip)), API_PORT)


def cmd_cluster_create(args: argparse.Namespace) -> int:
    from .model import split_endpoint
    from .secrets import generate_secrets, write_cluster_dir
    from .tokens import format_time

    cluster_dir = cluster_dir_arg(args.cluster)
    if cluster_dir.exists():
        raise UserError(
            f"{cluster_dir} already exists; kubeseed never overwrites a cluster. "
            "Pick another name, or remove the directory if you really mean to start over"
        )
    endpoint = args.endpoint or _virtual_ip_endpoint(args.virtual_ip)
    try:
        split_endpoint(endpoint)
    except ValueError as e:
        raise UserError(f"--endpoint: {shown(endpoint)} {e}") from None
    name = args.name or cluster_dir.resolve().name
    version = args.kubernetes_version
    if version[:1].isdigit():  # kubeadm's 1.34.0 is v1.34.0
        version = f"v{version}"
    flags = CREATE_FLAGS if args.name else {**CREATE_FLAGS, "name": "CLUSTER (the directory name; or give --name)"}
    text = _cluster_text(
        flags,
        name,
        endpoint,
        version,
        args.key_algorithm,
        args.pod_subnet,
        args.service_subnet,
        args.virtual_ip or "",
    )
    secrets = generate_secrets(args.key_algorithm, ttl_arg(args.token_ttl, "--token-ttl"), progress)
    write_cluster_dir(cluster_dir, text, secrets)
    tok = secrets.tokens[0]
    progress(f"Writing {cluster_dir}/ (cluster.yaml, pki/, tokens.yaml)")
    expires = format_time(tok.expires) if tok.expires else "never"
    print(
        f'Cluster "{name}" created in {cluster_dir}/\n'
        f"  CA pin (--discovery-token-ca-cert-hash): {secrets.ca_pin}\n"
        f"  bootstrap token id: {tok.id} (expires {expires}; `kubeseed token list {args.cluster}` shows it)\n"
        f"Next:\n"
        f"  kubeseed render master {args.cluster} -o master.yaml\n"
        f"  kubeseed render node {args.cluster} -o node.yaml\n"
        f"  kubeseed user create {args.cluster} admin --group kubeadm:cluster-admins -o kubeconfig-admin"
    )
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    from .fsutil import check_output, write_output
    from .model import hostname_error
    from .nodeconfig import pick_join_token
    from .plan import build_plan
    from .render import gzip_bytes, render
    from .secrets import load
    from .tokens import TOKENS_FILE, format_time, now_utc

    if args.out is not None:
        check_output(args.out, "--out")
    if args.hostname is not None and hostname_error(args.hostname):
        raise UserError(f"--hostname: {hostname_error(args.hostname)}")
    cluster_dir = cluster_dir_arg(args.cluster)
    cluster, secrets = load(cluster_dir)
    if args.gzip and args.format != "cloud-init":
        raise UserError("--gzip applies to cloud-init user-data; Ignition configs already gzip every file")
    if args.join and args.role != "master":
        raise UserError("--join: a node payload always joins; --join makes a master payload join the control plane")
    plan = build_plan(cluster, secrets, args.role, args.hostname, args.token, runtime=args.runtime, join=args.join)
    data = render(plan, args.format)
    if args.gzip:
        data = gzip_bytes(data)

    def preinstalled_size() -> int:  # the same payload for a kubeseed golden image (runtime left out)
        small = render(
            build_plan(cluster, secrets, args.role, args.hostname, args.token, runtime="preinstalled", join=args.join),
            args.format,
        )
        return len(gzip_bytes(small) if args.gzip else small)

    report = check_size(
        args.platform, len(data), args.gzip, args.format, preinstalled_size if args.runtime == "embedded" else None
    )
    if args.out is not None:
        write_output(args.out, data, 0o600, "--out")
        where = args.out
    else:
        if args.gzip and tty(sys.stdout):
            raise UserError("--gzip output is binary; write it with --out FILE or redirect stdout")
        if args.role == "master":
            say("warning: this master payload holds the cluster's CA keys; write it with -o FILE (0600), not stdout")
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        where = "stdout"
    kind = f"{args.format}{', gzip' if args.gzip else ''}"
    print(f"kubeseed: {args.role} payload ({kind}) -> {where}: {report}", file=sys.stderr)
    if args.role == "master" and not args.join:
        _record_master_payload(cluster_dir, secrets)
    else:
        tok = pick_join_token(secrets, args.token, now_utc())
        expires = f"expires {format_time(tok.expires)}" if tok.expires else "never expires"
        say(f"kubeseed: it joins with bootstrap token {tok.id} ({expires}; `kubeseed token list {args.cluster}`)")
        if not tok.cluster:
            say(
                f"note: token {tok.id} is in {cluster_dir}/{TOKENS_FILE} only: no master payload rendered so far "
                "carries it and kubeseed has not seen it on the cluster, so a running cluster does not hold it and "
                f"this node cannot join until it does. A master payload rendered from now on carries it; on a "
                f"running cluster, `kubeseed token upload {args.cluster} {tok.id}` creates it (or `kubeseed token "
                f"create {args.cluster}` makes a new one there, which the next `render node` picks)"
            )
    return 0


def _record_master_payload(cluster_dir: Path, secrets: ClusterSecrets) -> None:
    """Record in tokens.yaml that a master payload carries the unexpired tokens (render node prefers them)."""
    from .tokens import TOKENS_FILE, now_utc, record_master_payload

    try:
        record_master_payload(cluster_dir, secrets.tokens, now_utc())
    except OSError as e:  # the payload is written: say what was not recorded, and go on
        say(f"note: could not record in {cluster_dir}/{TOKENS_FILE} that this payload carries its tokens ({e})")


# -- bootstrap tokens on a running cluster ---------------------------------------------------------------------


# -- users --------------------------------------------------------------------------------------------------------


def cmd_user_create(args: argparse.Namespace) -> int:
    import datetime
    import shlex

    from .clusterapi import NAMESPACE_RE, NotReached, Refused, binding_name, user_binding
    from .credentials import user_kubeconfig
    from .fsutil import check_output, write_output
    from .secrets import load
    from .tokencli import connect_args, unchanged

    cluster_dir = cluster_dir_arg(args.cluster)
    cluster, secrets = load(cluster_dir)
    user = text_arg(args.user, "NAME")
    if not user or any(c in user for c in ",/") or user.startswith("system:"):
        raise UserError(f'NAME: user name {shown(user)} is not allowed (no "system:" prefix, "/" or ",")')
    if len(user.encode()) > CN_MAX:
        raise UserError(
            f"NAME: user name {shown(user)} is {len(user.encode())} bytes; a certificate's common name (the user "
            f"name) holds at most {CN_MAX}"
        )
    groups = [text_arg(g, "--group") for g in args.group or []]
    if args.namespace is not None and not args.clusterrole:
        raise UserError("--namespace: goes with --clusterrole (the role the user gets in that namespace)")
    if args.namespace is not None and not NAMESPACE_RE.fullmatch(args.namespace):
        raise UserError(f"--namespace: {shown(args.namespace)} is not a namespace name (lower case, e.g. dev)")
    if args.clusterrole and "%" in user:
        raise UserError(f'NAME: user name {shown(user)} holds "%", which an RBAC binding\'s name cannot; pick another')
    if args.kubeconfig is not None and not args.clusterrole:
        raise UserError("--kubeconfig: goes with --clusterrole (the credential that creates the binding)")
    out = args.output if args.output is not None else f"kubeconfig-{user}"
    if check_output(out, "-o") and not args.force:
        raise UserError(f"-o: {shown(out)} already exists; choose another -o FILE or pass --force to replace it")
    ttl = ttl_arg(args.ttl)
    if ttl is None:
        raise UserError("--ttl: a user certificate needs a lifetime, e.g. 8760h")
    api = connect_args(args, cluster, secrets) if args.clusterrole else None  # a bad --kubeconfig: nothing written
    try:
        text = user_kubeconfig(cluster, secrets, user, groups, ttl / datetime.timedelta(days=1))
        write_output(out, text, 0o600, "-o")
        print(
            f'Wrote {out}: user "{user}", groups {",".join(groups) or "none"}, valid {args.ttl}, server '
            f"https://{cluster.control_plane_endpoint}\n  kubectl --kubeconfig {out} get nodes"
        )
        if api is None:
            return 0
        obj = user_binding(user, args.clusterrole, args.namespace or "")
        where = f" in namespace {args.namespace}" if args.namespace else ""
        try:
            status = api.apply(obj)
        except (NotReached, Refused) as e:
            name = binding_name(user, args.clusterrole)
            if args.namespace:
                command = ["kubectl", "-n", args.namespace, "create", "rolebinding", name]
            else:
                command = ["kubectl", "create", "clusterrolebinding", name]
            command += [f"--clusterrole={args.clusterrole}", f"--user={user}"]
            kept = f"{out} is written; {user} can do nothing on the cluster until a binding grants a role."
            return unchanged(e, kept, [shlex.join(command)])
        done = "created" if status == 201 else "already there (brought to this content)"
        say(
            f"{obj['kind']} {obj['metadata']['name']}{where}: user {user} has ClusterRole {args.clusterrole}; "
            f"{done}, on the cluster at {api.server}"
        )
        return 0
    finally:
        if api is not None:
            api.close()


# -- the cluster directory ------------------------------------------------------------------------------------------


def cmd_cluster_pin(args: argparse.Namespace) -> int:
    from .secrets import load

    _, secrets = load(cluster_dir_arg(args.cluster))
    print(secrets.ca_pin)
    return 0


def cmd_cluster_show(args: argparse.Namespace) -> int:
    from kubeseed.runtime.pki import not_after

    from .secrets import load
    from .tokens import format_time, now_utc

    cluster_dir = cluster_dir_arg(args.cluster)
    cluster, secrets = load(cluster_dir)
    now = now_utc()
    live = [t for t in secrets.tokens if not t.expired(now)]
    expiring = sorted((t for t in live if t.expires), key=lambda t: t.expires or now)
    net = cluster.networking
    tokens = f"{len(live)} unexpired"
    tokens += f" ({sum(1 for t in live if t.cluster)} recorded on the cluster)" if live else ""
    tokens += f", {len(secrets.tokens) - len(live)} expired" if len(secrets.tokens) > len(live) else ""
    if expiring:
        tokens += f"; next expiry {format_time(expiring[0].expires or now)} (token {expiring[0].id})"
    rows = [
        ("name", cluster.name),
        ("directory", f"{cluster_dir}/"),
        ("endpoint", cluster.control_plane_endpoint),
        ("kubernetes version", cluster.kubernetes_version),
        ("key algorithm", cluster.key_algorithm),
        ("image repository", cluster.image_repository),
        ("pod subnet", net.pod_subnet),
        ("service subnet", net.service_subnet),
        ("dns domain", net.dns_domain),
        ("CA pin", secrets.ca_pin),
        ("CA valid until", format_time(not_after(secrets.ca_cert))),
        ("bootstrap tokens", tokens),
    ]
    width = max(len(k) for k, _ in rows) + 1
    for key, value in rows:
        print(f"{key + ':':<{width}} {value}")
    return 0


def cmd_hash_password(args: argparse.Namespace) -> int:
    import getpass

    from .passwords import hash_password

    if sys.stdin.isatty():
        pw = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != pw:
            raise UserError("the two passwords differ; nothing was hashed")
    else:
        pw = sys.stdin.readline().rstrip("\n")
    try:
        print(hash_password(pw))
    except ValueError as e:
        raise UserError(f"hash-password: {e}") from None
    return 0


def cmd_quickstart(args: argparse.Namespace) -> int:
    from .credentials import user_kubeconfig
    from .fsutil import atomic_write
    from .plan import build_plan
    from .render import gzip_bytes, render
    from .secrets import generate_secrets, load, write_cluster_dir
    from .tokens import DEFAULT_TTL

    base = Path(args.dir)
    cluster_dir = base / "demo"
    if cluster_dir.exists():
        say(f"Using the existing demo cluster in {cluster_dir}/")
    else:  # write_cluster_dir makes base (0700) once the cluster text is valid
        text = _cluster_text({"controlPlaneEndpoint": "--endpoint"}, "demo", args.endpoint or DEMO_ENDPOINT)
        secrets = generate_secrets("ECDSA-P256", DEFAULT_TTL, progress)
        write_cluster_dir(cluster_dir, text, secrets)
        progress(f"Writing the demo cluster to {cluster_dir}/")
    cluster, secrets = load(cluster_dir)
    if args.endpoint is not None and args.endpoint != cluster.control_plane_endpoint:
        say(
            f"note: kept the existing demo's endpoint {cluster.control_plane_endpoint}, not --endpoint "
            f"{shown(args.endpoint)}; to start over with it, remove {cluster_dir}/ and run quickstart again"
        )
    rows = []
    for role in ROLES:
        plan = build_plan(cluster, secrets, role, f"demo-{role}-1")
        for fmt, ext in (("cloud-init", "yaml"), ("ignition", "ign")):
            data = render(plan, fmt)
            out = base / f"{role}.{ext}"
            atomic_write(out, data, 0o600)
            rows.append((str(out), role, fmt, len(data), len(gzip_bytes(data))))
            if fmt == "cloud-init":
                atomic_write(base / f"{role}.yaml.gz", gzip_bytes(data), 0o600)
        progress(f"Rendering {role} payloads")
        if role == "master":
            _record_master_payload(cluster_dir, secrets)
    kubeconfig = base / "kubeconfig-admin"
    if not kubeconfig.exists():
        atomic_write(kubeconfig, user_kubeconfig(cluster, secrets, "admin", ["kubeadm:cluster-admins"], 365), 0o600)
        progress("Writing an admin kubeconfig")
    print(f'Demo cluster "demo" (endpoint {cluster.control_plane_endpoint}) in {cluster_dir}/')
    print(f"{'payload':<34} {'role':<7} {'format':<11} {'bytes':>8} {'gzipped':>8}")
    for path, role, fmt, size, packed in rows:
        print(f"{path:<34} {role:<7} {fmt:<11} {size:>8,} {packed:>8,}")
    print(f"gzipped cloud-init (for --gzip platforms): {base}/master.yaml.gz, {base}/node.yaml.gz")
    print(
        f"CA pin: {secrets.ca_pin}\nkubectl credentials: {kubeconfig}\n"
        f"Hand {base}/master.yaml to the control-plane machine and {base}/node.yaml to workers as user-data."
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="kubeseed", description="Render first-boot payloads that build Kubernetes clusters."
    )
    p.add_argument("--version", action="version", version=f"kubeseed {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    cl = sub.add_parser("cluster", help="create a cluster directory (CAs, keys, a bootstrap token); show it")
    clsub = cl.add_subparsers(dest="action", metavar="ACTION", required=True)
    cc = clsub.add_parser("create", help="create CLUSTER (a directory) with its CAs, keys and a bootstrap token")
    cc.add_argument("cluster", metavar="CLUSTER", help="cluster directory to create (demo is ./demo)")
    cc.add_argument(
        "--endpoint",
        "--control-plane-endpoint",
        help="API server host:port, e.g. 10.0.0.10:6443 (a master, a load balancer or a DNS name)",
    )
    cc.add_argument(
        "--virtual-ip",
        metavar="IP",
        help="an unused address of the masters' network that they hold with kube-vip (no load balancer needed); "
        "the endpoint is IP:6443",
    )
    cc.add_argument("--name", help="cluster name (default: the directory name)")
    cc.add_argument("--kubernetes-version", default=DEFAULT, help="Kubernetes version (1.34.0 is read as v1.34.0)")
    cc.add_argument("--key-algorithm", default="ECDSA-P256", choices=KEY_ALGORITHMS, help="key type of CAs and keys")
    cc.add_argument("--pod-subnet", "--pod-network-cidr", default="10.244.0.0/16", help="pod IP range")
    cc.add_argument("--service-subnet", "--service-cidr", default="10.96.0.0/12", help="service IP range")
    cc.add_argument("--token-ttl", default="24h", help="lifetime of the first bootstrap token (0 = never expires)")
    cc.set_defaults(func=cmd_cluster_create)
    cp = clsub.add_parser(
        "pin",
        help="print the CA pin (sha256:...), alone, for --discovery-token-ca-cert-hash",
        description="Print CLUSTER's CA pin on stdout, alone: what kubeadm join's --discovery-token-ca-cert-hash "
        "takes (e.g. PIN=$(kubeseed cluster pin demo)).",
    )
    cp.add_argument("cluster", metavar="CLUSTER", help=CLUSTER_HELP)
    cp.set_defaults(func=cmd_cluster_pin)
    add_cluster_status(clsub)
    cs = clsub.add_parser("show", help="print the cluster's essentials: endpoint, version, subnets, CA pin, tokens")
    cs.add_argument("cluster", metavar="CLUSTER", help=CLUSTER_HELP)
    cs.set_defaults(func=cmd_cluster_show)

    r = sub.add_parser("render", help="render a master or node payload")
    r.add_argument("role", choices=ROLES, help="master (control plane, holds the CA keys) or node (worker)")
    r.add_argument("cluster", metavar="CLUSTER", help=CLUSTER_HELP)
    r.add_argument("--format", default="cloud-init", choices=FORMATS, help="payload format")
    r.add_argument("--hostname", help="host name (and Kubernetes node name) for this machine")
    r.add_argument("--gzip", action="store_true", help="gzip the whole user-data (cloud-init decodes it)")
    r.add_argument("--out", "-o", help="write here (0600) instead of stdout")
    r.add_argument(
        "--platform",
        default="generic",
        choices=sorted(PLATFORMS),
        help="refuse payloads over this platform's user-data limit",
    )
    r.add_argument("--token", help="bootstrap token id a node payload carries (default: the newest usable one)")
    r.add_argument(
        "--join",
        action="store_true",
        help="master: join the running cluster's control plane as another master (default: create the cluster)",
    )
    r.add_argument(
        "--runtime",
        choices=RUNTIMES,
        default="embedded",
        help="preinstalled: leave the runtime out (a kubeseed golden image has it)",
    )
    r.set_defaults(func=cmd_render)

    add_token_parser(sub)
    add_upgrade_parser(sub)

    u = sub.add_parser("user", help="kubectl credentials for people")
    usub = u.add_subparsers(dest="action", metavar="ACTION", required=True)
    uc = usub.add_parser(
        "create",
        help="write a kubeconfig with a client certificate signed by the cluster CA (and bind it a role)",
        description="Write a kubeconfig for NAME (certificate CN=NAME, O=each --group) signed by CLUSTER's CA. "
        "With --clusterrole, also bind NAME to that ClusterRole on the running cluster (ClusterRoleBinding "
        "kubeseed:NAME:ROLE, or with --namespace a RoleBinding of that name there), through the API as kubeseed's "
        "own admin or --kubeconfig's user; safe to repeat. " + exit_codes("the kubeconfig was written"),
    )
    uc.add_argument("cluster", metavar="CLUSTER", help=CLUSTER_HELP)
    uc.add_argument("user", metavar="NAME", help="user name (the certificate's CN)")
    uc.add_argument("--group", action="append", help="group (certificate O); repeatable")
    uc.add_argument("-o", "--output", help="kubeconfig file to write (default: kubeconfig-NAME)")
    uc.add_argument("--ttl", default="8760h", help="certificate lifetime, e.g. 2h or 1h30m (8760h = 1 year)")
    uc.add_argument("--force", action="store_true", help="replace an existing output file")
    uc.add_argument(
        "--clusterrole",
        choices=CLUSTER_ROLES,
        help="bind NAME to this ClusterRole on the cluster (view: read most objects; edit: change them; admin: "
        "also roles in a namespace; cluster-admin: everything)",
    )
    uc.add_argument("--namespace", help="with --clusterrole: grant it in this namespace only (a RoleBinding)")
    uc.add_argument("--kubeconfig", metavar="FILE", help=KUBECONFIG_HELP.replace("talk to", "bind on"))
    uc.set_defaults(func=cmd_user_create)

    hp = sub.add_parser("hash-password", help="read a password (prompt or stdin) and print a hash for passwordHash")
    hp.set_defaults(func=cmd_hash_password)

    q = sub.add_parser("quickstart", help="create a demo cluster and render every payload")
    q.add_argument("--dir", default="kubeseed-demo", help="where to put it")
    q.add_argument("--endpoint", help=f"API endpoint of a new demo cluster (default: {DEMO_ENDPOINT})")
    q.set_defaults(func=cmd_quickstart)
    add_seed_parser(sub)
    add_image_parser(sub)
    add_images_parser(sub)
    _finish(p)
    return p


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Adds "(default: ...)" to an option's help unless the help names its default or there is none."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default in (None, False, argparse.SUPPRESS) or "default" in text:
            return text
        return super()._get_help_string(action) or text


def _show_help(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    def show(args: argparse.Namespace) -> int:
        parser.print_help(sys.stderr)
        return 2

    return show


def _finish(parser: argparse.ArgumentParser) -> None:
    """Every parser under ``parser``: help shows defaults; with no command or action, print the help, exit 2."""
    parser.formatter_class = _HelpFormatter
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            action.required = False
            parser.set_defaults(func=_show_help(parser))
            for child in set(action.choices.values()):
                _finish(child)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    return run_command(func, args)  # a UserError exits with its exit_code (a failed image build: 3)


if __name__ == "__main__":
    sys.exit(main())
