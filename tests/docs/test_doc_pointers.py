"""Pointers from code and docs lead to design text inside the repository (docs/invariants.md, docs/extending.md).

Every ``docs/X.md#anchor`` in code, tests, scripts and docs must name an existing file and heading; nothing
may point at design text outside the repository (a section sign or a ``specs`` directory); every invariant,
mutant and probe id used anywhere is listed in ``docs/invariants.md``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ("pytest_cbchaos", "tests", "bench", "scripts", "scenarios")
TEXT_SUFFIXES = {".py", ".lua", ".md", ".yaml", ".yml", ".json", ".toml", ".txt", ".html", ".js", ".cfg", ".ini", ""}
# Built, so this file does not match itself.
SECTION_SIGN = "\u00a7"
OUTSIDE_SPECS = "spec" + "s/"

DOC_POINTER = re.compile(r"docs/([A-Za-z0-9_.-]+\.md)(?:#([A-Za-z0-9_-]+))?")
MD_LINK = re.compile(r"\]\((?!https?:)([A-Za-z0-9_./-]*\.md)?(?:#([A-Za-z0-9_-]+))?\)")
FENCE = re.compile(r"^\s*(```|~~~)")
# The design documents the project started from, which live outside the repository; docs/*-design.md
# carries their content in the project's own words.
OUTSIDE_DOCS = {"fault-proxy-and-fixtures.md", "breaker-store.md", "durable-stream.md", "opencode-recovery.md"}
MD_NAME = re.compile(r"(?<![<>*\w/.-])((?:[\w.-]+/)*[\w-][\w.-]*\.md)\b")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(markdown: str) -> set[str]:
    """Anchors of every heading outside fenced code blocks (duplicates get -1, -2 as on GitHub)."""
    seen: dict[str, int] = {}
    out: set[str] = set()
    fenced = False
    for line in markdown.splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        m = None if fenced else re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            base = slug(m.group(1))
            n = seen.get(base, 0)
            seen[base] = n + 1
            out.add(base if n == 0 else f"{base}-{n}")
    return out


def broken_pointers(text: str, where: str, docs: dict[str, set[str]], *, markdown_dir: bool = False,
                    own: str | None = None) -> list[str]:
    """``where:LINE: reason`` for every pointer that leads outside the repository or nowhere.

    ``markdown_dir``: the text is a doc in docs/, so its relative links and every ``*.md`` it names are
    checked too, except in fenced code blocks (file layouts, sample output). Code may name scratch ``*.md``
    files in tests, so there only the outside design documents are refused.
    """
    problems: list[str] = []
    fenced = False
    for i, line in enumerate(text.splitlines(), 1):
        if markdown_dir and FENCE.match(line):
            fenced = not fenced
        if SECTION_SIGN in line or OUTSIDE_SPECS in line:
            problems.append(f"{where}:{i}: points at a spec outside the repository: {line.strip()[:100]}")
        for name in ([] if fenced else MD_NAME.findall(line)):
            base = name.rsplit("/", 1)[-1]
            missing = base not in docs and name != "README.md" and not (ROOT / name).exists()
            if base in OUTSIDE_DOCS or (markdown_dir and missing):
                problems.append(f"{where}:{i}: names {name}, which is not in the repository")
        targets = [(m.group(1), m.group(2)) for m in DOC_POINTER.finditer(line)]
        if markdown_dir:
            targets += [(m.group(1) or own, m.group(2)) for m in MD_LINK.finditer(line)
                        if m.group(1) is None or "/" not in m.group(1)]
        for name, anchor in targets:
            if name not in docs:
                problems.append(f"{where}:{i}: docs/{name} does not exist")
            elif anchor and anchor not in docs[name]:
                problems.append(f"{where}:{i}: docs/{name} has no heading with anchor #{anchor}")
    return problems


def doc_anchors() -> dict[str, set[str]]:
    return {p.name: anchors(p.read_text(encoding="utf-8")) for p in (ROOT / "docs").glob("*.md")}


def scanned_files() -> list[Path]:
    files = [ROOT / "conftest.py", ROOT / "pyproject.toml", ROOT / "Makefile"]
    for top in SCANNED:
        files += [p for p in (ROOT / top).rglob("*") if p.is_file() and p.suffix in TEXT_SUFFIXES
                  and "__pycache__" not in p.parts]
    return [p for p in files if p.exists() and p != Path(__file__).resolve()]  # this file holds bad examples


def test_code_points_only_at_existing_docs_sections() -> None:
    docs = doc_anchors()
    problems: list[str] = []
    for path in scanned_files():
        text = path.read_text(encoding="utf-8", errors="replace")
        problems += broken_pointers(text, str(path.relative_to(ROOT)), docs)
    assert not problems, "\n".join(problems)


def test_docs_point_only_at_existing_docs_sections() -> None:
    docs = doc_anchors()
    problems: list[str] = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = path.read_text(encoding="utf-8")
        problems += broken_pointers(text, str(path.relative_to(ROOT)), docs,
                                    markdown_dir=path.parent.name == "docs", own=path.name)
    assert not problems, "\n".join(problems)


ID = re.compile(r"\b(CB|DS|REC)-(\d+)\b|\bINV-(\d+)\b|\b(W-[A-Z]+(?:-[A-Z]+)*)\b|\bM(\d{1,2})(?=\b|[A-Z])")
# Deliberately unknown ids (tests/adapters/test_probes.py, tests/scenario/test_loader.py).
NOT_IDS = {"W-NOPE", "CB-99"}


def used_ids() -> dict[str, str]:
    """Every id used in code, tests, scenarios and docs (other than the index), with one place it is used."""
    found: dict[str, str] = {}
    paths = scanned_files() + [ROOT / "README.md"] + [p for p in (ROOT / "docs").glob("*.md")
                                                     if p.name != "invariants.md"]
    for path in paths:
        for i, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            for m in ID.finditer(line):
                if m.group(1):
                    key = f"{m.group(1)}-{m.group(2)}"
                elif m.group(3):
                    key = f"INV-{m.group(3)}"
                elif m.group(4):
                    key = m.group(4)
                else:
                    key = f"M{m.group(5)}"
                if key not in NOT_IDS:
                    found.setdefault(key, f"{path.relative_to(ROOT)}:{i}")
    return found


def index_rows() -> set[str]:
    text = (ROOT / "docs" / "invariants.md").read_text(encoding="utf-8")
    return {m.group(1) for m in re.finditer(r"^\|\s*([A-Z]+-?[A-Z0-9-]*)\s*\|", text, re.M)}


def test_every_id_in_use_is_in_the_index() -> None:
    rows = index_rows()
    missing = []
    for key, where in sorted(used_ids().items()):
        if key.startswith("INV-"):  # INV-n is DS-n in stream code and REC-n in recovery code
            n = key[4:]
            ok = f"DS-{n}" in rows or f"REC-{n}" in rows
        else:
            ok = key in rows
        if not ok:
            missing.append(f"{key} (used at {where})")
    assert not missing, "ids missing from docs/invariants.md: " + ", ".join(missing)


# The checker's own mutants: each broken pointer is caught.
DOCS = {"breaker-design.md": anchors("# Breaker\n## Probe lease\n```\n## not a heading\n```\n## Probe lease\n")}


@pytest.mark.parametrize(("text", "expected"), [
    ("see docs/breaker-design.md#probe-lease", None),
    ("see docs/breaker-design.md#probe-lease-1", None),
    ("see docs/breaker-design.md#no-such-section", "no heading with anchor #no-such-section"),
    ("see docs/breaker-design.md#not-a-heading", "no heading with anchor #not-a-heading"),
    ("see docs/missing.md", "docs/missing.md does not exist"),
    (f"see spec {SECTION_SIGN}4.4", "outside the repository"),
    (f"see {OUTSIDE_SPECS}breaker-store.md", "outside the repository"),
    ("see durable-stream.md for the harness", "names durable-stream.md, which is not in the repository"),
    ("see `<system>-design.md` and README.md", None),
])
def test_broken_pointers_are_caught(text: str, expected: str | None) -> None:
    problems = broken_pointers(text, "x.py", DOCS)
    if expected is None:
        assert problems == []
    else:
        assert problems and all(p.startswith("x.py:1: ") for p in problems), problems
        assert any(expected in p for p in problems), problems


def test_docs_naming_a_missing_markdown_file_are_caught() -> None:
    assert broken_pointers("see notes.md", "d.md", DOCS, markdown_dir=True) == ["d.md:1: names notes.md, "
                                                                              "which is not in the repository"]
    assert broken_pointers("```text\nnotes.md\n```", "d.md", DOCS, markdown_dir=True) == []
    assert broken_pointers("write t.md", "x.py", DOCS) == []  # scratch files in code are fine


def test_markdown_links_inside_docs_are_checked() -> None:
    assert broken_pointers("[a](breaker-design.md#probe-lease) [b](#probe-lease)", "d.md", DOCS,
                           markdown_dir=True, own="breaker-design.md") == []
    problems = broken_pointers("[a](breaker-design.md#gone) [b](#gone)", "d.md", DOCS, markdown_dir=True,
                               own="breaker-design.md")
    assert len(problems) == 2, problems


def test_slug_matches_github() -> None:
    assert slug("Breaker (CB)") == "breaker-cb"
    assert slug("`StoreModelMachine`: sequential, step by step") == "storemodelmachine-sequential-step-by-step"
    assert slug("Harness: relay and app as child processes") == "harness-relay-and-app-as-child-processes"
