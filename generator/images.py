"""Golden images: a bootable Debian 12 (bookworm, amd64) raw disk with the kubeseed runtime baked in.

``kubeseed image build --out images/out/node.img [--role node|master] [--cache DIR]`` (also
``python -m kubeseed.generator.images build ...``) makes it without loop devices or mounts on the host:

1. **base**: ``debootstrap --variant=minbase`` into a directory, from the Debian mirror this machine's apt already
   uses (run in a private mount namespace: its /proc and /sys mounts never reach the host). Cached as a tarball
   keyed by suite, architecture, variant and mirror.
2. **system**: ``images/provision.sh system`` and ``cleanup`` inside that tree under ``systemd-nspawn`` (no boot),
   the very script the Packer template (``images/kubeseed.pkr.hcl``) runs on its build VMs. Cached as a tarball
   keyed by the base, the script's bytes (its package list among them), the Kubernetes minor, the mirrors and
   whether the kubelet could be had.
3. **runtime**: ``images/provision.sh runtime`` installs the full runtime zipapp (``build_zipapp()``) at
   ``/opt/kubeseed/kubeseed-runtime.pyz``, mode 0755. Never cached: it is a few kilobytes.
4. **disk**: an MBR partition table on a sparse file (``sfdisk``), the root file system written straight into
   the partition by ``mke2fs -d TREE -E offset=...`` (no mount), GRUB for BIOS in the MBR gap
   (``grub-mkimage``; no ``grub-install``, which wants a device), and the kernel and initrd beside the image
   (``node.vmlinuz``, ``node.initrd``) for direct boot (``qemu -kernel -initrd -append root=LABEL=kubeseed-root``).

The kubelet comes from the Kubernetes package repository (pkgs.k8s.io) only when that is reachable; when it is
not, the build says so plainly and the image has no kubelet. Nothing is faked in the image.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from kubeseed.runtime.config import RUNTIME_PATH

from .errors import UserError
from .zipapp import build_zipapp

SUITE = "bookworm"
ARCH = "amd64"
VARIANT = "minbase"
ROLES = ("node", "master")
KUBELET_MODES = ("auto", "skip", "require")
DEFAULT_MINOR = "1.35"
ROOT_LABEL = "kubeseed-root"
PART_START = 1 << 20  # the root partition starts at 1 MiB; GRUB's core image lives in the gap before it
SECTOR = 512
K8S_REPO = "https://pkgs.k8s.io/core:/stable:/v{minor}/deb/"
DEFAULT_SECURITY = "http://deb.debian.org/debian-security"
BUILD_DIR = "/var/tmp/kubeseed-build"  # inside the tree; nspawn mounts a tmpfs on /tmp
GRUB_DIR = Path("/usr/lib/grub/i386-pc")
CACHE_ENV = "KUBESEED_IMAGE_CACHE"
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
DISK_TOOLS = {"mke2fs": "e2fsprogs", "sfdisk": "fdisk", "grub-mkimage": "grub-common"}


class BuildError(UserError):
    """A build step failed (mirror unreachable, a command failed): one message with the fix, exit code 1."""

    exit_code = 1


def default_cache() -> Path:
    """$KUBESEED_IMAGE_CACHE, else $XDG_CACHE_HOME/kubeseed/images, else ~/.cache/kubeseed/images."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "kubeseed" / "images"


def _tty() -> bool:
    return sys.stderr.isatty() and os.environ.get("NO_COLOR") is None


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@contextmanager
def step(message: str) -> Iterator[None]:
    """``message...`` when a long step starts, ``message... [done] 12.3 s`` when it ends (stderr)."""
    say(f"{message}...")
    t0 = time.monotonic()
    yield
    done = "\033[32m[done]\033[0m" if _tty() else "[done]"
    say(f"{message}... {done} {time.monotonic() - t0:.1f} s")


# -- inputs -------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Mirrors:
    """The Debian archive and security mirrors, and where they were read from."""

    archive: str
    security: str
    source: str


def _deb822_stanzas(text: str) -> list[dict[str, str]]:
    stanzas: list[dict[str, str]] = []
    current: dict[str, str] = {}
    key = ""
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        if not line.strip():
            if current:
                stanzas.append(current)
            current, key = {}, ""
            continue
        if line[0] in " \t" and key:
            current[key] += " " + line.strip()
            continue
        k, sep, v = line.partition(":")
        if sep:
            key = k.strip().lower()
            current[key] = v.strip()
    if current:
        stanzas.append(current)
    return stanzas


