"""kubeseed-runtime: the first-boot program (preflight, init, join, status)."""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
from collections.abc import Sequence
from importlib import import_module
from typing import Any, Dict, List, Optional

from .config import (
    API_VERSION,
    DEFAULT_VERSION,
    NODE_CONFIG_PATH,
    ConfigError,
    NodeConfig,
    load_node_config,
    parse_node_config_file,
    read_node_config,
    split_endpoint,
)
from .tokens import parse_pin, parse_token
from .workflow import Context, Phase, PhaseError, run, status

VERSION = "0.1.0"
ACTIONS = {"init": "master", "join": "node"}
ROLE_MODULE = {"init": "master", "join": "join"}


def phases(command: str) -> List[Phase]:
    """The ordered phases of ``init`` (master) and ``join`` (node); each role's payload carries only its own."""
    from . import preflight

    module = f"{__package__}.{ROLE_MODULE[command]}"
    try:
        steps = import_module(module).phases()
    except ModuleNotFoundError as e:
        if e.name != module:
            raise
        role = ACTIONS[command]
        raise ConfigError(command, f"this runtime was built for the other role; render the {role} payload") from None
    return [Phase("preflight", "Running pre-flight checks", preflight.phase)] + steps


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
    pf = sub.add_parser("preflight", parents=[common], help="run the pre-flight checks only")
    pf.add_argument("--role", choices=("master", "node"), help="default: from the node config, else node")
    for cmd, role in ACTIONS.items():
        c = sub.add_parser(cmd, parents=[common], help=f"first boot of a {role}: run the {cmd} phases")
        g = c.add_mutually_exclusive_group()
        g.add_argument("--phase", metavar="NAME", help="run only this phase (again)")
        g.add_argument("--skip-phases", default="", metavar="NAME,...", help="skip these phases")
        c.add_argument("--timeout", type=float, default=300, metavar="SECONDS", help="bound the whole run (300)")
        if cmd == "init":
            c.add_argument("--advertise-address", default="", metavar="IP", help="the API server's address here")
        if cmd == "join":
            c.add_argument("endpoint", nargs="?", metavar="ENDPOINT", help="API server host:port (default: config)")
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
    return p


def _config(args: argparse.Namespace, required: bool) -> Optional[NodeConfig]:
    path = args.config or os.path.join(args.root or "/", NODE_CONFIG_PATH.lstrip("/"))
    if args.command == "join":
        return _join_config(args, path)
    if not required and not args.config and not os.path.exists(path):
        return None
    return load_node_config(path)


def _join_config(args: argparse.Namespace, path: str) -> NodeConfig:
    """The node config with the command line's overrides; ENDPOINT and flags alone suffice."""
    if args.config or not args.endpoint or os.path.exists(path):
        doc = read_node_config(path)
    else:
        doc, path = {"apiVersion": API_VERSION, "kind": "NodeConfig", "role": "node"}, "command line"
        doc.update(clusterName="kubernetes", kubernetesVersion=DEFAULT_VERSION)
    if not isinstance(doc, dict):
        return parse_node_config_file(doc, path)  # says what is wrong with it
    disc: Dict[str, Any] = doc["discovery"] if isinstance(doc.get("discovery"), dict) else {}
    if args.endpoint:
        try:
            split_endpoint(args.endpoint)
        except ValueError as e:
            raise ConfigError("ENDPOINT", f'"{args.endpoint}" {e}') from None
        doc["controlPlaneEndpoint"] = args.endpoint
    if args.token is not None:
        try:
            parse_token(args.token)
        except ValueError as e:
            raise ConfigError("--token", str(e)) from None
        disc["token"] = args.token
    for pin in args.discovery_token_ca_cert_hash:
        try:
            parse_pin(pin)
        except ValueError as e:
            msg = f"invalid discovery token CA certificate hash: {e}"
            raise ConfigError("--discovery-token-ca-cert-hash", msg) from None
    if args.discovery_token_ca_cert_hash:
        disc["caCertHashes"] = args.discovery_token_ca_cert_hash
    if args.discovery_token_unsafe_skip_ca_verification:
        disc["unsafeSkipCAVerification"] = True
    if doc.get("role", "node") == "node":
        if not disc.get("token"):
            raise ConfigError("--token", "is required: the bootstrap token ID.SECRET (kubeseed token create)")
        if not disc.get("caCertHashes") and not disc.get("unsafeSkipCAVerification"):
            raise ConfigError(
                "--discovery-token-ca-cert-hash",
                "token discovery without a CA pin is unsafe: pass --discovery-token-ca-cert-hash sha256:<hex> "
                "(kubeseed cluster create prints it), or --discovery-token-unsafe-skip-ca-verification",
            )
        doc["discovery"] = disc
    return parse_node_config_file(doc, path)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(argv)
    if args.root and not os.path.isdir(args.root):
        print(f"error: --root {args.root}: no such directory", file=sys.stderr)
        return 2
    try:
        if args.command == "status":
            return status(Context("status", None, args.root))
        cfg = _config(args, args.command != "preflight")
        ignore = frozenset(x.strip().lower() for x in args.ignore_preflight_errors.split(",") if x.strip())
        timeout = getattr(args, "timeout", 300)
        if timeout <= 0:
            raise ConfigError("--timeout", f"must be a positive number of seconds, not {timeout:g}")
        advertise = getattr(args, "advertise_address", "")
        if advertise:
            try:
                ipaddress.ip_address(advertise)
            except ValueError:
                raise ConfigError("--advertise-address", f'"{advertise}" is not an IP address') from None
        ctx = Context(
            args.command, cfg, args.root, args.node_name, ignore, timeout=timeout, advertise_address=advertise
        )
        if args.command == "preflight":
            from . import preflight

            ctx.say("[preflight] Running pre-flight checks")
            try:
                preflight.phase(ctx, role=args.role or "")
            except PhaseError as e:
                raise PhaseError(f"[preflight] {e}") from None
            ctx.say("[preflight] all checks passed")
            return 0
        assert cfg is not None
        want = ACTIONS[args.command]
        if cfg.role != want:
            other = "init" if cfg.role == "master" else "join"
            raise ConfigError("role", f"this node config is for a {cfg.role}; run `{other}`, not `{args.command}`")
        names = [p.name for p in phases(args.command)]
        chosen = [args.phase] if args.phase else [x for x in args.skip_phases.split(",") if x]
        for name in chosen:
            if name not in names:
                raise ConfigError(
                    "--phase" if args.phase else "--skip-phases",
                    f'unknown phase "{name}"; {args.command} has: {", ".join(names)}',
                )
        code = run(ctx, phases(args.command), args.phase or "", frozenset(chosen if not args.phase else ()))
        if code == 0 and args.command == "join" and not args.phase:
            from .join import joined

            ctx.say(joined())
        return code
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except PhaseError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except ImportError as e:
        name = e.name or "?"
        if name.startswith("kubeseed"):  # each role's zipapp carries only its own modules
            fix = "this runtime was built for the other role: render this machine's payload again"
        else:
            fix = f"install it (e.g. apt-get install python3-{name.split('.')[0]})"
        print(f"error: Python module {name} is missing; {fix}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"error: {e.filename or ''}: {e.strerror or e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
