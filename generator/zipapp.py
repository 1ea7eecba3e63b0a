"""Build the runtime zipapp from ``runtime/``: small and reproducible (same sources, same bytes)."""

from __future__ import annotations

import ast
import builtins
import bz2
import io
import re
import zipfile
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

import python_minifier

import kubeseed.runtime
from kubeseed.runtime.cli import COMMANDS, DAY2

SHEBANG = b"#!/usr/bin/env python3\n"
# Layout: shebang, the packed stream, then a zip holding only __main__.py. The stream is bzip2 (smaller than LZMA
# or deflate on this code, by 1 and 5 percent, and in every Python's standard library) of NUL-separated text: BOOT,
# then module name and source pairs. __main__.py (the only unpacked code, so as short as can be) decompresses the
# stream and runs BOOT, which imports kubeseed.* from it (Python >= 3.9, stdlib only) and from nowhere else: a
# kubeseed installed on the machine never mixes in. A package is a module with submodules.
MAIN = (
    'import bz2;d=bz2.decompress(open(__loader__.archive,"rb").read()[{start}:{end}]).decode().split("\\0");'
    "exec(d[0])\n"
)
BOOT = """import importlib.util as u,sys
m=dict(zip(d[1::2],d[2::2]))
class L:
 def find_spec(s,n,*a):
  if n in m:return u.spec_from_loader(n,s,is_package=any(k.startswith(n+".")for k in m))
  if"kubeseed."==n[:9]:raise ImportError(name=n)
 def create_module(s,x):0
 def exec_module(s,x):n=x.__name__;exec(compile(m[n],n,"exec"),vars(x))
sys.meta_path.insert(0,L())
from kubeseed.runtime.cli import main
sys.exit(main())
"""
_EPOCH = (1980, 1, 1, 0, 0, 0)


PACKAGE = "kubeseed.runtime"


def _modules() -> dict[str, Path]:
    """Every module of the runtime (dotted name -> file), packages under their own name."""
    root = Path(kubeseed.runtime.__file__).parent
    found = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__main__" or "__pycache__" in parts:
            continue
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join([PACKAGE] + parts)] = path
    return found


