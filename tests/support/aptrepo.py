"""A local apt repository laid out like pkgs.k8s.io, holding TEST STAND-IN kubelet and kubectl packages, served over
HTTP on the host's loopback (tests only; tests/images/test_upgrade_package.py).

pkgs.k8s.io has one flat repository per minor (``/core:/stable:/v1.NN/deb/`` with ``Packages`` and ``Release``, the
packages below it), which a machine names as ``deb [signed-by=...] https://pkgs.k8s.io/core:/stable:/v1.NN/deb/ /``.
This one has the same paths under ``http://127.0.0.1:PORT``. It is not signed: machines name it with
``[trusted=yes]``, which only a test may do. ``Packages`` and ``Release`` are written here in Python (the fields apt
reads, with the packages' sizes and hashes), so no apt-ftparchive or dpkg-scanpackages is needed; the packages
themselves are built by ``dpkg-deb --build``.

No kubelet or kubectl binary can be had on these machines: the packages carry shell scripts that answer
``--version`` (``version --client``) with their version, and a kubelet that otherwise stays up (as
tests/support/nspawn.py's stand-in), writing the version it is into ``/run/kubelet-stand-in.version`` when it
starts, so a test can tell which package's kubelet systemd runs. The kubelet package also ships the unit the real
one does (``/usr/lib/systemd/system/kubelet.service``, tests/support/nspawn.py's KUBELET_UNIT_STAND_IN).
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import subprocess
import threading
import time
from pathlib import Path
from types import TracebackType

from tests.support.nspawn import KUBELET_UNIT_STAND_IN

STARTED = "/run/kubelet-stand-in.version"  # what the running stand-in kubelet wrote when it started

KUBELET = """#!/bin/sh
# TEST STAND-IN from tests/support/aptrepo.py's kubelet {version} package: no kubelet binary can be had here.
case "$1" in
    --version) echo "Kubernetes v{version}" ;;
    *) echo "v{version}" > {started}; exec sleep infinity ;;
esac
"""

KUBECTL = """#!/bin/sh
# TEST STAND-IN from tests/support/aptrepo.py's kubectl {version} package: no kubectl binary can be had here.
echo "Client Version: v{version}"
"""


def repo_path(minor: int) -> str:
    """The repository of a minor, below the server's root, as on pkgs.k8s.io."""
    return f"core:/stable:/v1.{minor}/deb/"


def build_package(work: Path, name: str, version: str) -> Path:
    """A stand-in ``name`` package (``kubelet`` or ``kubectl``) of ``version`` (``1.36.1-1.1``), by dpkg-deb."""
    upstream = version.split("-")[0]
    tree = work / f"{name}_{version}"
    (tree / "DEBIAN").mkdir(parents=True)
    (tree / "DEBIAN/control").write_text(
        f"Package: {name}\nVersion: {version}\nArchitecture: all\nMaintainer: kubeseed tests <tests@kubeseed.invalid>\n"
        f"Section: admin\nPriority: optional\nDescription: TEST STAND-IN for the {name} package of pkgs.k8s.io\n"
    )
    binary = tree / "usr/bin" / name
    binary.parent.mkdir(parents=True)
    script = KUBELET if name == "kubelet" else KUBECTL
    binary.write_text(script.format(version=upstream, started=STARTED))
    binary.chmod(0o755)
    if name == "kubelet":
        unit = tree / "usr/lib/systemd/system/kubelet.service"
        unit.parent.mkdir(parents=True)
        unit.write_text(KUBELET_UNIT_STAND_IN)
        unit.chmod(0o644)
    deb = work / f"{name}_{version}_all.deb"
    r = subprocess.run(
        ["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", str(tree), str(deb)], capture_output=True, text=True
    )
    assert r.returncode == 0, f"dpkg-deb --build {tree}: {r.stderr}"
    return deb


def control_of(deb: Path) -> str:
    r = subprocess.run(["dpkg-deb", "--field", str(deb)], capture_output=True, text=True)
    assert r.returncode == 0, f"dpkg-deb --field {deb}: {r.stderr}"
    return r.stdout.strip()


def write_index(repo: Path, debs: list[Path]) -> None:
    """``repo``'s ``Packages`` (``debs``, copied into ``repo/all/``) and ``Release`` (its hashes), as a flat
    repository has them."""
    (repo / "all").mkdir(parents=True, exist_ok=True)
    stanzas = []
    for deb in debs:
        data = deb.read_bytes()
        (repo / "all" / deb.name).write_bytes(data)
        stanzas.append(
            f"{control_of(deb)}\nFilename: all/{deb.name}\nSize: {len(data)}\n"
            f"MD5sum: {hashlib.md5(data).hexdigest()}\nSHA256: {hashlib.sha256(data).hexdigest()}\n"
        )
    packages = "\n".join(stanzas).encode()
    (repo / "Packages").write_bytes(packages)
    date = time.strftime("%a, %d %b %Y %H:%M:%S UTC", time.gmtime())
    (repo / "Release").write_text(
        f"Origin: kubeseed-tests\nLabel: kubeseed-tests (TEST STAND-IN of pkgs.k8s.io)\nDate: {date}\n"
        f"MD5Sum:\n {hashlib.md5(packages).hexdigest()} {len(packages)} Packages\n"
        f"SHA256:\n {hashlib.sha256(packages).hexdigest()} {len(packages)} Packages\n"
    )


def build_repository(base: Path, versions: dict[int, str], names: tuple[str, ...] = ("kubelet", "kubectl")) -> Path:
    """Under ``base/www``, one repository per minor of ``versions`` (minor -> package version), each holding the
    ``names`` packages of its version. Returns the server's root."""
    www, work = base / "www", base / "debs"
    work.mkdir(parents=True)
    for minor, version in versions.items():
        write_index(www / repo_path(minor), [build_package(work, name, version) for name in names])
    return www


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        pass


class RepoServer:
    """``root`` over HTTP on 127.0.0.1 (a free port), in a thread, while the context lasts; ``requests`` records the
    paths asked for."""

    def __init__(self, root: Path) -> None:
        self.requests: list[str] = []
        seen = self.requests

        class Handler(_Quiet):
            def do_GET(self) -> None:
                seen.append(self.path)
                super().do_GET()

        handler = functools.partial(Handler, directory=str(root))
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> RepoServer:
        self.thread.start()
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)
