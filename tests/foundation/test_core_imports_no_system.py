"""The core names no system (docs/scenarios.md, "Registering a system"): ``linearizability/`` and
the scenario core import none of the systems or their registration; systems register with the core
instead. Checked on the source with ``ast``, so an import anywhere in a module (also inside a
function) counts, and so does a ``"module:attr"`` string (what a registry imports later)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[2] / "pytest_cbchaos"
SYSTEMS = ("breaker", "recovery", "stream", "gateway", "adapters", "stateful", "systems",
           # the built-in targets: system kits that live beside the scenario core
           "scenario.targets.breaker_store", "scenario.targets.breaker_checks", "scenario.targets.recovery",
           "scenario.targets.stream", "scenario.targets.gateway")
# the scenario core: the built-in targets under scenario/targets/ are system kits and may import their system
SCENARIO_CORE = ("scenario/__init__.py", "scenario/model.py", "scenario/loader.py", "scenario/errors.py",
                 "scenario/checks.py", "scenario/results.py", "scenario/target.py", "scenario/runner.py", "scenario/targets/__init__.py")


SPEC = re.compile(r"^(pytest_cbchaos(?:\.\w+)+)(?::\w+)?$")  # "pkg.mod" or "pkg.mod:attr" (a lazy import)


def imported_modules(source: str, package: str) -> set[str]:
    """Absolute names of every module ``source`` imports (relative imports resolved from ``package``),
    and of every ``"module:attr"`` string it holds (what a registry imports later)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and SPEC.match(node.value):
            out.add(SPEC.match(node.value).group(1))  # type: ignore[union-attr]
        elif isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parent = ".".join(parts[:len(parts) - node.level + 1])
                base = f"{parent}.{base}" if base else parent
            out.add(base)
            out.update(f"{base}.{alias.name}" for alias in node.names)
    return out


def system_imports(path: Path, package: str | None = None) -> list[str]:
    package = package or ".".join(path.relative_to(PKG.parent).with_suffix("").parts[:-1])
    return sorted(m for m in imported_modules(path.read_text(encoding="utf-8"), package)
                  if any(m == f"pytest_cbchaos.{s}" or m.startswith(f"pytest_cbchaos.{s}.") for s in SYSTEMS))


def _core_files() -> list[Path]:
    return sorted((PKG / "linearizability").rglob("*.py")) + [PKG / f for f in SCENARIO_CORE]


@pytest.mark.parametrize("path", _core_files(), ids=lambda p: str(p.relative_to(PKG)))
def test_core_module_imports_no_system(path: Path) -> None:
    assert system_imports(path) == []


def test_the_check_sees_relative_and_nested_imports(tmp_path: Path) -> None:
    """The mutant: a core module that imports systems inside a function, relatively, or names one."""
    bad = tmp_path / "mutant.py"
    bad.write_text("def f():\n    from ..breaker import model\n    import pytest_cbchaos.stream.store\n"
                   "BUILTIN = {'gateway': 'pytest_cbchaos.gateway.app:Gateway'}\n")
    assert system_imports(bad, "pytest_cbchaos.linearizability") == [
        "pytest_cbchaos.breaker", "pytest_cbchaos.breaker.model", "pytest_cbchaos.gateway.app",
        "pytest_cbchaos.stream.store"]


def test_builtin_systems_are_registered() -> None:
    from pytest_cbchaos.linearizability.models import model_names
    from pytest_cbchaos.scenario.targets import target_names

    assert {"breaker-store", "recovery", "stream", "gateway"} <= set(target_names())
    assert "breaker-store" in model_names()


@pytest.mark.parametrize("name", ["scenario/results.py", "scenario/checks.py"])
def test_scenario_data_and_checks_do_not_import_the_targets(name: str) -> None:
    """No runner <-> targets <-> checks circle: the checks and the data they share sit below the targets."""
    path = PKG / name
    package = ".".join(path.relative_to(PKG.parent).with_suffix("").parts[:-1])
    imported = imported_modules(path.read_text(encoding="utf-8"), package) - _type_checking_only(path, package)
    assert not [m for m in imported if m.startswith(("pytest_cbchaos.scenario.target", "pytest_cbchaos.scenario.runner"))]


def _type_checking_only(path: Path, package: str) -> set[str]:
    """Modules imported under ``if TYPE_CHECKING:`` only (annotations, no import at run time)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            out |= imported_modules(ast.unparse(ast.Module(body=node.body, type_ignores=[])), package)
    return out