def imports(name: str, source: str, is_package: bool) -> set[str]:
    """The dotted names module ``name`` imports anywhere in its body (lazy imports in functions too), relative
    imports resolved; ``from M import x`` names both M and M.x (x may be a submodule)."""
    found: set[str] = set()
    for node in ast.walk(_without_type_checking(ast.parse(source))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = imported_module(node, name, is_package)
            found.add(module)
            found.update(f"{module}.{a.name}" for a in node.names)
    return found


def imported_module(node: ast.ImportFrom, name: str, is_package: bool) -> str:
    """The module ``from ... import`` in module ``name`` (a package's ``__init__`` if ``is_package``) names."""
    if not node.level:
        return node.module or ""
    base = name.split(".") if is_package else name.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _type_checking(node: ast.stmt) -> bool:
    """Whether ``node`` is ``if TYPE_CHECKING:`` without an else: code only type checkers see."""
    if not isinstance(node, ast.If) or node.orelse:
        return False
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _without_type_checking(tree: ast.Module) -> ast.Module:
    """``tree`` without its module-level ``if TYPE_CHECKING:`` blocks (they never run)."""
    tree.body = [node for node in tree.body if not _type_checking(node)]
    return tree


# What only the full runtime carries: upgrade's phases (a role's `upgrade` first installs the cluster's published
# runtime, the full one, and runs that) and a master's control-plane join (a master payload rendered with --join
# carries the full runtime); so a first master's and a node's payloads stay small.
FULL_ONLY = tuple(
    f"{PACKAGE}.{m}"
    for m in ("upgrade.phases", "upgrade.controlplane", "upgrade.drain", "upgrade.packages", "init.cpjoin")
)


def role_modules(role: str) -> list[str]:
    """The import closure of what ``role``'s first boot runs: the CLI and the role's package (which the CLI
    imports by name), with every package above each module. Computed, never listed by hand."""
    modules = _modules()
    todo = [PACKAGE, f"{PACKAGE}.cli", f"{PACKAGE}.{COMMANDS[role]}"]
    if role != "node":  # the node's first-boot runtime is built without the day-2 commands (without_day2)
        todo += [f"{PACKAGE}.{module}" for module in DAY2.values()]
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen or name not in modules or name in FULL_ONLY:
            continue
        seen.add(name)
        path = modules[name]
        todo += sorted(imports(name, path.read_text(), path.name == "__init__.py"))
        todo += [name.rsplit(".", i)[0] for i in range(1, name.count("."))]  # its packages run first
    return sorted(seen)


def runtime_sources(role: str | None = None) -> dict[str, str]:
    """The runtime's modules for ``role`` (all of them for None): archive name -> source text."""
    modules = _modules()
    names = role_modules(role) if role else sorted(modules)
    out = {}
    for name in names:
        path = modules[name]
        rel = name.replace(".", "/") + ("/__init__.py" if path.name == "__init__.py" else ".py")
        out[rel] = path.read_text()
    return dict(sorted(out.items()))


ROLE_INTERFACE = ("phases", "checks", "CONFIG", "DONE")  # what cli reads of a role package, by name


def prune(sources: dict[str, str]) -> dict[str, str]:
    """``sources`` without the top-level functions, classes and constants, and the methods, that no module among
    them uses (by name, attribute or import): a role's zipapp need not carry the code of shared modules that only
    the other role or the generator calls. Repeated until nothing more goes: one removal can free another."""
    trees = {name: ast.parse(text) for name, text in sources.items()}
    while True:
        used = {"main", *ROLE_INTERFACE}
        for tree in trees.values():
            for node in ast.walk(tree):
                if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
                    used.add(node.id)
                elif isinstance(node, ast.Attribute):
                    used.add(node.attr)
                elif isinstance(node, ast.ImportFrom):
                    used.update(a.name for a in node.names)
        dropped = 0
        for tree in trees.values():
            # methods only of classes without bases: a subclass's methods may be hooks its base calls by name
            bodies = [tree.body] + [c.body for c in tree.body if isinstance(c, ast.ClassDef) and not c.bases]
            for body in bodies:
                keep = [node for node in body if not _defines(node) or _defines(node) & used]
                dropped += len(body) - len(keep)
                body[:] = keep or [ast.Pass()]
        if not dropped:
            return {name: ast.unparse(tree) for name, tree in trees.items()}


def _defines(node: ast.stmt) -> set[str]:
    """The names a top-level statement defines, when removing it is safe: a function, a class, or a constant
    (string, number or tuple of them) assigned to plain names. Anything else counts as defining nothing."""
    if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
        return set() if node.name.startswith("__") else {node.name}  # dunders are called by Python itself
    if isinstance(node, ast.Assign) and all(isinstance(t, ast.Name) for t in node.targets):
        value = node.value
        items = value.elts if isinstance(value, ast.Tuple) else [value]
        if all(isinstance(v, ast.Constant) for v in items):
            return {t.id for t in node.targets if isinstance(t, ast.Name)}
    return set()


@lru_cache(maxsize=1)
def shared_names() -> frozenset[str]:
    """shared_names_of every runtime module."""
    return shared_names_of([path.read_text() for path in _modules().values()])


def shared_names_of(sources: Iterable[str]) -> frozenset[str]:
    """Names one of these modules uses of another (``from M import x``, ``module.x``), and the ones the CLI and
    loader look up (main): the minifier keeps these global names and shortens every other one."""
    names = {"main", *ROLE_INTERFACE}
    for text in sources:
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ImportFrom):
                names.update(a.name for a in node.names)
            elif isinstance(node, ast.Attribute):
                names.add(node.attr)
    return frozenset(names)


