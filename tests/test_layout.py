"""The layout of tests/ and bench/: no module imports a test module (shared code lives in tests/support/), and no
bench patches sys.path (benches run from the repository root as ``python -m bench.NAME`` against the installed
kubeseed). Checked on the syntax tree, not on the text."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TREES = ("tests", "bench")


def python_files(*trees: str) -> list[Path]:
    return sorted(p for tree in trees for p in (REPO / tree).rglob("*.py") if "__pycache__" not in p.parts)


def module_name(path: Path) -> str:
    """The dotted name a file under the repository root is imported as (``tests/support/__init__.py``:
    ``tests.support``)."""
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_test_module(name: str) -> bool:
    """A test module of this repository: ``tests.…`` or ``bench.…`` whose file is ``test_*.py`` or conftest.py."""
    parts = name.split(".")
    return parts[0] in TREES and (parts[-1].startswith("test_") or parts[-1] == "conftest")


def imported_modules(tree: ast.AST, importer: str, is_package: bool) -> Iterator[tuple[int, str]]:
    """(line, dotted name) of every module an import statement may load: ``import a.b`` gives a.b; ``from a.b
    import c`` gives a.b and a.b.c (c may be a submodule); relative imports are resolved against ``importer``."""
    package = importer if is_package else importer.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".") if package else []
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            if module:
                yield node.lineno, module
            for alias in node.names:
                if alias.name != "*":
                    yield node.lineno, f"{module}.{alias.name}" if module else alias.name


def imports_of_test_modules(source: str, importer: str, is_package: bool = False) -> list[str]:
    """``line: name`` for each test module that ``source`` (the module ``importer``) imports."""
    found = imported_modules(ast.parse(source), importer, is_package)
    return [f"{line}: {name}" for line, name in found if is_test_module(name)]


MUTATORS = {"append", "extend", "insert", "remove", "pop", "clear", "reverse", "sort", "__setitem__", "__delitem__"}


def sys_path_mutations(source: str) -> list[str]:
    """``line: what`` for each place ``source`` changes sys.path: a mutating method call on it, an assignment,
    augmented assignment or del of it or of an item or slice of it, ``from sys import path``, site.addsitedir."""
    tree = ast.parse(source)
    sys_names = {"sys"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            sys_names |= {alias.asname or alias.name for alias in node.names if alias.name == "sys"}

    def is_sys_path(node: ast.AST) -> bool:
        while isinstance(node, ast.Subscript):  # sys.path[0], sys.path[:0]
            node = node.value
        return (
            isinstance(node, ast.Attribute)
            and node.attr == "path"
            and isinstance(node.value, ast.Name)
            and node.value.id in sys_names
        )

    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr in MUTATORS and is_sys_path(node.func.value):
                found.append(f"{node.lineno}: sys.path.{node.func.attr}(...)")
            elif node.func.attr == "addsitedir":
                found.append(f"{node.lineno}: addsitedir(...)")
        elif isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Delete)):
            targets = node.targets if isinstance(node, (ast.Assign, ast.Delete)) else [node.target]
            for target in targets:
                for part in ast.walk(target):
                    if is_sys_path(part):
                        found.append(f"{node.lineno}: sys.path changed by {type(node).__name__.lower()}")
                        break
        elif isinstance(node, ast.ImportFrom) and node.module in ("sys", "site") and not node.level:
            names = {alias.name for alias in node.names}
            if names & {"path", "addsitedir", "*"}:
                found.append(f"{node.lineno}: from {node.module} import {', '.join(sorted(names))}")
    return sorted(set(found), key=lambda s: int(s.split(":")[0]))


@pytest.mark.parametrize("path", python_files(*TREES), ids=lambda p: str(p.relative_to(REPO)))
def test_no_module_imports_a_test_module(path: Path) -> None:
    """Shared code lives in tests/support/; a test module is imported by pytest alone."""
    found = imports_of_test_modules(path.read_text(), module_name(path), path.name == "__init__.py")
    assert not found, f"{path.relative_to(REPO)} imports test modules (move what it needs to tests/support/): {found}"


@pytest.mark.parametrize("path", python_files("bench"), ids=lambda p: str(p.relative_to(REPO)))
def test_no_bench_patches_sys_path(path: Path) -> None:
    """Benches run as ``python -m bench.NAME`` from the repository root; kubeseed is the installed package."""
    found = sys_path_mutations(path.read_text())
    assert not found, f"{path.relative_to(REPO)} changes sys.path: {found}"


def test_the_trees_are_packages() -> None:
    """Every directory of Python files under tests/ and bench/ is a package, so module names cannot collide and
    ``python -m bench.NAME`` works."""
    dirs = {p.parent for p in python_files(*TREES)}
    missing = sorted(str(d.relative_to(REPO)) for d in dirs if not (d / "__init__.py").is_file())
    assert not missing, f"no __init__.py in {missing}"


@pytest.mark.parametrize(
    "source, importer, expected",
    [
        ("from tests.support.test_apiserver import TOKEN\n", "bench.bench_join", ["1: tests.support.test_apiserver"]),
        ("from tests import conftest\n", "tests.consumers.test_ignition", ["1: tests.conftest"]),
        ("import tests.generator.test_cli as cli\n", "tests.support.helpers", ["1: tests.generator.test_cli"]),
        ("from tests.runtime import test_join\n", "tests.support.helpers", ["1: tests.runtime.test_join"]),
        ("from . import conftest\n", "tests.runtime.test_join", ["1: tests.runtime.conftest"]),
        ("from .conftest import HOSTNAMES\n", "tests.consumers.test_ignition", ["1: tests.consumers.conftest"]),
        ("from ..runtime.test_join import NODE\n", "tests.images.test_x", ["1: tests.runtime.test_join"]),
        (
            "def f():\n    from tests.images import test_image\n",
            "bench.bench_image",
            ["2: tests.images.test_image"],
        ),
        ("from tests.support.join import check_joined\nimport pytest\n", "tests.images.test_nspawn_boot", []),
        ("from tests.support.apiserver import FakeAPIServer\n", "bench.bench_join", []),
        ("from .protocol import status_body\n", "tests.support.apiserver", []),
    ],
)
def test_the_import_check_itself(source: str, importer: str, expected: list[str]) -> None:
    assert imports_of_test_modules(source, importer, importer == "tests.support.apiserver") == expected


@pytest.mark.parametrize(
    "source, found",
    [
        ("import sys\nsys.path.insert(0, '..')\n", True),
        ("import sys\nsys.path.append('..')\n", True),
        ("import sys\nsys.path[:0] = ['..']\n", True),
        ("import sys\nsys.path = ['..'] + sys.path\n", True),
        ("import sys\nsys.path += ['..']\n", True),
        ("import sys as s\ns.path.extend(['..'])\n", True),
        ("from sys import path\npath.insert(0, '..')\n", True),
        ("import site\nsite.addsitedir('..')\n", True),
        ("import sys\nprint(sys.executable, sys.argv)\n", False),
        ("import sys\nfrom pathlib import Path\nPath(sys.executable).parent\n", False),
    ],
)
def test_the_sys_path_check_itself(source: str, found: bool) -> None:
    assert bool(sys_path_mutations(source)) == found
