"""What the benchmarks share: a figure printed beside its target (issue 15), and the environment a fresh kubeseed
process is timed in. Not a benchmark itself."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path


def beside(value: float, target: float, at_most: bool, unit: str = "") -> str:
    """``(target <= 0.1 s: met)``: the target a figure is held to, and whether this run meets it."""
    met = value <= target if at_most else value >= target
    return f"(target {'<=' if at_most else '>='} {target:,g}{unit}: {'met' if met else 'NOT MET'})"


def kubeseed_command() -> list[str]:
    """The console script beside this Python (what users run), else ``python -m kubeseed.generator.cli``."""
    script = Path(sys.executable).parent / "kubeseed"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "kubeseed.generator.cli"]


def process_env(cache: Path) -> dict[str, str]:
    """The environment of a timed kubeseed process: built runtime zipapps cached in ``cache`` (a temporary
    directory, never the user's own cache), and Python's bytecode cache on, as after any first run of an installed
    kubeseed (PYTHONDONTWRITEBYTECODE would have every run compile kubeseed's modules again)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "KUBESEED_NO_CACHE")}
    env["KUBESEED_ZIPAPP_CACHE"] = str(cache)
    return env


def median_wall(
    cmd: Sequence[str], runs: int, cwd: Path, env: dict[str, str], stdin: bytes | None = None, warm: bool = True
) -> float:
    """Median wall-clock seconds of ``cmd`` as a fresh process (after one untimed run when ``warm``); raises
    CalledProcessError when it fails."""
    for _ in range(1 if warm else 0):
        subprocess.run(cmd, cwd=cwd, env=env, input=stdin, capture_output=True, check=True)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, cwd=cwd, env=env, input=stdin, capture_output=True, check=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)
