"""Benchmarks (not tests; they print figures and assert nothing). Run from the repository root as modules, e.g.
``.venv/bin/python -m bench.bench_payloads``: ``kubeseed`` comes from the installed package, ``tests.support``
(the in-test API server, helpers) from the repository root."""
