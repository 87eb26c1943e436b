"""Acceptance against real opencode 1.18.33 (issue 7): normal turn, model stall, SIGKILL mid-turn,
silenced SSE socket, budget exhaustion."""

from __future__ import annotations

import time

import pytest

from pytest_cbchaos.recovery import RunStatus
from pytest_cbchaos.lag import judged_text, within
from pytest_cbchaos.waiting import wait_until
from pytest_cbchaos.servers import mockllm as m
from tests.recovery.oc_env import OpencodeEnv


def wait_for(cond, timeout: float, what: str) -> None:
    wait_until(cond, timeout, what)

pytestmark = [pytest.mark.slow, pytest.mark.opencode, pytest.mark.timeout(120)]


def test_normal_turn_completes(oc: OpencodeEnv) -> None:
    oc.llm.script("main", [m.text("hello world", chunks=3, delay=0.05)])
    with oc.runner() as runner:
        res = runner.run_turn("say hello")
    assert res.status == RunStatus.OK, res
    assert res.finish_reason == "stop" and res.idle_confirmed == "sse"
    assert "hello world" in res.text and "say hello" not in res.text
    assert res.recoveries_used == 0 and not res.budget_exhausted
    assert [a.sse_connections for a in res.attempts] == [1]
    kinds = [h["type"] for h in runner.history]
    assert kinds.index("subscribe.confirmed") < kinds.index("prompt.sent")  # subscribe before prompt


def test_model_stall_detected_and_recovered_by_abort(oc: OpencodeEnv) -> None:
    stall = 2.0
    oc.llm.script("main", m.stall_midway("partial answer"))
    with oc.runner(stall_timeout=stall, max_recoveries=2) as runner:
        res = runner.run_turn("the original prompt 7f3a")
    assert res.status == RunStatus.OK, res
    first = res.attempts[0]
    assert first.verdict == RunStatus.SESSION_STALLED
    age = first.evidence["last_progress_age_s"]
    assert stall <= age <= stall + 1.0, first.evidence
    assert first.sse_connections == 1  # ticks never closed the stream
    assert first.aborted and res.recoveries_used == 1
    mains = oc.main_requests()
    stalled, retried = mains[0], mains[-1]
    assert stalled.client_closed_at is not None and stalled.client_closed_at <= retried.received_at  # INV-12
    assert "the original prompt 7f3a" in retried.user_text()  # INV-13


def test_sigkill_mid_turn_is_unreachable_fast_and_retried(oc: OpencodeEnv) -> None:
    """The retry runs on a cold server (seconds without events): it must not be a stall at 3 s."""
    oc.llm.script("main", m.stall_midway("never finished"))
    with oc.runner(stall_timeout=3, max_recoveries=1) as runner:
        import threading
        out: list = []
        th = threading.Thread(target=lambda: out.append(runner.run_turn("kill me softly")))
        th.start()
        oc.llm.wait_stalled("main", 30)
        old_pid = oc.server.pid
        runner.mark_fault()
        oc.server.kill()
        th.join(90)
        assert not th.is_alive()
    res = out[0]
    first = res.attempts[0]
    assert first.verdict == RunStatus.SERVER_UNREACHABLE, first
    assert first.fault_to_verdict_s is not None  # lag-aware: measured - observed lag <= 2 s
    assert within(first.fault_to_verdict_s, first.lag_s, 2.0), judged_text(first.fault_to_verdict_s, first.lag_s, 2.0)
    assert res.status == RunStatus.OK and res.recoveries_used == 1, res
    assert res.attempts[1].generation == first.generation + 1  # type: ignore[operator]
    boot = [h for h in runner.history if h["type"] == "first_event" and h["attempt"] == 2]
    assert len(boot) == 1, "\n".join(str({k: v for k, v in h.items() if k != "status"}) for h in runner.history)
    print(f"retry after restart: first event of the answer {boot[0]['after_s']} s after prompt acceptance")
    import os
    with pytest.raises(ProcessLookupError):  # INV-19: nothing of the replaced generation lives
        os.killpg(old_pid, 0)  # type: ignore[arg-type]