def _entries(apt_dir: Path) -> list[tuple[str, list[str], str]]:
    """(uri, suites, file) of every enabled ``deb`` source of the machine's apt."""
    out: list[tuple[str, list[str], str]] = []
    for f in sorted((apt_dir / "sources.list.d").glob("*.sources")):
        for s in _deb822_stanzas(f.read_text(errors="replace")):
            if "deb" not in s.get("types", "").split() or s.get("enabled", "yes").lower() == "no":
                continue
            for uri in s.get("uris", "").split():
                out.append((uri.rstrip("/"), s.get("suites", "").split(), str(f)))
    lists = [apt_dir / "sources.list", *sorted((apt_dir / "sources.list.d").glob("*.list"))]
    for f in lists:
        if not f.is_file():
            continue
        for line in f.read_text(errors="replace").splitlines():
            words = re.sub(r"\[[^]]*\]", "", line.split("#", 1)[0]).split()  # no [options]
            if len(words) >= 3 and words[0] == "deb":
                out.append((words[1].rstrip("/"), [words[2]], str(f)))
    return out


def host_mirrors(apt_dir: Path = Path("/etc/apt")) -> Mirrors:
    """The Debian mirror this machine's apt already uses (archive and security), from its sources."""
    entries = _entries(apt_dir)
    archive = next(((u, f) for u, suites, f in entries if any(not s.endswith("-security") for s in suites)), None)
    if archive is None:
        raise UserError(
            f"no Debian mirror found in {apt_dir}/sources.list.d/*.sources or {apt_dir}/sources.list; "
            "give one with --mirror http://deb.debian.org/debian"
        )
    security = next((u for u, suites, _ in entries if any(s.endswith("-security") for s in suites)), DEFAULT_SECURITY)
    return Mirrors(archive[0], security, archive[1])


def _fetch(url: str, timeout: float) -> None:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        r.read(1)


def check_mirror(mirror: str, timeout: float = 20) -> None:
    url = f"{mirror}/dists/{SUITE}/Release"
    try:
        _fetch(url, timeout)
    except urllib.error.HTTPError as e:
        raise BuildError(
            f"the mirror {mirror} has no Debian {SUITE} ({url}: HTTP {e.code}); "
            "give a Debian mirror with --mirror http://deb.debian.org/debian"
        ) from None
    except (OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        raise BuildError(
            f"the Debian mirror {mirror} is unreachable ({url}: {reason}); check the network or proxy, "
            "or give another mirror with --mirror URL"
        ) from None


def kubelet_reachable(minor: str, timeout: float = 10) -> tuple[bool, str]:
    """Whether pkgs.k8s.io's stream for ``minor`` answers from here, and why not."""
    repo = K8S_REPO.format(minor=minor)
    try:
        _fetch(repo + "Release.key", timeout)
        return True, ""
    except (OSError, ValueError) as e:
        return False, str(getattr(e, "reason", e))


def find_provision_script(given: str | None = None) -> Path:
    """images/provision.sh: --provision, else the one beside the sources (a checkout) or installed with them
    (kubeseed.images in the wheel), else ./images/provision.sh."""
    candidates = [Path(given)] if given else []
    candidates += [Path(__file__).resolve().parents[1] / "images" / "provision.sh", Path("images/provision.sh")]
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


def parse_size(text: str) -> int:
    m = re.fullmatch(r"(\d+)([KMGT]?)(i?B)?", text.strip(), re.I)
    if not m:
        raise UserError(f'--size: "{text}" is not a size like 4G or 2048M')
    return int(m.group(1)) * 1024 ** " KMGT".index((m.group(2) or " ").upper())


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
        self.cache.mkdir(parents=True, exist_ok=True)
        with open(self.cache / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    @contextmanager
    def workdir(self, name: str) -> Iterator[Path]:
        work = self.cache / "work"
        work.mkdir(parents=True, exist_ok=True)
        path = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=work))
        try:
            yield path
        finally:
            remove_tree(path)

    def _log(self, name: str) -> Path:
        logs = self.cache / "logs"
        logs.mkdir(parents=True, exist_ok=True)
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
            debs.mkdir(exist_ok=True)
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
                out.parent.mkdir(parents=True, exist_ok=True)
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


