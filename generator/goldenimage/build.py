"""The builder: options, the cache of base and provisioned trees, the host's tools, the runtime, the image."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from kubeseed.runtime.config import RUNTIME_PATH

from ..console import say, step
from ..errors import UserError, shown
from ..fsutil import make_private_dir
from ..zipcache import cached_zipapp
from . import CACHE_ENV, DEFAULT_MINOR, KUBELET_MODES, ROLES, BuildError
from .apt import (
    DEFAULT_SECURITY,
    K8S_REPO,
    SUITE,
    Mirrors,
    check_mirror,
    host_mirrors,
    kubelet_reachable,
    write_apt_sources,
)
from .disk import (
    DISK_TOOLS,
    GRUB_DIR,
    KERNEL_CMDLINE,
    ROOT_LABEL,
    boot_files,
    default_fs_size,
    make_disk,
    tree_bytes,
    write_boot_config,
)
from .proc import nspawn_run, pack, remove_tree, run, unpack

ARCH = "amd64"
VARIANT = "minbase"
BUILD_DIR = "/var/tmp/kubeseed-build"  # inside the tree; nspawn mounts a tmpfs on /tmp
KEEP_PER_KIND = 2  # cached tarballs kept per kind (base, system): the one in use and the one before

# tool -> the Debian package that brings it
TREE_TOOLS = {
    "debootstrap": "debootstrap",
    "systemd-nspawn": "systemd-container",
    "unshare": "util-linux",
    "chroot": "coreutils",
    "tar": "tar",
    "zstd": "zstd",
}


def default_cache() -> Path:
    """$KUBESEED_IMAGE_CACHE, else $XDG_CACHE_HOME/kubeseed/images, else ~/.cache/kubeseed/images."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "kubeseed" / "images"


def find_provision_script(given: str | None = None) -> Path:
    """images/provision.sh: --provision, else the one beside the sources (a checkout) or installed with them
    (kubeseed.images in the wheel), else ./images/provision.sh."""
    if given:
        if not Path(given).is_file():
            raise UserError(f"--provision: {shown(given)} is not a file; give an existing provisioning script")
        return Path(given)
    candidates = [Path(__file__).resolve().parents[2] / "images" / "provision.sh", Path("images/provision.sh")]
    for c in candidates:
        if c.is_file():
            return c
    raise UserError(
        "images/provision.sh not found: run from a kubeseed checkout (pip install -e .), or give --provision FILE"
    )


def package_list(script: str) -> list[str]:
    """The Debian packages provision.sh installs (its PACKAGES block)."""
    m = re.search(r"# BEGIN PACKAGES\n(.*?)# END PACKAGES", script, re.S)
    if not m:
        raise UserError("provision.sh has no '# BEGIN PACKAGES' ... '# END PACKAGES' block")
    return re.findall(r"^([a-z0-9][a-z0-9+.-]*)$", m.group(1), re.M)


