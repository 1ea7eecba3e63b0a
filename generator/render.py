"""Encode a node plan as cloud-init user-data or an Ignition 3.3.0 config."""

from __future__ import annotations

import base64
import json
import re
import struct
import urllib.parse
import zlib
from functools import lru_cache
from typing import Any

import yaml

from kubeseed.runtime.config import RUNTIME_PATH

from .plan import NodePlan

FORMATS = ("cloud-init", "ignition")
IGNITION_VERSION = "3.3.0"
FIRSTBOOT_UNIT = "kubeseed-firstboot.service"


_PACKED = re.compile(rb"[A-Za-z0-9+/]{4096,}={0,2}")  # base64 of packed data (the runtime zipapp)
_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\x03"  # as zlib writes it: no mtime, no name, level 9, Unix


def gzip_bytes(data: bytes) -> bytes:
    """gzip with a zero timestamp and no file name, so equal input gives equal bytes. Long base64 runs (packed
    data, where matches are rare) are deflated apart from the text around them, each part with the smaller of
    zlib's default and its Huffman-leaning strategy (Z_FILTERED): one gzip member, each part its own blocks."""
    cuts = sorted({0, len(data), *(i for m in _PACKED.finditer(data) for i in m.span())})
    parts = [data[a:b] for a, b in zip(cuts, cuts[1:])] or [b""]
    body = b"".join(_deflate(part, last=i == len(parts) - 1) for i, part in enumerate(parts))
    return _GZIP_HEADER + body + struct.pack("<II", zlib.crc32(data), len(data) & 0xFFFFFFFF)


def _deflate(data: bytes, last: bool) -> bytes:
    """Raw deflate blocks for ``data``; unless ``last``, ended by a sync flush (byte-aligned, not final), so the
    next part's blocks can follow."""
    best = b""
    for strategy in (zlib.Z_DEFAULT_STRATEGY, zlib.Z_FILTERED):
        z = zlib.compressobj(9, zlib.DEFLATED, -15, 9, strategy)
        out = z.compress(data) + z.flush(zlib.Z_FINISH if last else zlib.Z_SYNC_FLUSH)
        if not best or len(out) < len(best):
            best = out
    return best


class _LiteralDumper(yaml.SafeDumper):
    """Multi-line strings as ``|`` blocks: readable and smaller than quoted scalars."""