def short_shared_names(sources: dict[str, str]) -> dict[str, str]:
    """``sources`` (one build's modules) with the functions and constants modules share given two-character names
    (``_a``, ``_b``, ...; the minifier's own names never start with ``_``), and those names. Only names no module
    uses as an attribute, parameter or keyword, and never a class (an unexpected exception's type name is shown):
    in each module that binds one (defines it, or imports it from kubeseed), every use is renamed, so the program
    is the same."""
    trees = {name: ast.parse(text) for name, text in sources.items()}
    defined: set[str] = set()
    banned = {"main", *ROLE_INTERFACE}
    for tree in trees.values():
        for stmt in tree.body:
            if isinstance(stmt, ast.FunctionDef):
                defined.add(stmt.name)
            elif isinstance(stmt, ast.Assign):
                defined.update(t.id for t in stmt.targets if isinstance(t, ast.Name))
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute):
                banned.add(node.attr)
            elif isinstance(node, (ast.arg, ast.keyword)) and node.arg:
                banned.add(node.arg)
            elif isinstance(node, ast.ClassDef):
                banned.add(node.name)
            elif isinstance(node, ast.ImportFrom) and not (node.level or (node.module or "").startswith("kubeseed")):
                banned.update(a.asname or a.name for a in node.names)  # stdlib and third-party names stay
    imported: dict[str, int] = {}
    for tree in trees.values():
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level:
                for a in node.names:
                    imported[a.name] = imported.get(a.name, 0) + 1
    # shared names only (a module's own ones the minifier shortens to one letter), the most imported first
    chosen = sorted((n for n in defined - banned if n in imported and len(n) > 2), key=lambda n: (-imported[n], n))
    letters = [f"_{c}" for c in "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"]
    letters += [a + c for a in letters for c in "abcdefghijklmnopqrstuvwxyz"]
    new = dict(zip(chosen, letters))
    out = {}
    for path, tree in trees.items():
        bound = _module_bindings(tree) & new.keys()
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and node.id in bound:
                node.id = new[node.id]
            elif isinstance(node, (ast.FunctionDef, ast.ExceptHandler)) and node.name in bound:
                node.name = new[node.name]
            elif isinstance(node, (ast.Global, ast.Nonlocal)):
                node.names = [new.get(n, n) if n in bound else n for n in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level:
                for a in node.names:
                    if a.name in new:  # with "as", the local name stays; the imported one is renamed
                        a.name = new[a.name]
        out[path] = ast.unparse(tree)
    return out


def short_attribute_names(sources: dict[str, str]) -> dict[str, str]:
    """``sources`` (one build's modules) with the attributes kubeseed's own classes define (dataclass fields,
    methods, ``self.x``) given three-character names (``_qa``, ``_qb``, ...), where that is safe by construction:
    only names no imported module or class (nor its classes), no built-in type, no argparse destination, no string
    constant, no parameter and no keyword of another callable also has or uses. Every ``x.name`` is renamed, and
    a dataclass's keywords where its class is called by name."""
    trees = {name: ast.parse(text) for name, text in sources.items()}
    classes: dict[str, bool] = {}  # kubeseed class name -> is a dataclass
    defined: set[str] = set()
    banned = {"main", *ROLE_INTERFACE}
    for tree in trees.values():
        for cls in ast.walk(tree):
            if not isinstance(cls, ast.ClassDef):
                continue
            dataclass = any("dataclass" in ast.unparse(d) for d in cls.decorator_list)
            classes[cls.name] = dataclass
            for stmt in cls.body:
                if isinstance(stmt, ast.FunctionDef) and not stmt.name.startswith("__"):
                    defined.add(stmt.name)
                elif dataclass and isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
                    defined.add(stmt.target.id)
            for node in ast.walk(cls):
                if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                    if isinstance(node.value, ast.Name) and node.value.id == "self":
                        defined.add(node.attr)
    for tree in trees.values():
        docstrings = {
            id(node.value)
            for node in ast.walk(tree)
            if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.arg):
                banned.add(node.arg)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
                banned.update(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", node.value))  # getattr(x, "name") and the like
            elif isinstance(node, ast.Call):
                func = node.func
                ours = isinstance(func, ast.Name) and classes.get(func.id)
                if not ours:
                    banned.update(k.arg for k in node.keywords if k.arg)
                if isinstance(func, ast.Attribute) and func.attr == "add_argument":
                    banned.update(_dests(node))
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                banned.update(_foreign_attributes(node))
    banned.update(_builtin_attributes())
    chosen = sorted(n for n in defined - banned if len(n) > 3)
    letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
    new = dict(zip(chosen, (f"_q{a}{b}".rstrip("_") for a in letters for b in "_" + letters)))
    out = {}
    for path, tree in trees.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in new:
                node.attr = new[node.attr]
            elif isinstance(node, ast.ClassDef):
                for stmt in node.body:
                    if isinstance(stmt, ast.FunctionDef) and stmt.name in new:
                        stmt.name = new[stmt.name]
                    elif classes[node.name] and isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
                        stmt.target.id = new.get(stmt.target.id, stmt.target.id)
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and classes.get(node.func.id):
                for k in node.keywords:
                    if k.arg in new:
                        k.arg = new[k.arg]
        out[path] = ast.unparse(tree)
    return out


def positional_only(sources: dict[str, str]) -> dict[str, str]:
    """``sources`` (one build's modules) with the leading parameters of their functions and lambdas made
    positional-only up to the first one a call in the build may pass by keyword (see _keywords): the minifier
    renames positional-only parameters in place, and then drops the ``/``, where it must otherwise bind each a short
    local name (``def f(ctx):A=ctx;...``). Never in a class with a base from outside the build, even through one of
    its own (the base, or the library calling it, may pass them by keyword), nor in a decorated function but a
    property; nowhere if a call passes ``**``."""
    trees = {name: ast.parse(text) for name, text in sources.items()}
    found = _keywords(trees)
    if found is None:
        return sources
    anywhere, by_name = found
    classes = {c.name: c for tree in trees.values() for c in ast.walk(tree) if isinstance(c, ast.ClassDef)}
    foreign: set[str] = set()  # classes with a foreign base, through their own ones too

    def based_abroad(cls: ast.ClassDef) -> bool:
        return any(not isinstance(b, ast.Name) or b.id not in classes or b.id in foreign for b in cls.bases)

    while len(foreign) < len(foreign | {n for n, c in classes.items() if based_abroad(c)}):
        foreign |= {n for n, c in classes.items() if based_abroad(c)}
    hooks = {id(f) for n in foreign for f in classes[n].body if isinstance(f, ast.FunctionDef)}
    for tree in trees.values():
        for func in ast.walk(tree):
            if isinstance(func, ast.FunctionDef) and any(ast.unparse(d) != "property" for d in func.decorator_list):
                continue  # a decorator's wrapper may call it by keyword
            if isinstance(func, (ast.FunctionDef, ast.Lambda)) and id(func) not in hooks:
                passed = anywhere | by_name.get(getattr(func, "name", ""), set())
                args = func.args
                n = next((i for i, a in enumerate(args.args) if a.arg in passed), len(args.args))
                args.posonlyargs, args.args = args.posonlyargs + args.args[:n], args.args[n:]
    return {name: ast.unparse(tree) for name, tree in trees.items()}


def _keywords(trees: dict[str, ast.Module]) -> tuple[set[str], dict[str, set[str]]] | None:
    """The keyword names the calls in ``trees`` may pass to the build's own functions: to any of them, and to the
    functions of one name (a class's name stands for its ``__init__``); None if a call passes ``**``. A call's
    keywords go:
    - to the functions of its callee's name where that name is only ever a function's or a class's, not a variable
      or an assigned attribute (``f(x=1)``, ``obj.method(x=1)``, ``Class(x=1)``);
    - nowhere where the callee is a dataclass of the build (they are its fields), or is foreign (a builtin, a name
      only a foreign import binds, an attribute of a foreign module, an attribute the build never defines nor
      assigns) and passes them on to no argument (builtins never do; others might, ``partial(f, x=1)``, when an
      argument is more than a literal);
    - else to any function (a variable, an attribute or an expression may hold any of them)."""
    defs: set[str] = set()  # names of the build's functions and classes
    classes: set[str] = set()
    dataclasses: set[str] = set()  # those of its classes whose __init__ dataclass writes
    variables: set[str] = set()  # names that may hold a function: every other binding, and parameters
    attributes: set[str] = set()  # attributes that may: assigned ones, class attributes, module variables
    for tree in trees.values():
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                defs.add(node.name)
            if isinstance(node, ast.ClassDef):
                classes.add(node.name)
            if isinstance(node, (ast.ClassDef, ast.Module)):
                assigns = [s for s in node.body if isinstance(s, (ast.Assign, ast.AnnAssign))]
                attributes.update(n.id for s in assigns for n in ast.walk(s) if isinstance(n, ast.Name))
            if isinstance(node, ast.ClassDef) and any("dataclass" in ast.unparse(d) for d in node.decorator_list):
                if not any(isinstance(f, ast.FunctionDef) and f.name == "__init__" for f in node.body):
                    dataclasses.add(node.name)
            elif isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):
                variables.add(node.id)
            elif isinstance(node, ast.Attribute) and not isinstance(node.ctx, ast.Load):
                attributes.add(node.attr)
            elif isinstance(node, ast.arg):
                variables.add(node.arg)
    anywhere: set[str] = set()
    by_name: dict[str, set[str]] = {}
    for tree in trees.values():
        foreign = {  # the names foreign imports bind in this module
            (a.asname or a.name).split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.Import)
            or (isinstance(node, ast.ImportFrom) and not (node.level or (node.module or "").startswith("kubeseed")))
            for a in node.names
        }
        foreign -= variables | defs  # unless a variable or a function of the build has the name too
        bound = _module_bindings(tree) | variables | defs
        for call in ast.walk(tree):
            if not isinstance(call, ast.Call) or not call.keywords:
                continue
            passed = {k.arg for k in call.keywords if k.arg}
            if len(passed) < len(call.keywords):
                return None
            func, name, ours, theirs, builtin = call.func, "", False, False, False
            if isinstance(func, ast.Name):
                name = func.id
                ours = name in defs and name not in variables
                builtin = hasattr(builtins, name) and name not in bound
                theirs = builtin or name in foreign
            elif isinstance(func, ast.Attribute):
                name, root = func.attr, func.value
                while isinstance(root, ast.Attribute):
                    root = root.value
                ours = name in defs and name not in attributes
                theirs = (isinstance(root, ast.Name) and root.id in foreign) or (not ours and name not in attributes)
            literals = (ast.Constant, ast.JoinedStr, ast.List, ast.Tuple, ast.Dict, ast.BinOp)
            forwards = not builtin and not all(isinstance(a, literals) for a in call.args)
            if ours and name in dataclasses or theirs and not forwards:
                continue
            if ours and not theirs:
                by_name.setdefault(name, set()).update(passed)
            else:
                anywhere.update(passed)
    for name in classes & set(by_name):  # what calling a class passes, its __init__ (or a base's) takes
        by_name.setdefault("__init__", set()).update(by_name[name])
    return anywhere, by_name


