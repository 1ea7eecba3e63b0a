"""The phase runner: every failure is recorded (a bug's too), status follows run order, timeouts are typed."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from kubeseed.runtime import api
from kubeseed.runtime.workflow import Context, Phase, PhaseError, Timeout, run, status


def _ok(ctx: Context) -> None:
    pass


def _bug(ctx: Context) -> None:
    raise RuntimeError("first line\nthe last line")


def _one_line_bug(ctx: Context) -> None:
    print(1 / 0)


def _refused(ctx: Context) -> None:
    raise PhaseError("expected this, found that. Fix it")


def runner(tmp_path: Path, verbose: bool = False) -> tuple[Context, io.StringIO]:
    out = io.StringIO()
    return Context("join", None, str(tmp_path), out=out, verbose=verbose), out


def state(tmp_path: Path) -> dict:
    return json.loads((tmp_path / "var/lib/kubeseed/state.json").read_text())


def test_an_unexpected_exception_is_recorded_with_its_last_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    ctx, out = runner(tmp_path)
    code = run(ctx, [Phase("first", "First", _ok), Phase("second", "Second", _bug), Phase("third", "Third", _ok)])
    assert code == 1
    rec = state(tmp_path)["phases"]
    assert list(rec) == ["first", "second"] and rec["first"]["result"] == "done"
    assert rec["second"]["result"] == "failed"
    assert rec["second"]["message"] == "the last line (-v shows the traceback)"
    err = capsys.readouterr().err
    assert err == "error: [second] the last line (-v shows the traceback)\n"  # one line, no traceback
    log = (tmp_path / "var/log/kubeseed.log").read_text().splitlines()
    assert json.loads(log[-1])["phase"] == "second" and json.loads(log[-1])["result"] == "failed"


def test_verbose_prints_the_traceback(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    ctx, _ = runner(tmp_path, verbose=True)
    assert run(ctx, [Phase("second", "Second", _bug)]) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "RuntimeError" in err
    assert state(tmp_path)["phases"]["second"]["message"] == "the last line"


def test_a_one_line_error_keeps_its_type(tmp_path: Path) -> None:
    ctx, _ = runner(tmp_path)
    assert run(ctx, [Phase("div", "Divide", _one_line_bug)]) == 1
    expected = "ZeroDivisionError: division by zero (-v shows the traceback)"
    assert state(tmp_path)["phases"]["div"]["message"] == expected


def test_status_lists_phases_in_run_order(tmp_path: Path) -> None:
    ctx, _ = runner(tmp_path)
    names = ["zeta", "alpha", "mid"]
    assert run(ctx, [Phase(n, n, _ok) for n in names[:2]] + [Phase("mid", "Mid", _refused)]) == 1
    ctx, out = runner(tmp_path)
    assert status(ctx) == 1
    rows = [line.split()[0] for line in out.getvalue().splitlines()[2:] if not line.startswith("  ")]
    assert rows == names
    assert "  expected this, found that. Fix it" in out.getvalue()


def test_waiting_past_the_deadline_raises_a_typed_timeout(tmp_path: Path) -> None:
    ctx = Context("join", None, str(tmp_path), out=io.StringIO(), timeout=0.2)
    reason = api.Unreachable("connection refused")

    def attempt() -> None:
        raise reason

    with pytest.raises(Timeout) as e:
        api.wait(ctx, "the API server", attempt, first=0.05, most=0.05)
    assert e.value.last is reason
    assert str(e.value) == "timed out after 0.2s waiting for the API server (last attempt: connection refused)"
