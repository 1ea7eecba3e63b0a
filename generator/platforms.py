"""User-data size limits per platform (bytes as delivered)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .errors import UserError


@dataclass(frozen=True)
class Platform:
    name: str
    title: str
    limit: int | None  # bytes of user-data as delivered; None = no limit we know of
    decodes_gzip: bool  # does the machine accept gzip-compressed user-data from this platform


PLATFORMS = {
    p.name: p
    for p in (
        Platform("aws", "AWS EC2", 16_384, True),
        Platform("hetzner", "Hetzner Cloud", 32_768, True),
        Platform("azure", "Azure custom data", 65_535, True),
        Platform("openstack", "OpenStack (65,535 bytes of base64)", 49_149, True),
        Platform("digitalocean", "DigitalOcean", 65_536, False),
        Platform("gce", "GCE metadata value", 262_144, True),
        Platform("generic", "generic", None, True),
    )
}


def check_size(platform: str, size: int, gzipped: bool, fmt: str, preinstalled: Callable[[], int] | None = None) -> str:
    """Return a one-line size report, or raise UserError when the payload exceeds the platform's limit, naming
    what fits: ``preinstalled()`` is the size of the same payload for a kubeseed golden image (None: it is one)."""
    p = PLATFORMS[platform]
    if gzipped and not p.decodes_gzip:
        raise UserError(f"--gzip: {p.title} does not decode gzip user-data; render without --gzip")
    if p.limit is None:
        return f"{size:,} bytes"
    if size > p.limit:
        fixes = []
        if not gzipped and p.decodes_gzip and fmt == "cloud-init":
            fixes.append("--gzip")
        small = preinstalled() if preinstalled else None
        if small is not None and small <= p.limit:
            fixes.append(f"--runtime preinstalled on a kubeseed golden image (`kubeseed image build`; {small:,} bytes)")
        larger = [
            f"{q.name} ({q.limit:,})"
            for q in sorted(PLATFORMS.values(), key=lambda q: q.limit or 0)
            if q.limit is not None and q.limit >= size and (q.decodes_gzip or not gzipped)
        ]
        if larger:
            fixes.append(f"a platform with a larger limit: --platform {', '.join(larger)}")
        hint = f"; use {', or '.join(fixes)}" if fixes else ""
        raise UserError(f"payload is {size:,} bytes, over the {p.title} user-data limit of {p.limit:,} bytes{hint}")
    return f"{size:,} bytes (fits {p.title}: {p.limit:,})"
