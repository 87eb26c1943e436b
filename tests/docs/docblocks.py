"""Finds the fenced code blocks of README.md and docs/*.md and their markers (docs/executable-docs.md).

Sybil's markdown lexer finds the blocks (fences of any length, ``~~~``, blocks inside lists and quotes);
docrun.py runs them as pytest items, because a block needs the kit's fixtures and its own xfail.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

from sybil import Document
from sybil.parsers.markdown.lexers import RawFencedCodeBlockLexer

ROOT = Path(__file__).resolve().parents[2]
MARKER = re.compile(r"<!--\s*(?P<kind>illustration|xfail)\b\s*:?\s*(?P<reason>.*?)\s*-->\s*\Z")
_LEXER = RawFencedCodeBlockLexer(info_pattern=re.compile(r"(?P<language>[^\n]*)$\n", re.MULTILINE))
SHELL = {"sh", "shell", "bash", "console"}


class DocBlockError(AssertionError):
    """A block that cannot run as written, or whose run failed: the message names file and line."""


@dataclass(frozen=True)
class Block:
    doc: str           # path relative to the repository root
    line: int          # line of the opening fence
    language: str      # the fence's info string ("" when none)
    source: str
    marker: str | None  # "illustration" | "xfail" | None (runs)
    reason: str

    @property
    def id(self) -> str:
        return f"{self.doc}:{self.line}"

    @property
    def kind(self) -> str:
        """How the block runs: illustration, pytest, python, shell, yaml, or unknown."""
        if self.marker == "illustration":
            return "illustration"
        if self.language == "python":
            return "pytest" if defines_tests(self.source) else "python"
        if self.language in SHELL:
            return "shell"
        if self.language in ("yaml", "yml"):
            return "yaml"
        return "unknown"


def doc_paths() -> list[str]:
    return ["README.md", *sorted(f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md"))]


def parse(text: str, doc: str) -> list[Block]:
    """Every fenced block of one markdown text, with the marker comment on the line before it."""
    blocks = []
    for region in _LEXER(Document(text, doc)):
        line = text.count("\n", 0, region.start) + 1
        before = text[:region.start].rstrip()
        m = MARKER.match(before.rsplit("\n", 1)[-1].strip())
        marker, reason = (m["kind"], m["reason"]) if m else (None, "")
        if marker and not reason:
            raise DocBlockError(f"{doc}:{before.count(chr(10)) + 1}: <!-- {marker} --> needs a reason: "
                                f"<!-- {marker}: why -->")
        blocks.append(Block(doc, line, region.lexemes["language"].strip(), str(region.lexemes["source"]),
                            marker, reason))
    return blocks


def commonmark_code_blocks(text: str) -> tuple[list[int], list[int]]:
    """(lines of fenced blocks, lines of indented blocks) as a CommonMark parser sees them: a cross-check
    of the lexer, and indented blocks, which cannot carry a language and so can neither run nor be marked."""
    from markdown_it import MarkdownIt  # comes with rich

    tokens = MarkdownIt("commonmark").parse(text)
    return ([t.map[0] + 1 for t in tokens if t.type == "fence" and t.map],
            [t.map[0] + 1 for t in tokens if t.type == "code_block" and t.map])


def all_blocks() -> list[Block]:
    return [b for doc in doc_paths() for b in parse((ROOT / doc).read_text(encoding="utf-8"), doc)]


def defines_tests(source: str) -> bool:
    """A python block with top-level ``test_*`` functions or ``Test*`` classes is a pytest test file."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return False
    return any((isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name.startswith("test_"))
               or (isinstance(n, ast.ClassDef) and n.name.startswith("Test"))
               for n in tree.body)


def fixture_names(source: str) -> list[str]:
    """Free names of the kit's fixtures (``cbchaos_*``) a plain python block uses, in order of use."""
    seen: dict[str, None] = {}
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []  # the run reports it
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and node.id.startswith("cbchaos_"):
            seen[node.id] = None
    return list(seen)