# -- commands -----------------------------------------------------------------------------------------------------
def run(
    cmd: list[str], log: Path, what: str, echo: str = "", env: dict[str, str] | None = None, append: bool = False
) -> None:
    """Run ``cmd``, its output to ``log``; lines matching ``echo`` also to stderr. On failure: the tail and the fix."""
    tail: list[str] = []
    pattern = re.compile(echo) if echo else None
    with open(log, "a" if append else "w") as f:
        f.write(f"$ {' '.join(cmd)}\n")
        f.flush()
        try:
            p = subprocess.Popen(
                cmd,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                text=True,
                errors="replace",
                env={**os.environ, **(env or {})},
            )
        except OSError as e:
            raise BuildError(f"{what}: cannot run {cmd[0]}: {e.strerror}") from None
        assert p.stdout is not None
        for line in p.stdout:
            f.write(line)
            tail = (tail + [line.rstrip()])[-25:]
            if pattern and pattern.search(line):
                say("  " + line.rstrip())
        rc = p.wait()
    if rc != 0:
        shown = "\n".join("    " + t for t in tail)
        raise BuildError(f"{what} failed (exit {rc}); the last lines:\n{shown}\n  whole log: {log}")


def nspawn_run(tree: Path, cmd: list[str], env: dict[str, str], log: Path, append: bool = False) -> None:
    """A command inside ``tree`` under systemd-nspawn (its own /proc, /sys, /dev; the host's network; no boot)."""
    spawn = ["systemd-nspawn", "--quiet", "--register=no", "--keep-unit", "--resolv-conf=replace-host"]
    spawn += ["--directory", str(tree), *(f"--setenv={k}={v}" for k, v in env.items()), *cmd]
    run(spawn, log, f"provision.sh {cmd[-1]} (in systemd-nspawn)", echo=r"^provision: ", append=append)


def pack(tree: Path, tarball: Path) -> None:
    tmp = tarball.with_name(tarball.name + ".tmp")
    cmd = ["tar", "--numeric-owner", "--xattrs", "--xattrs-include=*", "--acls", "-I", "zstd -T0 -3 -q"]
    _quiet(cmd + ["-cf", str(tmp), "-C", str(tree), "."], "tar (saving the tree)")
    os.replace(tmp, tarball)


def unpack(tarball: Path, dest: Path) -> None:
    dest.mkdir(parents=True)
    cmd = ["tar", "--numeric-owner", "--xattrs", "--xattrs-include=*", "--acls", "-I", "zstd -T0 -q", "-xpf"]
    _quiet(cmd + [str(tarball), "-C", str(dest)], f"tar (unpacking {tarball.name})")


def _quiet(cmd: list[str], what: str) -> None:
    r = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if r.returncode != 0:
        raise BuildError(f"{what} failed (exit {r.returncode}): {r.stderr.strip()[-2000:]}")


def _mounted_under(path: Path) -> list[str]:
    prefix = str(path.resolve()) + "/"
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    return [p for p in points if (p + "/").startswith(prefix)]


def remove_tree(path: Path) -> None:
    """Delete a work tree, refusing when anything is mounted inside it (nothing should be)."""
    if not path.exists():
        return
    mounted = _mounted_under(path)
    if mounted:
        raise BuildError(f"not removing {path}: {', '.join(mounted)} is mounted inside it; unmount it first")
    shutil.rmtree(path)


def write_apt_sources(tree: Path, mirrors: Mirrors) -> None:
    """The image's apt sources: bookworm, bookworm-updates and bookworm-security, deb822."""
    (tree / "etc/apt/sources.list").unlink(missing_ok=True)
    keyring = "/usr/share/keyrings/debian-archive-keyring.gpg"
    text = (
        f"Types: deb\nURIs: {mirrors.archive}\nSuites: {SUITE} {SUITE}-updates\nComponents: main\n"
        f"Signed-By: {keyring}\n\n"
        f"Types: deb\nURIs: {mirrors.security}\nSuites: {SUITE}-security\nComponents: main\nSigned-By: {keyring}\n"
    )
    (tree / "etc/apt/sources.list.d").mkdir(parents=True, exist_ok=True)
    (tree / "etc/apt/sources.list.d/debian.sources").write_text(text)


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
        (build / "kubeseed-runtime.pyz").write_bytes(build_zipapp(None))
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


