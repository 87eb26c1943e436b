"""Every fenced block of README.md and docs/*.md runs here, or is marked illustration (docs/executable-docs.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from docblocks import ROOT, Block, all_blocks, commonmark_code_blocks, doc_paths, fixture_names
from docrun import run_block

BLOCKS = all_blocks()
RUN_HERE = [  # test files: tests/docs/test_doc_test_files.py; real opencode is slow, as in the suite
    pytest.param(b, id=b.id, marks=[pytest.mark.slow] if b.kind == "python" and "cbchaos_opencode" in
                 fixture_names(b.source) else [])
    for b in BLOCKS if b.kind != "pytest"]


@pytest.mark.parametrize("doc", doc_paths())
def test_every_code_block_is_fenced_and_found(doc: str) -> None:
    text = (ROOT / doc).read_text(encoding="utf-8")
    fenced, indented = commonmark_code_blocks(text)
    assert not indented, (f"{doc}: indented code block(s) at line(s) {indented}: fence them (```sh, ```python...) "
                          "so that they run, or mark them <!-- illustration: why -->")
    assert [b.line for b in BLOCKS if b.doc == doc] == fenced


@pytest.mark.parametrize("block", RUN_HERE)
def test_doc_block(block: Block, request: pytest.FixtureRequest, tmp_path: Path,
                   monkeypatch: pytest.MonkeyPatch) -> None:
    if block.marker == "xfail":
        request.applymarker(pytest.mark.xfail(reason=block.reason, strict=False))
    monkeypatch.chdir(tmp_path)
    run_block(block, BLOCKS, request, tmp_path)
