"""Unit tests of the runner's own logic: SSE parsing, event ownership, progress, liveness, errors."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from pytest_cbchaos.recovery import ControlClient, OpencodeRequestError, RecoveryConfig, ServerTarget
from pytest_cbchaos.recovery.handle import normalize_liveness, pid_liveness
from pytest_cbchaos.recovery.status import Liveness, RunStatus, status_for_reason
from pytest_cbchaos.recovery.sse import SSEParser
from pytest_cbchaos.recovery.tracker import TurnTracker, event_owner, retry_deadline


def test_parser_joins_multiline_data_ignores_comments_and_split_frames() -> None:
    p = SSEParser()
    out = p.feed(b": comment\ndata: {\"a\":\r\n")
    assert out == []
    out = p.feed(b"data: 1}\nid: x\nevent: y\n\ndata: {\"b\": 2}\n")
    assert out == ['{"a":\n1}']
    assert p.feed(b"\n") == ['{"b": 2}']


def test_owner_lookup_order() -> None:
    assert event_owner({"properties": {"sessionID": "a", "part": {"sessionID": "b"}}}) == "a"
    assert event_owner({"properties": {"part": {"sessionID": "b"}}}) == "b"
    assert event_owner({"properties": {"info": {"sessionID": "c"}}}) == "c"
    assert event_owner({"properties": {}}) is None


def ev(t: str, **props: Any) -> dict[str, Any]:
    return {"type": t, "properties": props}


def test_progress_only_from_own_and_child_sessions() -> None:
    t = TurnTracker(session_id="s1", prompt="p")
    t.prompt_sent_at = 0.0
    t.handle(ev("catalog.updated"), now=1.0)
    t.handle(ev("session.status", sessionID="other", status={"type": "busy"}), now=2.0)
    assert t.last_progress_at is None  # global noise never counts
    t.handle(ev("server.heartbeat"), now=3.0)
    assert t.last_progress_at is None  # heartbeats are not progress (M6)
    t.handle(ev("session.updated", sessionID="c1", info={"id": "c1", "parentID": "s1"}), now=4.0)
    t.handle(ev("message.part.delta", sessionID="c1", messageID="m", partID="p", field="text", delta="x"), now=5.0)
    assert t.last_progress_at == 5.0  # child-session streaming counts


def test_retry_is_active_and_extends_deadline_never_idle() -> None:
    t = TurnTracker(session_id="s1")
    t.prompt_sent_at = 0.0
    nxt = (time.time() + 5) * 1000
    t.handle(ev("session.status", sessionID="s1", status={"type": "retry", "attempt": 1, "next": nxt}), now=10.0)
    assert t.active and t.idle_seen_at is None  # M7: retry is not idle
    assert t.retry_until is not None and 14.0 < t.retry_until < 16.0
    assert retry_deadline(None, 1.0) is None


def test_turn_completion_and_text_exclude_user_parts() -> None:
    t = TurnTracker(session_id="s1", prompt="hi")
    t.prompt_sent_at = 0.0
    t.handle(ev("message.updated", info={"id": "u1", "role": "user", "sessionID": "s1"}), now=1)
    t.handle(ev("message.part.updated", part={"id": "pu", "messageID": "u1", "sessionID": "s1", "type": "text",
                                              "text": "hi"}), now=1)
    t.handle(ev("message.updated", info={"id": "a1", "role": "assistant", "parentID": "u1", "sessionID": "s1",
                                         "time": {"created": 1}}), now=2)
    t.handle(ev("message.part.delta", sessionID="s1", messageID="a1", partID="pa", field="text", delta="hel"), now=2)
    t.handle(ev("message.part.delta", sessionID="s1", messageID="a1", partID="pa", field="text", delta="lo"), now=2)
    t.handle(ev("message.part.updated", part={"id": "pf", "messageID": "a1", "sessionID": "s1",
                                              "type": "step-finish", "reason": "stop"}), now=3)
    assert t.completed_at is None
    t.handle(ev("message.updated", info={"id": "a1", "role": "assistant", "parentID": "u1", "sessionID": "s1",
                                         "time": {"created": 1, "completed": 2}, "finish": "stop"}), now=4)
    assert t.completed_at == 4 and t.finish_reason == "stop" and t.text == "hello"
    t.handle(ev("session.idle", sessionID="s1"), now=5)
    assert t.idle_seen_at == 5


def test_stale_idle_before_the_turn_is_ignored() -> None:
    t = TurnTracker(session_id="s1")
    t.prompt_sent_at = 0.0
    t.handle(ev("session.status", sessionID="s1", status={"type": "idle"}), now=1)
    assert t.idle_seen_at is None


def test_sync_showing_unseen_parts_is_progress() -> None:
    t = TurnTracker(session_id="s1", prompt="q")
    msgs = [{"info": {"id": "u", "role": "user", "sessionID": "s1"}, "parts": [{"id": "p0", "type": "text",
                                                                                 "text": "q"}]},
            {"info": {"id": "a", "role": "assistant", "parentID": "u", "sessionID": "s1"},
             "parts": [{"id": "p1", "type": "text", "text": "abc"}]}]
    assert t.apply_sync(msgs, 1.0) is False  # not yet: the stream may deliver it a moment later
    assert t.apply_sync(msgs, 2.5) is True
    assert t.apply_sync(msgs, 4.0) is False  # counted once
    assert t.user_message_id == "u" and t.text == "abc"


def test_status_for_reason_one_condition_one_value() -> None:
    assert status_for_reason("stop") == RunStatus.OK == 0
    assert status_for_reason("length") == RunStatus.INCOMPLETE == 2
    assert status_for_reason("content-filter") == RunStatus.ERROR == 1
    assert status_for_reason("tool-calls") == RunStatus.INCOMPLETE
    assert int(RunStatus.SERVER_UNREACHABLE) == 3 and int(RunStatus.SESSION_STALLED) == 4
    assert int(RunStatus.INTERRUPTED) == 130


def test_liveness_normalisation_and_proc_fallback() -> None:
    import enum
    import os

    class Other(enum.Enum):
        DEAD = "dead(-9)"
        ALIVE = 1
    assert normalize_liveness(Other.DEAD) == Liveness.DEAD
    assert normalize_liveness(Other.ALIVE) == Liveness.ALIVE
    assert normalize_liveness("stopped") == Liveness.STOPPED
    assert normalize_liveness(object()) == Liveness.UNKNOWN
    assert pid_liveness(os.getpid()) == Liveness.ALIVE
    assert pid_liveness(None) == Liveness.UNKNOWN
    assert pid_liveness(2**22 + 12345) == Liveness.DEAD


# -- request-error classification against a small aiohttp fake ---------------------------------
async def _serve(routes: web.RouteTableDef) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.add_routes(routes)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


def test_request_error_classification_and_in_place_retries() -> None:
    calls: dict[str, int] = {}
    routes = web.RouteTableDef()

    @routes.post("/session")
    async def create(request: web.Request) -> web.Response:
        calls["create"] = calls.get("create", 0) + 1
        assert request.headers["Authorization"].startswith("Basic ")
        assert request.headers["x-opencode-directory"] == "/proj"
        if calls["create"] < 3:
            return web.Response(status=503, text="busy")
        return web.json_response({"id": "ses_1"})

    @routes.get("/session/status")
    async def status(request: web.Request) -> web.Response:
        return web.Response(status=401)

    @routes.get("/session/x/message")
    async def bad_json(request: web.Request) -> web.Response:
        return web.Response(text="not json{")

    async def main() -> None:
        runner, url = await _serve(routes)
        cfg = RecoveryConfig(request_timeout=2, control_attempts=3)
        try:
            async with aiohttp.ClientSession() as http:
                client = ControlClient(ServerTarget(base_url=url, password="pw", directory="/proj"), cfg, http)
                sid = await client.call("create_session", client.create_session)
                assert sid == "ses_1" and calls["create"] == 3  # counts attempts: 3 sends
                with pytest.raises(OpencodeRequestError) as info:
                    await client.call("status", client.status)
                assert not info.value.retriable and "password rejected" in str(info.value)
                with pytest.raises(OpencodeRequestError) as info:
                    await client.messages("x")
                assert not info.value.retriable and "invalid JSON" in str(info.value)
                dead = ControlClient(ServerTarget(base_url="http://127.0.0.1:9"), cfg, http)
                with pytest.raises(OpencodeRequestError) as info:
                    await dead.call("health", dead.health, is_dead=lambda: True)
                assert info.value.retriable and info.value.kind == "refused"
        finally:
            await runner.cleanup()

    asyncio.run(main())


def test_bootstrap_ends_at_the_first_sign_of_the_answer() -> None:
    """Session records and the echo of the prompt are not the answer; its first part is (scripted clock)."""
    t = TurnTracker(session_id="s1", prompt="hi")
    t.prompt_sent_at = 0.0
    t.handle(ev("session.updated", info={"id": "s1", "sessionID": "s1"}), now=1)
    t.handle(ev("session.status", sessionID="s1", status={"type": "idle"}), now=1.5)  # stale idle
    t.handle(ev("message.updated", info={"id": "u1", "role": "user", "sessionID": "s1"}), now=2)
    t.handle(ev("message.part.updated", part={"id": "pu", "messageID": "u1", "sessionID": "s1", "type": "text",
                                              "text": "hi"}), now=2)
    t.handle(ev("session.status", sessionID="s1", status={"type": "busy"}), now=3)
    t.handle(ev("message.updated", info={"id": "a1", "role": "assistant", "parentID": "u1", "sessionID": "s1",
                                         "time": {"created": 1}}), now=4)  # created before the model call
    assert t.first_event_at is None and t.last_progress_at == 4
    t.handle(ev("message.part.updated", part={"id": "ps", "messageID": "a1", "sessionID": "s1",
                                              "type": "step-start"}), now=9)
    assert t.first_event_at == 9
    t.handle(ev("message.part.delta", sessionID="s1", messageID="a1", partID="pa", field="text", delta="x"), now=10)
    assert t.first_event_at == 9 and t.last_progress_at == 10


@pytest.mark.parametrize("event", [
    ev("session.status", sessionID="s1", status={"type": "retry", "attempt": 1, "next": 0}),
    ev("session.error", sessionID="s1", error={"name": "APIError"}),
    ev("permission.asked", sessionID="s1", id="per1"),
    ev("message.part.delta", sessionID="c1", messageID="m", partID="p", field="text", delta="x"),
    ev("session.idle", sessionID="s1"),
])
def test_other_signs_of_the_answer_end_the_bootstrap(event: dict[str, Any]) -> None:
    t = TurnTracker(session_id="s1", prompt="hi", children={"c1"})
    t.prompt_sent_at = 0.0
    t.handle(ev("message.updated", info={"id": "u1", "role": "user", "sessionID": "s1"}), now=1)
    assert t.first_event_at is None
    t.handle(event, now=5)
    assert t.first_event_at == 5


def test_sync_with_an_answer_part_ends_the_bootstrap() -> None:
    t = TurnTracker(session_id="s1", prompt="q")
    user = {"info": {"id": "u", "role": "user", "sessionID": "s1"},
            "parts": [{"id": "p0", "type": "text", "text": "q"}]}
    empty = {"info": {"id": "a", "role": "assistant", "parentID": "u", "sessionID": "s1"}, "parts": []}
    t.apply_sync([user, empty], 1.0)
    assert t.first_event_at is None  # the prompt and an empty assistant message: still bootstrapping
    t.apply_sync([user, {**empty, "parts": [{"id": "p1", "type": "step-start"}]}], 2.0)
    assert t.first_event_at == 2.0


def test_stall_clock_starts_at_the_first_event_not_at_acceptance() -> None:
    """Deadlines on a scripted clock; the M15 watchdog (stall clock at acceptance) gets it wrong."""
    from types import SimpleNamespace

    from pytest_cbchaos.recovery.watchdog import Watchdog
    from pytest_cbchaos.testing.runner_mutants import _M15Watchdog

    cfg = RecoveryConfig(stall_timeout=3, first_event_timeout=20, probe_timeout=1)
    t = TurnTracker(session_id="s1")
    t.prompt_sent_at, t.prompt_accepted_at = 99.0, 100.0
    attempt = SimpleNamespace(config=cfg, tracker=t)
    real, m15 = Watchdog(attempt), _M15Watchdog(attempt)  # type: ignore[arg-type]
    assert real.bootstrapping() and real.deadline() == 120.0  # first_event_timeout after acceptance
    assert m15.deadline() == 103.0  # the mutant would call a 3 s cold start a stall
    t.handle(ev("message.updated", info={"id": "u1", "role": "user", "sessionID": "s1"}), now=104.0)
    assert real.deadline() == 120.0  # the echo of the prompt is not the answer
    t.handle(ev("message.part.updated", part={"id": "p", "messageID": "a1", "sessionID": "s1", "type": "step-start"}),
             now=110.0)
    assert not real.bootstrapping() and real.deadline() == 113.0  # from here on the stall clock runs
    assert RecoveryConfig(stall_timeout=30, first_event_timeout=20).bootstrap_timeout == 30


def test_a_handle_behind_two_proxies_gets_its_events_plane() -> None:
    """``env.OpencodeProxied`` as the runner's handle: REST through the control proxy, ``/event`` through the
    events proxy (faults on either plane reach the runner); a plain handle keeps one URL for both."""
    from types import SimpleNamespace as NS

    from pytest_cbchaos.env.opencode import OpencodeProxied

    server = NS(base_url="http://127.0.0.1:1", auth=("opencode", "pw"), headers={}, port=1)
    handle = OpencodeProxied(server, NS(listen_host="127.0.0.1", listen_port=2), NS(listen_host="127.0.0.1", listen_port=3))
    target = ServerTarget(handle=handle)
    assert (target.control(), target.events()) == ("http://127.0.0.1:2", "http://127.0.0.1:3")
    assert ServerTarget(handle=handle, events_url="http://e:4").events() == "http://e:4"
    assert ServerTarget(handle=server).events() == "http://127.0.0.1:1"
