"""The faster ways of rendering write the same bytes as the plain ones: libyaml's emitter where it is used, the
text check, the runtime's encodings worked out once, the CA pin worked out once."""

from __future__ import annotations

import copy
import random
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubeseed.generator.nodeconfig import config_text, node_config, to_doc
from kubeseed.generator.plan import build_plan
from kubeseed.generator.render import (
    _as_text,
    _data_url,
    _runtime_data_url,
    _runtime_write_file_content,
    _write_file_content,
    cloud_config,
    ignition_config,
    render,
)
from kubeseed.generator.secrets import generate_secrets, load
from kubeseed.generator.yamlfile import libyaml_writes_the_same, safe_dump
from kubeseed.runtime.config import RUNTIME_PATH
from kubeseed.runtime.tokens import ca_pin

WIDTHS = [20, 80, 1 << 16]
YAML_SPECIALS = [" ", ":", "#", "-", "'", '"', "\\", "?", "&", "*", "!", "|", ">", "%", "@", "`", "{", "}", "[", "]"]
WORDS = ["yes", "no", "null", "~", "1.5", "0x1F", "2001-12-14", "- a", "a: b", "", " lead", "trail ", "'", "#x"]


def python_dump(doc: Any, width: int) -> str:
    return yaml.dump(doc, Dumper=yaml.SafeDumper, sort_keys=False, default_flow_style=False, width=width)


def libyaml_dump(doc: Any, width: int) -> str:
    return yaml.dump(doc, Dumper=yaml.CSafeDumper, sort_keys=False, default_flow_style=False, width=width)


def any_char(rnd: random.Random) -> str:
    r = rnd.random()
    if r < 0.4:
        return chr(rnd.randint(32, 126))
    if r < 0.55:
        return rnd.choice(YAML_SPECIALS + ["\n", "\t"])
    if r < 0.65:
        return chr(rnd.randint(0, 31))
    if r < 0.8:
        return chr(rnd.randint(0x7F, 0x3000))
    while True:
        c = rnd.randint(0, 0x10FFFF)
        if not 0xD800 <= c <= 0xDFFF:
            return chr(c)


def ascii_line(rnd: random.Random, n: int) -> str:
    text = "".join(rnd.choice(YAML_SPECIALS) if rnd.random() < 0.3 else chr(rnd.randint(32, 126)) for _ in range(n))
    return rnd.choice(WORDS) if rnd.random() < 0.15 else text


def random_doc(rnd: random.Random) -> dict[str, Any]:
    """A document like kubeseed's (short printable keys, nested mappings and lists, scalars of every kind) with
    strings of any characters, one-line printable ASCII strings up to 400 characters, and long repeated ones."""

    def key() -> str:
        return ascii_line(rnd, rnd.randint(1, 40)) or "k"

    def value(depth: int) -> Any:
        r = rnd.random()
        if depth < 3 and r < 0.15:
            return {key(): value(depth + 1) for _ in range(rnd.randint(0, 3))}
        if depth < 3 and r < 0.25:
            return [value(depth + 1) for _ in range(rnd.randint(0, 3))]
        if r < 0.3:
            return rnd.choice([0, 7, -1, 1.5, True, False, None])
        if r < 0.6:
            return ascii_line(rnd, rnd.randint(0, 400))
        if r < 0.98:
            return "".join(any_char(rnd) for _ in range(rnd.randint(0, 60)))
        return ("".join(any_char(rnd) for _ in range(rnd.randint(1, 12))) + " ") * rnd.randint(100, 8000)

    return {key(): value(0) for _ in range(rnd.randint(1, 5))}


@pytest.mark.parametrize("seed", range(2))
def test_libyaml_writes_what_pyyaml_writes_where_it_is_used(seed: int) -> None:
    """The claim libyaml_writes_the_same makes, fuzzed; and safe_dump is PyYAML's safe_dump either way."""
    rnd = random.Random(seed)
    used = 0
    for _ in range(300):
        doc = random_doc(rnd)
        for width in WIDTHS:
            if libyaml_writes_the_same(doc, width):
                used += 1
                assert libyaml_dump(doc, width) == python_dump(doc, width), (doc, width)
            assert safe_dump(doc, width) == yaml.safe_dump(doc, sort_keys=False, default_flow_style=False, width=width)
    assert used > 300  # the fast path is taken for most documents