def test_silenced_sse_is_replaced_and_final_idle_kept(oc: OpencodeEnv) -> None:
    oc.llm.script("main", m.stall_midway("quiet then done"))
    with oc.runner(stall_timeout=8, heartbeat_interval=1, sse_silence_timeout=2, idle_poll_interval=0,
                   sse_connect_timeout=1) as runner:
        import threading
        out: list = []
        th = threading.Thread(target=lambda: out.append(runner.run_turn("silence test")))
        th.start()
        oc.llm.wait_stalled("main", 30)
        toxic = oc.events.add_toxic("timeout", stream="downstream", timeout=0)
        wait_for(lambda: any(h["type"] == "sse.reconnect" and h.get("cause") in ("silence", "sync_showed_lost_events")
                             for h in runner.history),
                 6, "silence reconnect")
        oc.llm.release_all()  # the turn finishes while the events plane is silent
        time.sleep(0.5)  # noqa: fault window length (the idle is published meanwhile), not synchronisation
        oc.events.remove_toxic(toxic.name)
        th.join(30)
        assert not th.is_alive()
    res = out[0]
    assert res.status == RunStatus.OK and res.recoveries_used == 0, res
    assert res.attempts[0].sse_connections >= 2
    assert "quiet then done" in res.text


def test_budget_exhaustion_is_never_success(oc: OpencodeEnv) -> None:
    oc.llm.script("main", m.stall_midway("xx"), times=2)
    with oc.runner(stall_timeout=1.5, probe_timeout=0.5, max_recoveries=1) as runner:
        res = runner.run_turn("stall twice")
    assert res.status == RunStatus.SESSION_STALLED and res.budget_exhausted, res
    assert res.recoveries_used == 1 and len(res.attempts) == 2
    oc.llm.release_all()


@pytest.mark.filterwarnings("error::ResourceWarning")
def test_runner_lifecycles_leave_no_threads_fds_or_consumers(oc: OpencodeEnv) -> None:
    """INV-11/19 (runner side): each runner's loop thread, sockets and consumers end with close()."""
    import gc
    import threading

    import psutil

    from pytest_cbchaos.recovery.attempt import CONSUMERS

    me = psutil.Process()
    with oc.runner() as runner:
        assert runner.run_turn("baseline").status == RunStatus.OK
    gc.collect()
    fds, threads = me.num_fds(), threading.active_count()
    for i in range(4):
        oc.llm.script("main", [m.text(f"round {i}", chunks=2)])
        with oc.runner() as runner:
            assert runner.run_turn(f"round {i}").status == RunStatus.OK
        assert CONSUMERS.live() == {}
    gc.collect()
    wait_for(lambda: threading.active_count() <= threads, 5, "runner threads to end")
    assert abs(me.num_fds() - fds) <= 2, (fds, me.num_fds())



def test_model_that_never_answers_is_stalled_by_the_first_event_deadline(oc: OpencodeEnv) -> None:
    """The model never starts its response (no headers): opencode publishes no part of the answer, so
    the bootstrap deadline decides. (A response that starts and then stalls gets a ``step-start`` part
    at once: that is a stall after progress, ``session_stalled``.)"""
    oc.llm.script("main", [m.ttfb(300), m.text("never said")])  # no response headers
    with oc.runner(stall_timeout=3, first_event_timeout=6, max_recoveries=0) as runner:
        res = runner.run_turn("answer me 5d1e")
    first = res.attempts[0]
    assert (res.status, first.reason) == (RunStatus.SESSION_STALLED, "first_event_timeout"), \
        "\n".join(str({k: v for k, v in h.items() if k != "status"}) for h in runner.history)
    assert 6.0 <= first.evidence["first_event_wait_s"] <= 7.0, first.evidence
    assert not [h for h in runner.history if h["type"] == "first_event"]
