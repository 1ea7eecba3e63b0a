from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.helpers import SSH_KEY, kubeseed

# check_joined's assertions keep pytest's detailed messages, as they had in tests/runtime/test_join.py
pytest.register_assert_rewrite("tests.support.join")


@pytest.fixture(scope="session", autouse=True)
def zipapp_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Built runtime zipapps are cached in a directory of this session's, by the tests and by every kubeseed process
    they start (which inherit the environment), never in the user's ~/.cache (tests/generator/test_zipcache.py
    checks the default location with a temporary HOME)."""
    from kubeseed.generator.zipcache import CACHE_ENV

    path = tmp_path_factory.mktemp("zipapp-cache") / "zipapps"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(CACHE_ENV, str(path))
        yield path


@pytest.fixture(scope="session")
def cluster_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One ECDSA cluster made by the real CLI, copied per test (key generation is the slow part)."""
    base = tmp_path_factory.mktemp("template")
    r = kubeseed("cluster", "create", "demo", "--endpoint", "10.0.0.10:6443", cwd=base)
    assert r.returncode == 0, r.stderr
    return base / "demo"


@pytest.fixture
def cluster(cluster_template: Path, tmp_path: Path) -> Path:
    """A fresh copy of the template cluster at tmp_path/demo (modes preserved)."""
    dst = tmp_path / "demo"
    shutil.copytree(cluster_template, dst)
    return dst


@pytest.fixture(scope="session")
def full_cluster_template(tmp_path_factory: pytest.TempPathFactory, cluster_template: Path) -> Path:
    """The template cluster plus what payloads carry on top: a login user (SSH key, password hash, groups)
    and an add-on manifest."""
    from kubeseed.generator.passwords import hash_password

    base = tmp_path_factory.mktemp("full")
    dst = base / "demo"
    shutil.copytree(cluster_template, dst)
    cfg = dst / "cluster.yaml"
    text = cfg.read_text()
    user = (
        "users:\n  - name: ops\n"
        f'    sshAuthorizedKeys: ["{SSH_KEY}"]\n'
        f'    passwordHash: "{hash_password("correct horse")}"\n'
        "    groups: [sudo, adm]\n"
        "    sudo: true\n"
    )
    assert "users: []\n" in text and "addons: []\n" in text
    cfg.write_text(text.replace("users: []\n", user).replace("addons: []\n", "addons:\n  - addons/ns.yaml\n"))
    (dst / "addons").mkdir()
    (dst / "addons" / "ns.yaml").write_text("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: demo-addon\n")
    return dst


@pytest.fixture
def full_cluster(full_cluster_template: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "demo"
    shutil.copytree(full_cluster_template, dst)
    return dst
