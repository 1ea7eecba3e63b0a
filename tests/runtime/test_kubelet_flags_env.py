"""kubeadm-flags.env read back as systemd reads it (its EnvironmentFile parser, then ExecStart's split of
$KUBELET_KUBEADM_ARGS) gives the kubelet exactly the flags configured, whatever characters the values hold; a
--node-name that is not a DNS name is refused before anything is written."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from kubeseed.runtime import kubelet
from kubeseed.runtime.config import parse_node_config
from kubeseed.runtime.workflow import Context
from tests.support.join import flags, node_zipapp

WHITESPACE = " \t\n\r"
SHELL_NEED_ESCAPE = '"\\`$'


def systemd_env_file(text: str) -> dict[str, str]:
    """systemd's parse_env_file_internal (src/basic/env-file.c, v254+), as load_env_file uses it for
    EnvironmentFile=: KEY=VALUE lines, '#'/';' comments, single and double quotes, backslash escapes."""
    env: dict[str, str] = {}
    state, key, value = "PRE_KEY", "", ""
    last_key_ws: int | None = None
    last_value_ws: int | None = None

    def push() -> None:
        k = key[:last_key_ws] if last_key_ws is not None else key
        env[k] = value

    for c in text:
        if state == "PRE_KEY":
            if c in "#;":
                state = "COMMENT"
            elif c not in WHITESPACE:
                state, key, last_key_ws = "KEY", c, None
        elif state == "KEY":
            if c in "\n\r":
                state, key = "PRE_KEY", ""
            elif c == "=":
                state, value, last_value_ws = "PRE_VALUE", "", None
            else:
                if c not in WHITESPACE:
                    last_key_ws = None
                elif last_key_ws is None:
                    last_key_ws = len(key)
                key += c
        elif state == "PRE_VALUE":
            if c in "\n\r":
                push()
                state, key = "PRE_KEY", ""
            elif c == "'":
                state = "SINGLE_QUOTE_VALUE"
            elif c == '"':
                state = "DOUBLE_QUOTE_VALUE"
            elif c == "\\":
                state = "VALUE_ESCAPE"
            elif c not in WHITESPACE:
                state, value = "VALUE", value + c
        elif state == "VALUE":
            if c in "\n\r":
                if last_value_ws is not None:
                    value = value[:last_value_ws]
                push()
                state, key = "PRE_KEY", ""
            elif c == "\\":
                state, last_value_ws = "VALUE_ESCAPE", None
            else:
                if c not in WHITESPACE:
                    last_value_ws = None
                elif last_value_ws is None:
                    last_value_ws = len(value)
                value += c
        elif state == "VALUE_ESCAPE":
            state = "VALUE"
            if c not in "\n\r":
                value += c
        elif state == "SINGLE_QUOTE_VALUE":
            if c == "'":
                state = "PRE_VALUE"
            else:
                value += c
        elif state == "DOUBLE_QUOTE_VALUE":
            if c == '"':
                state = "PRE_VALUE"
            elif c == "\\":
                state = "DOUBLE_QUOTE_VALUE_ESCAPE"
            else:
                value += c
        elif state == "DOUBLE_QUOTE_VALUE_ESCAPE":
            state = "DOUBLE_QUOTE_VALUE"
            if c in SHELL_NEED_ESCAPE:
                value += c
            elif c != "\n":
                value += "\\" + c
        elif state == "COMMENT":
            if c == "\\":
                state = "COMMENT_ESCAPE"
            elif c in "\n\r":
                state = "PRE_KEY"
        elif state == "COMMENT_ESCAPE":
            state = "PRE_KEY" if c in "\n\r" else "COMMENT"
    if state in ("PRE_VALUE", "VALUE", "VALUE_ESCAPE", "SINGLE_QUOTE_VALUE", "DOUBLE_QUOTE_VALUE"):
        if state == "VALUE" and last_value_ws is not None:
            value = value[:last_value_ws]
        push()
    return env


def systemd_split(value: str) -> list[str]:
    """What ExecStart makes of an unquoted $VAR word: replace_env_argv's strv_split_full(..., WHITESPACE,
    EXTRACT_RELAX|EXTRACT_UNQUOTE), i.e. extract_first_word: quotes group and are removed, a backslash takes the
    next character literally, inside quotes as well."""
    words: list[str] = []
    i, n = 0, len(value)
    while True:
        while i < n and value[i] in WHITESPACE:
            i += 1
        if i >= n:
            return words
        word, quote = "", ""
        while i < n:
            c = value[i]
            if c == "\\":
                i += 1
                if i < n:
                    word += value[i]
            elif quote:
                if c == quote:
                    quote = ""
                else:
                    word += c
            elif c in "'\"":
                quote = c
            elif c in WHITESPACE:
                break
            else:
                word += c
            i += 1
        words.append(word)


VALUES = {
    "node-labels": "a=\"b c\",d='e'",
    "kube-reserved": "cpu=1\\2\\\\",
    "pod-infra-container-image": "$(touch /tmp/x) `id` ${HOME} $HOME",
    "eviction-hard": 'x" LD_PRELOAD=/tmp/x.so "y',
    "register-with-taints": "\\",
    "max-pods": 150,
}


def test_the_flags_file_reads_back_as_exactly_the_configured_flags(tmp_path: Path, node_doc: dict[str, Any]) -> None:
    node_doc["kubelet"] = {"extraArgs": VALUES}
    ctx = Context("join", parse_node_config(node_doc), str(tmp_path), node_name="worker-1", out=io.StringIO())
    kubelet.config_phase(ctx)
    text = (tmp_path / "var/lib/kubelet/kubeadm-flags.env").read_text()
    env = systemd_env_file(text)
    assert list(env) == ["KUBELET_KUBEADM_ARGS"], text  # no value ended the quotes and started a variable
    assert systemd_split(env["KUBELET_KUBEADM_ARGS"]) == [
        "--container-runtime-endpoint=unix:///run/containerd/containerd.sock",
        "--hostname-override=worker-1",
        *(f"--{k}={v}" for k, v in VALUES.items()),
    ]
    drop_in = (tmp_path / "etc/systemd/system/kubelet.service.d/10-kubeadm.conf").read_text()
    assert " $KUBELET_KUBEADM_ARGS " in drop_in  # one unquoted word: ExecStart splits it as above


def test_plain_flags_read_as_kubeadm_writes_them(tmp_path: Path, node_doc: dict[str, Any]) -> None:
    node_doc["kubelet"] = {"extraArgs": {"max-pods": "150", "node-labels": "a=b,c=d"}}
    ctx = Context("join", parse_node_config(node_doc), str(tmp_path), node_name="worker-1", out=io.StringIO())
    kubelet.config_phase(ctx)
    assert (tmp_path / "var/lib/kubelet/kubeadm-flags.env").read_text() == (
        'KUBELET_KUBEADM_ARGS="--container-runtime-endpoint=unix:///run/containerd/containerd.sock '
        '--hostname-override=worker-1 --max-pods=150 --node-labels=a=b,c=d"\n'
    )


@pytest.mark.parametrize("name", ['x"\nLD_PRELOAD=/tmp/x.so', "Worker-1", "worker 1", "w\u212aorker"])
def test_a_node_name_that_is_not_a_dns_name_is_refused(root: Path, cluster: Path, name: str) -> None:
    cmd = [sys.executable, str(node_zipapp()), "join", *flags(cluster, _Endpoint()), "--root", str(root)]
    r = subprocess.run([*cmd, "--node-name", name], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and r.stdout == "", r.stdout + r.stderr
    assert r.stderr.startswith("error: --node-name: ") and "is not a valid node name (lower-case DNS name)" in r.stderr
    assert list(root.rglob("*")) == []


class _Endpoint:
    endpoint = "127.0.0.1:9"  # never reached: the flags are refused first
