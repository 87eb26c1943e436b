"""Where the shipped scenarios are: ``pytest_cbchaos/scenarios/`` in an installed wheel (copied there by the
build, setup.py), the repository's ``scenarios/`` in a source checkout (their one source)."""

from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent


def builtin_dir() -> Path:
    """The directory of the shipped scenario files; ``FileNotFoundError`` names both places looked at."""
    for candidate in (PACKAGE / "scenarios", PACKAGE.parent / "scenarios"):
        if any(candidate.glob("*.yaml")):
            return candidate
    raise FileNotFoundError(f"no shipped scenarios in {PACKAGE / 'scenarios'} (installed) nor "
                            f"{PACKAGE.parent / 'scenarios'} (source checkout): reinstall pytest-cbchaos")
