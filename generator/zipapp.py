"""Build the runtime zipapp from ``runtime/``: small and reproducible (same sources, same bytes)."""

from __future__ import annotations

import io
import lzma
import zipfile
from functools import lru_cache
from pathlib import Path

import python_minifier

import kubeseed.runtime

SHEBANG = b"#!/usr/bin/env python3\n"
PACK = "kubeseed-runtime.lzma"
# Raw LZMA2 (no xz container: the zip and the payload encoding carry checksums); pb=0 suits text.
LZMA_FILTERS = [{"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME, "pb": 0, "dict_size": 1 << 20}]
# The zipapp's __main__: imports kubeseed.* from the LZMA-packed sources beside it (Python >= 3.9, stdlib only).
LOADER = f"""import importlib.abc, importlib.util, lzma, sys
_lzma2 = [{{"id": lzma.FILTER_LZMA2, "dict_size": 1 << 20}}]
_parts = lzma.decompress(__loader__.get_data("{PACK}"), lzma.FORMAT_RAW, None, _lzma2).decode().split("\\0")
_sources = dict(zip(_parts[::2], _parts[1::2]))
class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path=None, target=None):
        if name in _sources:
            return importlib.util.spec_from_loader(name, self, is_package=name.count(".") < 2)
    def create_module(self, spec):
        return None
    def exec_module(self, module):
        name = module.__name__
        exec(compile(_sources[name], __loader__.archive + "/" + name.replace(".", "/") + ".py", "exec"), vars(module))
sys.meta_path.insert(0, _Finder())
from kubeseed.runtime.cli import main
sys.exit(main())
"""
_EPOCH = (1980, 1, 1, 0, 0, 0)


# The modules each role's first boot imports. A payload carries only its role's (a node needs no PKI code);
# the full runtime (every module) is what golden images bake in.
COMMON = ("__init__", "cli", "config", "preflight", "tokens", "workflow")
ROLE_MODULES = {
    "node": COMMON + ("api", "join", "keys", "kubeconfig", "kubelet"),
    "master": COMMON + ("api", "bootstrap", "keys", "kubeconfig", "kubelet", "manifests", "master", "pki"),
}


def runtime_sources(role: str | None = None) -> dict[str, str]:
    """The runtime's modules for ``role`` (all of them for None): archive name -> source text."""
    root = Path(kubeseed.runtime.__file__).parent
    names = ROLE_MODULES[role] if role else sorted(p.stem for p in root.glob("*.py") if p.stem != "__main__")
    return {f"kubeseed/runtime/{n}.py": (root / f"{n}.py").read_text() for n in sorted(names)}


def shrink(source: str) -> str:
    """The same program in fewer bytes: no comments, docstrings or annotations (class attribute annotations stay:
    dataclasses need them), shorter local names. python-minifier is pinned: same inputs, same bytes."""
    return str(
        python_minifier.minify(
            source,
            remove_literal_statements=True,
            hoist_literals=False,  # hoisted literals pack worse once the whole runtime is compressed
            rename_globals=False,  # modules import each other's names
            remove_asserts=True,  # the runtime's asserts only narrow types for mypy
        )
    )


def _add(zf: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, date_time=_EPOCH)
    info.external_attr = 0o644 << 16
    info.compress_type = zipfile.ZIP_STORED
    zf.writestr(info, data)


def pack_sources(sources: dict[str, str]) -> bytes:
    """Modules (archive name -> source) as one LZMA2 stream: ``module.name NUL source NUL ...``. One stream of
    all the code packs about a tenth smaller than gzip over a zip of files (deflate's window is 32 KB)."""
    parts = []
    for name, text in sources.items():
        parts += [name[: -len(".py")].replace("/", ".").removesuffix(".__init__"), text]
    raw = "\0".join(parts).encode()
    return lzma.compress(raw, format=lzma.FORMAT_RAW, filters=LZMA_FILTERS)


def unpack_sources(data: bytes) -> dict[str, str]:
    """The modules inside a zipapp built by build_zipapp: module name -> source (what the loader sees)."""
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        items = lzma.decompress(zf.read(PACK), format=lzma.FORMAT_RAW, filters=LZMA_FILTERS).decode().split("\0")
    return dict(zip(items[::2], items[1::2]))


@lru_cache(maxsize=8)
def build_zipapp(role: str | None = None, minify: bool = True) -> bytes:
    """The runtime as an executable zip (``python3 kubeseed-runtime.pyz --help``), for ``role`` or complete:
    a small loader as ``__main__.py`` and the modules, packed with LZMA, beside it."""
    sources = {"kubeseed/__init__.py": ""}
    sources.update((n, shrink(t) if minify else t) for n, t in runtime_sources(role).items())
    buf = io.BytesIO()
    buf.write(SHEBANG)
    with zipfile.ZipFile(buf, "w") as zf:
        _add(zf, "__main__.py", LOADER.encode())
        _add(zf, PACK, pack_sources(sources))
    return buf.getvalue()
