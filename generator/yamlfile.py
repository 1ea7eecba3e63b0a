"""The YAML that kubeseed reads from users (cluster.yaml, tokens.yaml, inventories, add-on manifests): UTF-8 text,
read by the runtime's own ``load_yaml``, which refuses aliases (a few hundred bytes of them expand to gigabytes)
and duplicate keys. Errors name the file and the line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from kubeseed.runtime.config import load_yaml

from .errors import FieldError


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
    text = read_text(path, fix)
    try:
        return load_yaml(text)
    except yaml.YAMLError as e:
        raise FieldError(str(path), "(yaml)", f"is not valid YAML {problem(e)}{fix}") from None


def load_documents(text: str) -> list[Any]:
    """Every document of a YAML stream (an add-on manifest often holds several), each read by ``load_yaml``.

    ``load_yaml`` reads one document, so each is cut out of the stream at its first line, with that many blank
    lines before it: errors keep the line numbers of the whole stream. Raises yaml.YAMLError."""
    docs: list[Any] = []
    start = line = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):  # events only: aliases are not expanded here
        if isinstance(event, yaml.DocumentStartEvent) and event.start_mark:
            start, line = text.rfind("\n", 0, event.start_mark.index) + 1, event.start_mark.line
        elif isinstance(event, yaml.DocumentEndEvent) and event.end_mark:
            docs.append(load_yaml("\n" * line + text[start : event.end_mark.index]))
    return docs
