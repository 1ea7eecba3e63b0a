"""upgrade's kubelet-package phase: the pkgs.k8s.io repository switched to the target's minor in every form a machine
has it (the golden image's .list, deb822 .sources, kubernetes.io's yum .repo), and the commands a machine runs.

Under --root nothing runs: the repository file is switched inside the root and the commands are printed. On a
"machine" (no --root) the package tools are stand-ins on PATH that record their calls (dpkg-query answers from a
file that the stand-in apt-get install rewrites), and the repository folders are the test's: the real apt and
systemd path is tests/images/test_upgrade_package.py, in systemd-nspawn."""

from __future__ import annotations

import io
import os
import shlex
from pathlib import Path

import pytest

from kubeseed.generator.goldenimage.apt import K8S_REPO
from kubeseed.runtime.upgrade import packages
from kubeseed.runtime.upgrade.packages import kubelet_package
from kubeseed.runtime.workflow import Context, PhaseError

LIST = "etc/apt/sources.list.d/kubernetes.list"
SOURCES = "etc/apt/sources.list.d/kubernetes.sources"
REPO = "etc/yum.repos.d/kubernetes.repo"
KEYRING = "/etc/apt/keyrings/kubernetes-apt-keyring.asc"


def image_list(minor: int) -> str:
    """The line images/provision.sh writes into the golden image (with the generator's K8S_REPO)."""
    return f"deb [signed-by={KEYRING}] {K8S_REPO.format(minor=f'1.{minor}')} /\n"


def yum_repo(minor: int) -> str:
    """kubernetes.io's /etc/yum.repos.d/kubernetes.repo ("Changing The Kubernetes Package Repository")."""
    return (
        "[kubernetes]\nname=Kubernetes\n"
        f"baseurl=https://pkgs.k8s.io/core:/stable:/v1.{minor}/rpm/\nenabled=1\ngpgcheck=1\n"
        f"gpgkey=https://pkgs.k8s.io/core:/stable:/v1.{minor}/rpm/repodata/repomd.xml.key\n"
        "#exclude=kubelet kubeadm kubectl cri-tools kubernetes-cni\n"
    )


def put(root: Path, path: str, text: str, mode: int = 0o644) -> Path:
    f = root / path
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_text(text)
    f.chmod(mode)
    return f


def upgrade(root: Path | str, target: str = "v1.36.1") -> str:
    out = io.StringIO()
    kubelet_package(Context("upgrade", None, str(root), out=out, timeout=30), target)
    return out.getvalue()


def commands_said(out: str) -> list[list[str]]:
    """The commands of the --root line, split as a shell would."""
    line = next(x for x in out.splitlines() if "not running the package manager" in x)
    listed = line.split("a machine would run ", 1)[1].split(" (kubectl only where installed")[0]
    return [shlex.split(c) for c in listed.split("; ")]


# -- under --root --------------------------------------------------------------------------------------------------


def test_the_golden_images_list_is_switched_and_the_apt_commands_said(root: Path) -> None:
    f = put(root, LIST, image_list(35))
    out = upgrade(root)
    assert f.read_text() == image_list(36)
    assert f.stat().st_mode & 0o777 == 0o644
    assert f"/{LIST}: the pkgs.k8s.io repository v1.35 -> v1.36" in out
    assert commands_said(out) == [
        ["DEBIAN_FRONTEND=noninteractive", "apt-mark", "unhold", "kubelet", "kubectl"],
        ["DEBIAN_FRONTEND=noninteractive", "apt-get", "update", "-q"]
        + ["-o", f"Dir::Etc::sourcelist=/{LIST}", "-o", "Dir::Etc::sourceparts=-", "-o", "APT::Get::List-Cleanup=0"],
        ["DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y", "-q", "--allow-change-held-packages"]
        + ["-o", "Dpkg::Options::=--force-confold", "-o", "DPkg::Lock::Timeout=120", "kubelet=1.36.1-*"]
        + ["kubectl=1.36.1-*"],
        ["DEBIAN_FRONTEND=noninteractive", "apt-mark", "hold", "kubelet", "kubectl"],
    ]
    assert "'kubelet=1.36.1-*'" in out  # quoted as a shell needs it
    assert "not starting services; a machine would run systemctl daemon-reload, enable kubelet, restart kubelet" in out