def inline_constants(sources: dict[str, str]) -> dict[str, str]:
    """``sources`` (one build's modules) with each module-level constant that is read once written where it is
    read, and its assignment gone: a string, number or tuple of them, bound once to a plain name no other module
    reads (nor the CLI) and no string names, in a module that binds that name nowhere else (no local, parameter
    or import of it)."""
    exported = _exported(sources)
    named = {  # getattr(module, "NAME"), globals()["NAME"]
        n.value
        for text in sources.values()
        for n in ast.walk(ast.parse(text))
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and n.value.isidentifier()
    }
    out = {}
    for path, text in sources.items():
        tree = ast.parse(text)
        bindings: dict[str, int] = {}
        reads: dict[str, int] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
                reads[node.id] = reads.get(node.id, 0) + 1
            else:
                for name in _binds(node):
                    bindings[name] = bindings.get(name, 0) + 1
        keep = exported.get(path, frozenset()) | named | {"main", *ROLE_INTERFACE}
        values = {
            stmt.targets[0].id: stmt.value
            for stmt in tree.body
            if isinstance(stmt, ast.Assign)
            and len(stmt.targets) == 1
            and isinstance(stmt.targets[0], ast.Name)
            and all(isinstance(v, ast.Constant) for v in getattr(stmt.value, "elts", [stmt.value]))
            and isinstance(stmt.value, (ast.Constant, ast.Tuple))
            and bindings.get(stmt.targets[0].id) == 1
            and reads.get(stmt.targets[0].id) == 1
            and stmt.targets[0].id not in keep
            and not stmt.targets[0].id.startswith("__")
        }
        if values:
            tree.body = [s for s in tree.body if not (isinstance(s, ast.Assign) and _target(s) in values)]
            for node in ast.walk(tree):
                for field, value in ast.iter_fields(node):
                    if isinstance(value, ast.Name) and value.id in values:
                        setattr(node, field, values[value.id])
                    elif isinstance(value, list):
                        value[:] = [values.get(v.id, v) if isinstance(v, ast.Name) else v for v in value]
            text = ast.unparse(tree)
        out[path] = text
    return out


