"""The import graph of a package's own modules, read with ``ast`` (nothing is imported), and its cycles.

Every ``import`` and ``from ... import`` counts, at module level and inside functions (a lazy import only hides a
cycle), relative ones resolved against the importing module. ``from pkg import name`` is an edge to ``pkg.name``
when that is a module of the package, else to ``pkg``. Imports of anything outside the package are left out."""

from __future__ import annotations

import ast
from pathlib import Path

from kubeseed.generator.zipapp import imported_module


def modules(package_dir: Path, prefix: str) -> dict[str, Path]:
    """Dotted module name -> file, for every .py under ``package_dir`` (installed as ``prefix``)."""
    found: dict[str, Path] = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = list(path.relative_to(package_dir).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join([prefix, *parts])] = path
    return found


def _targets(node: ast.Import | ast.ImportFrom, name: str, is_package: bool, known: set[str]) -> set[str]:
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names if alias.name in known}
    module = imported_module(node, name, is_package)
    out = set()
    for alias in node.names:
        sub = f"{module}.{alias.name}"
        if sub in known:
            out.add(sub)
        elif module in known:
            out.add(module)
    return out


def import_graph(package_dir: Path, prefix: str) -> dict[str, set[str]]:
    """Module -> the package's modules it imports (anywhere in its body), for the package at ``package_dir``."""
    files = modules(package_dir, prefix)
    known = set(files)
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        tree = ast.parse(path.read_text(), str(path))
        edges: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                edges |= _targets(node, name, path.name == "__init__.py", known)
        edges.discard(name)
        graph[name] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as ``[a, b, ..., a]``, or None when the graph has none."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            found = visit(start)
            if found:
                return found
    return None
