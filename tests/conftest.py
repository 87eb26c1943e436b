"""Fixtures shared by the scenario, report and CLI tests (helpers live in tests/scenario/scn_support.py)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest


def _support():
    name = "cbchaos_tests_scn_support"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).parent / "scenario" / "scn_support.py")
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
    return sys.modules[name]


@pytest.fixture
def scn():
    """The shared constants/helpers module (PLUGINS, GOOD, MUTANT, make_project)."""
    return _support()


@pytest.fixture
def scenario_project(pytester: pytest.Pytester) -> pytest.Pytester:
    return _support().make_project(pytester)
