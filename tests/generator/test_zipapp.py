"""The runtime zipapp: reproducible, small, and runnable by the target's own Python."""

from __future__ import annotations

import ast
import builtins
import io
import subprocess
import symtable
import sys
import zipfile
from pathlib import Path

import pytest

from kubeseed.generator.zipapp import (
    build_zipapp,
    imports,
    inline_constants,
    module_name,
    positional_only,
    prune,
    role_modules,
    runtime_sources,
    short_attribute_names,
    short_shared_names,
    shrink,
    unpack_sources,
)


def test_zipapp_is_reproducible_and_complete() -> None:
    a = build_zipapp.__wrapped__()  # bypass the cache: two real builds
    b = build_zipapp.__wrapped__()
    assert a == b
    assert a.startswith(b"#!/usr/bin/env python3\n")
    assert zipfile.ZipFile(io.BytesIO(a)).namelist() == ["__main__.py"]
    modules = unpack_sources(a)
    expected = {"kubeseed"} | {module_name(n) for n in runtime_sources()}
    assert set(modules) == expected
    assert {"kubeseed.runtime.init.certs", "kubeseed.runtime.join.discovery"} <= expected


@pytest.mark.parametrize("role", ["node", "master"])
def test_role_zipapps_carry_their_import_closure(role: str) -> None:
    """Each role's modules are computed from what its first boot imports; the node's never reach init or pki."""
    closure = role_modules(role)
    modules = set(unpack_sources(build_zipapp(role)))
    assert modules == {"kubeseed"} | set(closure)
    assert {"kubeseed.runtime.preflight", "kubeseed.runtime.cli", "kubeseed.runtime.config"} <= modules
    own, other = ("join", "init") if role == "node" else ("init", "join")
    assert f"kubeseed.runtime.{own}" in modules
    assert not any(m == f"kubeseed.runtime.{other}" or m.startswith(f"kubeseed.runtime.{other}.") for m in modules)
    assert ("kubeseed.runtime.pki" in modules) == (role == "master")  # a node never signs anything


def test_closure_follows_lazy_and_relative_imports() -> None:
    source = "from . import api\nfrom ..tokens import ca_pin\ndef f():\n    from .discovery import x\n    import json\n"
    found = imports("kubeseed.runtime.join.tlsbootstrap", source, is_package=False)
    assert {"kubeseed.runtime.join.api", "kubeseed.runtime.tokens.ca_pin", "kubeseed.runtime.tokens"} <= found
    assert {"kubeseed.runtime.join.discovery", "json"} <= found
    source = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..pki import PrivateKey\n"
    assert "kubeseed.runtime.pki" not in imports("kubeseed.runtime.keys", source, is_package=False)


def test_prune_drops_only_what_nothing_uses() -> None:
    sources = {
        "a.py": "X = 1\nUNUSED = 'x'\ndef used(): return X\ndef unused(): return used()\n"
        "class C:\n    def __repr__(self): return 'c'\n    def m(self): return 1\n    def gone(self): return 2\n",
        "b.py": "from a import used, C\nprint(used(), C().m(), repr(C()))\n",
        "c.py": "import json\nclass Hook(json.JSONEncoder):\n    def default(self, o): return 1\nprint(Hook())\n",
    }
    pruned = prune(sources)
    assert "UNUSED" not in pruned["a.py"] and "def unused" not in pruned["a.py"] and "gone" not in pruned["a.py"]
    assert "def used" in pruned["a.py"] and "__repr__" in pruned["a.py"] and "def m" in pruned["a.py"]
    assert "def default" in pruned["c.py"]  # a subclass's method may be a hook its base calls by name
    scope: dict = {}
    exec(pruned["a.py"], scope)
    assert scope["used"]() == 1 and repr(scope["C"]()) == "c"


def test_shrink_keeps_behaviour_and_drops_text() -> None:
    for name, source in runtime_sources().items():
        small = shrink(source)
        ast.parse(small)
        assert len(small) <= len(source), name
    sample = '''from __future__ import annotations
from typing import Dict, List
def helper_with_a_long_name(name: str) -> List[str]:
    """Say hello."""
    # a comment
    message = "hello " + name
    return [message]
def main(name: str) -> Dict[str, str]:
    return {name: helper_with_a_long_name(name)[0]}
'''
    small = shrink(sample)
    assert "Say hello" not in small and "comment" not in small and ": str" not in small
    assert "helper_with_a_long_name" not in small  # private globals are shortened, shared ones (main) kept
    assert "typing" not in small and "__future__" not in small  # only annotations needed them
    scope: dict = {}
    exec(small, scope)
    assert scope["main"]("node") == {"node": "hello node"}


