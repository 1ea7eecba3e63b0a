"""Running commands for the build: logged subprocesses, systemd-nspawn, tarballs of trees, removing work trees."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from ..console import say
from . import BuildError


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
