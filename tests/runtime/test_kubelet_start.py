"""kubelet-start on a real host talks to systemd; here a stand-in `systemctl` on PATH records the calls."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from kubeseed.runtime import kubelet
from kubeseed.runtime.workflow import Context, PhaseError


def fake_systemctl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, states: list[str]) -> Path:
    """A `systemctl` that logs its arguments and answers `is-active` with ``states`` in turn."""
    calls = tmp_path / "calls"
    answers = tmp_path / "answers"
    answers.write_text("\n".join(states) + "\n")
    script = tmp_path / "bin" / "systemctl"
    script.parent.mkdir()
    script.write_text(
        f"""#!/bin/sh
echo "$@" >> {calls}
if [ "$1" = is-active ]; then
  head -n1 {answers}; sed -i 1d {answers}
fi
"""
    )
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{script.parent}:/usr/bin:/bin")
    return calls


def test_enables_restarts_and_waits_until_active(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = fake_systemctl(tmp_path, monkeypatch, ["activating", "active"])
    ctx = Context("join", None, out=io.StringIO(), timeout=30)
    kubelet.start_phase(ctx)
    assert calls.read_text().splitlines() == [
        "daemon-reload",
        "enable kubelet",
        "restart kubelet",
        "is-active kubelet",
        "is-active kubelet",
    ]


def test_a_failed_kubelet_says_where_to_look(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_systemctl(tmp_path, monkeypatch, ["failed"])
    with pytest.raises(PhaseError, match="the kubelet is failed. See: systemctl status kubelet; journalctl -u kubelet"):
        kubelet.start_phase(Context("join", None, out=io.StringIO(), timeout=30))


def test_root_starts_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = fake_systemctl(tmp_path, monkeypatch, ["active"])
    out = io.StringIO()
    kubelet.start_phase(Context("join", None, root=str(tmp_path), out=out))
    assert not calls.exists()
    assert "not starting services" in out.getvalue() and "restart kubelet" in out.getvalue()
