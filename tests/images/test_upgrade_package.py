"""upgrade's kubelet-package phase for real: in a booted copy of the golden image (systemd-nspawn, real systemd, the
image's own apt and dpkg), the runtime switches the pkgs.k8s.io repository from v1.35 to v1.36 and apt really
upgrades the kubelet and kubectl packages, which stay held, and systemd runs the new kubelet.

pkgs.k8s.io cannot be reached from these machines and no kubelet binary can be had: tests/support/aptrepo.py builds,
in the test, a local repository laid out like pkgs.k8s.io (one flat repository per minor) holding TEST STAND-IN
kubelet and kubectl packages of two versions (dpkg-deb), served over HTTP on the host's loopback, which the container
shares. The machine names it in the golden image's format (images/provision.sh's kubernetes.list line) but with
``[trusted=yes]`` instead of ``signed-by``: the repository is not signed (test-only). One boot.

The runtime is the code that ships: the complete runtime zipapp's modules (build_zipapp(None), as ``kubeseed upgrade
apply`` publishes it), minified as packed, written out as files on PYTHONPATH in the machine, where a small script
calls the phase (``upgrade`` itself is not a command yet).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from kubeseed.generator.goldenimage.build import TreeInfo
from kubeseed.generator.zipapp import build_zipapp, unpack_sources
from tests.support.aptrepo import STARTED, RepoServer, build_repository, repo_path
from tests.support.helpers import need_tool
from tests.support.nspawn import Container, copy_tree

BOOT_TIMEOUT = 180.0
SOURCE = "/opt/kubeseed-test-src"  # the runtime's modules in the machine (not /tmp: emptied at boot)
LIST = "/etc/apt/sources.list.d/kubernetes.list"
OLD, NEW = "1.35.5-1.1", "1.36.1-1.1"
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
UPGRADE = """
import sys
from kubeseed.runtime.upgrade.packages import kubelet_package
from kubeseed.runtime.workflow import Context, PhaseError
try:
    kubelet_package(Context("upgrade", None, timeout=120), sys.argv[1])
except PhaseError as e:
    sys.exit(f"error: [kubelet-package] {e}")
"""
ONLY_K8S = ["-o", f"Dir::Etc::sourcelist={LIST}", "-o", "Dir::Etc::sourceparts=-", "-o", "APT::Get::List-Cleanup=0"]


@pytest.fixture(autouse=True)
def _tools() -> None:
    need_tool("systemd-nspawn", install="apt-get install systemd-container")
    need_tool("nsenter", install="apt-get install util-linux")
    need_tool("dpkg-deb", install="apt-get install dpkg")


def install_runtime(tree: Path) -> None:
    """The complete runtime zipapp's modules as files under SOURCE (a package's code as its __init__.py)."""
    modules = unpack_sources(build_zipapp(None))
    for name, source in modules.items():
        *parents, last = name.split(".")
        package = any(other.startswith(name + ".") for other in modules)
        path = tree / SOURCE.lstrip("/") / Path(*parents) / (f"{last}/__init__.py" if package else f"{last}.py")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)


def inside(boot: Container, *cmd: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """``cmd`` in the machine as its root shell would run it: a clean environment, not the test's."""
    return boot.run("env", "-i", f"PATH={PATH}", "LANG=C.UTF-8", f"PYTHONPATH={SOURCE}", *cmd, timeout=timeout)


def ok(boot: Container, *cmd: str) -> str:
    """The test's own commands (apt's without questions), which must succeed."""
    r = inside(boot, "env", "DEBIAN_FRONTEND=noninteractive", *cmd)
    assert r.returncode == 0, f"{' '.join(cmd)} (exit {r.returncode}):\n{r.stdout}{r.stderr}\n{boot.tail(20)}"
    return r.stdout


def upgrade(boot: Container, target: str) -> subprocess.CompletedProcess[str]:
    return inside(boot, "python3", "-c", UPGRADE, target, timeout=300)


def versions(boot: Container) -> dict[str, str]:
    out = ok(boot, "dpkg-query", "-W", "-f=${Package} ${Version}\n", "kubelet", "kubectl")
    return dict(line.split() for line in out.splitlines())


