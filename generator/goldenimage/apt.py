"""The Debian mirrors: the build machine's apt sources (deb822 and one-line), reachability of the mirror and of
pkgs.k8s.io, and the image's own apt sources."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError
from . import BuildError

SUITE = "bookworm"
K8S_REPO = "https://pkgs.k8s.io/core:/stable:/v{minor}/deb/"
DEFAULT_SECURITY = "http://deb.debian.org/debian-security"


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
    import urllib.request  # here, not at the top: every kubeseed command would pay its start-up time

    with urllib.request.urlopen(url, timeout=timeout) as r:
        r.read(1)


def check_mirror(mirror: str, timeout: float = 20) -> None:
    import urllib.error

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