@pytest.mark.parametrize(
    "doc, width",
    [
        ({"k" * 100: "v"}, 1 << 16),  # a long key: libyaml may make it a "? " complex key
        ({"\u00e9t\u00e9": "v"}, 1 << 16),  # a key that is not ASCII
        ({"k": "\u2603" * 7000}, 1 << 16),  # escapes could reach the width: the two fold them differently
        ({"k": "a\nb " * 20}, 80),
        ({"k": "x"}, 80),
    ],
)
def test_what_libyaml_is_not_trusted_with(doc: dict[str, Any], width: int) -> None:
    assert libyaml_writes_the_same(doc, width) == (doc == {"k": "x"})


def test_the_node_config_text_is_pyyaml_s(full_cluster: Path) -> None:
    cluster, secrets = load(full_cluster)
    cluster.kubelet.extra_args.update({"node-labels": "z\u00fcrich=\u2603, 'x'", "v": "4", "odd": "#no: comment"})
    for role in ("master", "node"):
        cfg = node_config(cluster, secrets, role, f"{role}-1")
        assert config_text(cfg) == yaml.safe_dump(to_doc(cfg), sort_keys=False, default_flow_style=False, width=1 << 16)


def old_as_text(data: bytes) -> str | None:
    """_as_text as it was written first, character by character."""
    try:
        text = data.decode()
    except UnicodeDecodeError:
        return None
    if any(ord(c) < 32 and c not in "\n\t" for c in text) or any(line != line.rstrip() for line in text.split("\n")):
        return None
    return text


def test_the_text_check_is_the_character_by_character_one() -> None:
    rnd = random.Random(7)
    spaces = [c for c in map(chr, range(0x3001)) if c.isspace()] + ["\t", "\n", "\r", "x", "y", "\x00", "\x1f"]
    samples = [b"", b"\n", b"a\n", b"a \n", b"a\t", b"\ta", b"a\r\nb", b"\xff", "a\u00a0".encode(), "\u2028".encode()]
    for _ in range(3000):
        text = "".join(rnd.choice(spaces) if rnd.random() < 0.3 else chr(rnd.randint(32, 0x3000)) for _ in range(8))
        samples.append(text.encode("utf-8", "surrogatepass"))
    for data in samples:
        assert _as_text(data) == old_as_text(data), data


def test_the_runtime_is_encoded_once_and_each_payload_is_its_own(full_cluster: Path) -> None:
    cluster, secrets = load(full_cluster)
    plan = build_plan(cluster, secrets, "master", "cp-1")
    runtime = next(f.content for f in plan.files if f.path == RUNTIME_PATH)
    assert _runtime_write_file_content(runtime) == _write_file_content(runtime)
    assert _runtime_data_url(runtime) == _data_url(runtime)
    for fmt, make in (("cloud-init", cloud_config), ("ignition", ignition_config)):
        first = render(plan, fmt)
        doc = make(plan)
        pristine = copy.deepcopy(doc)
        for entry in doc["write_files"] if fmt == "cloud-init" else doc["storage"]["files"]:
            entry.setdefault("contents", {}).clear()  # a caller that changes its document...
            entry["content"] = "changed"
        assert make(plan) == pristine  # ...changes no other payload's
        assert render(plan, fmt) == first


def test_the_ca_pin_is_worked_out_once_per_certificate(cluster: Path) -> None:
    _, secrets = load(cluster)
    assert secrets.ca_pin == ca_pin(secrets.pki["ca.crt"])
    other = generate_secrets("ECDSA-P256")
    assert other.ca_pin == ca_pin(other.pki["ca.crt"]) != secrets.ca_pin
    secrets.pki["ca.crt"] = other.pki["ca.crt"]  # the pin follows the certificate, not the object
    assert secrets.ca_pin == other.ca_pin
