"""Text from outside (an unauthenticated API answer, say) reaches the terminal, state.json and `status` as one line
without control characters: no escape sequence, no forged line. The runtime's own multi-line and tabbed output
prints as before."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from kubeseed.runtime import workflow
from kubeseed.runtime.workflow import Context, Phase, PhaseError, run, status
from tests.support.hostile import HostileServer, json_answer
from tests.support.join import flags, join, node_zipapp

# ESC (a CSI that clears the screen, an OSC that sets the title), BEL, a newline that forges a line, DEL, the C1
# CSI, and the Unicode line and paragraph separators
EVIL = "\x1b[2J\x1b]0;owned\x07red\nerror: [discovery] FORGED\r\x7f\x9b31m\u2028x\u2029y"
CLEAN = " [2J ]0;owned red error: [discovery] FORGED   31m x y"
CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")


def test_clean_keeps_one_line_and_tabs() -> None:
    assert workflow.clean(EVIL) == CLEAN
    assert (
        workflow.clean("\t[ERROR CRI]: no socket") == "\t[ERROR CRI]: no socket"
    )  # preflight's own lines keep their tab


def test_a_hostile_answer_is_cleaned_wherever_it_goes(root: Path, cluster: Path) -> None:
    """cluster-info answers 500 with EVIL as its message: discovery retries, then fails with it as the last
    reason. The waiting lines, the failure line, state.json, the log and `status` carry it cleaned."""
    body = json.dumps({"kind": "Status", "message": EVIL}).encode()
    with HostileServer(json_answer(body, "500 Internal Server Error")) as server:
        r = join(root, *flags(cluster, server), timeout=3)  # type: ignore[arg-type]
    assert r.returncode == 1, r.stdout + r.stderr
    assert "FORGED" in r.stderr  # the server's text did reach the failure line...
    assert not CONTROL.search(r.stdout.replace("\n", "")) and not CONTROL.search(r.stderr.replace("\n", ""))
    errors = r.stderr.splitlines()
    assert len(errors) == 1 and errors[0].startswith("error: [discovery] timed out after 3s")  # ...as one line
    assert "\twaiting for cluster-info at" in r.stdout  # api.wait's progress lines keep their tab
    state = json.loads((root / "var/lib/kubeseed/state.json").read_text())
    message = state["phases"]["discovery"]["message"]
    assert "FORGED" in message and not CONTROL.search(message)
    log = (root / "var/log/kubeseed.log").read_text().splitlines()
    assert all(not CONTROL.search(json.loads(line).get("message", "")) for line in log)

    st = subprocess.run(
        [sys.executable, str(node_zipapp()), "status", "--root", str(root)], capture_output=True, text=True, timeout=60
    )
    assert st.returncode == 1
    lines = st.stdout.splitlines()
    assert [line for line in lines if "FORGED" in line] == [f"  {message}"]
    assert not CONTROL.search(st.stdout.replace("\n", ""))


def _fails(ctx: Context) -> None:
    raise PhaseError(f"the server said: {EVIL}")


def _bug(ctx: Context) -> None:
    raise RuntimeError(f"first line\nlast line {EVIL[:9]}")


@pytest.mark.parametrize("phase,expected", [(_fails, "the server said: "), (_bug, "last line ")])
def test_a_failure_is_recorded_and_printed_as_one_clean_line(
    tmp_path: Path, capsys: pytest.CaptureFixture, phase: object, expected: str
) -> None:
    out = io.StringIO()
    ctx = Context("join", None, str(tmp_path), out=out)
    assert run(ctx, [Phase("p", "P", phase)]) == 1  # type: ignore[arg-type]
    message = json.loads((tmp_path / "var/lib/kubeseed/state.json").read_text())["phases"]["p"]["message"]
    assert message.startswith(expected) and not CONTROL.search(message)
    assert capsys.readouterr().err == f"error: [p] {message}\n"
    # status of a state.json written by an older runtime (raw control characters in it) prints them cleaned too
    state = tmp_path / "var/lib/kubeseed/state.json"
    raw = json.loads(state.read_text())
    raw["phases"]["p"]["message"] = EVIL
    state.write_text(json.dumps(raw))
    out = io.StringIO()
    assert status(Context("status", None, str(tmp_path), out=out)) == 1
    assert out.getvalue().splitlines()[-1] == "  " + CLEAN


def test_say_prints_each_given_line_and_only_those() -> None:
    out = io.StringIO()
    ctx = Context("init", None, out=out)
    ctx.say("", "Your Kubernetes control-plane has initialized successfully!", "\t--discovery-token-ca-cert-hash x")
    ctx.say(f"\twaiting for the API server: {EVIL}")
    assert out.getvalue().splitlines() == [
        "",
        "Your Kubernetes control-plane has initialized successfully!",
        "\t--discovery-token-ca-cert-hash x",
        f"\twaiting for the API server: {CLEAN}",
    ]
