"""Commands as ordered lists of named phases over one shared context (like kubeadm's workflow runner)."""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
import time
from typing import Any, Callable, Dict, List, Optional, Union

from .config import LOG_PATH, STATE_PATH, NodeConfig

ROOT = ""  # the root every write of a running command must stay in (run() sets it; "" is the machine's own /)


class PhaseError(Exception):
    """A phase failed: ``str()`` says what was expected, what was found, and the fix."""


class Timeout(PhaseError):
    """The run's deadline passed while waiting for something; ``last`` is the last reason it was not there."""

    last: Optional[Exception] = None


class Context:
    def __init__(
        self,
        command: str,
        config: Optional[NodeConfig],
        root: str = "",
        node_name: str = "",
        ignore_errors: frozenset = frozenset(),
        out: Any = None,
        timeout: float = 300,
        verbose: bool = False,
    ) -> None:
        self.command, self.config, self.root, self.node_name = command, config, root, node_name
        self.ignore_errors = ignore_errors
        self.out = out or sys.stdout
        self.timeout, self.deadline = timeout, time.monotonic() + timeout
        self.verbose = verbose
        self.state = STATE_PATH  # where run() records the phases (upgrade keeps its own)

    def path(self, p: str) -> str:
        """``p`` on the machine, or inside ``--root``."""
        return os.path.join(self.root, p.lstrip("/")) if self.root else p

    def name(self) -> str:
        """The node name: --node-name, else the node config's, else the host name (lower case)."""
        import socket

        return self.node_name or (self.config.node_name if self.config else "") or socket.gethostname().lower()

    def say(self, *lines: str) -> None:
        """Print each line cleaned (see clean): what came from outside can neither add lines nor reach a terminal
        as escape sequences. Multi-line text is passed as several lines."""
        print("\n".join(map(clean, lines)), file=self.out, flush=True)


def clean(text: str) -> str:
    """``text`` as one line without terminal escapes: control characters (C0 but tab, DEL, C1, U+2028/2029) become
    spaces."""
    return re.sub("[\0-\b\n-\x1f\x7f-\x9f\u2028\u2029]", " ", text)


class Phase:
    def __init__(self, name: str, title: str, run: Callable[[Context], None]) -> None:
        self.name, self.title, self.run = name, title, run


def confine(path: str, top: str = "") -> str:
    """``path``, if no symlink on it leads out of ``top`` (default: the root; a machine's own / is a root too);
    else PhaseError naming it."""
    top = os.path.realpath(top or ROOT or "/")
    if os.path.commonpath((os.path.realpath(path), top)) != top:
        raise PhaseError(f"{path}: a symlink leads out of {top}; remove it")
    return path


def _writable(path: str) -> str:
    """``path``, to be written: confined to the root, its missing directories made (0700: cli sets umask 077)."""
    os.makedirs(os.path.dirname(confine(path)) or ".", exist_ok=True)
    return path


def write_atomic(path: str, data: Union[str, bytes], mode: int = 0o600) -> None:
    """Write through a temporary file in the same directory, then rename: a reader never sees half a file, and a
    symlink at ``path`` is replaced, never followed (_writable checks the rest of the path)."""
    if isinstance(data, str):
        data = data.encode()
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(_writable(path)) or ".", prefix=".tmp-")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load_state(ctx: Context) -> Dict[str, Any]:
    try:
        with open(ctx.path(ctx.state)) as f:
            state = json.load(f)
        return state if isinstance(state, dict) and isinstance(state.get("phases"), dict) else {"phases": {}}
    except (OSError, ValueError):
        return {"phases": {}}


def _log(ctx: Context, record: Dict[str, Any]) -> None:
    line = json.dumps(record, sort_keys=True)
    fd = os.open(_writable(ctx.path(LOG_PATH)), os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "a") as f:
        f.write(line + "\n")
    if not ctx.root:  # the same line to the journal (syslog), for first-boot debugging: journalctl -t kubeseed
        import syslog

        syslog.openlog("kubeseed")
        syslog.syslog(line)


def _mark(ok: bool, out: Any) -> str:
    word = "[done]" if ok else "[failed]"
    if getattr(out, "isatty", lambda: False)() and "NO_COLOR" not in os.environ:
        return f"\033[{32 if ok else 31}m{word}\033[0m"
    return word


def run(ctx: Context, phases: List[Phase], only: str = "", skip: frozenset = frozenset()) -> int:
    """Run ``phases`` in order, skipping recorded ones; record each result. Returns the exit code. One run at a
    time per root: it holds a lock on /var/lib/kubeseed, and a second run says so and stops. Every write stays in
    ctx.root (_writable)."""
    import fcntl

    global ROOT
    ROOT, fd = ctx.root, -1
    try:
        fd = os.open(os.path.dirname(_writable(ctx.path(ctx.state))), os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise PhaseError("another init or join is running here; let it end, then run again") from None
        return _run(ctx, phases, only, skip)
    finally:
        ROOT = ""
        if fd >= 0:
            os.close(fd)


def _run(ctx: Context, phases: List[Phase], only: str, skip: frozenset) -> int:
    state = load_state(ctx)
    if state.get("command") not in (None, ctx.command):
        raise PhaseError(
            f"this machine already ran `{state['command']}`; run `reset` (a master's or the full runtime has it) "
            f"before `{ctx.command}`"
        )
    state["command"] = ctx.command
    for phase in phases:
        if (only and phase.name != only) or phase.name in skip:
            continue
        rec = state["phases"].get(phase.name, {})
        if rec.get("result") == "done" and not only:
            ctx.say(f"[{phase.name}] already done, skipping")
            continue
        ctx.say(f"[{phase.name}] {phase.title}...")
        started = time.time()
        message, ok = "", True
        try:
            phase.run(ctx)
        except PhaseError as e:
            message, ok = str(e), False
        except Exception as e:  # a bug, or something no check foresaw: recorded like any failure
            message, ok = f"{type(e).__name__}: {e}".strip().splitlines()[-1], False  # its last line
            if ctx.verbose:
                import traceback

                traceback.print_exc()
            else:
                message += " (-v shows the traceback)"
        rec = {
            "result": "done" if ok else "failed",
            "duration": round(time.time() - started, 3),
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        }
        if message:
            rec["message"] = message = clean(message)
        state["phases"][phase.name] = rec
        write_atomic(ctx.path(ctx.state), json.dumps(state, indent=1) + "\n")
        _log(ctx, dict(rec, command=ctx.command, phase=phase.name))
        print(f"[{phase.name}] {phase.title}... {_mark(ok, ctx.out)}", file=ctx.out, flush=True)  # not say: colours
        if not ok:
            print(f"error: [{phase.name}] {message}", file=sys.stderr, flush=True)
            return 1
    return 0


def status(ctx: Context) -> int:
    state = load_state(ctx)
    if not state["phases"]:
        ctx.say(f"nothing has run yet (no {ctx.path(ctx.state)})")
        return 0
    ctx.say(f"command: {state.get('command', '?')}")
    ctx.say(f"{'PHASE':<22}{'RESULT':<9}DURATION")
    failed = 0
    for name, rec in state["phases"].items():  # in the order they first ran (state.json keeps it)
        ctx.say(f"{name:<22}{rec.get('result', '?'):<9}{rec.get('duration', 0):.2f}s")
        if rec.get("result") != "done":
            failed += 1
            ctx.say(f"  {rec.get('message', '')}")
    return 1 if failed else 0
