"""Issue 12, "the first hour, tried as a new user would": hints, warnings, help and errors of the real CLI."""

from __future__ import annotations

import argparse
import base64
import datetime
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from cryptography import x509

from kubeseed.generator.cli import build_parser
from tests.support.helpers import cloud_init_files, kubeseed, kubeseed_bytes

README = Path(__file__).resolve().parents[2] / "README.md"


# -- item 10: a master payload never lands world-readable by following a hint ------------------------------------


def test_hints_and_readme_write_payloads_with_out(tmp_path: Path) -> None:
    r = kubeseed("cluster", "create", "demo", "--endpoint", "10.0.0.10:6443", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "kubeseed render master demo -o master.yaml" in r.stdout
    assert ">" not in r.stdout.split("Next:")[1]
    assert not re.search(r"kubeseed render .*> *\S+\.(yaml|ign)", README.read_text())


def test_render_master_to_stdout_warns_on_stderr(cluster: Path) -> None:
    r = kubeseed_bytes("render", "master", "demo", cwd=cluster.parent)
    assert r.returncode == 0, r.stderr
    warning = [line for line in r.stderr.decode().splitlines() if line.startswith("warning:")]
    assert len(warning) == 1 and "CA keys" in warning[0] and "-o FILE" in warning[0]
    assert "/etc/kubeseed/config.yaml" in cloud_init_files(r.stdout)  # the payload itself, unchanged
    r = kubeseed("render", "master", "demo", "-o", "m.yaml", cwd=cluster.parent)
    assert r.returncode == 0 and "warning" not in r.stderr
    r = kubeseed_bytes("render", "node", "demo", cwd=cluster.parent)
    assert r.returncode == 0 and b"warning" not in r.stderr


# -- item 11: over the limit names what fits; a node payload names its token -------------------------------------


def test_over_limit_names_preinstalled_and_larger_platforms(cluster: Path) -> None:
    r = kubeseed("render", "master", "demo", "--platform", "aws", "--gzip", "-o", "m.gz", cwd=cluster.parent)
    assert r.returncode == 2 and len(r.stderr.splitlines()) == 1, r.stderr
    assert "over the AWS EC2 user-data limit" in r.stderr
    m = re.search(r"--runtime preinstalled .*golden image.*?([\d,]+) bytes", r.stderr)
    assert m and int(m.group(1).replace(",", "")) <= 16_384, r.stderr
    size = re.search(r"payload is ([\d,]+) bytes", r.stderr)
    bigger = re.search(r"or a platform with a larger limit: --platform (\w+) \(([\d,]+)\)", r.stderr)
    assert size and bigger and int(bigger.group(2).replace(",", "")) >= int(size.group(1).replace(",", ""))
    assert "gce (262,144)" in r.stderr
    assert not (cluster.parent / "m.gz").exists()
    ok = kubeseed(
        "render",
        "master",
        "demo",
        "--platform",
        "aws",
        "--gzip",
        "--runtime",
        "preinstalled",
        "-o",
        "m.gz",
        cwd=cluster.parent,
    )
    assert ok.returncode == 0, ok.stderr


def test_render_node_reports_token_id_and_expiry_not_secret(cluster: Path) -> None:
    token = yaml.safe_load((cluster / "tokens.yaml").read_text())["tokens"][0]
    r = kubeseed("render", "node", "demo", "-o", "n.yaml", cwd=cluster.parent)
    assert r.returncode == 0, r.stderr
    tid, secret = token["token"].split(".")
    assert f"bootstrap token {tid}" in r.stderr and token["expires"] in r.stderr
    assert secret not in r.stderr + r.stdout


# -- item 12: help and errors ---------------------------------------------------------------------------------------


def test_no_command_lists_the_commands(tmp_path: Path) -> None:
    r = kubeseed(cwd=tmp_path)
    assert r.returncode == 2
    for command in ("cluster", "render", "token", "user", "quickstart", "seed", "image"):
        assert re.search(rf"^\s+{command}\s", r.stderr, re.M), command
    r = kubeseed("token", cwd=tmp_path)
    assert r.returncode == 2 and re.search(r"^\s+create\s", r.stderr, re.M)


def _commands(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from _commands(child, (*path, name))


def test_every_help_names_positionals_and_shows_defaults(tmp_path: Path) -> None:
    for path, parser in _commands(build_parser()):
        r = kubeseed(*path, "--help", cwd=tmp_path)
        assert r.returncode == 0, (path, r.stderr)
        text = " ".join(r.stdout.split())
        for action in parser._actions:
            if not action.option_strings and not isinstance(action, argparse._SubParsersAction):
                assert action.help, (path, action.dest)
            if action.option_strings and action.default not in (None, False, argparse.SUPPRESS):
                assert "default" in text and str(action.default) in text, (path, action.dest)


def test_kubeadm_spellings_and_version_without_v(tmp_path: Path) -> None:
    r = kubeseed(
        "cluster",
        "create",
        "demo",
        "--control-plane-endpoint",
        "10.0.0.10:6443",
        "--pod-network-cidr",
        "10.32.0.0/16",
        "--service-cidr",
        "10.100.0.0/16",
        "--kubernetes-version",
        "1.34.0",
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    doc = yaml.safe_load((tmp_path / "demo/cluster.yaml").read_text())
    assert doc["controlPlaneEndpoint"] == "10.0.0.10:6443" and doc["kubernetesVersion"] == "v1.34.0"
    assert doc["networking"]["podSubnet"] == "10.32.0.0/16" and doc["networking"]["serviceSubnet"] == "10.100.0.0/16"


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--service-subnet", "10.96.0.0/29"], "--service-subnet: "),
        (["--pod-subnet", "10.96.0.0/16"], "--service-subnet: 10.96.0.0/12 overlaps --pod-subnet 10.96.0.0/16"),
        (["--pod-subnet", "10.0.0.0/30"], "--pod-subnet: "),
        (["--kubernetes-version", "banana"], "--kubernetes-version: "),
        (["--name", "Not_A_Label"], "--name: "),
    ],
)
def test_flag_errors_name_the_flag(tmp_path: Path, flags: list[str], named: str) -> None:
    r = kubeseed("cluster", "create", "demo", "--endpoint", "10.0.0.10:6443", *flags, cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.startswith(f"error: {named}"), r.stderr
    assert "networking." not in r.stderr and not (tmp_path / "demo").exists()


def test_image_build_refuses_missing_provision_script(tmp_path: Path) -> None:
    r = kubeseed("image", "build", "-o", "x.img", "--provision", "no-such.sh", cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.startswith('error: --provision: "no-such.sh"'), r.stderr
    assert list(tmp_path.iterdir()) == []


def _cert_life(kubeconfig: Path) -> datetime.timedelta:
    user = yaml.safe_load(kubeconfig.read_text())["users"][0]["user"]
    cert = x509.load_pem_x509_certificate(base64.b64decode(user["client-certificate-data"]))
    return cert.not_valid_after_utc - datetime.datetime.now(datetime.timezone.utc)


def test_user_create_whole_days_ttl(cluster: Path) -> None:
    r = kubeseed("user", "create", "demo", "bob", "--ttl", "48h", cwd=cluster.parent)
    assert r.returncode == 0 and "warning" not in r.stderr, r.stderr
    assert datetime.timedelta(hours=47) < _cert_life(cluster.parent / "kubeconfig-bob") <= datetime.timedelta(hours=48)


def test_user_create_ttl_honours_hours(cluster: Path) -> None:
    r = kubeseed("user", "create", "demo", "bob", "--ttl", "2h", cwd=cluster.parent)
    assert r.returncode == 0, r.stderr
    assert datetime.timedelta(hours=1) < _cert_life(cluster.parent / "kubeconfig-bob") <= datetime.timedelta(hours=2)


def test_quickstart_says_it_kept_the_old_endpoint(tmp_path: Path) -> None:
    r = kubeseed("quickstart", "--endpoint", "10.0.0.10:6443", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    r = kubeseed("quickstart", "--endpoint", "192.0.2.7:6443", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "kept the existing demo's endpoint 10.0.0.10:6443" in r.stderr and "192.0.2.7:6443" in r.stderr
    assert "remove kubeseed-demo/demo/" in r.stderr
    r = kubeseed("quickstart", cwd=tmp_path)
    assert r.returncode == 0 and "kept" not in r.stderr
