"""Stash keys shared by the plugin's modules.

A module of its own, outside ``pytest_plugins``: the report plugin (loaded early with ``-p``) reads the
fault journal a fixture module writes, and importing that fixture module from it would load it before
pytest marks it for assertion rewriting (a ``PytestAssertRewriteWarning`` in ``cbchaos run``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pytest_cbchaos.env import Environment
    from pytest_cbchaos.faults.journal import FaultJournal

ENV_KEY = pytest.StashKey["Environment"]()
FAULT_JOURNAL_KEY = pytest.StashKey["FaultJournal"]()