def _target(stmt: ast.Assign) -> str:
    return stmt.targets[0].id if len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name) else ""


def _binds(node: ast.AST) -> list[str]:
    """The names ``node`` binds (or unbinds) itself: assignment targets, parameters, definitions, imports,
    ``except ... as``, ``global`` and ``nonlocal`` (which bind elsewhere)."""
    if isinstance(node, ast.Name):
        return [node.id]  # Store or Del
    if isinstance(node, ast.arg):
        return [node.arg]
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return [node.name]
    if isinstance(node, ast.ExceptHandler):
        return [node.name] if node.name else []
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        return [(a.asname or a.name).split(".")[0] for a in node.names]
    if isinstance(node, (ast.Global, ast.Nonlocal)):
        return list(node.names) * 2  # never a constant to inline
    return []


def _dests(call: ast.Call) -> set[str]:
    """The attribute names argparse sets for one add_argument call (its dest, or each option's name)."""
    names = {str(k.value.value) for k in call.keywords if k.arg == "dest" and isinstance(k.value, ast.Constant)}
    for a in call.args:
        if isinstance(a, ast.Constant) and isinstance(a.value, str):
            names.add(a.value.lstrip("-").replace("-", "_"))
    return names


def _foreign_attributes(node: ast.Import | ast.ImportFrom) -> set[str]:
    """Every attribute name of what a stdlib or third-party import brings, and of the classes in it."""
    import importlib

    if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("kubeseed")):
        return set()
    found: set[str] = set()
    objects: list[object] = []
    for alias in node.names:
        module_name = alias.name if isinstance(node, ast.Import) else node.module or ""
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        obj = getattr(module, alias.name, module) if isinstance(node, ast.ImportFrom) else module
        objects.append(obj)
        objects.extend(v for v in vars(module).values() if isinstance(v, type))
    for obj in objects:
        found.update(dir(obj))
        if isinstance(obj, type) or hasattr(obj, "__dict__"):
            for value in list(vars(obj).values()) if hasattr(obj, "__dict__") else []:
                if isinstance(value, type):
                    found.update(dir(value))
    return found


