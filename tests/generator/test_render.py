"""Renderer details that the CLI tests do not reach."""

from __future__ import annotations

from pathlib import Path


def test_libyaml_and_python_emitters_give_the_same_payload(full_cluster: Path) -> None:
    """Rendering uses libyaml's emitter when PyYAML has it; payload bytes must not depend on that."""
    from kubeseed.generator.plan import build_plan
    from kubeseed.generator.render import _LiteralDumper, cloud_config, dump_cloud_config
    from kubeseed.generator.secrets import load

    cluster, secrets = load(full_cluster)
    for role in ("master", "node"):
        doc = cloud_config(build_plan(cluster, secrets, role, f"{role}-1"))
        assert dump_cloud_config(doc) == dump_cloud_config(doc, _LiteralDumper)
