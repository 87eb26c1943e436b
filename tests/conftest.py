"""Fixtures shared by the scenario, report and CLI tests (helpers live in tests/scenario/scn_support.py)."""

from __future__ import annotations

from types import ModuleType

import pytest


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