@lru_cache(maxsize=1)
def _builtin_names() -> frozenset[str]:
    return frozenset(dir(builtins))


@lru_cache(maxsize=1)
def _builtin_attributes() -> frozenset[str]:
    import builtins

    found: set[str] = set()
    for value in vars(builtins).values():
        if isinstance(value, type):
            found.update(dir(value))
    return frozenset(found)


def module_name(path: str) -> str:
    """The dotted module name of an archive path: kubeseed/runtime/join/__init__.py is kubeseed.runtime.join."""
    return path.removesuffix(".py").removesuffix("/__init__").replace("/", ".")


def _exported(sources: dict[str, str]) -> dict[str, frozenset[str]]:
    """For each module (archive name) the names others may take from it: what they import from it, and every
    name used as an attribute anywhere (``pki.load_key`` reads a name pki itself imported)."""
    found: dict[str, set[str]] = {}
    attributes: set[str] = set()
    for path, text in sources.items():
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ImportFrom):
                module = imported_module(node, module_name(path), path.endswith("__init__.py"))
                found.setdefault(module, set()).update(a.name for a in node.names)
            elif isinstance(node, ast.Attribute):
                attributes.add(node.attr)
    return {path: frozenset(found.get(module_name(path), set()) | attributes) for path in sources}


def _module_bindings(tree: ast.Module) -> set[str]:
    """The names a module binds: at its top level (functions, classes, assigned names) and by ``from`` imports
    anywhere (a function's lazy import too)."""
    found: set[str] = set()
    for stmt in tree.body:
        if isinstance(stmt, (ast.FunctionDef, ast.ClassDef)):
            found.add(stmt.name)
        elif isinstance(stmt, ast.Assign):
            found.update(t.id for t in stmt.targets if isinstance(t, ast.Name))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            found.update(a.asname or a.name for a in node.names)
    return found


