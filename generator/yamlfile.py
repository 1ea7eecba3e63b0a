"""The YAML that kubeseed reads from users (cluster.yaml, tokens.yaml, inventories, add-on manifests): UTF-8 text,
read by the runtime's own ``load_yaml``, which refuses aliases (a few hundred bytes of them expand to gigabytes)
and duplicate keys. Errors name the file and the line. And ``safe_dump``: yaml.safe_dump's text, faster."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from kubeseed.runtime.config import load_yaml

from .errors import FieldError

if TYPE_CHECKING:
    import yaml


def problem(e: yaml.YAMLError) -> str:
    """What is wrong, with its line: ``at line 3: ...``."""
    mark = getattr(e, "problem_mark", None)
    if mark is not None:
        return f"at line {mark.line + 1}: {getattr(e, 'problem', None) or e}"
    text = str(e).splitlines()[0] if str(e) else type(e).__name__
    return f"at {text}" if text.startswith("line ") else text


def read_text(path: Path, fix: str = "") -> str:
    """``path`` as UTF-8 text; OSError (no such file, a directory) is the caller's to word."""
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise FieldError(str(path), "(yaml)", f"is not UTF-8 text (byte {e.start}){fix}") from None


def read_yaml(path: Path, fix: str = "") -> Any:
    """The one YAML document in ``path``; ``fix`` ends the message of an error (e.g. "; restore it ...")."""
    import yaml

    text = read_text(path, fix)
    try:
        return load_yaml(text)
    except yaml.YAMLError as e:
        raise FieldError(str(path), "(yaml)", f"is not valid YAML {problem(e)}{fix}") from None


# Where libyaml's emitter writes exactly what PyYAML's own does (tests/generator/test_fast_paths.py fuzzes the
# two): keys of printable ASCII under SIMPLE_KEY characters (longer ones libyaml may write as "? key" complex keys
# where PyYAML does not), no deeper than MAX_DEPTH, and strings that are one line of printable ASCII (plain or
# single-quoted: both fold those alike) or too short to reach the line width with every character escaped
# ("\U0010FFFF" is ten characters): the two fold escaped, double-quoted lines differently.
SIMPLE_KEY = 100
MAX_DEPTH = 100
ESCAPED = 10
MARGIN = 2 * SIMPLE_KEY + 4 * MAX_DEPTH  # a line's key, indentation and punctuation


def libyaml_writes_the_same(value: Any, width: int, depth: int = 0) -> bool:
    """Whether ``value`` (a document of dicts, lists and scalars) is one that libyaml's emitter writes as PyYAML's
    pure-Python one does with this line ``width``."""
    if depth > MAX_DEPTH:
        return False
    if isinstance(value, dict):
        return all(
            isinstance(k, str)
            and len(k) < SIMPLE_KEY
            and k.isascii()
            and k.isprintable()
            and libyaml_writes_the_same(v, width, depth + 1)
            for k, v in value.items()
        )
    if isinstance(value, (list, tuple)):
        return all(libyaml_writes_the_same(v, width, depth + 1) for v in value)
    if isinstance(value, str):
        return (value.isascii() and value.isprintable()) or MARGIN + ESCAPED * len(value) < width
    return value is None or isinstance(value, (bool, int, float))  # nothing else is checked: PyYAML writes it


def safe_dump(doc: Any, width: int = 80, sort_keys: bool = False) -> str:
    """``yaml.safe_dump(doc, sort_keys=sort_keys, default_flow_style=False, width=width)`` (80 is PyYAML's default
    width): the same text, written by libyaml's emitter (about ten times faster) where PyYAML has it and it writes
    the same (libyaml_writes_the_same), else by PyYAML's own."""
    import yaml

    dumper = getattr(yaml, "CSafeDumper", None)
    if dumper is None or not libyaml_writes_the_same(doc, width):
        dumper = yaml.SafeDumper
    return str(yaml.dump(doc, Dumper=dumper, sort_keys=sort_keys, default_flow_style=False, width=width))


def load_documents(text: str) -> list[Any]:
    """Every document of a YAML stream (an add-on manifest often holds several), each read by ``load_yaml``.

    ``load_yaml`` reads one document, so each is cut out of the stream at its first line, with that many blank
    lines before it: errors keep the line numbers of the whole stream. Raises yaml.YAMLError."""
    import yaml

    docs: list[Any] = []
    start = line = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):  # events only: aliases are not expanded here
        if isinstance(event, yaml.DocumentStartEvent) and event.start_mark:
            start, line = text.rfind("\n", 0, event.start_mark.index) + 1, event.start_mark.line
        elif isinstance(event, yaml.DocumentEndEvent) and event.end_mark:
            docs.append(load_yaml("\n" * line + text[start : event.end_mark.index]))
    return docs