class _FastLiteralDumper(getattr(yaml, "CSafeDumper", yaml.SafeDumper)):  # type: ignore[misc]
    """The same with libyaml's emitter where PyYAML has it (about 6x faster; a test checks equal bytes)."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_LiteralDumper.add_representer(str, _str)
_FastLiteralDumper.add_representer(str, _str)


def dump_cloud_config(doc: dict[str, Any], dumper: type = _FastLiteralDumper) -> bytes:
    body = yaml.dump(doc, Dumper=dumper, sort_keys=False, default_flow_style=False, width=1 << 20)
    return ("#cloud-config\n" + body).encode()


# What keeps text from travelling verbatim: a control character but tab and line feed, or a line ending in white
# space (str.isspace, which is what \s matches in a str pattern)
_NOT_VERBATIM = re.compile(r"[\x00-\x08\x0b-\x1f]|[^\S\n](?=\n|\Z)")


def _as_text(data: bytes) -> str | None:
    """``data`` as text if it can travel in YAML/JSON verbatim, else None."""
    try:
        text = data.decode()
    except UnicodeDecodeError:
        return None
    return None if _NOT_VERBATIM.search(text) else text


def _write_file_content(content: bytes) -> dict[str, str]:
    """A write_files entry's ``encoding`` and ``content`` for ``content``: the smallest of verbatim text, gz+b64 and
    b64 (no gzip over what is packed already: the runtime)."""
    gz = gzip_bytes(content)
    encoding = "gz+b64" if len(gz) < len(content) else "b64"
    packed = base64.b64encode(gz if encoding == "gz+b64" else content).decode()
    text = _as_text(content)
    if text is not None and len(text) <= len(packed):
        return {"content": text}
    return {"encoding": encoding, "content": packed}


# The runtime zipapp is the same bytes in every payload of its role: each renderer encodes it once per process
# (a deflate that never pays off on bzip2 data, base64, percent-encoding) and reuses that, not just the bytes.
_runtime_write_file_content = lru_cache(maxsize=4)(_write_file_content)


def cloud_config(plan: NodePlan) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    if plan.hostname:
        doc["hostname"] = plan.hostname
        doc["preserve_hostname"] = False
    if plan.users:
        users: list[Any] = ["default"]
        for u in plan.users:
            entry: dict[str, Any] = {"name": u.name, "shell": "/bin/bash"}
            if u.groups:
                entry["groups"] = ",".join(u.groups)
            if u.ssh_authorized_keys:
                entry["ssh_authorized_keys"] = list(u.ssh_authorized_keys)
            if u.password_hash:
                entry["passwd"] = u.password_hash
                entry["lock_passwd"] = False
            users.append(entry)
        doc["users"] = users
    files = []
    for f in plan.files:
        entry = {"path": f.path}
        encode = _runtime_write_file_content if f.path == RUNTIME_PATH else _write_file_content
        entry.update(encode(f.content))
        if f.owner != "root:root":  # cloud-init's default owner
            entry["owner"] = f.owner
        entry["permissions"] = f"0{f.mode:o}"
        files.append(entry)
    for unit in plan.units:
        files.append({"path": f"/etc/systemd/system/{unit.name}", "content": unit.content, "permissions": "0644"})
    doc["write_files"] = files
    runcmd: list[Any] = []
    if plan.units:
        runcmd.append(["systemctl", "daemon-reload"])
        runcmd += [["systemctl", "enable", "--now", unit.name] for unit in plan.units if unit.enabled]
    runcmd.append(list(plan.command))
    doc["runcmd"] = runcmd
    return doc


def render_cloud_init(plan: NodePlan) -> bytes:
    return dump_cloud_config(cloud_config(plan))


def _data_url(content: bytes) -> dict[str, Any]:
    """The smallest of a percent-encoded, a base64 and a gzip+base64 data URL."""
    plain = "data:," + urllib.parse.quote(content, safe="")
    gz = gzip_bytes(content)
    zipped = len(gz) < len(content)  # no gzip over what is packed already (the runtime)
    packed = "data:;base64," + base64.b64encode(gz if zipped else content).decode()
    if len(plain) <= len(packed):
        return {"source": plain}
    return {"source": packed, "compression": "gzip"} if zipped else {"source": packed}


_runtime_data_url = lru_cache(maxsize=4)(_data_url)  # as _runtime_write_file_content


def ignition_config(plan: NodePlan) -> dict[str, Any]:
    from .templating import render_template  # Jinja2: of all payloads, only Ignition configs need it

    files = []
    if plan.hostname:
        files.append(
            {
                "path": "/etc/hostname",
                "mode": 0o644,
                "overwrite": True,
                "contents": _data_url(f"{plan.hostname}\n".encode()),
            }
        )
    for f in plan.files:
        user, _, group = f.owner.partition(":")
        files.append(
            {
                "path": f.path,
                "mode": f.mode,
                "overwrite": True,
                "user": {"name": user},
                "group": {"name": group or user},
                "contents": dict(_runtime_data_url(f.content) if f.path == RUNTIME_PATH else _data_url(f.content)),
            }
        )
    firstboot = render_template("kubeseed-firstboot.service.j2", role=plan.role, command=" ".join(plan.command))
    units = [{"name": u.name, "enabled": u.enabled, "contents": u.content} for u in plan.units]
    units.append({"name": FIRSTBOOT_UNIT, "enabled": True, "contents": firstboot})
    doc: dict[str, Any] = {"ignition": {"version": IGNITION_VERSION}}
    if plan.users:
        users = []
        for u in plan.users:
            entry: dict[str, Any] = {"name": u.name}
            if u.ssh_authorized_keys:
                entry["sshAuthorizedKeys"] = list(u.ssh_authorized_keys)
            if u.password_hash:
                entry["passwordHash"] = u.password_hash
            if u.groups:
                entry["groups"] = list(u.groups)
            entry["shell"] = "/bin/bash"
            users.append(entry)
        doc["passwd"] = {"users": users}
    doc["storage"] = {"files": files}
    doc["systemd"] = {"units": units}
    return doc


def render_ignition(plan: NodePlan) -> bytes:
    return (json.dumps(ignition_config(plan), separators=(",", ":"), sort_keys=False) + "\n").encode()


def render(plan: NodePlan, fmt: str) -> bytes:
    if fmt == "cloud-init":
        return render_cloud_init(plan)
    return render_ignition(plan)