def shrink(source: str, keep: frozenset[str] | None = None, exported: frozenset[str] | None = None) -> str:
    """The same program in fewer bytes: no comments, docstrings or annotations (class attribute annotations stay:
    dataclasses need them), shorter local and private global names, no typing imports left unused; the global
    names ``keep`` (by default the names runtime modules share) stay as they are. With ``exported`` (the names
    other modules import from this one), unused names of its kubeseed imports go too (those only annotations
    used). python-minifier is pinned: same inputs, same bytes."""
    tree = ast.parse(source)
    if any(_type_checking(node) for node in tree.body) or _class_annotations(tree):
        source = ast.unparse(_without_type_checking(tree))
    small = str(
        python_minifier.minify(
            source,
            remove_literal_statements=True,
            hoist_literals=False,  # hoisted literals pack worse once the whole runtime is compressed
            rename_globals=True,
            # modules import each other's names; builtins stay as they are (aliases like E=isinstance pack worse)
            preserve_globals=sorted((shared_names() if keep is None else keep) | _builtin_names()),
            remove_asserts=True,  # the runtime's asserts only narrow types for mypy
        )
    )
    return _drop_unused_typing(small, exported)


def _class_annotations(tree: ast.Module) -> bool:
    """Turn ``name: T = value`` into ``name = value`` in the classes that are not dataclasses (only a dataclass
    reads its annotations), and ``name: T`` into ``name: 0`` in dataclasses (a dataclass needs the annotation to
    make a field, not the type, unless it is a ClassVar, an InitVar or KW_ONLY); whether there were any."""
    found = False
    for cls in ast.walk(tree):
        if not isinstance(cls, ast.ClassDef):
            continue
        dataclass = any("dataclass" in ast.unparse(d) for d in cls.decorator_list)
        for i, node in enumerate(cls.body):
            if not isinstance(node, ast.AnnAssign) or not isinstance(node.target, ast.Name):
                continue
            if dataclass:
                if not re.search(r"ClassVar|InitVar|KW_ONLY", ast.unparse(node.annotation)):
                    node.annotation = ast.Constant(0)
                    found = True
            elif node.value is not None:
                cls.body[i] = ast.Assign([node.target], node.value, lineno=node.lineno)
                found = True
    return found


def _drop_unused_typing(source: str, exported: frozenset[str] | None = None) -> str:
    """Remove what only annotations needed once they are gone: unused names of module-level ``from typing`` and
    ``from collections.abc`` imports, and ``from __future__ import annotations`` where no class attribute
    annotation is left (those stay: dataclasses need them, and the future import keeps them unevaluated). With
    ``exported``: unused names of relative imports too, except those other modules import from this one."""
    tree = ast.parse(source)
    used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    annotated = any(isinstance(n, ast.AnnAssign) and not isinstance(n.annotation, ast.Constant) for n in ast.walk(tree))
    lines, dropped = source.split("\n"), set()
    for node in tree.body:
        if not isinstance(node, ast.ImportFrom) or node.lineno != node.end_lineno:
            continue
        if lines[node.lineno - 1] != ast.get_source_segment(source, node):
            continue  # shares its line with other statements: leave it
        if node.module == "__future__" and [a.name for a in node.names] == ["annotations"] and not annotated:
            dropped.add(node.lineno - 1)
        elif node.module in ("typing", "collections.abc") or (node.level and exported is not None):
            # TYPE_CHECKING too, once its blocks are gone
            keep = [a for a in node.names if (a.asname or a.name) in used | (exported or set())]
            names = ",".join(a.name + (f" as {a.asname}" if a.asname else "") for a in keep)
            if keep:
                where = "." * node.level + (node.module or "") if node.level else f" {node.module}"
                space = " " if node.module else ""  # as the minifier writes it: from..x import y, from..import y
                lines[node.lineno - 1] = f"from{where}{space}import {names}"
            else:
                dropped.add(node.lineno - 1)
    return "\n".join(line for i, line in enumerate(lines) if i not in dropped)


def _add(zf: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, date_time=_EPOCH)
    info.external_attr = 0o644 << 16
    info.compress_type = zipfile.ZIP_STORED
    zf.writestr(info, data)