def _key(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


# -- the builder --------------------------------------------------------------------------------------------------
@dataclass
class Options:
    role: str = "node"
    cache: Path = field(default_factory=default_cache)
    mirror: str | None = None
    kubelet: str = "auto"
    kubernetes_minor: str = DEFAULT_MINOR
    provision: str | None = None
    size: int | None = None
    rebuild: bool = False


@dataclass
class TreeInfo:
    """What went into a root tree: the cache keys and whether the kubelet is in it."""

    path: Path
    base_key: str
    system_key: str
    kubelet: bool
    kubelet_note: str
    packages: list[str]
    mirrors: Mirrors
    timings: dict[str, float] = field(default_factory=dict)
    cached: dict[str, bool] = field(default_factory=dict)


@dataclass
class ImageInfo:
    image: Path
    kernel: Path
    initrd: Path
    cmdline: str
    size: int
    tree: TreeInfo


def check_host(disk: bool = True) -> None:
    """Root and the tools; each missing tool with the apt-get command that brings it."""
    if os.geteuid() != 0:
        raise UserError(
            "building an image needs root (debootstrap, systemd-nspawn, and file owners in the image): "
            "run it as root, e.g. sudo kubeseed image build ..."
        )
    tools = {**TREE_TOOLS, **(DISK_TOOLS if disk else {})}
    missing = [tool for tool in tools if not shutil.which(tool)]
    packages = sorted({tools[t] for t in missing})
    if disk and not (GRUB_DIR / "boot.img").is_file():
        missing.append(f"GRUB for BIOS ({GRUB_DIR})")
        packages.append("grub-pc-bin")
    if missing:
        raise UserError(f"missing {', '.join(missing)}; install: apt-get install {' '.join(packages)}")


class Builder:
    def __init__(self, opts: Options) -> None:
        if opts.role not in ROLES:
            raise UserError(f'--role: "{opts.role}" is not one of {", ".join(ROLES)}')
        if opts.kubelet not in KUBELET_MODES:
            raise UserError(f'--kubelet: "{opts.kubelet}" is not one of {", ".join(KUBELET_MODES)}')
        if not re.fullmatch(r"1\.\d+", opts.kubernetes_minor):
            raise UserError(f'--kubernetes-version: "{opts.kubernetes_minor}" is not like v1.35')
        self.opts = opts
        self.cache = opts.cache.expanduser().resolve()
        self.script_path = find_provision_script(opts.provision)
        self.script = self.script_path.read_bytes()
        self.packages = package_list(self.script.decode())

    # -- cache and work dirs ----------------------------------------------------------------------------------
    @contextmanager
    def _locked(self) -> Iterator[None]:
        make_private_dir(self.cache)  # root's trees and logs: 0700
        with open(self.cache / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    @contextmanager
    def workdir(self, name: str) -> Iterator[Path]:
        work = self.cache / "work"
        make_private_dir(work)
        path = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=work))
        try:
            yield path
        finally:
            remove_tree(path)

    def _log(self, name: str) -> Path:
        logs = self.cache / "logs"
        make_private_dir(logs)
        return logs / f"{name}.log"

    def _cached(self, info: TreeInfo, kind: str, tarball: Path, what: str) -> bool:
        """Whether ``tarball`` can be used as it is (recorded in ``info``); a used one is marked recently used."""
        hit = tarball.is_file() and not self.opts.rebuild
        info.cached[kind] = hit
        if hit:
            say(f"Using {what}")
            os.utime(tarball)
        return hit

    def _prune(self, kind: str, keep: Path) -> None:
        found = sorted(self.cache.glob(f"{kind}-*.tar.zst"), key=lambda p: p.stat().st_mtime, reverse=True)
        for old in [p for p in found if p != keep][KEEP_PER_KIND - 1 :]:
            old.unlink(missing_ok=True)
            old.with_suffix("").with_suffix(".json").unlink(missing_ok=True)

    # -- steps ------------------------------------------------------------------------------------------------
    def mirrors(self) -> Mirrors:
        if self.opts.mirror:
            try:
                security = host_mirrors().security
            except UserError:
                security = DEFAULT_SECURITY
            return Mirrors(self.opts.mirror.rstrip("/"), security, "--mirror")
        return host_mirrors()

    def kubelet_decision(self) -> tuple[bool, str]:
        minor, mode = self.opts.kubernetes_minor, self.opts.kubelet
        repo = K8S_REPO.format(minor=minor)
        wanted = "kubelet, cri-tools" + (", kubectl" if self.opts.role == "master" else "")
        if mode == "skip":
            return False, f"NO KUBELET in the image: --kubelet skip (install {wanted} from {repo} on the machine)"
        ok, why = kubelet_reachable(minor)
        if ok:
            return True, f"{wanted} v{minor} from {repo}"
        if mode == "require":
            raise BuildError(f"--kubelet require: {repo} cannot be reached from this machine ({why})")
        return False, (
            f"NO KUBELET in the image: the Kubernetes package repository {repo} cannot be reached from this "
            f"machine ({why}). Install {wanted} on the machine before its first boot, or build where that "
            "repository is reachable; the runtime's preflight names what is missing."
        )

    def base_tarball(self, mirrors: Mirrors, info: TreeInfo) -> Path:
        key = _key("base", SUITE, ARCH, VARIANT, mirrors.archive)
        info.base_key = key
        tarball = self.cache / f"base-{key}.tar.zst"
        if self._cached(info, "base", tarball, f"the cached Debian {SUITE} base tree {tarball}"):
            return tarball
        t0 = time.monotonic()
        with self.workdir("base") as work, step(f"Bootstrapping Debian {SUITE} {ARCH} from {mirrors.archive}"):
            debs = self.cache / "debs"
            make_private_dir(debs)
            tree = work / "tree"
            cmd = ["unshare", "--mount", "--propagation", "private", "debootstrap", f"--variant={VARIANT}"]
            cmd += [f"--arch={ARCH}", f"--cache-dir={debs}", SUITE, str(tree), mirrors.archive]
            echo = r"^I: (Retrieving Release|Resolving dependencies of base|Installing core|Base system installed)"
            run(cmd, self._log("debootstrap"), "debootstrap", echo=echo)
            with step(f"Saving the base tree to {tarball.name}"):
                pack(tree, tarball)
        (tarball.with_suffix("").with_suffix(".json")).write_text(
            json.dumps({"suite": SUITE, "arch": ARCH, "variant": VARIANT, "mirror": mirrors.archive}, indent=1)
        )
        self._prune("base", tarball)
        info.timings["base"] = time.monotonic() - t0
        return tarball

    def system_tarball(self, mirrors: Mirrors, info: TreeInfo, dest: Path | None = None) -> tuple[Path, bool]:
        """The provisioned tree's tarball, made when not cached. When it was just made and ``dest`` is given, the
        tree itself is moved there (same file system) and the second value is True: no need to unpack it."""
        base = self.base_tarball(mirrors, info)
        script_hash = hashlib.sha256(self.script).hexdigest()
        role = self.opts.role if info.kubelet else "any"  # without the kubelet, node and master images are alike
        minor = self.opts.kubernetes_minor
        inputs = [info.base_key, script_hash, minor, info.kubelet, role, mirrors.archive, mirrors.security]
        key = _key("system", *inputs, HOSTS)  # and what the builder itself writes into the tree
        info.system_key = key
        tarball = self.cache / f"system-{key}.tar.zst"
        what = f"the cached provisioned tree {tarball} (same provision.sh, packages and mirrors)"
        if self._cached(info, "system", tarball, what):
            return tarball, False
        t0 = time.monotonic()
        with self.workdir("system") as work:
            tree = work / "tree"
            with step("Unpacking the base tree"):
                unpack(base, tree)
            write_apt_sources(tree, mirrors)
            build = tree / BUILD_DIR.lstrip("/")
            build.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(self.script_path, build / "provision.sh")
            env = {
                "KUBESEED_IN_CHROOT": "1",
                "KUBESEED_ROLE": self.opts.role,
                "KUBERNETES_MINOR": self.opts.kubernetes_minor,
                # unreachable: provision.sh tries again itself and says so in its own output
                "KUBESEED_KUBELET": "require" if info.kubelet else self.opts.kubelet,
            }
            log = self._log("provision")
            with step(f"Provisioning with {self.script_path} (in systemd-nspawn; log: {log})"):
                for what in ("system", "cleanup"):
                    nspawn_run(tree, ["/bin/sh", f"{BUILD_DIR}/provision.sh", what], env, log, append=what != "system")
            finish_tree(tree)
            with step(f"Saving the provisioned tree to {tarball.name}"):
                pack(tree, tarball)
            moved = False
            if dest is not None:
                try:
                    os.rename(tree, dest)
                    moved = True
                except OSError:
                    pass
        meta: dict[str, object] = {"base": info.base_key, "provision.sh": script_hash, "packages": self.packages}
        meta |= {"kubernetes": self.opts.kubernetes_minor, "kubelet": info.kubelet, "role": role}
        meta |= {"mirror": mirrors.archive, "security": mirrors.security}
        tarball.with_suffix("").with_suffix(".json").write_text(json.dumps(meta, indent=1))
        self._prune("system", tarball)
        info.timings["system"] = time.monotonic() - t0
        return tarball, moved

    def build_tree(self, dest: Path, disk_tools: bool = False) -> TreeInfo:
        """The image's root tree at ``dest`` (which must not exist): cached base and system, then the runtime."""
        check_host(disk=disk_tools)
        if dest.exists():
            raise UserError(f"{dest} already exists")
        mirrors = self.mirrors()
        say(f"Debian mirror: {mirrors.archive} (from {mirrors.source}); security: {mirrors.security}")
        check_mirror(mirrors.archive)
        kubelet, note = self.kubelet_decision()
        say(("Kubelet: " if kubelet else "WARNING: ") + note)
        info = TreeInfo(dest, "", "", kubelet, note, self.packages, mirrors)
        t0 = time.monotonic()
        with self._locked():
            system, moved = self.system_tarball(mirrors, info, dest)
            if not moved:
                with step("Unpacking the provisioned tree"):
                    unpack(system, dest)
        with step(f"Installing the kubeseed runtime at {RUNTIME_PATH} (provision.sh runtime)"):
            install_runtime(dest, self.script_path)
        info.timings["tree"] = time.monotonic() - t0
        return info

    def build_image(self, out: Path) -> ImageInfo:
        """The raw disk image ``out`` with ``<stem>.vmlinuz`` and ``<stem>.initrd`` beside it."""
        check_host(disk=True)
        out = out.resolve()
        stem = out.with_suffix("")
        kernel_out, initrd_out = stem.with_name(stem.name + ".vmlinuz"), stem.with_name(stem.name + ".initrd")
        temps = [p.with_name(p.name + ".tmp") for p in (out, kernel_out, initrd_out)]
        t0 = time.monotonic()
        try:
            with self.workdir("image") as work:
                tree = work / "tree"
                info = self.build_tree(tree, disk_tools=True)
                kernel, initrd = boot_files(tree)
                write_boot_config(tree)
                used = tree_bytes(tree)
                size = self.opts.size or default_fs_size(used)
                if size < used * 1.1:
                    raise UserError(f"--size {size >> 20} MiB is too small for {used >> 20} MiB of files")
                make_private_dir(out.parent)
                gib = size / (1 << 30)
                with step(f"Writing the disk image (MBR, ext4 '{ROOT_LABEL}' by mke2fs -d, {gib:.1f} GiB)"):
                    make_disk(tree, temps[0], size, self._log("disk"))
                shutil.copyfile(kernel, temps[1])
                shutil.copyfile(initrd, temps[2])
            for tmp, final in zip(temps, (out, kernel_out, initrd_out)):
                os.replace(tmp, final)
        finally:  # a failed build leaves nothing beside --out
            for tmp in temps:
                tmp.unlink(missing_ok=True)
        info.timings["image"] = time.monotonic() - t0
        return ImageInfo(out, kernel_out, initrd_out, KERNEL_CMDLINE, out.stat().st_size, info)


