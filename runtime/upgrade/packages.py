"""The kubelet package step of ``upgrade``, as kubeadm's upgrade docs do it by hand: switch the machine's pkgs.k8s.io
repository to the target's minor (there is one repository per minor: kubernetes.io, "Changing The Kubernetes
Package Repository"), upgrade the kubelet package (and kubectl's, where installed) to exactly the target version
with apt or dnf/yum, then restart the kubelet."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from typing import Dict, List, NamedTuple, Tuple

from ..kubelet import start_phase
from ..versions import Version
from ..workflow import Context, PhaseError, confine, write_atomic

# Where each package manager reads its repositories, and the kind of pkgs.k8s.io repository it takes there
PLACES = (
    ("apt", "deb", "/etc/apt/sources.list.d", (".list", ".sources")),
    ("dnf", "rpm", "/etc/yum.repos.d", (".repo",)),
)
# pkgs.k8s.io's per-minor repository, on pkgs.k8s.io or a mirror keeping its paths: .../core:/stable:/v1.NN/deb/
REPO = re.compile(r"/core:/stable:/v1\.(\d+)/(deb|rpm)/")
PACKAGES = ("kubelet", "kubectl")  # what kubeadm's docs upgrade on every machine; kubectl only where installed
APT_ENV = "DEBIAN_FRONTEND=noninteractive"
PHASE = "kubelet-package"


class Repository(NamedTuple):
    manager: str  # "apt" or "dnf"
    files: List[str]  # the machine's files naming the repository
    ids: List[str]  # dnf/yum: the repository ids (the .repo sections naming it), whose excludes to lift


def kubelet_package(ctx: Context, target: str) -> None:
    """Switch the repository to ``target``'s minor, upgrade the packages to ``target``, restart the kubelet. Under
    --root: switch the repository inside the root and say what a machine would run."""
    try:
        version = Version(target)
    except ValueError as e:
        raise PhaseError(str(e)) from None
    want = f"1.{version.minor}.{version.patch}"
    repo = switch_repository(ctx, version.minor)
    if ctx.root:
        steps = commands(ctx, repo, want, list(PACKAGES), list(PACKAGES) if repo.manager == "apt" else [])
        ctx.say(
            "\t--root: not running the package manager; a machine would run "
            + "; ".join(map(shown, steps))
            + " (kubectl only where installed, held again only what was held)"
        )
        start_phase(ctx)
        return
    installed, held = query(repo.manager)
    if "kubelet" not in installed:
        raise PhaseError(
            f"the kubelet package is not installed, so {repo.manager} cannot upgrade it; install kubelet {want} "
            f"yourself, then run again with --skip-phases {PHASE}"
        )
    have = installed["kubelet"]
    if numbers(have) > numbers(want):
        raise PhaseError(
            f"the kubelet package is {have}, newer than {target}: kubeseed does not downgrade it; upgrade to "
            f"v{have.split('-')[0]} or later, or run again with --skip-phases {PHASE}"
        )
    if numbers(have) == numbers(want):  # restarted all the same: it loads the kubelet-config phase's configuration
        ctx.say(f"\tthe kubelet package is {have} already: nothing to upgrade")
        start_phase(ctx)
        return
    # kubectl with the kubelet (one transaction: they move together), where installed and older
    todo = [p for p in PACKAGES if p in installed and numbers(installed[p]) < numbers(want)]
    hold = [p for p in todo if p in held]
    steps = commands(ctx, repo, want, todo, hold)
    try:
        for step in steps:
            run(ctx, step, want)
    except PhaseError:
        if hold:  # held again as it was, whatever failed
            subprocess.run(steps[-1], capture_output=True)
        raise
    now = query(repo.manager)[0].get("kubelet", "none")
    if numbers(now) != numbers(want):
        raise PhaseError(f"the kubelet package is {now} after {shown(steps[-2 if hold else -1])}, not {want}")
    ctx.say(f"\tthe kubelet package: {have} -> {now}")
    start_phase(ctx)


def switch_repository(ctx: Context, minor: int) -> Repository:
    """The pkgs.k8s.io repository's files of the first package manager that has one, each switched to ``minor``
    (written atomically, mode kept, only the ``v1.NN`` part); PhaseError naming where it looked when none has."""
    looked = []
    for manager, kind, folder, ends in PLACES:
        looked.append(" and ".join(f"{folder}/*{e}" for e in ends))
        files, ids = [], []
        for path in listing(ctx, folder, ends):
            with open(confine(ctx.path(path), ctx.root), encoding="utf-8", errors="surrogateescape") as f:
                text = f.read()
            minors, sections = scan(text, kind)
            if not minors:
                continue
            files.append(path)
            ids += [s for s in sections if s not in ids]
            old = ", ".join(f"v1.{m}" for m in sorted(set(minors)))
            if set(minors) == {minor}:
                ctx.say(f"\t{path}: the pkgs.k8s.io repository is at v1.{minor} already")
                continue
            mode = os.stat(ctx.path(path)).st_mode & 0o7777
            write_atomic(ctx.path(path), switched(text, kind, minor).encode("utf-8", "surrogateescape"), mode)
            ctx.say(f"\t{path}: the pkgs.k8s.io repository {old} -> v1.{minor}")
        if files:
            return Repository(manager, files, ids)
    raise PhaseError(
        f"no pkgs.k8s.io repository (a URL with /core:/stable:/v1.NN/deb/ or /rpm/) in {' or '.join(looked)}, so "
        f"the kubelet package cannot be upgraded here; upgrade it yourself to v1.{minor}, then run again with "
        f"--skip-phases {PHASE}"
    )


def listing(ctx: Context, folder: str, ends: Tuple[str, ...]) -> List[str]:
    try:
        names = sorted(os.listdir(ctx.path(folder)))
    except OSError:
        return []
    return [f"{folder}/{n}" for n in names if n.endswith(ends) and os.path.isfile(ctx.path(f"{folder}/{n}"))]


def scan(text: str, kind: str) -> Tuple[List[int], List[str]]:
    """The minors of the ``kind`` repository URLs on the lines that are not comments, and the [sections] holding
    them (a .repo file's repository ids)."""
    minors: List[int] = []
    sections: List[str] = []
    section = ""
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("[") and s.endswith("]"):
            section = s[1:-1].strip()
        if s.startswith("#"):
            continue
        for m in REPO.finditer(line):
            if m.group(2) == kind:
                minors.append(int(m.group(1)))
                if section and section not in sections:
                    sections.append(section)
    return minors, sections


def switched(text: str, kind: str, minor: int) -> str:
    def line(s: str) -> str:
        if s.lstrip().startswith("#"):
            return s
        return REPO.sub(lambda m: f"/core:/stable:/v1.{minor}/{kind}/" if m.group(2) == kind else m.group(0), s)

    return "".join(map(line, text.splitlines(keepends=True)))


def commands(ctx: Context, repo: Repository, want: str, todo: List[str], held: List[str]) -> List[List[str]]:
    """What upgrades ``todo`` to ``want`` (apt: ``held`` unheld first and held again last); apt's commands start
    with their environment."""
    if repo.manager == "dnf":
        dnf = os.path.exists(ctx.path("/usr/bin/dnf")) or not os.path.exists(ctx.path("/usr/bin/yum"))
        tool = ["dnf", "install", "-y", "--refresh"] if dnf else ["yum", "install", "-y"]
        # dnf 4 and 5 both take --setopt=disable_excludes; yum 3 only --disableexcludes (kubernetes.io's forms)
        lift = [f"--setopt=disable_excludes={i}" if dnf else f"--disableexcludes={i}" for i in repo.ids]
        return [tool + [f"{p}-{want}" for p in todo] + lift]
    update = ["env", APT_ENV, "apt-get", "update", "-q"]
    if len(repo.files) == 1:  # only the Kubernetes repository's lists; the others' stay as they are
        only = [f"Dir::Etc::sourcelist={repo.files[0]}", "Dir::Etc::sourceparts=-", "APT::Get::List-Cleanup=0"]
        update += [w for o in only for w in ("-o", o)]
    install = ["env", APT_ENV, "apt-get", "install", "-y", "-q", "--allow-change-held-packages"]
    install += ["-o", "Dpkg::Options::=--force-confold", "-o", "DPkg::Lock::Timeout=120"]
    steps = [update, install + [f"{p}={want}-*" for p in todo]]
    if held:
        steps = [["env", APT_ENV, "apt-mark", "unhold", *held]] + steps + [["env", APT_ENV, "apt-mark", "hold", *held]]
    return steps


def shown(cmd: List[str]) -> str:
    """``cmd`` as a shell would take it (apt's without the ``env`` word)."""
    return shlex.join(cmd[1:] if cmd[0] == "env" else cmd)


def run(ctx: Context, cmd: List[str], want: str) -> None:
    ctx.say(f"\t{shown(cmd)}")
    fix = f"fix what it says, or upgrade the kubelet package to {want} yourself, then run again with --skip-phases "
    fix += PHASE
    try:
        r = subprocess.run(cmd, capture_output=True, text=True)
    except OSError as e:
        raise PhaseError(f"{shown(cmd)} could not run: {e}; {fix}") from None
    if r.returncode != 0:
        tail = " | ".join((r.stderr.strip() or r.stdout.strip()).splitlines()[-5:])
        raise PhaseError(f"{shown(cmd)} failed (exit {r.returncode}): {tail}; {fix}")


def query(manager: str) -> Tuple[Dict[str, str], List[str]]:
    """The installed packages of PACKAGES with their versions, and the ones apt holds (dpkg's selection "h")."""
    if manager == "apt":  # "kubelet hi 1.35.5-1.1": held (h), installed (i)
        cmd = ["dpkg-query", "-W", "-f=${Package} ${db:Status-Abbrev} ${Version}\n", *PACKAGES]
    else:  # "kubelet ii 1.35.5", and "package kubectl is not installed"
        cmd = ["rpm", "-q", "--qf", "%{NAME} ii %{VERSION}\n", *PACKAGES]
    try:  # exit 1 when one is not installed: the others are still listed
        out = subprocess.run(cmd, capture_output=True, text=True).stdout
    except OSError as e:
        raise PhaseError(f"{shown(cmd)} could not run: {e}; is {manager} this machine's package manager?") from None
    installed: Dict[str, str] = {}
    for words in map(str.split, out.splitlines()):
        if len(words) == 3 and words[0] in PACKAGES and words[1][1:2] == "i":
            installed[words[0]] = words[2]
    held = [w[0] for w in map(str.split, out.splitlines()) if w and w[0] in installed and w[1].startswith("h")]
    return installed, held


def numbers(version: str) -> Tuple[int, ...]:
    """``1.36.1`` of a package version ``1.36.1-1.1`` (an epoch ``1:`` left out), to compare."""
    upstream = version.split(":", 1)[-1].split("-", 1)[0]
    return tuple(int(n) for n in re.findall(r"\d+", upstream)[:3])
