"""The layering rule (README "Using the fixtures"): the systems and the core never import the pytest glue,
and only ``env/`` and the glue build servers from settings."""

from __future__ import annotations

import ast
import functools
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "pytest_cbchaos"
BELOW_THE_GLUE = ("stream", "scenario", "report", "servers", "breaker", "recovery", "linearizability", "env",
                  "proxy", "faults", "history", "stateful", "gateway")


@functools.cache
def nodes(path: Path) -> tuple[ast.AST, ...]:
    """Every node of ``path``'s syntax tree (parsed once per file per run)."""
    return tuple(ast.walk(ast.parse(path.read_text(), str(path))))


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in nodes(path):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


GLUE = ("pytest_cbchaos.plugin", "pytest_cbchaos.factories", "pytest_cbchaos.session", "pytest_cbchaos.markers")


def glue_imports(path: Path) -> list[str]:
    """Imports of the glue package, its public shim, or glue modules outside it (``pytest_cbchaos.fixtures*``)."""
    return sorted(n for n in imported_modules(path)
                  if n in GLUE or n.startswith(tuple(g + "." for g in GLUE)) or n.startswith("pytest_cbchaos.fixtures"))


@pytest.mark.parametrize("layer", BELOW_THE_GLUE)
def test_no_layer_below_the_glue_imports_it_or_is_glue(layer: str) -> None:
    offenders = {str(p.relative_to(PACKAGE)): glue_imports(p) + pytest_glue(p) for p in (PACKAGE / layer).rglob("*.py")}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_check_sees_a_glue_import(tmp_path: Path) -> None:
    mutant = tmp_path / "m.py"
    mutant.write_text("def f():\n    from pytest_cbchaos.plugin.fixtures import ENV_KEY\n")
    assert glue_imports(mutant) == ["pytest_cbchaos.plugin.fixtures", "pytest_cbchaos.plugin.fixtures.ENV_KEY"]


def test_no_lease_is_patched_onto_a_proxy() -> None:
    tree = [p for p in PACKAGE.rglob("*.py") if "_cbchaos_lease" in p.read_text()]
    assert tree == []


def pytest_glue(path: Path) -> list[str]:
    """What makes a module pytest glue: fixtures, hook implementations, ``pytest_*`` hooks, ``pytest_plugins``.

    (Attaching report data to an item, ``report/collect.py``'s ``add``, uses pytest objects but is no glue.)"""
    found: list[str] = []
    for node in nodes(path):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            if node.name.startswith("pytest_"):
                found.append(f"hook {node.name}")
            for dec in node.decorator_list:
                target = dec.func if isinstance(dec, ast.Call) else dec
                text = ast.unparse(target)
                if text.split(".")[-1] in ("fixture", "hookimpl", "hookspec"):
                    found.append(f"@{text} {node.name}")
        elif isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "pytest_plugins"
                                                  for t in node.targets):
            found.append("pytest_plugins")
    return found


def test_the_check_sees_pytest_glue(tmp_path: Path) -> None:
    mutant = tmp_path / "m.py"
    mutant.write_text("import pytest\n\n@pytest.fixture(scope='session')\ndef f():\n    pass\n\n"
                      "def pytest_runtest_call(item):\n    pass\n\npytest_plugins = ['x']\n")
    assert pytest_glue(mutant) == ["@pytest.fixture f", "hook pytest_runtest_call", "pytest_plugins"]


def test_one_liveness() -> None:
    """One liveness vocabulary for every server handle (recovery/status.py)."""
    defs = [str(p.relative_to(PACKAGE.parent)) for p in [*PACKAGE.rglob("*.py"), *(PACKAGE.parent / "tests").rglob("*.py")]
            if re.search(r"^\s*(class Liveness\b|Liveness\s*=)", p.read_text(), re.M)]
    assert defs == ["pytest_cbchaos/recovery/status.py"]


PATH_HACKS = ("sys.path." + "insert", "sys.path." + "append", "spec_from_file" + "_location")


def test_bench_and_tests_import_the_package_as_a_package() -> None:
    """Benchmarks and tests import ``pytest_cbchaos`` (and share code through it), never by file path."""
    root = PACKAGE.parent
    files = [*(root / "bench").rglob("*.py"), *(root / "tests").rglob("*.py")]
    assert [str(p.relative_to(root)) for p in files if any(h in p.read_text() for h in PATH_HACKS)] == []
    bench_on_tests = [str(p.relative_to(root)) for p in (root / "bench").rglob("*.py")
                      if any(n == "tests" or n.startswith("tests.") for n in imported_modules(p))]
    assert bench_on_tests == []
