"""Run the runtime CLI and SIGKILL it at a chosen point: fault injection for the tests, never shipped.

    python killer.py MODULE.FUNCTION N [before|after] -- RUNTIME ARGS...

wraps ``kubeseed.runtime.MODULE.FUNCTION`` (or ``MODULE.CLASS.METHOD``) so that its N-th call kills the process
(before or after the call runs), as a power cut or an OOM kill would, with nothing flushed or cleaned up.
"""

import importlib
import os
import pkgutil
import signal
import sys


def main() -> None:
    target, nth, when = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    args = sys.argv[sys.argv.index("--") + 1 :]
    import kubeseed.runtime

    for info in pkgutil.walk_packages(kubeseed.runtime.__path__, "kubeseed.runtime."):  # so every import is patched
        if not info.name.endswith("__main__"):
            importlib.import_module(info.name)
    module_name, func_name = target.rsplit(".", 1)
    try:
        module = importlib.import_module(f"kubeseed.runtime.{module_name}")
    except ImportError:  # MODULE.CLASS.METHOD: the method is patched on its class
        module_name, class_name = module_name.rsplit(".", 1)
        module = getattr(importlib.import_module(f"kubeseed.runtime.{module_name}"), class_name)
    original = getattr(module, func_name)
    calls = [0]

    def wrapper(*a, **kw):  # type: ignore[no-untyped-def]
        calls[0] += 1
        if calls[0] == nth and when == "before":
            os.kill(os.getpid(), signal.SIGKILL)
        result = original(*a, **kw)
        if calls[0] == nth and when == "after":
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    setattr(module, func_name, wrapper)
    # modules that imported the function by name get the wrapper too
    for name, mod in list(sys.modules.items()):
        if name.startswith("kubeseed.runtime.") and getattr(mod, func_name, None) is original:
            setattr(mod, func_name, wrapper)
    from kubeseed.runtime.cli import main as cli_main

    sys.exit(cli_main(args))


if __name__ == "__main__":
    main()
