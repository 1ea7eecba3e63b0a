"""upgrade's phases (the full runtime only: a role's runtime installs the cluster's published one first): on a
master what ``kubeadm upgrade apply`` does (the first master) or ``kubeadm upgrade node`` does (the others), on a
node what ``kubeadm upgrade node`` does, and on every machine the rest: drain, the kubelet package, restart,
uncordon. Resumable per target version, with ``--phase`` and ``--skip-phases`` as init's."""

from __future__ import annotations

import argparse
import os
import re
from typing import List, cast

from ..cli import chosen_phases
from ..config import ConfigError
from ..versions import Version
from ..workflow import Context, Phase, PhaseError, load_state, write_atomic
from ..workflow import run as run_phases
from .machine import STATE, Upgrade, target


def phases(role: str, drain_only: bool = False) -> List[Phase]:
    """upgrade's phases for ``role``; with ``drain_only`` (a master's --drain NODE) those that drain NODE, wait
    for its kubelet to run the target, and uncordon it."""
    from ..init.apiphases import upload_config
    from . import controlplane, drain, packages

    cordon = [
        Phase("drain", "Draining the node", drain.drain_phase),
        Phase(
            "kubelet-package", "Upgrading the kubelet package", lambda ctx: packages.kubelet_package(ctx, target(ctx))
        ),
        Phase("uncordon", "Uncordoning the node", drain.uncordon_phase),
    ]
    if drain_only:
        return [cordon[0], cordon[2]]
    steps = [Phase("preflight", "Running upgrade pre-flight checks", controlplane.preflight)]
    if role == "master":
        steps += [
            Phase("control-plane", "Upgrading the control-plane static pods", controlplane.static_pods),
            Phase("upload-config", "Uploading the configuration for the new version", upload_config),
            Phase("bootstrap-token", "Updating the bootstrap-token RBAC rules", controlplane.bootstrap_token),
            Phase("addon", "Upgrading CoreDNS and kube-proxy", controlplane.addon),
        ]
    steps.append(Phase("kubelet-config", "Writing the kubelet configuration", controlplane.kubelet_config))
    return steps + cordon + [Phase("post-upgrade", "Recording the new version", post_upgrade)]


def main(args: argparse.Namespace, base: Context, published: str, config_path: str) -> int:
    """Upgrade this machine to VERSION (else ``published``, the cluster's target) by the phases of its role."""
    cfg = base.config
    assert cfg is not None
    ctx = Upgrade("upgrade", cfg, base.root, base.node_name, base.ignore_errors, timeout=args.timeout)
    ctx.deadline, ctx.verbose, ctx.state = base.deadline, base.verbose, STATE
    ctx.drain, ctx.no_drain, ctx.component_timeout, ctx.config_path = (
        args.drain,
        args.no_drain,
        args.component_timeout,
        config_path,
    )
    ctx.target = _target(args.version or published, cfg.version)
    if cfg.role == "master" and not cfg.advertise_address:
        cfg.advertise_address = advertised(ctx)
    if args.version and published and args.version != published:
        ctx.say(f"[upgrade] WARNING: the cluster's published target is {published}; upgrading to {args.version}")
    steps = phases(cfg.role, bool(args.drain))
    only, skip = chosen_phases(args, steps)  # checked before anything changes
    ctx.command = f"upgrade {ctx.target.text}"
    if args.drain:  # another node's drain: its own record, this machine's upgrade done first
        ctx.state, ctx.command = (
            STATE.replace(".json", f"-drain-{args.drain}.json"),
            f"{ctx.command} --drain {args.drain}",
        )
        if cfg.version.text != ctx.target.text:
            raise PhaseError(
                f"upgrade this master to {ctx.target.text} first (upgrade {ctx.target.text}), then drain nodes"
            )
    _fresh_state(ctx)
    ctx.say(f"[upgrade] {ctx.name()} ({cfg.role}): {cfg.kubernetes_version} -> {ctx.target.text}")
    cfg.kubernetes_version = ctx.target.text  # what the phases render: the new version's objects
    code = run_phases(ctx, steps, only, skip)
    if code == 0 and not args.phase and not args.drain:
        ctx.say("", f"[upgrade] SUCCESS! {ctx.name()} runs Kubernetes {ctx.target.text}.")
        if cfg.role == "master":
            ctx.say("Next: the other masters, then each node (kubeseed upgrade apply printed the commands).")
    return code


def advertised(ctx: Context) -> str:
    """The address init advertised the API server at (--advertise-address, or found then), where kubeadm keeps it:
    the kube-apiserver manifest's annotation. '' when there is none (the phases find it as init did)."""
    import yaml

    from ..init.controlplane import MANIFESTS
    from ..init.staticpods import ADVERTISED

    try:
        with open(ctx.path(f"{MANIFESTS}/kube-apiserver.yaml")) as f:
            pod = yaml.safe_load(f)
        endpoint = str(pod["metadata"]["annotations"][ADVERTISED])
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        return ""
    return endpoint.rsplit(":", 1)[0].strip("[]")


def _target(text: str, current: Version) -> Version:
    """The version to upgrade to, checked against kubeadm's rules: no downgrade, one minor at a time."""
    if not text:
        raise ConfigError(
            "VERSION",
            "the cluster has no published target: give one (upgrade vX.Y.Z), or publish it from the "
            "workstation: kubeseed upgrade apply CLUSTER --to vX.Y.Z",
        )
    try:
        new = Version(text)
    except ValueError as e:
        raise ConfigError("VERSION", str(e)) from None
    if (new.minor, new.patch) < (current.minor, current.patch):
        raise ConfigError("VERSION", f"{text} is older than {current.text}, which this machine runs: no downgrades")
    if new.minor > current.minor + 1:
        raise ConfigError(
            "VERSION",
            f"{text} skips a minor: upgrade one minor at a time (kubeadm's rule), to v1.{current.minor + 1}.x first",
        )
    return new


def _fresh_state(ctx: Upgrade) -> None:
    """Resume an upgrade to the same target; refuse another target while one is half done; a finished one is
    forgotten."""
    state = load_state(ctx)
    before = str(state.get("command") or "")
    if not before or before == ctx.command:
        return
    if any(r.get("result") != "done" for r in state["phases"].values()):
        raise PhaseError(f"`{before}` is half done here: finish it first (run it again), then upgrade further")
    os.unlink(ctx.path(STATE))


def post_upgrade(ctx: Context) -> None:
    """The node config says the new version: later commands (and a re-run of init's checks) see it."""
    path = cast(Upgrade, ctx).config_path
    with open(path) as f:
        text = f.read()
    new, n = re.subn(r"(?m)^kubernetesVersion: *\S+ *$", f"kubernetesVersion: {target(ctx)}", text)
    if n != 1:
        raise PhaseError(f"{path} has no one kubernetesVersion line to change; set it to {target(ctx)} by hand")
    write_atomic(path, new, 0o600)
    ctx.say(f"\t{path}: kubernetesVersion {target(ctx)}")
