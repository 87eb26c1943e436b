"""Fixtures of the recovery tests: one real opencode per worker behind two fault-proxy listeners
(control plane and events plane) and a scripted mock provider (see ``oc_env.py``)."""

from __future__ import annotations

from typing import Any, Iterator

import pytest

from tests.recovery.oc_env import OpencodeEnv, shared_env


@pytest.fixture(scope="session")
def oc_env(cbchaos_toxiproxy: Any, tmp_path_factory: pytest.TempPathFactory,
           request: pytest.FixtureRequest) -> OpencodeEnv:
    return shared_env(cbchaos_toxiproxy, tmp_path_factory, request)


@pytest.fixture
def oc(oc_env: OpencodeEnv) -> Iterator[OpencodeEnv]:
    from pytest_cbchaos.recovery.attempt import CONSUMERS
    oc_env.clean()
    yield oc_env
    oc_env.clean()
    assert CONSUMERS.live() == {}, "a consumer outlived its attempt"
