"""Collects the test-file blocks of README.md and docs/*.md as test modules (docs/executable-docs.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from docblocks import all_blocks
from docrun import DocTestFiles


def pytest_pycollect_makemodule(module_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if module_path.name == "test_doc_test_files.py":
        return DocTestFiles.from_parent(parent, path=module_path, blocks=all_blocks())
    return None
