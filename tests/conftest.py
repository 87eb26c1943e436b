"""Fixtures shared by the scenario, report and CLI tests (helpers live in tests/scenario/scn_support.py)."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import httpcore  # noqa: F401 - see below
import pytest

from pytest_cbchaos.servers.opencode_version import cache_dir

# httpx imports httpcore on first use and maps its exceptions by class. Pytester's in-process runs drop
# every module first imported inside them, so an httpcore first loaded there would be loaded again later
# with new classes, and httpx would let its errors through unmapped: load it once, here, for the session.


DURATIONS = Path(__file__).with_name("durations.json")  # seconds per slow test, from a --durations=0 run
# this session's opencode version cache, read before any pytester points HOME at its temp dir
OUTER_CACHE_DIR = str(cache_dir())


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under xdist, the slowest tests first, longest first: the workers share them out at the start, and
    ``--dist worksteal`` (``make test``) balances the short ones at the end (with ``--dist load`` a worker
    can be left holding a long queue: 539 s against 393 s measured). The table only steers the order (a
    stale or missing entry costs time, never a result); elsewhere pytest's order stays."""
    if not hasattr(config, "workerinput"):
        return
    seconds = json.loads(DURATIONS.read_text())
    items.sort(key=lambda item: -seconds.get(item.nodeid, 0.0))  # stable: the others keep their order


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
def _inner_sessions_share_outer_settings(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Pytester's inner sessions run in a temp dir without this project's ini: give them its
    pytest-asyncio loop scope, so their summaries carry no deprecation warning of a setting we do set.
    (Pytester clears PYTEST_ADDOPTS when it starts, hence set after it.) And its HOME is a temp dir:
    give them this session's opencode version cache."""
    if "pytester" in request.fixturenames:
        request.getfixturevalue("pytester")
        scope = request.config.getini("asyncio_default_fixture_loop_scope") or "function"
        monkeypatch.setenv("PYTEST_ADDOPTS", f"-o asyncio_default_fixture_loop_scope={scope}")
        # an inner session that starts opencode reads the cached version instead of running a cold
        # ``opencode --version`` (1.5-3.5 s measured; docs/opencode.md, "Install")
        monkeypatch.setenv("CBCHAOS_CACHE_DIR", OUTER_CACHE_DIR)
