"""Breaker fixtures: ``cbchaos_breaker_store`` and ``cbchaos_breaker``.

``cbchaos_breaker_store`` is parametrisable by indirect param: ``"memory"`` (default),
``"redis"`` (``RedisStore`` through the fault proxy, server time), ``"redis-client-time"``
or ``"redis-fallback"`` (WATCH path forced)::

    @pytest.mark.parametrize("cbchaos_breaker_store", ["memory", "redis"], indirect=True)
    def test_x(cbchaos_breaker_store): ...

Redis variants use a per-test key prefix, so tests never see each other's records.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any, Iterator

import pytest

if TYPE_CHECKING:
    from pytest_cbchaos.breaker import CircuitBreaker

STORE_KINDS = ("memory", "redis", "redis-client-time", "redis-fallback")


@pytest.fixture
def cbchaos_breaker_store(request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh breaker store (default in-memory; see module doc for the params)."""
    kind = getattr(request, "param", "memory")
    if kind not in STORE_KINDS:
        raise pytest.UsageError(f"cbchaos_breaker_store param {kind!r}: expected one of {STORE_KINDS}")
    if kind == "memory":
        from pytest_cbchaos.breaker import InMemoryStore

        yield InMemoryStore()
        return
    from pytest_cbchaos.breaker import RedisStore

    client = request.getfixturevalue("cbchaos_redis")
    opts: dict[str, Any] = {"key_prefix": f"cbchaos:cb:{uuid.uuid4().hex[:8]}"}
    if kind == "redis-client-time":
        opts["time_source"] = "client"
    if kind == "redis-fallback":
        opts["scripting"] = "disabled"
    yield RedisStore(client, **opts)


@pytest.fixture
def cbchaos_breaker(cbchaos_breaker_store: Any) -> CircuitBreaker:
    """A ``CircuitBreaker`` named after the test, on ``cbchaos_breaker_store`` (``failure_threshold`` 3, ``cooldown_s`` 1)."""
    from pytest_cbchaos.breaker import BreakerConfig, CircuitBreaker

    return CircuitBreaker("cbchaos-test", BreakerConfig(failure_threshold=3, cooldown_s=1.0),
                          store=cbchaos_breaker_store)


@pytest.fixture
def cbchaos_store_check(request: pytest.FixtureRequest) -> Any:
    """``check(machine)``: run a store machine fail-fast, or as a survey under ``--cbchaos-survey on``
    (docs/stateful.md#survey-mode); returns the :class:`~pytest_cbchaos.stateful.survey.SurveyReport`."""
    from pytest_cbchaos.settings import get_settings
    from pytest_cbchaos.stateful.survey import SurveyFailed, check_store

    enabled = get_settings(request.config).survey

    def check(machine: type, **kw: Any) -> Any:
        try:
            rep = check_store(machine, survey=kw.pop("survey", enabled), **kw)
        except SurveyFailed as exc:
            request.node.user_properties.append(("cbchaos_survey", exc.report.to_dict()))
            raise
        request.node.user_properties.append(("cbchaos_survey", rep.to_dict()))
        return rep
    return check
