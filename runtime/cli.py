"""kubeseed-runtime: the first-boot program (preflight, init, join, status)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from importlib import import_module
from typing import Any, Dict, List, Optional, Tuple

from .config import API_VERSION, NODE_CONFIG_PATH, ConfigError, parse_node_config, read_node_config
from .versions import DEFAULT
from .workflow import Context, Phase, PhaseError, run, status

VERSION = "0.1.0"
COMMANDS = {"master": "init", "node": "join"}  # each role's command is its package: runtime/init, runtime/join
# Day-2 commands: command -> module (under kubeseed.runtime) with add_parser(sub), run(args) -> int and, if it adds
# to `status`, status(ctx). A master's payload and the full runtime carry them; a node's first-boot runtime is built
# without what reads DAY2 (generator/zipapp.py): its payload must fit EC2's user-data.
DAY2 = {"certs": "init.certcmd", "reset": "reset", "upgrade": "upgrade", "remove-control-plane": "init.removecp"}


def load_role(role: str) -> Any:
    """The one place a role's package is imported. A role package (init, join) exports ``phases()``, ``checks()``
    (its own pre-flight checks), ``CONFIG`` (its own node-config fields, for parse_node_config's ``extend``) and
    ``DONE`` (what to say when its command has run). Each role's payload carries only its own package."""
    module = f"{__package__}.{COMMANDS[role]}"
    try:
        return import_module(module)
    except ImportError as e:  # the zipapp's loader raises it for the kubeseed modules it lacks
        if e.name != module:
            raise
        raise ConfigError("runtime", f"built for the other role: render this machine's {role} payload") from None


def phases(role: Any) -> List[Phase]:
    """The role's command as ordered phases, pre-flight checks first."""
    from . import preflight

    checks = Phase("preflight", "Running pre-flight checks", lambda ctx: preflight.phase(ctx, role.checks()))
    return [checks] + role.phases()


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kubeseed-runtime", description="kubeseed first-boot runtime")
    p.add_argument("--version", action="version", version=f"kubeseed-runtime {VERSION}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--root", default="", metavar="DIR", help="read and write every path inside DIR; start no host service"
    )
    common.add_argument("--config", metavar="FILE", help=f"node config (default: [DIR]{NODE_CONFIG_PATH})")
    common.add_argument("--node-name", default="", help="node name (default: nodeName from the config, else hostname)")
    common.add_argument(
        "--ignore-preflight-errors",
        default="",
        metavar="all|CHECK,...",
        help="report these pre-flight errors as warnings",
    )
    common.add_argument("-v", "--verbose", action="store_true", help="print the traceback of an unexpected error")
    pf = sub.add_parser("preflight", parents=[common], help="run the pre-flight checks only")
    pf.add_argument("--role", choices=tuple(COMMANDS), help="default: the node config's, else this runtime's")
    for role, cmd in COMMANDS.items():
        c = sub.add_parser(cmd, parents=[common], help=f"first boot of a {role}: run the {cmd} phases")
        g = c.add_mutually_exclusive_group()
        g.add_argument("--phase", metavar="NAME", help="run only this phase (again)")
        g.add_argument("--skip-phases", default="", metavar="NAME,...", help="skip these phases")
        c.add_argument("--timeout", type=float, default=300, metavar="SECONDS", help="bound the whole run (300)")
        c.add_argument("--advertise-address", default="", metavar="IP", help="a master's API server address here")
        c.add_argument("--certificate-key", default="", metavar="HEX", help="kubeadm-certs' key (init: its upload)")
        if cmd == "init":
            c.add_argument("--upload-certs", action="store_true", help="kubeadm-certs for kubeadm control-plane joins")
        if cmd == "join":
            c.add_argument("endpoint", nargs="?", metavar="ENDPOINT", help="API server host:port (default: config)")
            c.add_argument(
                "--control-plane", action="store_true", help="join as another master (a master payload rendered --join)"
            )
            c.add_argument("--token", help="bootstrap token ID.SECRET (default: from the node config)")
            c.add_argument(
                "--discovery-token-ca-cert-hash",
                action="append",
                default=[],
                metavar="sha256:HEX",
                help="pin of the cluster CA's public key; repeatable (default: from the node config)",
            )
            c.add_argument(
                "--discovery-token-unsafe-skip-ca-verification",
                action="store_true",
                help="join without a CA pin (lets a network attacker impersonate the API server)",
            )
    st = sub.add_parser("status", help="show each phase's result, duration and, for a failed one, the fix")
    st.add_argument("--root", default="", metavar="DIR")
    for module in DAY2.values():
        import_module(f"{__package__}.{module}").add_parser(sub)
    return p


def _join_doc(args: argparse.Namespace, path: str, flags: Dict[str, str]) -> Tuple[Any, str]:
    """The node config with the command line's overrides (ENDPOINT and flags alone suffice); ``flags`` learns
    which field each flag set, so that an error names the flag."""
    if args.config or not args.endpoint or os.path.exists(path):
        doc = read_node_config(path)
    else:
        doc, path = {"apiVersion": API_VERSION, "kind": "NodeConfig", "role": "node"}, "command line"
        doc.update(clusterName="kubernetes", kubernetesVersion=DEFAULT)
        if args.control_plane:  # kubeadm's control plane: its keys come from kubeadm-certs (--certificate-key)
            doc["role"] = "master"
        flags.update({"discovery.token": "--token", "discovery.caCertHashes": "--discovery-token-ca-cert-hash"})
    if not isinstance(doc, dict) or doc.get("role", "node") != ("master" if args.control_plane else "node"):
        return doc, path  # parsing says what is wrong with it
    _override(
        doc,
        flags,
        ("controlPlaneEndpoint", args.endpoint, "ENDPOINT"),
        ("discovery.token", args.token, "--token"),
        ("discovery.caCertHashes", args.discovery_token_ca_cert_hash, "--discovery-token-ca-cert-hash"),
        ("discovery.unsafeSkipCAVerification", args.discovery_token_unsafe_skip_ca_verification, ""),
    )
    return doc, path


def _override(doc: Any, flags: Dict[str, str], *given: Tuple[str, Any, str]) -> None:
    """Flags override the node config, and are checked as it is: each (field path, value, flag) sets the field
    when the flag was given, and ``flags`` learns which flag set it, so that an error names the flag. A section
    that is not a mapping is left for parsing to report."""
    for field, value, flag in given:
        *section, key = field.split(".")
        target = doc.setdefault(section[0], {}) if section and isinstance(doc, dict) else doc
        if value and isinstance(target, dict):
            target[key], flags[field] = value, flag


def _role_and_doc(args: argparse.Namespace, flags: Dict[str, str]) -> Tuple[Any, Any, str]:
    """The command's role (its package loaded: the wrong role's runtime stops here) and the unparsed node config
    (None when ``preflight`` has none) with where it came from."""
    path = args.config or os.path.join(args.root or "/", NODE_CONFIG_PATH.lstrip("/"))
    if args.command != "preflight":
        cp = getattr(args, "control_plane", False)
        name = "master" if args.command == "init" or cp else "node"
        try:
            doc, path = _join_doc(args, path, flags) if args.command == "join" else (read_node_config(path), path)
        except ConfigError:
            load_role(name)  # the other role's runtime says so first
            raise
        found = doc.get("role") if isinstance(doc, dict) else None
        if found in COMMANDS and found != name:
            run = "join --control-plane" if "discovery" in doc and found == "master" else COMMANDS[found]
            raise ConfigError("role", f"this node config is for a {found}; run `{run}`")
        role = load_role(name)  # the other role's runtime says so
        return import_module(f"{__package__}.init.cpjoin") if cp else role, doc, path
    doc = read_node_config(path) if args.config or os.path.exists(path) else None
    found = doc.get("role") if isinstance(doc, dict) else None
    if args.role and found in COMMANDS and found != args.role:
        raise ConfigError("--role", f"{path} is a {found}'s node config; drop --role, or pass --config")
    name = found if found in COMMANDS else args.role
    try:
        return load_role(name or "node"), doc, path
    except ConfigError:
        if name:
            raise
    return load_role("master"), doc, path  # no config, no --role: this runtime's own role (node if it has both)


def ignored_checks(args: argparse.Namespace) -> frozenset:
    """--ignore-preflight-errors' check names, lower case."""
    return frozenset(x.strip().lower() for x in args.ignore_preflight_errors.split(",") if x.strip())


def chosen_phases(args: argparse.Namespace, steps: List[Phase]) -> Tuple[str, frozenset]:
    """(only, skip) for workflow.run from --phase or --skip-phases, each a phase of ``steps`` (else ConfigError)."""
    names = [p.name for p in steps]
    chosen = [args.phase] if args.phase else [x for x in args.skip_phases.split(",") if x]
    for name in chosen:
        if name not in names:
            raise ConfigError(
                "--phase" if args.phase else "--skip-phases",
                f'unknown phase "{name}"; {args.command} has: {", ".join(names)}',
            )
    return args.phase or "", frozenset(chosen if not args.phase else ())


def main(argv: Optional[Sequence[str]] = None) -> int:
    os.umask(0o077)  # whatever umask it inherits: every directory it makes is 0700, every file gets its own mode
    args = _parser().parse_args(argv)
    if args.root and not os.path.isdir(args.root):
        print(f"error: --root {args.root}: no such directory", file=sys.stderr)
        return 2
    try:
        if args.command == "status":
            ctx = Context("status", None, args.root)
            code = status(ctx)
            for module in DAY2.values():  # a day-2 module may add to it (a master's: when certificates renew next)
                hook = getattr(import_module(f"{__package__}.{module}"), "status", None)
                if hook:
                    hook(ctx)
            return code
        if args.command in DAY2:
            from . import workflow

            workflow.ROOT = args.root  # as run() does for init and join: every write stays inside the root
            return import_module(f"{__package__}.{DAY2[args.command]}").run(args)
        flags: Dict[str, str] = {}
        role, doc, path = _role_and_doc(args, flags)
        _override(
            doc,
            flags,
            ("nodeName", args.node_name, "--node-name"),
            ("advertiseAddress", getattr(args, "advertise_address", ""), "--advertise-address"),
            ("uploadCerts", getattr(args, "upload_certs", False), "--upload-certs"),
            ("certificateKey", getattr(args, "certificate_key", ""), "--certificate-key"),
        )
        cfg = None
        try:
            cfg = parse_node_config(doc, role.CONFIG) if doc is not None else None
        except ConfigError as e:  # named after the flag that set the field, else the file's field
            field = e.path.split("[")[0]
            raise ConfigError(flags[field] if flags.get(field) else f"{path}: {e.path}", e.message) from None
        ignore = ignored_checks(args)
        timeout = getattr(args, "timeout", 300)
        if not 0 < timeout < float("inf"):  # nan and inf too: either would never time out
            raise ConfigError("--timeout", f"must be a positive number of seconds, not {timeout:g}")
        ctx = Context(
            args.command,
            cfg,
            args.root,
            args.node_name,
            ignore,
            timeout=timeout,
            verbose=args.verbose,
        )
        if args.command == "preflight":
            from . import preflight

            ctx.say("[preflight] Running pre-flight checks")
            try:
                preflight.phase(ctx, role.checks())
            except PhaseError as e:
                raise PhaseError(f"[preflight] {e}") from None
            ctx.say("[preflight] all checks passed")
            return 0
        steps = phases(role)
        code = run(ctx, steps, *chosen_phases(args, steps))
        if code == 0 and role.DONE and not args.phase:
            ctx.say(*role.DONE.split("\n"))
        return code
    except (ConfigError, PhaseError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2 if isinstance(e, ConfigError) else 1
    except ImportError as e:
        name = e.name or "?"
        if name.startswith("kubeseed"):
            fix = "this runtime is incomplete: render the payload again"
        else:
            fix = f"install it (e.g. apt-get install python3-{name.split('.')[0]})"
        print(f"error: Python module {name} is missing; {fix}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"error: {e.filename or ''}: {e.strerror or e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
