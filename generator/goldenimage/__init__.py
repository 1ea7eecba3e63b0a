"""Golden images: a bootable Debian 12 (bookworm, amd64) raw disk with the kubeseed runtime baked in.

``kubeseed image build --out images/out/node.img [--role node|master] [--cache DIR]`` (also
``python -m kubeseed.generator.imagecli build ...``) makes it without loop devices or mounts on the host:

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

The modules: ``apt`` (mirrors, apt sources, reachability), ``proc`` (running commands, systemd-nspawn, tarballs,
work trees), ``disk`` (boot files, GRUB, the raw disk), ``build`` (options, cache, the builder). The command line
is ``kubeseed.generator.imagecli``.
"""

from __future__ import annotations

from kubeseed.runtime.versions import DEFAULT

from ..errors import UserError

# The build's choices and defaults, here (not in ``build``) so that the command line's parser has them without
# loading the builder: every kubeseed command builds that parser.
ROLES = ("node", "master")
KUBELET_MODES = ("auto", "skip", "require")
DEFAULT_MINOR = DEFAULT[1:].rsplit(".", 1)[0]  # "1.35": the stream of the default Kubernetes version
CACHE_ENV = "KUBESEED_IMAGE_CACHE"


class BuildError(UserError):
    """A build step failed (mirror unreachable, a command failed): one message with the fix, exit code 3, apart
    from a UserError's 2 (bad options, not root, a missing tool) so that scripts can tell the two apart."""

    exit_code = 3