# -- disk ---------------------------------------------------------------------------------------------------------
KERNEL_CMDLINE = f"root=LABEL={ROOT_LABEL} ro console=tty0 console=ttyS0,115200n8"
FSTAB = (
    "# kubeseed image: the root file system by label (cloud-init's growpart and resizefs grow it at first boot)\n"
    f"LABEL={ROOT_LABEL} / ext4 defaults,errors=remount-ro 0 1\n"
)
GRUB_CFG = f"""# kubeseed image: GRUB for BIOS, written by kubeseed image build (no grub-install, no update-grub)
serial --unit=0 --speed=115200
terminal_input console serial
terminal_output console serial
set default=0
set timeout=1
menuentry "Debian GNU/Linux 12 (kubeseed)" {{
    linux /vmlinuz {KERNEL_CMDLINE}
    initrd /initrd.img
}}
"""


def boot_files(tree: Path) -> tuple[Path, Path]:
    """The kernel and initrd the tree's /vmlinuz and /initrd.img point at."""
    found = []
    for link in ("vmlinuz", "initrd.img"):
        p = tree / link
        if not p.is_symlink():
            raise BuildError(f"/{link} is missing in the image tree: did linux-image-amd64 install?")
        target = tree / os.readlink(p).lstrip("/")
        if not target.is_file():
            raise BuildError(f"/{link} points at {os.readlink(p)}, which is not in the image tree")
        found.append(target)
    return found[0], found[1]


def write_boot_config(tree: Path) -> None:
    (tree / "etc/fstab").write_text(FSTAB)
    grub = tree / "boot/grub"
    mods = grub / "i386-pc"
    mods.mkdir(parents=True, exist_ok=True)
    for f in GRUB_DIR.iterdir():
        if f.suffix in (".mod", ".lst"):
            shutil.copyfile(f, mods / f.name)
    (grub / "grub.cfg").write_text(GRUB_CFG)


