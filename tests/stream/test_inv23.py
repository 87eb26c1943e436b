"""INV-23 "store outage during error handling" (docs/stream-design.md#invariants, docs/stream-design.md#failure-paths
R1/B2/W3) against real Redis.

The producer's Redis link goes through the kit's proxy (`cbchaos_redis_proxy`) and is disabled
(`cbchaos_faults.down`) *before* the source fails (R1 mid-stream or B2 at bootstrap). Healed:
* after 0.3 s or 2 s (< `terminal_deadline_s`, lease still live): the producer's `error` is written
  exactly once after the heal, within `terminal_deadline_s`, and delivered within `T_live`;
* once the lease has expired and the reaper has written (producer still retrying): the reaper's
  `cancelled{producer_lost}` stands and the producer is fenced;
* once the producer has given up (past `terminal_deadline_s`): the reaper's terminal stands.
The consumer and the reaper use direct connections. Every run is judged by `check_stream` plus
explicit checks (`_violations`); two mutant relays (status-only fallback, give up after one try)
are shown to be caught.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, AsyncIterator

import pytest

from tests.stream.inv_kit import redis_client, wait_until
from tests.stream.stream_helpers import run_bounded
from pytest_cbchaos.stream import LogReader, Reaper, ScriptedSource, StreamConfig, StreamStore, TurnRelay, check_stream
from pytest_cbchaos.stream.checker import Delivery, StreamReport
from pytest_cbchaos.stream.envelope import Envelope, encode_payload
from pytest_cbchaos.stream.reader import ReadLoop
from pytest_cbchaos.stream.relay import TurnHandle, TurnOutcome, _Run, _StoreDown
from pytest_cbchaos.stream.sources import SourceEvent, SourceFailure

# the lease (6 s) outlives terminal_deadline_s (4 s): a heal inside the deadline must give the producer's error
CFG_SHORT = StreamConfig.ci(lease_ttl_s=6.0, bootstrap_timeout_s=10.0)
# the lease (2 s) expires while the producer still retries (terminal_deadline_s 8 s): the reaper's terminal stands
CFG_LEASE = StreamConfig.ci(terminal_deadline_s=8.0, bootstrap_timeout_s=10.0)
LOAD_SLACK_S = 1.0  # a loaded 2-core machine; the mutants miss by seconds or never deliver
N_DELTAS = 5
TIMEOUT_S = 90.0  # the longest run (a mutant) needs ~20 s; generous for a loaded machine


class GatedFailure(ScriptedSource):
    """R1: ``N_DELTAS`` text deltas, then waits for ``gate`` and fails mid-stream.
    B2: bootstrap stage ``session`` waits for ``gate`` and fails (POST /session gave up)."""

    def __init__(self, mode: str) -> None:
        super().__init__([])
        self.mode = mode
        self.gate = asyncio.Event()

    async def bootstrap(self, stage: str) -> None:
        self.stages_seen.append(stage)
        if self.mode == "B2" and stage == "session":
            await self.gate.wait()
            raise RuntimeError("POST /session answered 503 after in-place retries")

    async def __aiter__(self) -> AsyncIterator[SourceEvent]:  # type: ignore[override]
        for i in range(N_DELTAS):
            yield SourceEvent("text_delta", {"part_id": "p1", "text": f"w{i} "})
        await self.gate.wait()
        raise SourceFailure("provider stream broke mid-turn", code="source.provider_error", retriable=True)


EXPECT = {"R1": ("source.provider_error", "stream", True), "B2": ("bootstrap.session", "session", False)}


class Kit23:
    """Relay through the proxy; consumer, reaper and oracle reads on direct connections."""

    def __init__(self, proc: Any, proxy: Any, cfg: StreamConfig, hold_reaper: bool = False) -> None:
        self.cfg, self.hold_reaper = cfg, hold_reaper
        self.pclient = redis_client(proxy.listen_host, proxy.listen_port, proc.password, 1.0)
        self.direct = redis_client(proc.host, proc.port, proc.password, 2.0)
        self.pstore, self.dstore = StreamStore(self.pclient, cfg), StreamStore(self.direct, cfg)
        self.history: list[dict[str, Any]] = []
        self.relay = TurnRelay(self.pstore, cfg, history=self.history)
        self.reaper = Reaper(StreamStore(self.direct, cfg))

    async def __aenter__(self) -> "Kit23":
        if not self.hold_reaper:
            self.reaper.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.relay.aclose()
        await self.reaper.stop()
        for c in (self.pclient, self.direct):
            await c.aclose()

    async def consume(self, conv: str, mid: str, after: int) -> Delivery:
        d = Delivery(after, name="live", target=mid)
        loop = ReadLoop(self.dstore, conv, after_seq=after, message_id=mid, client_id=f"c-{conv}")
        await loop.connect()
        try:
            async for item in loop.items():
                if isinstance(item, Envelope):
                    d.add(item, time.monotonic())
        finally:
            await loop.aclose()
        return d


@dataclass
class Observed:
    """What one INV-23 run produced."""

    conv: str
    mode: str
    hd: TurnHandle
    t_fail: float
    t_heal: float
    outcome: TurnOutcome | None = None
    delivery: Delivery | None = None
    report: StreamReport | None = None
    entries: list[Envelope] = field(default_factory=list)
    record: dict[str, Any] = field(default_factory=dict)
    lease: str | None = None
    problems: list[str] = field(default_factory=list)


async def _scenario(kit: Kit23, faults: Any, proxy: Any, mode: str, heal: str | float) -> Observed:
    """Start a turn, disable the producer link, fail the source, heal per ``heal``, collect evidence.

    ``heal``: seconds after the terminal call's first failed attempt, ``"reaped"`` (once the reaper's terminal is in the log) or
    ``"gave_up"`` (once the producer's run has ended without Redis)."""
    cfg = kit.cfg
    conv = f"i23-{mode}-{uuid.uuid4().hex[:8]}"
    src = GatedFailure(mode)
    hd = await kit.relay.start(conv, src, model_id="m", prompt="hi")
    consumer = asyncio.get_running_loop().create_task(kit.consume(conv, hd.message_id, hd.after_seq))
    if mode == "R1":  # the deltas are durable before the outage: the error must keep them
        async def flushed() -> bool:
            rec = await kit.dstore.record(conv, hd.message_id)
            return bool(rec) and rec["last_seq"] == hd.first_seq + N_DELTAS
        await wait_until(flushed, 10, "the deltas to be durable")
    else:
        await wait_until(lambda: src.stages_seen[-1:] == ["session"], 10, "bootstrap to reach `session`")
    fault = faults.down(proxy)
    t_fail = time.monotonic()
    src.gate.set()
    obs = Observed(conv, mode, hd, t_fail, 0.0)
    if heal == "reaped":
        async def reaped() -> bool:
            return any(e.is_terminal for e in await kit.dstore.xrange(conv, hd.first_seq))
        await wait_until(reaped, cfg.lease_ttl_s + cfg.reaper_interval_s + 10, "the reaper's terminal")
        if hd.task is not None and hd.task.done():
            obs.problems.append("precondition: the producer stopped retrying before the heal")
    elif heal == "gave_up":
        await wait_until(lambda: hd.task is not None and hd.task.done(), cfg.terminal_deadline_s + 10,
                         "the producer to give up")
    else:  # the window holds the terminal call's first attempt by construction, then ``heal`` s more
        await wait_until(lambda: any(op["type"] == "info" and "error" in op.get("kinds", ()) for op in kit.history),
                         cfg.write_deadline_s + 10, "the terminal call's first attempt to fail")
        await asyncio.sleep(float(heal))  # the outage itself
    fault.heal()
    obs.t_heal = time.monotonic()
    if kit.hold_reaper:  # the reaper starts only once the producer's own terminal write landed (a gate, not a race)
        await wait_until(lambda: _record_closed(kit, conv, hd.message_id), TIMEOUT_S / 2, "the producer's terminal write")
        kit.reaper.start()
    bound = cfg.terminal_deadline_s + cfg.lease_ttl_s + cfg.reaper_interval_s + cfg.deliver_bound_s + 5
    t_end, hopeless = time.monotonic() + bound, False
    while not consumer.done() and time.monotonic() < t_end:
        hopeless = await _no_terminal_can_come(kit, conv, hd)
        if hopeless:
            break
        await asyncio.wait({consumer}, timeout=0.05)
    if consumer.done():
        obs.delivery = consumer.result()
    else:
        consumer.cancel()
        await asyncio.wait({consumer}, timeout=5)  # bounded even if a read swallowed the cancellation
        obs.problems.append("INV-23: the record closed with no terminal in the log: the live consumer can never "
                            "get one" if hopeless else
                            f"INV-23: no terminal delivered to the live consumer within {bound:.1f}s")
    obs.outcome = await asyncio.wait_for(hd.wait(), cfg.terminal_deadline_s + 10)
    await _collect(kit, obs)
    return obs


async def _no_terminal_can_come(kit: Kit23, conv: str, hd: Any) -> bool:
    """The producer is done and the record closed with no terminal in the log: final, since the store
    writes a terminal and closes the record in one script and the reaper reaps only open records."""
    if hd.task is None or not hd.task.done() or not await _record_closed(kit, conv, hd.message_id):
        return False
    return not any(e.is_terminal for e in await kit.dstore.xrange(conv, hd.first_seq))


async def _record_closed(kit: Kit23, conv: str, mid: str) -> bool:
    rec = await kit.dstore.record(conv, mid)
    return bool(rec) and rec.get("status") != "in_progress"


async def _collect(kit: Kit23, obs: Observed) -> None:
    """Oracle reads (direct link) and the `check_stream` report, replay from several cursors included."""
    conv, mid = obs.conv, obs.hd.message_id
    obs.entries = await kit.dstore.read_all(conv)
    meta = await kit.dstore.meta(conv)
    obs.record = await kit.dstore.record(conv, mid) or {}
    obs.lease = await kit.dstore.lease_holder(conv)
    terms = [e for e in obs.entries if e.is_terminal]
    cursors = {0, obs.hd.after_seq, obs.hd.first_seq} | ({terms[0].seq - 1} if terms else set())
    replays: dict[int, list[Envelope]] = {}
    for c in cursors if terms else ():  # with no terminal a replay would wait for one
        replays[c] = await asyncio.wait_for(LogReader(kit.dstore).collect(conv, message_id=mid, after_seq=c), 10)
    written = {mid: obs.t_heal} if terms and not terms[0].stream_id.startswith("reaper:") else None
    obs.report = check_stream(obs.entries, floor_seq=meta["floor_seq"], last_seq=meta["last_seq"],
                              records=await kit.dstore.records(conv),
                              deliveries=[obs.delivery] if obs.delivery else [], emissions=kit.relay.emissions,
                              terminal_written_at=written, live_bound_s=kit.cfg.deliver_bound_s + LOAD_SLACK_S,
                              replay=(lambda c, m: replays.get(c, [])) if terms else None)


def _violations(kit: Kit23, obs: Observed, expect: str) -> list[str]:
    """``check_stream`` violations plus INV-23's explicit checks; ``expect`` is ``producer`` or ``reaper``."""
    cfg, hd, out = kit.cfg, obs.hd, obs.outcome
    v = list(obs.problems) + (obs.report.violations if obs.report else [])
    mine = [e for e in obs.entries if e.message_id == hd.message_id]
    terms = [e for e in mine if e.is_terminal]
    if len(terms) != 1:
        return v + [f"INV-23: {len(terms)} terminals for {hd.message_id}: {[(t.kind, t.stream_id) for t in terms]}"]
    t, rec = terms[0], obs.record
    if rec.get("terminal_seq") != t.seq or rec.get("last_seq") != t.seq:
        v.append(f"record: terminal_seq/last_seq {rec.get('terminal_seq')}/{rec.get('last_seq')} != {t.seq}")
    if obs.lease is not None:
        v.append(f"lease still held by {obs.lease} after the terminal")
    n_content = sum(1 for e in mine if e.cls == "content")
    if n_content != (N_DELTAS if obs.mode == "R1" else 0):
        v.append(f"content entries: {n_content} (kept content must survive the error)")
    if obs.delivery and obs.delivery.items and obs.delivery.items[-1][0].seq != t.seq:
        v.append(f"live consumer ended on seq {obs.delivery.items[-1][0].seq}, not the terminal {t.seq}")
    if expect == "producer":
        v += _producer_checks(kit, obs, t)
    else:
        if t.kind != "cancelled" or t.payload.get("reason") != "producer_lost" or not t.stream_id.startswith("reaper:"):
            v.append(f"INV-23: expected the reaper's cancelled{{producer_lost}}, got {t.kind} {t.payload} by {t.stream_id}")
        if rec.get("status") != "interrupted" or rec.get("terminal_kind") != "cancelled":
            v.append(f"record after reap: {rec}")
        if out is None or out.status not in ("unknown", "interrupted") or out.terminal_kind == "error":
            v.append(f"producer outcome after the reap: {out}")
        late = obs.delivery.items[-1][1] - obs.t_fail if obs.delivery and obs.delivery.items else None
        t_orphan = cfg.terminal_deadline_s + cfg.lease_ttl_s + cfg.reaper_interval_s + cfg.deliver_bound_s
        if late is None or late > t_orphan + LOAD_SLACK_S:
            v.append(f"reaper's terminal delivered {late}s after the failure (> {t_orphan}s)")
    return v


def _producer_checks(kit: Kit23, obs: Observed, t: Envelope) -> list[str]:
    """The producer's error: written once, after the heal, within terminal_deadline_s; fields on record."""
    cfg, hd, out, rec = kit.cfg, obs.hd, obs.outcome, obs.record
    v: list[str] = []
    code, stage, partial = EXPECT[obs.mode]
    if t.kind != "error" or t.stream_id != hd.stream_id:
        return [f"INV-23: expected the producer's error, got {t.kind} {t.payload} by {t.stream_id}"]
    p = t.payload
    if (p.get("code"), p.get("stage"), p.get("partial")) != (code, stage, partial) or not p.get("message"):
        v.append(f"error payload {p} != code {code}, stage {stage}, partial {partial}")
    if (rec.get("status"), rec.get("terminal_kind"), rec.get("error_code")) != ("failed", "error", code) \
            or rec.get("error_message") != p.get("message") or rec.get("stream_id") != hd.stream_id:
        v.append(f"record fields {rec} disagree with the error {p}")
    if out is None or (out.status, out.terminal_kind, out.terminal_seq) != ("failed", "error", t.seq):
        v.append(f"outcome {out} does not report the written error")
    elif out.retries < 1 or out.unwritten_events:
        v.append(f"outcome {out}: the outage was not hit, or events were left unwritten")
    if obs.mode == "B2" and not isinstance(out and out.error, RuntimeError):
        v.append(f"the original exception is not surfaced: {out and out.error!r}")
    ops = [op for op in kit.history if op["stream_id"] == hd.stream_id and "error" in op.get("kinds", ())]
    oks = [op for op in ops if op["type"] == "ok"]
    if len(oks) != 1 or oks[0].get("status") != "OK" or not any(op["type"] == "info" for op in ops):
        v.append(f"error call: expected failed attempts then exactly one OK, got {[(o['type'], o.get('status')) for o in ops]}")
    else:
        took = oks[0]["t"] - ops[0]["t"]
        if oks[0]["t"] < obs.t_heal or took > cfg.terminal_deadline_s:
            v.append(f"error written {took:.2f}s after the failure (heal at {obs.t_heal - obs.t_fail:.2f}s, "
                     f"deadline {cfg.terminal_deadline_s}s)")
    if obs.delivery is None or obs.delivery.items[-1][0].seq != t.seq:
        v.append("the live consumer did not receive the error")
    else:
        late = obs.delivery.items[-1][1] - obs.t_heal
        if late > cfg.deliver_bound_s + LOAD_SLACK_S:
            v.append(f"error delivered {late:.2f}s after the heal (T_live {cfg.deliver_bound_s}s)")
    return v


def _run(proc: Any, proxy: Any, faults: Any, cfg: StreamConfig, mode: str, heal: str | float,
         run_class: type | None = None, hold_reaper: bool = False) -> tuple[Kit23, Observed]:
    async def main() -> tuple[Kit23, Observed]:
        async with Kit23(proc, proxy, cfg, hold_reaper) as kit:
            if run_class is not None:
                kit.relay.run_class = run_class
            return kit, await _scenario(kit, faults, proxy, mode, heal)
    return run_bounded(main(), TIMEOUT_S)


@pytest.mark.parametrize("heal_s", [0.3, 2.0])
@pytest.mark.parametrize("mode", ["R1", "B2"])
def test_inv23_heal_within_deadline_writes_the_error_once(cbchaos_redis_proc, cbchaos_redis_proxy, cbchaos_faults,
                                                          mode, heal_s):
    """Outage shorter than terminal_deadline_s (lease live): the producer's error, once, after the heal."""
    kit, obs = _run(cbchaos_redis_proc, cbchaos_redis_proxy, cbchaos_faults, CFG_SHORT, mode, heal_s)
    assert _violations(kit, obs, "producer") == []


@pytest.mark.parametrize("mode", ["R1", "B2"])
def test_inv23_lease_expired_during_outage_reaper_terminal_stands(cbchaos_redis_proc, cbchaos_redis_proxy,
                                                                  cbchaos_faults, mode):
    """The lease expires while the producer still retries its error: the reaper's terminal stands,
    the healed producer is fenced and writes nothing."""
    kit, obs = _run(cbchaos_redis_proc, cbchaos_redis_proxy, cbchaos_faults, CFG_LEASE, mode, "reaped")
    assert _violations(kit, obs, "reaper") == []
    assert obs.outcome is not None and obs.outcome.stop_reason == "FENCED", obs.outcome
    assert (obs.outcome.superseded_by or "").startswith("reaper:"), obs.outcome


def test_inv23_outage_past_terminal_deadline_reaper_terminal_stands(cbchaos_redis_proc, cbchaos_redis_proxy,
                                                                    cbchaos_faults):
    """Healed only after the producer gave up (terminal_deadline_s): it reports the unwritten error,
    and the reaper ends the message after the lease."""
    kit, obs = _run(cbchaos_redis_proc, cbchaos_redis_proxy, cbchaos_faults, CFG_SHORT, "R1", "gave_up")
    assert _violations(kit, obs, "reaper") == []
    assert obs.outcome is not None and obs.outcome.unwritten_events >= 1, obs.outcome
    ops = [op for op in kit.history if op["stream_id"] == obs.hd.stream_id and "error" in op.get("kinds", ())]
    assert ops and {op["type"] for op in ops} == {"invoke", "info"}, ops  # every attempt failed: none after heal
    assert max(op["t"] for op in ops) < obs.t_heal


# -- mutants -----------------------------------------------------------------------------------

class _OneTerminalAttemptRun(_Run):
    """Tries the terminal call once; what happens after a store error is the subclass's."""

    async def finish(self, kind: str, payload: dict[str, Any] | bytes) -> None:
        if self.finished or self.stopped:
            return
        data = payload if isinstance(payload, bytes) else encode_payload(kind, payload)
        call = self._call((kind, data))
        self.pending = []
        try:
            await self._send(call, time.monotonic())  # one attempt
        except _StoreDown:
            await self.after_failed_terminal(kind, data)

    async def after_failed_terminal(self, kind: str, data: bytes) -> None:
        raise NotImplementedError


class StatusOnlyFallbackRun(_OneTerminalAttemptRun):
    """claudex: error reporting that fails falls back to a status-only update once the store answers.

    It waits for the store as long as the test runs (not ``terminal_deadline_s``), and the test starts
    the reaper only after this write: a heal delayed by load can neither make the write miss nor let
    the reaper's terminal come first."""

    async def after_failed_terminal(self, kind: str, data: bytes) -> None:
        code = json.loads(data).get("code", "") if kind == "error" else ""
        deadline = time.monotonic() + TIMEOUT_S
        while time.monotonic() < deadline:  # bounded: wait for the store, then write the status only
            try:
                await self.store.redis.hset(self.store.keys(self.conv)[2], mapping={
                    f"{self.mid}|status": "failed", f"{self.mid}|error_code": code})
                return
            except Exception:
                await asyncio.sleep(0.1)


class GiveUpRun(_OneTerminalAttemptRun):
    """Tries the terminal once; after a store error it gives up (logs it, writes nothing)."""

    async def after_failed_terminal(self, kind: str, data: bytes) -> None:
        self.outcome.unwritten_events = 1


@pytest.mark.parametrize("mutant", [StatusOnlyFallbackRun, GiveUpRun], ids=["status_only", "give_up"])
def test_inv23_mutants_are_caught(cbchaos_redis_proc, cbchaos_redis_proxy, cbchaos_faults, mutant):
    kit, obs = _run(cbchaos_redis_proc, cbchaos_redis_proxy, cbchaos_faults, CFG_SHORT, "R1", 0.3, mutant,
                    hold_reaper=mutant is StatusOnlyFallbackRun)
    v = _violations(kit, obs, "producer")
    assert v, f"{mutant.__name__} not caught"
    if mutant is StatusOnlyFallbackRun:  # `failed` with no error event: the checker itself sees it
        assert any(x.startswith("INV-3 one terminal") for x in obs.report.violations), v
        assert any(x.startswith("INV-12 record") for x in obs.report.violations), v
    else:  # the producer gave up: the reaper's terminal, not the error
        assert any("expected the producer's error" in x for x in v), v
