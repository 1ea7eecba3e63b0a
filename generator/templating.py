"""Jinja2 templates shipped in ``kubeseed.templates``."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import kubeseed.templates

if TYPE_CHECKING:
    import jinja2

_NO_WRAP = float("inf")


def yaml_scalar(value: Any, style: str | None = None) -> str:
    """``value`` as one line of YAML (the ``yaml`` filter): plain where YAML reads it back unchanged, else quoted,
    so a value pasted into a template can never end its line and add keys. ``style='"'`` always double-quotes."""
    import yaml

    text = yaml.safe_dump(value, default_style=style, width=_NO_WRAP).removesuffix("\n...\n").rstrip("\n")
    if "\n" in text:  # a multi-line single-quoted scalar: double quotes escape the line breaks instead
        text = yaml.safe_dump(value, default_style='"', width=_NO_WRAP).rstrip("\n")
    return text


@lru_cache(maxsize=1)
def _env() -> jinja2.Environment:
    import jinja2  # here: only the commands that render templates load Jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(Path(kubeseed.templates.__file__).parent)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters["yaml"] = yaml_scalar
    return env


def render_template(template: str, **values: Any) -> str:
    return _env().get_template(template).render(**values)
