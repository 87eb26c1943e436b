"""Every fenced block of README.md and docs/*.md runs here, or is marked illustration (docs/executable-docs.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from docblocks import Block, all_blocks, run_block

BLOCKS = all_blocks()
RUN_HERE = [b for b in BLOCKS if b.kind != "pytest"]  # test files: tests/docs/test_doc_test_files.py


@pytest.mark.parametrize("block", RUN_HERE, ids=[b.id for b in RUN_HERE])
def test_doc_block(block: Block, request: pytest.FixtureRequest, tmp_path: Path,
                   monkeypatch: pytest.MonkeyPatch) -> None:
    if block.marker == "xfail":
        request.applymarker(pytest.mark.xfail(reason=block.reason, strict=False))
    monkeypatch.chdir(tmp_path)
    run_block(block, BLOCKS, request, tmp_path)