def running(boot: Container, version: str) -> None:
    """systemd runs the kubelet of ``version``'s package: active, and the stand-in it started says so (in the
    machine's /run, a tmpfs of its own)."""
    boot.wait_until(
        f"the kubelet v{version} started",
        lambda: inside(boot, "cat", STARTED).stdout.strip() == f"v{version}",
        30,
    )
    assert ok(boot, "systemctl", "is-active", "kubelet").strip() == "active"


def test_upgrade_switches_the_repository_and_apt_upgrades_the_held_kubelet(
    image_tree: TreeInfo, machines: Path
) -> None:
    www = build_repository(machines / "repo", {35: OLD, 36: NEW})
    tree = machines / "machine"
    copy_tree(image_tree.path, tree)
    install_runtime(tree)
    sources = tree / LIST.lstrip("/")
    assert not sources.exists()  # the image has no kubelet (pkgs.k8s.io unreachable when it was built)
    with RepoServer(www) as repo, Container(tree, machines / "console.log") as boot:
        line = f"deb [trusted=yes] {repo.url}{repo_path(35)} /\n"  # provision.sh's line, but unsigned
        sources.write_text(line)

        def up() -> bool:
            return inside(boot, "systemctl", "is-system-running").stdout.strip() in ("running", "degraded")

        boot.wait_until("the system finished starting", up, BOOT_TIMEOUT)

        # The machine as the golden image makes it: the v1.35 packages from the v1.35 repository, held, running.
        ok(boot, "apt-get", "update", "-q", *ONLY_K8S)
        ok(boot, "apt-get", "install", "-y", "-q", f"kubelet={OLD}", f"kubectl={OLD}")
        ok(boot, "apt-mark", "hold", "kubelet", "kubectl")
        ok(boot, "systemctl", "enable", "--now", "kubelet")
        running(boot, "1.35.5")
        assert versions(boot) == {"kubelet": OLD, "kubectl": OLD}

        r = upgrade(boot, "v1.36.1")
        assert r.returncode == 0, f"{r.stdout}{r.stderr}\n{boot.tail(20)}"
        assert sources.read_text() == line.replace(repo_path(35), repo_path(36))
        assert sources.stat().st_mode & 0o777 == 0o644
        assert f"{LIST}: the pkgs.k8s.io repository v1.35 -> v1.36" in r.stdout
        assert "apt-get install -y -q --allow-change-held-packages" in r.stdout
        assert "the kubelet package: 1.35.5-1.1 -> 1.36.1-1.1" in r.stdout
        assert versions(boot) == {"kubelet": NEW, "kubectl": NEW}
        assert sorted(ok(boot, "apt-mark", "showhold").split()) == ["kubectl", "kubelet"]  # held again
        assert ok(boot, "kubelet", "--version").strip() == "Kubernetes v1.36.1"
        running(boot, "1.36.1")  # restarted: systemd runs the new package's kubelet
        assert f"{repo_path(36)}all/kubelet_{NEW}_all.deb" in " ".join(repo.requests)

        again = upgrade(boot, "v1.36.1")  # idempotent: a second run finds everything done
        assert again.returncode == 0, again.stdout + again.stderr
        assert "is at v1.36 already" in again.stdout and "1.36.1-1.1 already: nothing to upgrade" in again.stdout

        # A version the repository does not have: apt's own words and the fix, and the packages stay held.
        missing = upgrade(boot, "v1.36.9")
        assert missing.returncode == 1, missing.stdout + missing.stderr
        assert "apt-get install -y -q --allow-change-held-packages" in missing.stderr
        assert "Version '1.36.9-*' for 'kubelet' was not found" in missing.stderr
        assert "then run again with --skip-phases kubelet-package" in missing.stderr
        assert sorted(ok(boot, "apt-mark", "showhold").split()) == ["kubectl", "kubelet"]
        assert versions(boot) == {"kubelet": NEW, "kubectl": NEW}
        assert ok(boot, "systemctl", "is-active", "kubelet").strip() == "active"
