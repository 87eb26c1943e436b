"""Runs the blocks docblocks.py finds: plain python, shell commands, scenarios, and test files as modules.

The convention is docs/executable-docs.md.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Iterator

import pytest

from docblocks import ROOT, Block, DocBlockError, fixture_names

VENV_BIN = ROOT / ".venv" / "bin"
COMMAND_TIMEOUT_S = 120


def _exec(block: Block, ns: dict[str, Any], fixture: Callable[[str], Any]) -> None:
    for name in fixture_names(block.source):
        ns.setdefault(name, fixture(name))
    code = compile("\n" * block.line + block.source, str(ROOT / block.doc), "exec")  # tracebacks: doc lines
    exec(code, ns)


def replay(before: list[Block], then: Block, fixture: Callable[[str], Any]) -> dict[str, Any]:
    """Exec the document's earlier plain python blocks in one namespace, as the reader ran them."""
    ns: dict[str, Any] = {"__name__": "__docblock__"}
    for b in before:
        try:
            _exec(b, ns, fixture)
        except Exception as exc:
            raise DocBlockError(f"{b.id} (runs before {then.id}) failed: {exc!r}") from exc
    return ns


def run_python(block: Block, before: list[Block], fixture: Callable[[str], Any]) -> dict[str, Any]:
    """The earlier plain python blocks, then this one, in one namespace (cwd: the scratch directory)."""
    ns = replay(before, block, fixture)
    _exec(block, ns, fixture)
    return ns


class BlockModule(pytest.Module):
    """A test-file block as a test module of this session: its tests use the worker's real servers."""

    def __init__(self, *, block: Block, **kw: Any) -> None:
        super().__init__(**kw)
        self.block = block

    def _getobj(self) -> ModuleType:
        b = self.block
        module = ModuleType("docblock_" + re.sub(r"\W", "_", b.id))
        module.__file__ = str(ROOT / b.doc)
        sys.modules[module.__name__] = module  # as an import would (dataclasses, pickling look it up)
        exec(compile("\n" * b.line + b.source, module.__file__, "exec"), module.__dict__)  # lines: the doc's
        return module


class DocTestFiles(pytest.File):
    """Collects each test-file block (see :func:`defines_tests`) as a :class:`BlockModule` (xfail honoured)."""

    def __init__(self, *, blocks: list[Block], **kw: Any) -> None:
        super().__init__(**kw)
        self.blocks = blocks

    def collect(self) -> Iterator[BlockModule]:
        for b in self.blocks:
            if b.kind != "pytest":
                continue
            module = BlockModule.from_parent(self, path=ROOT / b.doc, name=b.id, nodeid=f"{self.nodeid}::{b.id}",
                                             block=b)
            if b.marker == "xfail":
                module.add_marker(pytest.mark.xfail(reason=b.reason, strict=False))
            if re.search(r"\bcbchaos_opencode", b.source):
                module.add_marker(pytest.mark.slow)  # as the suite marks tests that start real opencode
            yield module


def shell_commands(block: Block) -> list[list[str]]:
    """One argv per non-empty line (``#`` starts a comment); only commands we know how to run."""
    commands = []
    for n, raw in enumerate(block.source.splitlines(), start=block.line + 1):
        argv = shlex.split(raw, comments=True)
        if not argv:
            continue
        exe = argv[0]
        if exe.startswith(".venv/bin/"):
            exe = exe.removeprefix(".venv/bin/")
        if exe == "cbchaos":
            argv = [str(VENV_BIN / "cbchaos"), *argv[1:]]
        elif exe == "pytest":
            argv = [sys.executable, "-m", "pytest", *argv[1:]]
        elif exe == "python":
            argv = [sys.executable, *argv[1:]]
        else:
            raise DocBlockError(f"{block.doc}:{n}: cannot run {argv[0]!r} (cbchaos, pytest and python run); "
                                "mark the block <!-- illustration: why -->")
        commands.append(argv)
    return commands


def run_shell(block: Block, cwd: Path) -> None:
    """Each command runs in ``cwd`` with this checkout's package first on PYTHONPATH; each must exit 0."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "PATH": os.pathsep.join([str(VENV_BIN), os.environ.get("PATH", "")])}
    for argv in shell_commands(block):
        proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
        if proc.returncode != 0:
            raise DocBlockError(f"{block.id}: {shlex.join(argv)} exited {proc.returncode}:\n"
                                f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")


def run_yaml(block: Block, request: pytest.FixtureRequest) -> None:
    """A scenario: the loader validates it, then ``pytest scenarios/`` runs it and it must pass."""
    from pytest_cbchaos.scenario.errors import ScenarioError
    from pytest_cbchaos.scenario.loader import load_scenario

    pytester: pytest.Pytester = request.getfixturevalue("pytester")
    folder = pytester.path / "scenarios"
    folder.mkdir(exist_ok=True)
    path = folder / "doc_block.yaml"
    path.write_text(block.source)
    try:
        load_scenario(path)
    except ScenarioError as exc:
        raise DocBlockError(f"{block.id}: the scenario loader rejects the block: {exc}") from None
    scope = request.config.getini("asyncio_default_fixture_loop_scope") or "function"
    # the inner session has no ini of ours: give it our pytest-asyncio loop scope (no deprecation warning)
    result = pytester.runpytest("scenarios", "-p", "no:cacheprovider", "-rA",
                                "-o", f"asyncio_default_fixture_loop_scope={scope}")
    try:
        outcomes = result.parseoutcomes()
    except ValueError:  # no summary line: a usage or internal error
        outcomes = {}
    if result.ret != 0 or outcomes.get("passed") != 1 or set(outcomes) - {"passed", "warnings", "warning"}:
        raise DocBlockError(f"{block.id}: the scenario did not pass ({outcomes}):\n"
                            + "\n".join(result.outlines[-60:]))


def run_block(block: Block, blocks: list[Block], request: pytest.FixtureRequest, scratch: Path) -> None:
    """Run one block the way its kind says (``scratch`` is the document's working directory)."""
    kind = block.kind
    if kind == "illustration":
        pytest.skip(f"illustration: {block.reason}")
    if kind == "unknown":
        raise DocBlockError(f"{block.id}: a {block.language or 'plain'!s} block cannot run; "
                            "give it a runnable language (python, sh, yaml) or mark it <!-- illustration: why -->")
    before = [b for b in blocks if b.doc == block.doc and b.line < block.line and b.kind == "python"
              and b.marker != "xfail"]
    if kind == "python":
        run_python(block, before, request.getfixturevalue)
    elif kind == "shell":
        replay(before, block, request.getfixturevalue)  # the commands see the files those blocks wrote
        run_shell(block, scratch)
    elif kind == "pytest":
        raise DocBlockError(f"{block.id}: a test file runs as its own module (DocTestFiles), not here")
    elif kind == "yaml":
        run_yaml(block, request)
