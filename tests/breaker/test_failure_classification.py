"""What counts as a breaker failure: transport errors and retryable statuses by default,
``failure_exceptions`` and ``is_failure`` to change it (docs/breaker.md, "What counts as a failure")."""

from __future__ import annotations

import socket
import subprocess
import sys
from typing import Any, Callable

import aiohttp
import httpx
import pytest
import requests

from pytest_cbchaos.breaker import BreakerConfig, CircuitBreaker, CircuitBreakerOpenError, InMemoryStore
from pytest_cbchaos.breaker.failures import default_is_failure
from pytest_cbchaos.faults.clock import ManualClock

from breaker_fakes import HTTPError

THRESHOLD = BreakerConfig().failure_threshold  # the default threshold: these tests name no threshold parameter


def _breaker(**cfg: Any) -> CircuitBreaker:
    clock = ManualClock(1_795_000_000.0)
    return CircuitBreaker("provider", BreakerConfig(initial_backoff_seconds=0.01, **cfg),
                          store=InMemoryStore(clock=clock), clock=clock)


def _fail(cb: CircuitBreaker, exc: BaseException, times: int = THRESHOLD) -> None:
    def call() -> None:
        raise exc

    for _ in range(times):
        with pytest.raises(type(exc)):
            cb.call(call)


def _is_open(cb: CircuitBreaker) -> bool:
    try:
        cb.call(lambda: None)
    except CircuitBreakerOpenError:
        return True
    return False


TRANSPORT: dict[str, Callable[[], BaseException]] = {
    "ConnectionRefusedError": lambda: ConnectionRefusedError(111, "refused"),
    "ConnectionResetError": lambda: ConnectionResetError(104, "reset"),
    "TimeoutError": lambda: TimeoutError(),
    "socket.timeout": lambda: socket.timeout("timed out"),
    "httpx.ConnectError": lambda: httpx.ConnectError("refused"),
    "httpx.ReadTimeout": lambda: httpx.ReadTimeout("slow"),
    "httpx.RemoteProtocolError": lambda: httpx.RemoteProtocolError("server disconnected"),
    "aiohttp.ServerDisconnectedError": lambda: aiohttp.ServerDisconnectedError(),
    "aiohttp.ServerTimeoutError": lambda: aiohttp.ServerTimeoutError("read timeout"),
    "requests.ConnectionError": lambda: requests.ConnectionError("refused"),
    "requests.ReadTimeout": lambda: requests.ReadTimeout("slow"),
}


@pytest.mark.parametrize("name", list(TRANSPORT))
def test_transport_errors_open_the_breaker_by_default(name: str) -> None:
    cb = _breaker()
    _fail(cb, TRANSPORT[name]())
    assert _is_open(cb), f"{name} x{THRESHOLD} did not open the breaker"


@pytest.mark.parametrize("status", [500, 502, 503, 529])
def test_retryable_statuses_still_count(status: int) -> None:
    cb = _breaker()
    _fail(cb, HTTPError(status))
    assert _is_open(cb)


@pytest.mark.parametrize("exc", [ValueError("bad input"), HTTPError(400), HTTPError(404), KeyError("k")])
def test_caller_errors_do_not_count(exc: BaseException) -> None:
    cb = _breaker()
    _fail(cb, exc, times=THRESHOLD + 2)
    assert not _is_open(cb)


def test_failure_exceptions_add_classes() -> None:
    class QuotaError(Exception):
        pass

    cb = _breaker(failure_exceptions=(QuotaError,))
    _fail(cb, QuotaError("over quota"))
    assert _is_open(cb)


def test_is_failure_replaces_the_default_rule() -> None:
    cb = _breaker(is_failure=lambda exc: isinstance(exc, KeyError))
    _fail(cb, ConnectionRefusedError(), times=THRESHOLD + 2)
    assert not _is_open(cb), "a predicate that says no must win over the default"
    _fail(cb, KeyError("k"))
    assert _is_open(cb)


def test_is_failure_composes_with_the_default() -> None:
    cb = _breaker(is_failure=lambda exc: default_is_failure(exc) or isinstance(exc, LookupError))
    _fail(cb, LookupError("x"), times=THRESHOLD - 1)
    _fail(cb, TimeoutError(), times=1)
    assert _is_open(cb)


def test_call_with_retry_counts_and_retries_a_transport_error() -> None:
    cb = _breaker(max_retries=2)
    calls = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionResetError(104, "reset")
        return "reply"

    assert cb.call_with_retry(flaky) == "reply"  # the backoff sleeps on the manual clock
    assert len(calls) == 2


@pytest.mark.parametrize("kw,fragment", [
    ({"failure_exceptions": (1,)}, "failure_exceptions must be a tuple of exception classes"),
    ({"failure_exceptions": [ValueError]}, "failure_exceptions must be a tuple"),
    ({"is_failure": "yes"}, "is_failure must be a callable"),
])
def test_bad_classification_config_is_named(kw: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        BreakerConfig(**kw)


def test_classification_imports_no_http_client() -> None:
    code = ("import sys; from pytest_cbchaos.breaker.failures import default_is_failure; "
            "assert default_is_failure(ConnectionResetError()) and not default_is_failure(ValueError()); "
            "print(sorted(m for m in ('httpx', 'aiohttp', 'requests') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
