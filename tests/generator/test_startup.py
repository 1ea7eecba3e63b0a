"""Start-up cost: each kubeseed command loads the heavy libraries it uses, and no others (the figures are in
bench/bench_startup.py; these tests check the structure that gives them)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.startup import loaded


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["cluster"],
        ["render"],
        ["token", "create"],
        ["user", "create"],
        ["hash-password"],
        ["seed"],
        ["image", "build"],
        ["images", "list"],
    ],
    ids=lambda a: " ".join(a) or "kubeseed",
)
def test_help_loads_nothing_heavy(tmp_path: Path, argv: list[str]) -> None:
    assert loaded(tmp_path, tmp_path, *argv, "--help") == set()


@pytest.mark.parametrize(
    "argv, uses",
    [
        (["render", "node", "demo", "-o", "n.yaml"], {"cryptography"}),  # cloud-init: no template, no Jinja2
        (["render", "master", "demo", "--format", "ignition", "-o", "m.ign"], {"cryptography", "jinja2"}),
        (["cluster", "show", "demo"], {"cryptography"}),
        (["images", "list", "demo"], set()),
        (["hash-password"], {"passlib"}),
    ],
    ids=lambda a: " ".join(a) if isinstance(a, list) else "",
)
def test_a_command_loads_what_it_uses(cluster: Path, tmp_path: Path, argv: list[str], uses: set[str]) -> None:
    """The runtime zipapps come from the cache (filled by the first run): the minifier is not loaded either."""
    loaded(cluster.parent, tmp_path, *argv, stdin="correct horse\n")
    assert loaded(cluster.parent, tmp_path, *argv, stdin="correct horse\n") == uses


def test_seed_loads_pycdlib_and_no_template_engine(cluster: Path, tmp_path: Path) -> None:
    inventory = cluster.parent / "hosts.yaml"
    inventory.write_text(
        "apiVersion: kubeseed.io/v1alpha1\nkind: Inventory\nhosts:\n"
        "  - {hostname: cp-1, role: master}\n  - {hostname: worker-1, role: node}\n"
    )
    argv = ["seed", "demo", "--inventory", str(inventory)]
    loaded(cluster.parent, tmp_path, *argv, "--out", str(tmp_path / "warm"))
    assert loaded(cluster.parent, tmp_path, *argv, "--out", str(tmp_path / "seeds")) == {"cryptography", "pycdlib"}
