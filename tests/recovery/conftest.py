"""Fixtures of the recovery tests: the worker's one opencode rig (``Environment.opencode()``: real
opencode behind control/events fault proxies, the scriptable mock provider), see ``oc_env.py``."""

from __future__ import annotations

from typing import Any, Iterator

import pytest

from pytest_cbchaos.env import Environment
from pytest_cbchaos.plugin.factories import started_or_skip
from tests.recovery.oc_env import OpencodeEnv


@pytest.fixture
def opencode_binary(cbchaos_env: Environment) -> Any:
    """The opencode binary the environment found; skips without one (fails under CI)."""
    return started_or_skip(cbchaos_env.opencode_binary)


@pytest.fixture
def oc(cbchaos_env: Environment) -> Iterator[OpencodeEnv]:
    from pytest_cbchaos.recovery.attempt import CONSUMERS
    env = OpencodeEnv.of(cbchaos_env)
    env.clean()
    yield env
    env.clean()
    assert CONSUMERS.live() == {}, "a consumer outlived its attempt"
