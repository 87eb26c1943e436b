"""Which files are scenarios (docs/scenarios.md, "Which files are scenarios"); stdlib only, so that pytest's
collection asks without importing the loader's YAML and JSON-Schema libraries."""

from __future__ import annotations

from pathlib import Path

SUFFIXES = (".yaml", ".yml")


def is_scenario_file(path: Path) -> bool:
    """``*.scenario.yaml`` anywhere, or any ``*.yaml``/``*.yml`` inside a directory named ``scenarios``."""
    if path.suffix not in SUFFIXES or path.name.startswith("."):
        return False
    return path.name.endswith((".scenario.yaml", ".scenario.yml")) or "scenarios" in path.parent.parts


def discover(paths: list[Path]) -> list[Path]:
    """Scenario files under directories (by :func:`is_scenario_file`) plus every YAML file named itself."""
    found: list[Path] = []
    for p in paths:
        if p.is_dir():
            found.extend(sorted(q for q in p.rglob("*") if q.is_file() and is_scenario_file(q.resolve())))
        elif p.suffix in SUFFIXES:
            found.append(p)
    return list(dict.fromkeys(found))