def test_the_deb822_sources_form_is_switched_and_only_the_minor(root: Path) -> None:
    text = (
        "# was: URIs: https://pkgs.k8s.io/core:/stable:/v1.34/deb/\n"
        "Types: deb\nURIs: https://pkgs.k8s.io/core:/stable:/v1.35/deb/\nSuites: /\n"
        f"Signed-By: {KEYRING}\n"
    )
    f = put(root, SOURCES, text, 0o640)
    out = upgrade(root)
    assert f.read_text() == text.replace("stable:/v1.35/", "stable:/v1.36/")  # the comment keeps its v1.34
    assert f.stat().st_mode & 0o777 == 0o640
    assert f"/{SOURCES}: the pkgs.k8s.io repository v1.35 -> v1.36" in out
    assert f"Dir::Etc::sourcelist=/{SOURCES}" in out


def test_the_yum_repo_form_is_switched_with_its_key_and_the_dnf_command_said(root: Path) -> None:
    f = put(root, REPO, yum_repo(35))
    out = upgrade(root)
    assert f.read_text() == yum_repo(36)
    assert f"/{REPO}: the pkgs.k8s.io repository v1.35 -> v1.36" in out
    assert commands_said(out) == [
        [
            "dnf",
            "install",
            "-y",
            "--refresh",
            "kubelet-1.36.1",
            "kubectl-1.36.1",
            "--setopt=disable_excludes=kubernetes",
        ]
    ]


def test_yum_without_dnf_gets_yums_own_option(root: Path) -> None:
    put(root, REPO, yum_repo(35).replace("[kubernetes]", "[k8s]"))
    put(root, "usr/bin/yum", "", 0o755)
    assert commands_said(upgrade(root)) == [
        ["yum", "install", "-y", "kubelet-1.36.1", "kubectl-1.36.1", "--disableexcludes=k8s"]
    ]


def test_a_repository_at_the_target_minor_is_left_as_it_is(root: Path) -> None:
    f = put(root, LIST, image_list(36))
    before = f.stat()
    out = upgrade(root, "v1.36.3")
    after = f.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert f"/{LIST}: the pkgs.k8s.io repository is at v1.36 already" in out
    assert "'kubelet=1.36.3-*'" in out


def test_a_mirror_keeping_pkgs_k8s_ios_paths_is_switched_too(root: Path) -> None:
    f = put(root, LIST, "deb [trusted=yes] http://mirror.example/k8s/core:/stable:/v1.35/deb/ /\n")
    upgrade(root)
    assert f.read_text() == "deb [trusted=yes] http://mirror.example/k8s/core:/stable:/v1.36/deb/ /\n"


def test_every_file_naming_it_is_switched_and_apt_updates_them_all(root: Path) -> None:
    put(root, LIST, image_list(35))
    put(root, SOURCES, "Types: deb\nURIs: https://pkgs.k8s.io/core:/stable:/v1.34/deb/\nSuites: /\n")
    out = upgrade(root)
    assert "v1.36" in (root / LIST).read_text() and "v1.36" in (root / SOURCES).read_text()
    assert ["DEBIAN_FRONTEND=noninteractive", "apt-get", "update", "-q"] in commands_said(out)  # no single list


def test_no_repository_says_where_it_looked_and_the_fix(root: Path) -> None:
    put(root, "etc/apt/sources.list.d/debian.sources", "Types: deb\nURIs: http://deb.debian.org/debian\n")
    put(root, "etc/apt/sources.list.d/legacy.list", "deb https://apt.kubernetes.io/ kubernetes-xenial main\n")
    put(root, "etc/apt/sources.list.d/old.list", "# deb https://pkgs.k8s.io/core:/stable:/v1.35/deb/ /\n")
    with pytest.raises(PhaseError) as e:
        upgrade(root)
    assert str(e.value) == (
        "no pkgs.k8s.io repository (a URL with /core:/stable:/v1.NN/deb/ or /rpm/) in "
        "/etc/apt/sources.list.d/*.list and /etc/apt/sources.list.d/*.sources or /etc/yum.repos.d/*.repo, so the "
        "kubelet package cannot be upgraded here; upgrade it yourself to v1.36, then run again with "
        "--skip-phases kubelet-package"
    )


