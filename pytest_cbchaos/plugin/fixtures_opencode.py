"""Fixtures for real opencode and the mock model provider, over the environment's opencode rig
(:meth:`~pytest_cbchaos.env.Environment.opencode`; docs/opencode.md).

* ``cbchaos_mock_llm`` (function): the worker's :class:`~pytest_cbchaos.servers.mockllm.MockLLM`, reset
  after each test: gates released, handlers awaited, scripts and the request log cleared. A strict-mode
  mock with unexpected requests fails the test at teardown.
* ``cbchaos_opencode`` (session): the worker's real ``opencode serve`` whose provider is the mock; after
  every test that used it, a dead or stopped server is brought back and busy sessions are aborted.
* ``cbchaos_opencode_proxy`` (function): :class:`~pytest_cbchaos.env.OpencodeProxied` — the REST API
  (control plane) and ``/event`` (events plane) behind two fault-proxy listeners; usable as a runner's
  server handle (``restart()`` re-points both proxies at the new port).

Without an opencode binary the opencode fixtures skip with the install command; with env ``CI`` set they
fail instead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterator

import pytest

from pytest_cbchaos.plugin import factories

if TYPE_CHECKING:
    from pytest_cbchaos.env import Environment, OpencodeProxied
    from pytest_cbchaos.servers.mockllm import MockLLM


def check_mock_idle(mock: MockLLM, timeout: float = 5.0) -> None:
    try:
        mock.wait_idle(timeout)
    except TimeoutError as exc:
        pytest.fail(f"mock LLM teardown: {exc}", pytrace=False)


cbchaos_mock_llm_server = factories.mock_llm(shared=True)  # prefer ``cbchaos_mock_llm`` in tests
cbchaos_opencode = factories.opencode(shared=True)


@pytest.fixture
def cbchaos_mock_llm(request: pytest.FixtureRequest, cbchaos_mock_llm_server: MockLLM) -> Iterator[MockLLM]:
    """Scriptable OpenAI-compatible provider, reset after the test.

    Teardown releases every gate and checks that no request stays open (with opencode in the test, that
    check runs after the server's busy sessions were aborted, in the per-test hygiene)."""
    mock = cbchaos_mock_llm_server
    mock.reset()
    mock.strict = False
    yield mock
    unexpected, strict = mock.unexpected, mock.strict
    mock.release_all()
    mock.strict = False
    if strict and unexpected:
        mock.reset()
        pytest.fail(f"mock LLM (strict) got unscripted requests: {[(r.seq, r.kind) for r in unexpected]}",
                    pytrace=False)
    if not {"cbchaos_opencode", "cbchaos_opencode_proxy"} & set(request.fixturenames):
        check_mock_idle(mock)


@pytest.fixture
def cbchaos_opencode_proxy(cbchaos_env: Environment) -> OpencodeProxied:
    """Control and events planes of ``cbchaos_opencode`` behind the fault proxy (toxics reset per test)."""
    rig = factories.started_or_skip(cbchaos_env.opencode)
    rig.handle.sync_upstream()
    return rig.handle