def pack_sources(sources: dict[str, str]) -> bytes:
    """BOOT and the modules (archive name -> source) as one bzip2 stream: ``BOOT NUL module.name NUL source NUL
    ...``. One stream of all the code packs about a tenth smaller than gzip over a zip of files. The order of the
    modules changes the size a little: the smallest of a few fixed orders (by name either way, by size either
    way) is kept, so the same sources still give the same bytes."""
    items = [(module_name(path), text) for path, text in sources.items()]
    best = b""
    for order in (items, items[::-1], sorted(items, key=lambda i: len(i[1])), sorted(items, key=lambda i: -len(i[1]))):
        packed = bz2.compress("\0".join([BOOT] + [part for item in order for part in item]).encode(), 9)
        if not best or len(packed) < len(best):
            best = packed
    return best


def unpack_sources(data: bytes) -> dict[str, str]:
    """The modules inside a zipapp built by build_zipapp: module name -> source (what the loader sees)."""
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        main = zf.read("__main__.py").decode()
    m = re.search(r"read\(\)\[(\d+):(\d+)\]", main)
    assert m, "not a kubeseed runtime zipapp"
    packed = data[int(m.group(1)) : int(m.group(2))]
    items = bz2.decompress(packed).decode().split("\0")
    return dict(zip(items[1::2], items[2::2]))


CLI = "kubeseed/runtime/cli.py"


def without_help(source: str) -> str:
    """The CLI without its help text and argument names (``--help`` still lists the commands, and each command's
    flags with their choices). For the node payload's runtime only: it must fit EC2's 16 KiB of user-data, and a
    node's first boot needs the flags, not their descriptions; the README and the full runtime have them."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            node.keywords = [k for k in node.keywords if k.arg not in ("help", "description", "metavar")]
    return ast.unparse(tree)


def without_day2(source: str) -> str:
    """The CLI without the day-2 commands: every statement that names DAY2 itself (its definition, the loop that
    adds their parsers, the branch that runs them), not the blocks around them. For the node's first-boot runtime
    only, which must fit EC2's user-data: a node's day-2 work is its kubelet's (it renews its own certificate)."""
    tree = ast.parse(source)
    blocks = ("body", "orelse", "finalbody", "handlers")

    def names_day2(stmt: ast.stmt) -> bool:  # in the statement's own parts, not in the blocks it holds
        own = [value for field, value in ast.iter_fields(stmt) if field not in blocks]
        return any(
            isinstance(n, ast.Name) and n.id == "DAY2"
            for value in own
            for part in (value if isinstance(value, list) else [value])
            if isinstance(part, ast.AST)
            for n in ast.walk(part)
        )

    for node in ast.walk(tree):
        for field in ("body", "orelse", "finalbody"):
            body = getattr(node, field, None)
            if isinstance(body, list) and body and isinstance(body[0], ast.stmt):
                kept = [stmt for stmt in body if not names_day2(stmt)]
                body[:] = kept or [ast.Pass()]
    return ast.unparse(tree)


@lru_cache(maxsize=8)
def build_zipapp(role: str | None = None, minify: bool = True) -> bytes:
    """The runtime as an executable zip (``python3 kubeseed-runtime.pyz --help``), for ``role`` or complete:
    the modules packed with bzip2, and a one-line ``__main__.py`` that runs them."""
    code = runtime_sources(role)
    if role == "node":
        code[CLI] = without_day2(code[CLI])
        if minify:
            code[CLI] = without_help(code[CLI])
    sources = {"kubeseed/__init__.py": ""}
    if minify:
        code = inline_constants(positional_only(short_shared_names(short_attribute_names(prune(code)))))
        keep, exported = shared_names_of(code.values()), _exported(code)
        code = {n: shrink(t, keep, exported.get(n, frozenset())) for n, t in code.items()}
    sources.update(code)
    packed = pack_sources(sources)
    buf = io.BytesIO()
    buf.write(SHEBANG + packed)  # data before a zip is allowed: zipimport finds the zip from its end
    with zipfile.ZipFile(buf, "w") as zf:
        _add(zf, "__main__.py", MAIN.format(start=len(SHEBANG), end=len(SHEBANG) + len(packed)).encode())
    return buf.getvalue()