def test_a_version_it_does_not_know_is_refused(root: Path) -> None:
    put(root, LIST, image_list(35))
    with pytest.raises(PhaseError, match='"1.36.1" is not a version like v1'):
        upgrade(root, "1.36.1")
    assert (root / LIST).read_text() == image_list(35)


def test_a_symlink_out_of_the_root_is_neither_read_nor_written(root: Path, tmp_path: Path) -> None:
    outside = put(tmp_path, "outside.list", image_list(35))
    (root / LIST).parent.mkdir(parents=True)
    (root / LIST).symlink_to(outside)
    with pytest.raises(PhaseError, match="a symlink leads out of"):
        upgrade(root)
    assert outside.read_text() == image_list(35)


# -- on a machine: the package tools are stand-ins on PATH ---------------------------------------------------------


@pytest.fixture
def machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The repository folders in tmp_path (packages.PLACES), stand-in tools on PATH; returns tmp_path."""
    monkeypatch.setattr(
        packages,
        "PLACES",
        (
            ("apt", "deb", str(tmp_path / "sources.list.d"), (".list", ".sources")),
            ("dnf", "rpm", str(tmp_path / "yum.repos.d"), (".repo",)),
        ),
    )
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:/usr/bin:/bin")
    monkeypatch.delenv("DEBIAN_FRONTEND", raising=False)  # apt's commands set it themselves
    (tmp_path / "bin").mkdir()
    return tmp_path


def tools(machine: Path, dpkg: str, fail: str = "", rpm: str = "") -> Path:
    """Stand-ins recording each call (with DEBIAN_FRONTEND) in ``calls``: dpkg-query and rpm answer from a file that
    apt-get install and dnf install rewrite to 1.36.1; the command starting with ``fail`` fails as apt does."""
    calls, state = machine / "calls", machine / "state"
    state.write_text(dpkg or rpm)
    bodies = {
        "dpkg-query": f"cat {state}",
        "rpm": f"cat {state}",
        "apt-get": f'[ "$1" = install ] && sed -i s/1.35.5/1.36.1/ {state}; true',
        "apt-mark": "true",
        "dnf": f"sed -i s/1.35.5/1.36.1/ {state}",
        "systemctl": 'case "$1" in is-active) echo active;; show) echo 0;; esac',
    }
    for name, body in bodies.items():
        script = machine / "bin" / name
        failing = ""
        if fail and fail.split()[0] == name:
            failing = (
                f'case "$*" in "{fail[len(name) + 1 :]}"*) echo "E: Unable to locate package kubelet" >&2; '
                "echo \"E: Version '1.36.1-*' for 'kubelet' was not found\" >&2; exit 100;; esac\n"
            )
        log = f'echo "${{DEBIAN_FRONTEND:-}}|{name} $*" | tr "\\n" " " >> {calls}; echo >> {calls}\n'  # one line
        script.write_text(f"#!/bin/sh\n{log}{failing}{body}\n")
        script.chmod(0o755)
    return calls


def run_on_machine(target: str = "v1.36.1") -> str:
    return upgrade("", target)


def logged(calls: Path) -> list[str]:
    return [line.strip() for line in calls.read_text().splitlines()]


def names(calls: Path) -> list[str]:
    """Each call as "tool first-argument", with the frontend apt's got."""
    return [" ".join(line.split()[:2]) for line in logged(calls)]


def test_apt_upgrades_both_packages_keeps_them_held_and_restarts_the_kubelet(machine: Path) -> None:
    f = put(machine, "sources.list.d/kubernetes.list", image_list(35))
    calls = tools(machine, "kubelet hi  1.35.5-1.1\nkubectl hi  1.35.5-1.1\n")
    out = run_on_machine()
    assert f.read_text() == image_list(36)
    assert names(calls) == [
        "|dpkg-query -W",
        "noninteractive|apt-mark unhold",
        "noninteractive|apt-get update",
        "noninteractive|apt-get install",
        "noninteractive|apt-mark hold",
        "|dpkg-query -W",
        "|systemctl daemon-reload",
        "|systemctl enable",
        "|systemctl restart",
        "|systemctl is-active",
    ]
    lines = logged(calls)
    assert lines[1].endswith("apt-mark unhold kubelet kubectl") and lines[4].endswith("apt-mark hold kubelet kubectl")
    assert lines[3].endswith("kubelet=1.36.1-* kubectl=1.36.1-*")
    assert f"Dir::Etc::sourcelist={f}" in lines[2]
    assert "the kubelet package: 1.35.5-1.1 -> 1.36.1-1.1" in out
    assert "\tDEBIAN_FRONTEND=noninteractive apt-get install -y" in out  # each command said as it runs


