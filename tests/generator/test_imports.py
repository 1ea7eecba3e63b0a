"""The generator's modules import each other without a cycle, lazy (function-level) imports included."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support.importgraph import find_cycle, import_graph

GENERATOR = Path(__file__).resolve().parents[2] / "generator"


def test_the_helper_sees_lazy_relative_and_absolute_imports(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from . import b\nimport os\n")
    (pkg / "b.py").write_text("def f():\n    from .sub.c import g\n    return g\n")
    (pkg / "sub/__init__.py").write_text("from .. import a as _\n")
    (pkg / "sub/c.py").write_text("import x.pkg.a\nfrom x.pkg.sub import c\n")
    graph = import_graph(pkg, "x.pkg")
    assert graph == {
        "x.pkg": set(),
        "x.pkg.a": {"x.pkg.b"},
        "x.pkg.b": {"x.pkg.sub.c"},
        "x.pkg.sub": {"x.pkg.a"},
        "x.pkg.sub.c": {"x.pkg.a"},
    }
    assert find_cycle(graph) == ["x.pkg.a", "x.pkg.b", "x.pkg.sub.c", "x.pkg.a"]
    (pkg / "sub/c.py").write_text("")
    assert find_cycle(import_graph(pkg, "x.pkg")) is None


def test_no_import_cycle_in_the_generator() -> None:
    graph = import_graph(GENERATOR, "kubeseed.generator")
    assert "kubeseed.generator.goldenimage.build" in graph and graph["kubeseed.generator.cli"]
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_only_the_entry_point_imports_the_cli() -> None:
    graph = import_graph(GENERATOR, "kubeseed.generator")
    importers = sorted(m for m, deps in graph.items() if "kubeseed.generator.cli" in deps)
    assert importers == []


def test_the_cli_starts_without_the_heavy_libraries() -> None:
    """`kubeseed --help`, and every command's start-up, load neither cryptography, Jinja2, pycdlib nor passlib
    (nor the minifier, the zipapp builder or urllib.request): each command imports what it uses when it runs."""
    heavy = ["cryptography", "jinja2", "pycdlib", "passlib", "python_minifier", "kubeseed.generator.zipapp"]
    heavy += ["urllib.request", "kubeseed.runtime.init", "kubeseed.generator.secrets"]
    probe = "import sys, kubeseed.generator.cli; print(' '.join(m for m in sys.argv[1:] if m in sys.modules))"
    r = subprocess.run([sys.executable, "-c", probe, *heavy], capture_output=True, text=True, check=True)
    assert r.stdout.split() == []
