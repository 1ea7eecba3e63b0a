from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kubeseed.generator.goldenimage import BuildError
from kubeseed.generator.goldenimage.build import TREE_TOOLS, Builder, Options, TreeInfo, default_cache
from kubeseed.generator.goldenimage.proc import remove_tree
from tests.support.helpers import need_tool, unavailable
from tests.support.nspawn import shared_files_changed


def need_root(why: str) -> None:
    if os.geteuid() != 0:
        unavailable(f"{why} needs root (these tests run as root on CI)")


@pytest.fixture(scope="session")
def image_tree(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TreeInfo]:
    """The node image's root tree, built once per test session by the product's own builder (the same code as
    ``kubeseed image build``, without the disk step) from its cache outside the repository
    ($KUBESEED_IMAGE_CACHE or ~/.cache/kubeseed/images): cold, debootstrap and provisioning take about two
    minutes; cached, unpacking takes seconds."""
    need_root("building the image (debootstrap, systemd-nspawn)")
    for tool, package in TREE_TOOLS.items():
        need_tool(tool, install=f"apt-get install {package}")
    dest = tmp_path_factory.mktemp("image") / "tree"
    try:
        info = Builder(Options(role="node", cache=default_cache())).build_tree(dest)
    except BuildError as e:  # e.g. the Debian mirror is unreachable: a failure, never a skip
        pytest.fail(f"building the image tree failed: {e}")
    yield info
    remove_tree(dest)  # about 850 MB; pytest keeps the last three sessions' temporary directories


@pytest.fixture
def machines(tmp_path: Path, image_tree: TreeInfo) -> Iterator[Path]:
    """A directory for the test's machine trees (copies of the image tree), removed afterwards (what a failure
    needs is in its message: the console's and the journal's tails); then the image tree's hard-linked files
    must be as they were (see tests/support/nspawn.py: copy_tree)."""
    started = time.time()
    yield tmp_path
    for child in tmp_path.iterdir():
        if (child / "usr").is_dir():
            remove_tree(child)
    changed = shared_files_changed(image_tree.path, started - 1)
    assert not changed, f"a boot wrote into the image's shared (hard-linked) files: {changed[:10]}"


@pytest.fixture
def ip_forward() -> Iterator[None]:
    """net.ipv4.ip_forward=1 on the host while a container boots. The container shares the host's network
    namespace, where /proc/sys is read-only to it, so the image's /etc/sysctl.d/k8s.conf cannot apply there (on a
    real machine it does); preflight's FileContent--proc-sys-net-ipv4-ip_forward reads the host's value. Put back
    as it was afterwards."""
    need_root("setting net.ipv4.ip_forward")
    path = Path("/proc/sys/net/ipv4/ip_forward")
    before = path.read_text().strip()
    if before != "1":
        path.write_text("1\n")
    try:
        yield
    finally:
        if before != "1":
            path.write_text(before + "\n")
