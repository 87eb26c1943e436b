"""A lost reply of each single-event call (a control event, the first content event, a lone terminal)
through the producer's fault proxy: the relay's identical resend answers DUP and the turn completes;
the mutant M14 answers CONFLICT/FENCED and the relay stops (docs/stream-design.md#script-outcome-cells)."""

from __future__ import annotations

import pytest
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from pytest_cbchaos.stream import ScriptedSource, StreamConfig, StreamStore, TurnRelay, check_stream
from pytest_cbchaos.testing.stream_mutants import M14SingleEventResendStore
from tests.stream.stream_helpers import client_for

CFG = StreamConfig.ci(max_batch=1)  # every content event is its own call; control events always are
EVENTS = [("recovery", {"attempt": 1, "cause": "stall"}), ("text_delta", {"part_id": "p", "text": "a"}),
          ("text_delta", {"part_id": "p", "text": "b"}), ("complete", {"finish_reason": "stop", "usage": {}})]
STEP = {"control": 2, "content": 3, "terminal": 5}  # first_step of each single-event call (turn_started is 1)


async def _turn(proc, proxy, store_class, kind: str, conv: str):
    pclient = client_for(proc, proxy, socket_timeout=1.0, retry=Retry(NoBackoff(), 0))
    admin = client_for(proc)
    store = store_class(pclient, CFG)
    await admin.script_load(store._scripts["append"].script)  # a lost NOSCRIPT reply would never apply
    history: list[dict] = []
    relay = TurnRelay(store, CFG, history=history)

    def lose_first_send(script, kinds):
        op = history[-1] if history else {}
        if script == "append" and op.get("first_step") == STEP[kind] and op.get("type") == "invoke" \
                and not any(o.get("type") == "info" and o["first_step"] == STEP[kind] for o in history):
            proxy.lose_next_reply()

    store.before_call = lose_first_send
    try:
        h = await relay.start(conv, ScriptedSource(EVENTS), model_id="m")
        out = await h.wait()
        entries = await StreamStore(admin, CFG).read_all(conv)
        meta = await StreamStore(admin, CFG).meta(conv)
        rep = check_stream(entries, floor_seq=meta["floor_seq"], last_seq=meta["last_seq"],
                           records=await StreamStore(admin, CFG).records(conv), emissions=relay.emissions)
        answers = [o.get("status", o["type"]) for o in history if o.get("first_step") == STEP[kind] and o["type"] != "invoke"]
        return out, rep, answers
    finally:
        await relay.aclose()
        await admin.delete(*StreamStore(admin, CFG).keys(conv))
        await pclient.aclose()
        await admin.aclose()


@pytest.mark.parametrize("kind", list(STEP))
def test_single_event_reply_lost_is_dup(cbchaos_redis_proc, stream_proxies, run, kind):
    out, rep, answers = run(_turn(cbchaos_redis_proc, stream_proxies["producer"], StreamStore, kind, f"se-{kind}"))
    assert answers[0] == "info" and answers[-1] == "DUP", answers  # applied, reply lost, resend recognised
    assert out.status == "completed" and out.stop_reason is None, out
    assert rep.ok, rep


@pytest.mark.parametrize("kind,answer", [("control", "CONFLICT"), ("content", "CONFLICT"), ("terminal", "FENCED")])
def test_single_event_resend_mutant_stops_the_relay(cbchaos_redis_proc, stream_proxies, run, kind, answer):
    out, _rep, answers = run(_turn(cbchaos_redis_proc, stream_proxies["producer"], M14SingleEventResendStore,
                                   kind, f"sem-{kind}"))
    assert answers == ["info", answer], answers
    assert out.stop_reason == answer, out
