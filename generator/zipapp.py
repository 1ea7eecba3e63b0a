"""Build the runtime zipapp from ``runtime/``: small and reproducible (same sources, same bytes)."""

from __future__ import annotations

import ast
import io
import zipfile
from functools import lru_cache
from pathlib import Path

import kubeseed.runtime

SHEBANG = b"#!/usr/bin/env python3\n"
MAIN = "import sys\nfrom kubeseed.runtime.cli import main\nsys.exit(main())\n"
_EPOCH = (1980, 1, 1, 0, 0, 0)


# The modules each role's first boot imports. A payload carries only its role's (a node needs no PKI code);
# the full runtime (every module) is what golden images bake in.
COMMON = ("__init__", "cli", "config", "preflight", "tokens", "workflow")
ROLE_MODULES = {"node": COMMON, "master": COMMON}


def runtime_sources(role: str | None = None) -> dict[str, str]:
    """The runtime's modules for ``role`` (all of them for None): archive name -> source text."""
    root = Path(kubeseed.runtime.__file__).parent
    names = ROLE_MODULES[role] if role else sorted(p.stem for p in root.glob("*.py") if p.stem != "__main__")
    return {f"kubeseed/runtime/{n}.py": (root / f"{n}.py").read_text() for n in sorted(names)}


class _Shrink(ast.NodeTransformer):
    """Drop docstrings and function annotations: they cost payload bytes and do nothing at run time."""

    def _body(self, node: ast.AST) -> None:
        body = getattr(node, "body", None)
        if (
            body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            node.body = body[1:] or [ast.Pass()]  # type: ignore[attr-defined]

    def visit_Module(self, node: ast.Module) -> ast.AST:
        self._body(node)
        self.generic_visit(node)
        return node

    def visit_ClassDef(self, node: ast.ClassDef) -> ast.AST:
        self._body(node)
        self.generic_visit(node)
        return node

    def _func(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> ast.AST:
        self._body(node)
        node.returns = None
        a = node.args
        for arg in a.posonlyargs + a.args + a.kwonlyargs + [x for x in (a.vararg, a.kwarg) if x]:
            arg.annotation = None
        self.generic_visit(node)
        return node

    visit_FunctionDef = _func
    visit_AsyncFunctionDef = _func


def shrink(source: str) -> str:
    """Source without comments, docstrings and function annotations; same behaviour."""
    return ast.unparse(_Shrink().visit(ast.parse(source))) + "\n"


def _add(zf: zipfile.ZipFile, name: str, text: str) -> None:
    info = zipfile.ZipInfo(name, date_time=_EPOCH)
    info.external_attr = 0o644 << 16
    info.compress_type = zipfile.ZIP_STORED  # the payload gzips the whole archive once, which packs smaller
    zf.writestr(info, text.encode())


@lru_cache(maxsize=8)
def build_zipapp(role: str | None = None, minify: bool = True) -> bytes:
    """The runtime as an executable zip (``python3 kubeseed-runtime.pyz --help``), for ``role`` or complete."""
    buf = io.BytesIO()
    buf.write(SHEBANG)
    with zipfile.ZipFile(buf, "w") as zf:
        _add(zf, "__main__.py", MAIN)
        _add(zf, "kubeseed/__init__.py", "")
        for name, source in runtime_sources(role).items():
            _add(zf, name, shrink(source) if minify else source)
    return buf.getvalue()