def test_only_what_was_held_is_held_again_and_kubectl_only_where_installed(machine: Path) -> None:
    put(machine, "sources.list.d/kubernetes.list", image_list(35))
    calls = tools(machine, "kubelet ii  1.35.5-1.1\n")  # dpkg-query: no packages found matching kubectl
    run_on_machine()
    lines = logged(calls)
    assert not any("apt-mark" in x for x in lines)
    assert next(x for x in lines if "apt-get install" in x).endswith(
        "--force-confold -o DPkg::Lock::Timeout=120 kubelet=1.36.1-*"
    )


def test_a_failing_command_is_named_with_its_errors_and_the_hold_is_put_back(machine: Path) -> None:
    put(machine, "sources.list.d/kubernetes.list", image_list(35))
    calls = tools(machine, "kubelet hi  1.35.5-1.1\n", fail="apt-get install")
    with pytest.raises(PhaseError) as e:
        run_on_machine()
    message = str(e.value)
    assert message.startswith("DEBIAN_FRONTEND=noninteractive apt-get install -y -q --allow-change-held-packages")
    assert (
        "failed (exit 100): E: Unable to locate package kubelet | E: Version '1.36.1-*' for 'kubelet' was not "
        "found; fix what it says, or upgrade the kubelet package to 1.36.1 yourself, then run again with "
        "--skip-phases kubelet-package"
    ) in message
    assert names(calls)[-1] == "noninteractive|apt-mark hold" and "systemctl" not in calls.read_text()


def test_a_kubelet_at_the_target_is_only_restarted(machine: Path) -> None:
    """No package manager runs; the kubelet restarts all the same, to load the kubelet-config phase's config."""
    put(machine, "sources.list.d/kubernetes.list", image_list(36))
    calls = tools(machine, "kubelet hi  1.36.1-1.1\nkubectl hi  1.35.5-1.1\n")
    out = run_on_machine()
    assert "the kubelet package is 1.36.1-1.1 already: nothing to upgrade" in out
    assert names(calls)[0] == "|dpkg-query -W" and "apt" not in calls.read_text()
    assert "|systemctl restart" in names(calls)


def test_a_newer_kubelet_is_not_downgraded(machine: Path) -> None:
    put(machine, "sources.list.d/kubernetes.list", image_list(36))
    calls = tools(machine, "kubelet hi  1.36.4-1.1\n")
    with pytest.raises(PhaseError, match="the kubelet package is 1.36.4-1.1, newer than v1.36.1: kubeseed does not"):
        run_on_machine()
    assert names(calls) == ["|dpkg-query -W"]


def test_a_machine_without_the_kubelet_package_is_told_the_fix(machine: Path) -> None:
    put(machine, "sources.list.d/kubernetes.list", image_list(35))
    tools(machine, "kubelet un  <none>\n")  # known to dpkg, not installed
    with pytest.raises(PhaseError, match="the kubelet package is not installed, so apt cannot upgrade it; install"):
        run_on_machine()


def test_dnf_upgrades_with_the_repositorys_excludes_lifted(machine: Path) -> None:
    put(machine, "yum.repos.d/kubernetes.repo", yum_repo(35))
    calls = tools(machine, "", rpm="kubelet ii 1.35.5\npackage kubectl is not installed\n")
    out = run_on_machine()
    lines = logged(calls)
    assert lines[1] == "|dnf install -y --refresh kubelet-1.36.1 --setopt=disable_excludes=kubernetes"
    assert names(calls)[-4:] == [
        "|systemctl daemon-reload",
        "|systemctl enable",
        "|systemctl restart",
        "|systemctl is-active",
    ]
    assert "the kubelet package: 1.35.5 -> 1.36.1" in out
    assert os.path.exists(machine / "yum.repos.d/kubernetes.repo")
