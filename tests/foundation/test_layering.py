"""The layering rule (README "Using the fixtures"): the systems and the core never import the pytest glue,
and only ``env/`` and the glue build servers from settings."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "pytest_cbchaos"
BELOW_THE_GLUE = ("stream", "scenario", "report", "servers", "breaker", "recovery", "linearizability", "env",
                  "proxy", "faults", "history", "stateful", "gateway")


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
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
def test_no_layer_below_the_glue_imports_it(layer: str) -> None:
    offenders = {str(p.relative_to(PACKAGE)): glue_imports(p) for p in (PACKAGE / layer).rglob("*.py")}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_check_sees_a_glue_import(tmp_path: Path) -> None:
    mutant = tmp_path / "m.py"
    mutant.write_text("def f():\n    from pytest_cbchaos.plugin.fixtures import ENV_KEY\n")
    assert glue_imports(mutant) == ["pytest_cbchaos.plugin.fixtures", "pytest_cbchaos.plugin.fixtures.ENV_KEY"]


def test_no_lease_is_patched_onto_a_proxy() -> None:
    tree = [p for p in PACKAGE.rglob("*.py") if "_cbchaos_lease" in p.read_text()]
    assert tree == []
