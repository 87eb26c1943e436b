"""Placeholder: tests/docs/conftest.py collects the test-file blocks of the docs under this name."""