def tree_bytes(tree: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(tree):
        for name in files:
            st = os.lstat(os.path.join(dirpath, name))
            total += st.st_blocks * 512
    return total


def default_fs_size(used: int) -> int:
    """Room for the files plus 1 GiB (images, logs), at least 2 GiB, in whole 64 MiB; grown at first boot."""
    step_ = 64 << 20
    return max(2 << 30, -(-(int(used * 1.1) + (1 << 30)) // step_) * step_)


def make_disk(tree: Path, disk: Path, fs_size: int, log: Path) -> None:
    """MBR with one bootable Linux partition at 1 MiB; ext4 from the tree written into it; GRUB in the gap."""
    disk.unlink(missing_ok=True)
    with open(disk, "wb") as f:
        f.truncate(PART_START + fs_size)
    table = f"label: dos\nstart={PART_START // SECTOR}, size={fs_size // SECTOR}, type=83, bootable\n"
    r = subprocess.run(
        ["sfdisk", "--quiet", "--no-reread", "--no-tell-kernel", str(disk)], input=table, capture_output=True, text=True
    )
    if r.returncode != 0:
        raise BuildError(f"sfdisk failed: {r.stderr.strip()}")
    mke2fs = ["mke2fs", "-q", "-F", "-t", "ext4", "-b", "4096", "-L", ROOT_LABEL, "-E", f"offset={PART_START}"]
    run(mke2fs + ["-d", str(tree), str(disk), str(fs_size // 4096)], log, "mke2fs -d")
    install_grub(disk, log)


def install_grub(disk: Path, log: Path) -> None:
    """GRUB for BIOS without grub-install: boot.img's code in the MBR (the partition table stays), the core image
    in sectors 1.. of the gap. grub-mkimage already points core's first sector at the rest (from sector 2) and
    boot.img at sector 1, so nothing needs patching; core finds /boot/grub on the first partition."""
    with tempfile.TemporaryDirectory() as tmp:
        core = Path(tmp) / "core.img"
        cmd = ["grub-mkimage", "-O", "i386-pc", "-o", str(core), "-p", "(hd0,msdos1)/boot/grub"]
        run(cmd + ["biosdisk", "part_msdos", "ext2"], log, "grub-mkimage", append=True)
        core_bytes = core.read_bytes()
    if SECTOR + len(core_bytes) > PART_START:
        raise BuildError(f"GRUB's core image ({len(core_bytes)} bytes) does not fit before the partition")
    start, length = struct.unpack_from("<QH", core_bytes, SECTOR - 12)
    if start != 2 or length != -(-len(core_bytes) // SECTOR) - 1:
        raise BuildError(f"unexpected GRUB core image layout (blocklist start {start}, length {length})")
    boot = (GRUB_DIR / "boot.img").read_bytes()
    with open(disk, "r+b") as f:
        f.seek(0)
        f.write(boot[:440])  # code only: the disk signature and partition table from sfdisk stay
        f.seek(SECTOR)
        f.write(core_bytes)


# -- command line -------------------------------------------------------------------------------------------------
def _minor(version: str) -> str:
    m = re.fullmatch(r"v?(1\.\d+)(\.\d+)?", version)
    if not m:
        raise UserError(f'--kubernetes-version: "{version}" is not a version like v1.35')
    return m.group(1)


def cmd_image_build(args: argparse.Namespace) -> int:
    opts = Options(
        role=args.role,
        cache=Path(args.cache) if args.cache else default_cache(),
        mirror=args.mirror,
        kubelet=args.kubelet,
        kubernetes_minor=_minor(args.kubernetes_version),
        provision=args.provision,
        size=parse_size(args.size) if args.size else None,
        rebuild=args.rebuild,
    )
    try:
        info = Builder(opts).build_image(Path(args.out))
    except BuildError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    t = info.tree
    print(f"Image: {info.image} ({info.size / (1 << 30):.1f} GiB raw, sparse; MBR, GRUB for BIOS, ext4 root)")
    print(f"Kernel: {info.kernel}\nInitrd: {info.initrd}")
    print(f"Runtime: {RUNTIME_PATH} (full runtime, 0755); role: {opts.role}")
    print(("Kubelet: " if t.kubelet else "") + t.kubelet_note)
    print("Boot it (direct kernel boot; or drop -kernel, -initrd and -append to boot the disk's own GRUB):")
    print(f"  qemu-system-x86_64 -m 2048 -nographic -drive file={info.image},format=raw,if=virtio \\")
    print(f"    -kernel {info.kernel} -initrd {info.initrd} -append '{info.cmdline}'")
    return 0


def cmd_image_runtime(args: argparse.Namespace) -> int:
    """The full runtime zipapp, for the Packer template's file provisioner."""
    from .fsutil import atomic_write

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, build_zipapp(None), 0o755)
    print(f"{out}: the full kubeseed runtime ({out.stat().st_size:,} bytes) for images/kubeseed.pkr.hcl")
    return 0


def _add_actions(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    b = sub.add_parser(
        "build",
        help="build a bootable Debian 12 raw disk image (debootstrap, mke2fs -d; root, no loop devices)",
        description="Build a bootable Debian 12 (bookworm, amd64) raw disk image with the kubeseed runtime at "
        f"{RUNTIME_PATH}, plus its kernel and initrd beside it for direct boot. Needs root.",
    )
    b.add_argument("--out", "-o", required=True, help="the raw image to write, e.g. images/out/node.img")
    b.add_argument("--role", default="node", choices=ROLES, help="node (default) or master (adds kubectl)")
    b.add_argument("--cache", help=f"cache of base trees (default ${CACHE_ENV} or ~/.cache/kubeseed/images)")
    b.add_argument("--mirror", help="Debian mirror (default: the one this machine's apt uses)")
    b.add_argument(
        "--kubelet",
        default="auto",
        choices=KUBELET_MODES,
        help="auto: from pkgs.k8s.io when reachable (default); skip; require: fail without it",
    )
    b.add_argument(
        "--kubernetes-version", default=f"v{DEFAULT_MINOR}", help=f"the kubelet's stream (default v{DEFAULT_MINOR})"
    )
    b.add_argument("--size", help="root file system size, e.g. 4G (default: the files + 1 GiB, at least 2 GiB)")
    b.add_argument("--rebuild", action="store_true", help="ignore the cached trees and build them again")
    b.add_argument("--provision", metavar="FILE", help="the provisioning script (default images/provision.sh)")
    b.set_defaults(func=cmd_image_build)
    r = sub.add_parser("runtime", help="write the full runtime zipapp (for the Packer template)")
    r.add_argument(
        "--out", "-o", default="images/out/kubeseed-runtime.pyz", help="default images/out/kubeseed-runtime.pyz"
    )
    r.set_defaults(func=cmd_image_runtime)


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """``image build`` and ``image runtime`` under the kubeseed command line's ``subparsers``; each sets ``func``
    (Namespace -> exit code). A failed build prints its error and returns 1 itself; bad options raise UserError."""
    p = subparsers.add_parser("image", help="golden images: a Debian 12 disk image with the runtime baked in")
    _add_actions(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m kubeseed.generator.images build ...`` is ``kubeseed image build ...``."""
    from .cli import main as kubeseed_main

    return kubeseed_main(["image", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
