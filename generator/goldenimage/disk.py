"""The raw disk: boot files and GRUB configuration in the tree, sizes, the MBR and ext4 by mke2fs -d, GRUB for
BIOS written into the gap."""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import tempfile
from pathlib import Path

from ..errors import UserError, shown
from . import BuildError
from .proc import run

ROOT_LABEL = "kubeseed-root"
PART_START = 1 << 20  # the root partition starts at 1 MiB; GRUB's core image lives in the gap before it
SECTOR = 512
GRUB_DIR = Path("/usr/lib/grub/i386-pc")
DISK_TOOLS = {"mke2fs": "e2fsprogs", "sfdisk": "fdisk", "grub-mkimage": "grub-common"}

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


def parse_size(text: str) -> int:
    m = re.fullmatch(r"(\d+)([KMGT]?)(i?B)?", text.strip(), re.I)
    if not m:
        raise UserError(f"--size: {shown(text)} is not a size like 4G or 2048M")
    return int(m.group(1)) * 1024 ** " KMGT".index((m.group(2) or " ").upper())


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
