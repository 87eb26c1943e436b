"""Fixtures shared by the scenario, report and CLI tests (helpers live in tests/scenario/scn_support.py)."""

from __future__ import annotations

from types import ModuleType

import httpcore  # noqa: F401 - see below
import pytest

# httpx imports httpcore on first use and maps its exceptions by class. Pytester's in-process runs drop
# every module first imported inside them, so an httpcore first loaded there would be loaded again later
# with new classes, and httpx would let its errors through unmapped: load it once, here, for the session.


def _support() -> ModuleType:
    from tests.scenario import scn_support

    return scn_support


@pytest.fixture
def scn():
    """The shared constants/helpers module (PLUGINS, GOOD, MUTANT, make_project)."""
    return _support()


@pytest.fixture
def scenario_project(pytester: pytest.Pytester) -> pytest.Pytester:
    return _support().make_project(pytester)


@pytest.fixture(autouse=True)
def _inner_sessions_quiet_about_asyncio(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Pytester's inner sessions run in a temp dir without this project's ini: give them its
    pytest-asyncio loop scope, so their summaries carry no deprecation warning of a setting we do set.
    (Pytester clears PYTEST_ADDOPTS when it starts, hence set after it.)"""
    if "pytester" in request.fixturenames:
        request.getfixturevalue("pytester")
        scope = request.config.getini("asyncio_default_fixture_loop_scope") or "function"
        monkeypatch.setenv("PYTEST_ADDOPTS", f"-o asyncio_default_fixture_loop_scope={scope}")