HOSTS = """127.0.0.1\tlocalhost
::1\tlocalhost ip6-localhost ip6-loopback
ff02::1\tip6-allnodes
ff02::2\tip6-allrouters
"""


def finish_tree(tree: Path) -> None:
    """Undo what debootstrap copied from the build machine (its host name, hosts, resolver)."""
    (tree / "etc/hostname").write_text("localhost\n")
    (tree / "etc/hosts").write_text(HOSTS)
    resolv = tree / "etc/resolv.conf"
    if resolv.is_symlink() or resolv.exists():
        resolv.unlink()
    shutil.rmtree(tree / BUILD_DIR.lstrip("/"), ignore_errors=True)


def install_runtime(tree: Path, script: Path) -> None:
    """``provision.sh runtime`` in the tree (chroot: it only copies a file and runs it with --version)."""
    build = tree / BUILD_DIR.lstrip("/")
    build.mkdir(parents=True, exist_ok=True)
    try:
        shutil.copyfile(script, build / "provision.sh")
        (build / "kubeseed-runtime.pyz").write_bytes(cached_zipapp(None))
        env = {
            "KUBESEED_IN_CHROOT": "1",
            "KUBESEED_RUNTIME": f"{BUILD_DIR}/kubeseed-runtime.pyz",
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        }
        r = subprocess.run(
            ["chroot", str(tree), "/bin/sh", f"{BUILD_DIR}/provision.sh", "runtime"],
            capture_output=True,
            text=True,
            env=env,
            stdin=subprocess.DEVNULL,
        )
        if r.returncode != 0:
            raise BuildError(f"provision.sh runtime failed (exit {r.returncode}): {r.stderr.strip()}")
    finally:
        shutil.rmtree(build, ignore_errors=True)
