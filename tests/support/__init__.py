"""Test support (tests only; never part of the product): the in-test API server (``apiserver``), shared helpers
(``helpers``, ``clientcert_server``, ``join``, ``nspawn``). Tests and benches import from here; no test module
imports another test module (tests/test_layout.py checks)."""
