"""INV-14 and INV-15 against real opencode 1.18.33, with the mutants each one must catch.

* INV-14 (no double prompt): once the session exists, a latency toxic on the control plane holds
  every response 1.5 s, above ``request_timeout`` (0.8 s). The server accepts ``prompt_async`` at
  once but its 204 reaches the runner late, so the runner sees a timeout. The real runner asks the
  server (status / messages, under ``probe_timeout``) whether the prompt landed and does not resend;
  M11 resends. The server's own user-message count for the session decides.
* INV-15 (control-plane classification): a 400 on ``POST /session`` (the proxy's
  ``cbchaos_http_fault`` toxic) and opencode's own 404 for an unknown session end ``ERROR`` at once,
  without recovery. M14 counts them as server death and recovers, and is caught.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import httpx
import pytest

from pytest_cbchaos.recovery import RecoveryConfig, RecoveryRunner, RunStatus, TurnResult
from pytest_cbchaos.stateful.recovery_machine import Expectation, InvariantViolation, check_turn
from pytest_cbchaos.testing.runner_mutants import MUTANTS
from pytest_cbchaos.servers import mockllm as m
from tests.recovery.oc_env import OpencodeEnv

pytestmark = [pytest.mark.slow, pytest.mark.opencode, pytest.mark.timeout(180)]

LATENCY_MS = 1500
REQUEST_TIMEOUT = 0.8  # below the toxic's latency: every control response "times out"
PROBE_TIMEOUT = 5.0  # above it: the runner's "was it accepted?" check gets its answer


def _wait_for(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)  # polling a condition with a deadline
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def _direct(oc: OpencodeEnv) -> httpx.Client:
    """A client straight to the server (no fault proxy): the server's own view of a session."""
    return httpx.Client(base_url=oc.server.base_url, auth=oc.server.auth, headers=oc.server.headers, timeout=10)


def _user_messages(oc: OpencodeEnv, sid: str) -> int:
    """User messages the server holds for ``sid``, once the session is idle (queued prompts done)."""
    with _direct(oc) as c:
        _wait_for(lambda: sid not in c.get("/session/status").json(), 30, f"session {sid} to be idle")
        msgs = c.get(f"/session/{sid}/message").json()
    return sum(1 for m in msgs if (m.get("info") or {}).get("role") == "user")


def _run(oc: OpencodeEnv, runner_cls: type[RecoveryRunner], exp: Expectation, *, session_id: str | None = None,
         sink: Callable[[dict[str, Any]], None] | None = None, **cfg: Any) -> tuple[TurnResult, float]:
    exp.requests_before = len(oc.main_requests())
    t0 = time.monotonic()
    with runner_cls(oc.target(), RecoveryConfig.for_tests(**cfg), history_sink=sink) as runner:
        res = runner.run_turn(exp.prompt, session_id=session_id)
    return res, time.monotonic() - t0


def _expect(fault: str, budget: int, stall: float, **kw: Any) -> Expectation:
    return Expectation(fault, f"{fault} prompt {time.monotonic_ns() % 10**9}", budget, stall, 150, **kw)


@pytest.mark.parametrize("name", ["real", "M11"])
def test_prompt_accepted_but_timed_out_is_not_resent(oc: OpencodeEnv, name: str) -> None:
    """INV-14: one intended prompt, one user message on the server; M11 (resends) is caught."""
    runner_cls = RecoveryRunner if name == "real" else MUTANTS["M11"]
    oc.llm.script("main", [m.text("answered once", chunks=2)])
    toxics: list[Any] = []

    def sink(entry: dict[str, Any]) -> None:  # the session exists: slow the control plane from now on
        if entry["type"] == "session.created" and not toxics:
            toxics.append(oc.control.add_toxic("latency", stream="downstream", latency=LATENCY_MS))

    exp = _expect("accepted_timeout", 0, 12.0, final_status={RunStatus.OK}, no_recovery=True)
    try:
        res, elapsed = _run(oc, runner_cls, exp, sink=sink, request_timeout=REQUEST_TIMEOUT,
                            probe_timeout=PROBE_TIMEOUT, stall_timeout=12.0, max_recoveries=0)
    finally:
        for toxic in toxics:
            oc.control.remove_toxic(toxic.name)
    assert toxics, "the toxic was never added: no session.created record"
    assert res.session_id is not None, res
    users = _user_messages(oc, res.session_id)
    requests = oc.main_requests()[exp.requests_before:]
    if name == "real":
        check_turn(exp, res, elapsed, requests, user_messages=users)
        assert users == 1 and res.status == RunStatus.OK, (users, res)
    else:
        assert users > 1, f"the trigger did not make M11 resend (user messages {users}): {res}"
        with pytest.raises(InvariantViolation, match="INV-14"):
            check_turn(exp, res, elapsed, requests, user_messages=users)


def _create_400(oc: OpencodeEnv) -> str | None:
    oc.control.add_toxic("cbchaos_http_fault", stream="upstream", match_method="POST", match_path=r"^/session/?$",
                         action="status", status=400, body='{"name":"BadRequest","data":{"message":"cbchaos"}}')
    return None


def _unknown_session(oc: OpencodeEnv) -> str | None:
    return "ses_cbchaosunknown0000000000"  # opencode answers 404 NotFoundError for it


TRIGGERS: dict[str, tuple[Callable[[OpencodeEnv], str | None], int]] = {
    "create_400_via_proxy": (_create_400, 400), "unknown_session_404": (_unknown_session, 404)}


@pytest.mark.parametrize("trigger", sorted(TRIGGERS))
def test_control_plane_4xx_is_error_without_recovery(oc: OpencodeEnv, trigger: str) -> None:
    """INV-15: a 4xx from the control plane is final ERROR: no retry in place, no recovery, no restart."""
    setup, status = TRIGGERS[trigger]
    session_id = setup(oc)
    generation = oc.server.generation
    exp = _expect(trigger, 2, 3.0, final_status={RunStatus.ERROR}, no_recovery=True)
    res, elapsed = _run(oc, RecoveryRunner, exp, session_id=session_id, max_recoveries=2)
    check_turn(exp, res, elapsed, oc.main_requests()[exp.requests_before:])
    assert len(res.attempts) == 1 and res.attempts[0].reason == "request_error", res
    assert res.attempts[0].evidence["http_status"] == status, res.attempts[0].evidence
    assert oc.server.generation == generation and not oc.main_requests(), "a 4xx caused a restart or a prompt"


def test_m14_recovering_a_4xx_is_caught(oc: OpencodeEnv) -> None:
    """INV-15 can fail: M14 takes opencode's 404 for server death, restarts and "succeeds" on a new session."""
    generation = oc.server.generation
    # nothing but the INV-15 check may catch it: no outcome or "no recovery" expectation is set
    exp = _expect("unknown_session_404", 1, 30.0)
    # roomy stall_timeout: the retried turn is the first on a fresh instance (seconds of bootstrap)
    res, elapsed = _run(oc, MUTANTS["M14"], exp, session_id=_unknown_session(oc), max_recoveries=1,
                        stall_timeout=30.0)
    assert res.attempts[0].verdict == RunStatus.SERVER_UNREACHABLE and res.recoveries_used == 1, res
    assert oc.server.generation == generation + 1  # it did restart the server
    with pytest.raises(InvariantViolation, match="INV-15"):
        check_turn(exp, res, elapsed, oc.main_requests()[exp.requests_before:])
