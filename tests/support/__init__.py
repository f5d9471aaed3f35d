"""Helpers every test tier shares: waiting, object factories, API shortcuts.

Importable as `support` from any test module because the pytest config puts `tests/` on the path
(`pythonpath`); test modules themselves are imported by path (`--import-mode=importlib`), so this is the
one package name they share. Nothing here is a fixture: fixtures live in each tier's conftest.py.
"""