def test_zipapp_runs_help(tmp_path: Path) -> None:
    pyz = tmp_path / "kubeseed-runtime.pyz"
    pyz.write_bytes(build_zipapp())
    r = subprocess.run([sys.executable, str(pyz), "--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    for command in ("preflight", "init", "join", "status"):
        assert command in r.stdout


def _unbound_globals(source: str, name: str) -> set[str]:
    """Names some scope of ``source`` reads as globals that the module never binds and Python does not provide."""
    top = symtable.symtable(source, name, "exec")
    bound = {s.get_name() for s in top.get_symbols() if s.is_assigned() or s.is_imported()}
    bound |= {s.get_name() for s in top.get_symbols() if s.is_namespace()}  # def and class
    missing, todo = set(), [top]
    while todo:
        table = todo.pop()
        todo += table.get_children()
        for sym in table.get_symbols():
            global_read = sym.is_global() or (table is top and sym.is_referenced())
            if global_read and sym.get_name() not in bound and not hasattr(builtins, sym.get_name()):
                missing.add(sym.get_name())
    return missing - {"__file__", "__name__", "__package__", "__loader__", "__spec__", "__builtins__"}


@pytest.mark.parametrize("role", ["node", "master", None])
def test_every_name_a_built_module_reads_is_bound(role: str | None) -> None:
    """The shortened build (shared names renamed across modules, unused imports dropped) leaves no module reading
    a name it lacks, and imports only names its source module still defines."""
    modules = unpack_sources(build_zipapp(role))
    for name, source in modules.items():
        assert not _unbound_globals(source, name), name
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.ImportFrom) and node.level:
                is_package = any(m.startswith(name + ".") for m in modules)
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
                if target in modules:
                    defined = _module_level_names(modules[target])
                    for alias in node.names:
                        assert alias.name in defined or f"{target}.{alias.name}" in modules, (name, alias.name)


def _module_level_names(source: str) -> set[str]:
    top = symtable.symtable(source, "m", "exec")
    return {s.get_name() for s in top.get_symbols() if s.is_assigned() or s.is_imported() or s.is_namespace()}


def test_short_shared_names_renames_consistently_and_keeps_what_it_must() -> None:
    sources = {
        "kubeseed/a.py": "class Error(Exception): pass\ndef shared_helper(x): return x + 1\n"
        "def used_by_attribute(): return 2\ndef takes(keyword_name=1): return keyword_name\n",
        "kubeseed/b.py": "from .a import Error, shared_helper\nfrom . import a\n"
        "def f():\n    from .a import takes\n"
        "    return shared_helper(1), a.used_by_attribute(), takes(keyword_name=3)\n",
    }
    out = short_shared_names(sources)
    assert "shared_helper" not in out["kubeseed/a.py"] and "shared_helper" not in out["kubeseed/b.py"]
    assert "class Error" in out["kubeseed/a.py"]  # class names stay: an unexpected exception shows its type
    assert "used_by_attribute" in out["kubeseed/a.py"]  # read as an attribute of the module
    scope: dict = {}
    exec(out["kubeseed/a.py"], scope)
    renamed = next(n for n in scope if n.startswith("_") and callable(scope[n]) and n not in ("__builtins__",))
    assert scope[renamed](1) == 2


def test_short_shared_names_renames_what_an_import_as_names() -> None:
    """``from .a import NAME as ALIAS``: NAME is renamed where it is defined, so the import names the new one."""
    sources = {
        "kubeseed/a.py": "SHARED_PATH = '/var/lib/x'\n",
        "kubeseed/b.py": "from .a import SHARED_PATH\nfrom .a import SHARED_PATH as WHERE\n"
        "BOTH = (SHARED_PATH, WHERE)\n",
    }
    out = short_shared_names(sources)
    a: dict = {}
    exec(out["kubeseed/a.py"], a)
    b = out["kubeseed/b.py"]
    assert "SHARED_PATH" not in b and " as WHERE" in b
    for line in b.splitlines()[:2]:  # each import names a name module a defines
        assert line.split(" import ")[1].split(" as ")[0] in a, line


def test_short_attribute_names_renames_only_what_is_safe() -> None:
    sources = {
        "kubeseed/a.py": "import dataclasses, urllib.request\n"
        "@dataclasses.dataclass\nclass Conf:\n    endpoint_name: str\n    extra_setting: int = 1\n"
        "class Thing:\n    def __init__(self):\n        self.some_counter = 0\n        self.timeout_value = 2\n"
        "    def describe_it(self):\n        return self.some_counter + self.timeout_value\n"
        "class Hook(urllib.request.HTTPRedirectHandler):\n"
        "    def redirect_request(self, *a):\n        return None\n"
        "def make():\n    c = Conf(endpoint_name='x', extra_setting=3)\n"
        "    return c.endpoint_name, c.extra_setting, Thing().describe_it(), getattr(Thing(), 'timeout_value')\n",
    }
    out = short_attribute_names(sources)["kubeseed/a.py"]
    for gone in ("endpoint_name", "extra_setting", "some_counter", "describe_it"):
        assert gone not in out, gone
    assert "redirect_request" in out  # a hook its foreign base calls by name
    assert "timeout_value" in out  # read by name through a string
    scope: dict = {}
    exec(out, scope)
    assert scope["make"]() == ("x", 3, 2, 2)


def test_positional_only_renames_parameters_no_call_names() -> None:
    sources = {
        "kubeseed/a.py": "import dataclasses, functools, json\n"
        "@dataclasses.dataclass\nclass Conf:\n    name: str\n"
        "def helper(context_value, indent, name, keyed, after):\n"
        "    return (context_value, indent, name, keyed, after)\n"
        "def later(callback_arg, forwarded):\n    return (callback_arg, forwarded)\n"
        "class Hook(json.JSONEncoder):\n    def default(self, value):\n        return 1\n"
        "class Deeper(Hook):\n    def encode(self, value):\n        return 2\n"
        "@functools.lru_cache()\ndef cached(cache_key):\n    return cache_key\n"
        "def main():\n    json.dumps([1], indent=1)\n    print('x', end='')\n    Conf(name='n')\n"
        "    bound = functools.partial(later, forwarded=2)\n"
        "    return helper(1, 2, 3, keyed=4, after=5), bound(1)\n",
    }
    out = positional_only(sources)["kubeseed/a.py"]
    tree = ast.parse(out)
    params = {
        f.name: ([a.arg for a in f.args.posonlyargs], [a.arg for a in f.args.args])
        for f in ast.walk(tree)
        if isinstance(f, ast.FunctionDef)
    }
    # foreign calls' keywords (json.dumps, print) and a dataclass's (its fields) bind no parameter of the build
    assert params["helper"] == (["context_value", "indent", "name"], ["keyed", "after"])
    assert params["later"] == (["callback_arg"], ["forwarded"])  # partial passes its keywords on
    assert params["default"] == ([], ["self", "value"]) and params["encode"] == ([], ["self", "value"])
    assert params["cached"] == ([], ["cache_key"])  # the decorator's wrapper may pass it by keyword
    small = shrink(out)
    assert "context_value" not in small  # renamed in place, not bound anew to a short name
    assert "/" not in small  # the minifier makes them plain parameters again
    scope: dict = {}
    exec(small, scope)
    assert scope["main"]() == ((1, 2, 3, 4, 5), (1, 2))
    starred = {"kubeseed/b.py": "def f(a):\n    return a\ndef g(**kw):\n    return f(**kw)\n"}
    assert positional_only(starred) == starred  # a ** call may pass any name


def test_inline_constants_writes_a_constant_read_once_where_it_is_read() -> None:
    sources = {
        "kubeseed/a.py": "ONCE = ('x', 1)\nTWICE = 'y'\nSHARED = 'z'\nSHADOWED = 'w'\nDONE = 'done'\n"
        "def f():\n    return ONCE, TWICE + TWICE, DONE\n"
        "def g():\n    return SHADOWED\n"
        "def h(SHADOWED):\n    return 0\n",
        "kubeseed/b.py": "from .a import SHARED\n",
    }
    out = inline_constants(sources)
    a = out["kubeseed/a.py"]
    assert "ONCE" not in a and "return (('x', 1), TWICE + TWICE, DONE)" in a
    assert "TWICE = 'y'" in a and "SHARED = 'z'" in a and "SHADOWED = 'w'" in a and "DONE = 'done'" in a
    assert out["kubeseed/b.py"] == sources["kubeseed/b.py"]
    scope: dict = {}
    exec(a, scope)
    assert scope["f"]() == (("x", 1), "yy", "done") and scope["g"]() == "w" and scope["h"](1) == 0


def test_shrink_leaves_builtins_and_only_the_dataclass_annotations_it_needs() -> None:
    sample = """from dataclasses import dataclass, field
from typing import ClassVar, Dict, List
@dataclass
class Conf:
    KIND: ClassVar[str] = "conf"
    names: List[str]
    extra: Dict[str, str] = field(default_factory=dict)
def check(a, b, c, d):
    return isinstance(a, str) and isinstance(b, str) and isinstance(c, str) and isinstance(d, str)
def main() -> Conf:
    return Conf(["a"]), Conf.KIND, check("a", "b", "c", "d")
"""
    small = shrink(sample)
    assert "=isinstance" not in small  # aliased builtins pack worse across modules
    assert "names:0" in small and "List" not in small and "Dict" not in small  # a field needs an annotation only
    assert "ClassVar" in small  # which says it is no field
    scope: dict = {}
    exec(compile(small, "sample", "exec", dont_inherit=True), scope)  # not this file's __future__ annotations
    conf, kind, ok = scope["main"]()
    assert (conf.names, conf.extra, kind, ok) == (["a"], {}, "conf", True)
