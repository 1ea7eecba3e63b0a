"""What the ``kubeseed`` command line writes to the terminal besides its results: progress lines and errors.

Every progress line goes to stderr through here: ``Message... [done]`` (``[done]`` green on a terminal unless
NO_COLOR is set), or for a long step ``Message...`` when it starts and ``Message... [done] 12.3 s`` when it ends.
``run_command`` turns the errors a user can cause into one ``error: ...`` line and an exit code."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Callable

from .errors import UserError


def tty(stream: object) -> bool:
    """Whether ``stream`` is a terminal that takes colour (NO_COLOR unset)."""
    return bool(getattr(stream, "isatty", lambda: False)()) and os.environ.get("NO_COLOR") is None


def say(message: str) -> None:
    """One line on stderr, flushed (stderr is looked up on each call, so redirecting sys.stderr silences it)."""
    print(message, file=sys.stderr, flush=True)


def _done() -> str:
    return "\033[32m[done]\033[0m" if tty(sys.stderr) else "[done]"


def progress(message: str) -> None:
    """One progress line on stderr (``... [done]`` green on a terminal)."""
    say(f"{message}... {_done()}")


@contextmanager
def step(message: str) -> Iterator[None]:
    """``message...`` when a long step starts, ``message... [done] 12.3 s`` when it ends (stderr)."""
    say(f"{message}...")
    t0 = time.monotonic()
    yield
    say(f"{message}... {_done()} {time.monotonic() - t0:.1f} s")


def run_command(func: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """``func(args)``'s exit code; a UserError or ConfigError is one ``error:`` line and the error's exit code
    (UserError.exit_code: 2, a failed image build 3; ConfigError 2), an OSError one line and 1."""
    from kubeseed.runtime.config import ConfigError

    try:
        return func(args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; every file is written whole or not at all", file=sys.stderr)
        return 130
    except OSError as e:
        where = f"{e.filename}: " if e.filename else ""
        print(f"error: {where}{e.strerror or e}", file=sys.stderr)
        return 1
