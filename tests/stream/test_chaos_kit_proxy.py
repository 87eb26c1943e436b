"""Chaos through the kit's own fixtures: real Redis (`cbchaos_redis_proc`) behind the kit's
Toxiproxy-compatible proxy (`cbchaos_redis_proxy`), faults from `cbchaos_faults`, every run judged
by `check_stream`.

The clients here never retry on their own (``Retry(NoBackoff(), 0)``, like the kit's
`cbchaos_redis_async`): the relay's identical resend is what is under test. Oracles and the reaper
use a direct connection, so a proxy fault only hits the side the test aims at.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from pytest_cbchaos.stream import Reaper, ScriptedSource, StreamConfig, StreamStore, TurnRelay, check_stream, fold
from pytest_cbchaos.stream.checker import Delivery
from pytest_cbchaos.stream.reader import Notice, ReadLoop
from pytest_cbchaos.stream.envelope import Envelope
from pytest_cbchaos.stream.sources import text_turn
from tests.stream.stream_helpers import run_bounded

CFG = StreamConfig.ci()
TIMEOUT_S = 20.0
HEALTHY_TIMEOUT_S = 10.0  # a fault-free reply is waited for, not timed: the read returns as soon as it is in


def _client(host: str, port: int, password: str, timeout: float = 1.0) -> aioredis.Redis:
    return aioredis.Redis(host=host, port=port, password=password, socket_timeout=timeout,
                          socket_connect_timeout=1.0, retry=Retry(NoBackoff(), 0))


class Kit:
    """A relay and a reaper; `via_proxy` picks which side goes through `cbchaos_redis_proxy`."""

    def __init__(self, proc: Any, proxy: Any, *, producer_via_proxy: bool, consumer_via_proxy: bool,
                 timeout: float = 1.0, cfg: StreamConfig = CFG) -> None:
        px = (proxy.listen_host, proxy.listen_port)
        direct = (proc.host, proc.port)
        self.pclient = _client(*(px if producer_via_proxy else direct), proc.password, timeout)
        self.patient = _client(*(px if producer_via_proxy else direct), proc.password, HEALTHY_TIMEOUT_S)
        self.cclient = _client(*(px if consumer_via_proxy else direct), proc.password, timeout)
        self.admin = _client(*direct, proc.password, 2.0)
        self.pstore, self.cstore = StreamStore(self.pclient, cfg), StreamStore(self.cclient, cfg)
        self.astore = StreamStore(self.admin, cfg)
        self.history: list[dict] = []
        self.relay = TurnRelay(self.pstore, cfg, history=self.history)
        self.reaper = Reaper(StreamStore(self.admin, cfg))

    async def __aenter__(self) -> "Kit":
        self.reaper.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.relay.aclose()
        await self.reaper.stop()
        for c in (self.pclient, self.patient, self.cclient, self.admin):
            await c.aclose()

    def producer_waits(self) -> None:
        """From now on the producer's script calls (appends, renewals) go through the patient client: a short
        ``timeout`` is the bound of the calls a fault holds, where the fault decides that no reply comes; once the
        fault is healed, a reply a busy box delays past it would be one more indeterminate attempt, not the fault's.
        A fresh client, too: the heal of a partition closes the links the proxy carried."""
        for script in self.pstore._scripts.values():
            script.registered_client = self.patient

    async def consume(self, conv: str, mid: str, after: int, name: str, on_item=None) -> Delivery:
        """A ReadLoop on the consumer side; notices are passed to ``on_item`` but never delivered."""
        d = Delivery(after, name=name, target=mid)
        loop = ReadLoop(self.cstore, conv, after_seq=after, message_id=mid, client_id=name)
        await loop.connect()
        try:
            async for item in loop.items():
                if isinstance(item, Envelope):
                    d.add(item, time.monotonic())
                if on_item is not None:
                    await on_item(item, d)
        finally:
            await loop.aclose()
        return d

    async def check(self, conv: str, deliveries=()) -> Any:
        entries = await self.astore.read_all(conv)
        meta = await self.astore.meta(conv)
        return check_stream(entries, floor_seq=meta["floor_seq"], last_seq=meta["last_seq"],
                            records=await self.astore.records(conv), deliveries=deliveries,
                            emissions=self.relay.emissions)


def _run(coro: Any, timeout: float = TIMEOUT_S) -> Any:
    return run_bounded(coro, timeout)


def test_reset_peer_during_append(cbchaos_redis_proc, cbchaos_redis_proxy, cbchaos_faults):
    """reset_peer armed right before chosen appends (the terminal's included): the script is applied,
    the reply is lost; the relay's identical resend gets DUP. Three turns: dense, no dup, one terminal."""
    async def main():
        async with Kit(cbchaos_redis_proc, cbchaos_redis_proxy, producer_via_proxy=True,
                       consumer_via_proxy=False) as k:
            state: dict[str, Any] = {"n": 0, "fault": None, "armed": 0}

            def arm(script: str, kinds: tuple[str, ...]) -> None:
                if script != "append":
                    return
                if state["fault"] is not None:  # the resend of the call whose reply was reset: heal first
                    state["fault"].heal()
                    state["fault"] = None
                    return
                state["n"] += 1
                if state["n"] % 3 == 1 or any(kd in ("complete", "error") for kd in kinds):
                    state["armed"] += 1
                    state["fault"] = cbchaos_faults.reset_peer(cbchaos_redis_proxy, timeout=0)

            k.pstore.before_call = arm
            deliveries = []
            for i in range(3):
                hd = await k.relay.start("kr", ScriptedSource(text_turn(12), delay_s=0.002), model_id="m",
                                         message_id=f"t{i}")
                consumer = asyncio.create_task(k.consume("kr", hd.message_id, hd.after_seq, f"c{i}"))
                out = await hd.wait()
                deliveries.append(await asyncio.wait_for(consumer, 10))
                assert out.status == "completed" and out.retries >= 1, out
            k.pstore.before_call = None
            assert state["armed"] >= 3  # every terminal call at least
            assert any(op["type"] == "info" for op in k.history)  # indeterminate appends recorded
            assert any(op.get("status") == "DUP" for op in k.history)  # ... and resolved by the resend
            rep = await k.check("kr", deliveries)
            assert rep.ok and rep.messages == 3 and rep.gaps == 0 and rep.duplicates == 0, rep
            terminals = [e for e in await k.astore.read_all("kr") if e.is_terminal]
            assert [t.message_id for t in terminals] == ["t0", "t1", "t2"]
    _run(main())


def test_redis_down_and_back_mid_turn(cbchaos_redis_proc, cbchaos_redis_proxy, cbchaos_faults):
    """The proxy disabled (connections closed, connects refused) for less than the lease, mid-turn,
    on both sides: the producer resumes and completes, the consumer resumes from its cursor."""
    async def main():
        async with Kit(cbchaos_redis_proc, cbchaos_redis_proxy, producer_via_proxy=True,
                       consumer_via_proxy=True) as k:
            hd = await k.relay.start("kd", ScriptedSource(text_turn(30), delay_s=0.01), model_id="m")
            seen = asyncio.Event()

            async def on_item(item, d):
                if isinstance(item, Envelope) and item.seq >= hd.first_seq + 3:
                    seen.set()

            consumer = asyncio.create_task(k.consume("kd", hd.message_id, hd.after_seq, "c", on_item))
            await asyncio.wait_for(seen.wait(), 5)
            with cbchaos_faults.down(cbchaos_redis_proxy):
                await asyncio.sleep(0.6)  # the outage itself (shorter than the 2 s lease)
            out = await hd.wait()
            d = await asyncio.wait_for(consumer, 10)
            assert out.status == "completed" and out.retries >= 1, out
            rep = await k.check("kd", [d])
            assert rep.ok, rep
            assert fold([e for e, _ in d.items]).status == "completed"
    _run(main())


# a lease that outlives the pause (Redis expires it by wall time while frozen: the append would be
# FENCED, another scenario); the window is measured and checked against it
PAUSE_CFG = StreamConfig.ci(lease_ttl_s=10.0, lease_renew_s=1.0)


def test_redis_paused_mid_turn(cbchaos_redis_proc, cbchaos_redis_proxy, cbchaos_faults):
    """Redis SIGSTOPped right before an append goes out, for 1 s (beyond the 0.5 s socket timeout):
    that call is indeterminate by construction and executes after SIGCONT; the resend must not
    duplicate."""
    async def main():
        async with Kit(cbchaos_redis_proc, cbchaos_redis_proxy, producer_via_proxy=True,
                       consumer_via_proxy=True, timeout=0.5, cfg=PAUSE_CFG) as k:
            state: dict[str, Any] = {}

            def arm(script: str, kinds: tuple[str, ...]) -> None:
                # after a first acknowledged append (the script is loaded), freeze Redis before the next
                # (and once the consumer reads: a connect cut by the pause is a 503, not this test's subject)
                if script == "append" and "fault" not in state and reading.is_set() and \
                        any(op["f"] == "append" and op["type"] == "ok" for op in k.history):
                    state["fault"] = cbchaos_faults.process(cbchaos_redis_proc).pause()
                    state["at"] = time.monotonic()

            k.pstore.before_call = arm
            hd = await k.relay.start("kp", ScriptedSource(text_turn(30), delay_s=0.01), model_id="m")
            reading = asyncio.Event()

            async def on_item(item, d):
                reading.set()

            consumer = asyncio.create_task(k.consume("kp", hd.message_id, hd.after_seq, "c", on_item))
            deadline = time.monotonic() + 10
            while "fault" not in state:
                assert time.monotonic() < deadline, "no append after the first one"
                await asyncio.sleep(0.01)
            await asyncio.sleep(1.0)
            state["fault"].heal()
            window = time.monotonic() - state["at"]
            assert window < PAUSE_CFG.lease_ttl_s - PAUSE_CFG.lease_renew_s, \
                f"pause window {window:.2f}s outlasted the lease: scenario not realized"
            out = await hd.wait()
            d = await asyncio.wait_for(consumer, 10)
            assert out.status == "completed" and out.retries >= 1, out
            rep = await k.check("kp", [d])
            assert rep.ok, rep
    _run(main())


def test_downstream_partition_terminal_indeterminate_then_healed(cbchaos_redis_proc, cbchaos_redis_proxy,
                                                                 cbchaos_faults):
    """A downstream partition (replies blackholed, the link stays open) armed before the terminal
    call: the script runs, the reply never comes, the client times out (indeterminate). Healed on
    the second resend: that resend answers DUP and the message has exactly one terminal."""
    async def main():
        async with Kit(cbchaos_redis_proc, cbchaos_redis_proxy, producer_via_proxy=True,
                       consumer_via_proxy=False, timeout=0.3) as k:
            state: dict[str, Any] = {"fault": None, "attempts": 0}

            def arm(script: str, kinds: tuple[str, ...]) -> None:
                if script != "append" or "complete" not in kinds:
                    return
                state["attempts"] += 1
                if state["attempts"] == 1:
                    state["fault"] = cbchaos_faults.partition(cbchaos_redis_proxy, "downstream")
                elif state["attempts"] == 3:
                    state["fault"].heal()
                    k.producer_waits()  # the healed resend is waited for: attempts stay exactly 3

            k.pstore.before_call = arm
            hd = await k.relay.start("kn", ScriptedSource(text_turn(10), delay_s=0.002), model_id="m")
            consumer = asyncio.create_task(k.consume("kn", hd.message_id, hd.after_seq, "c"))
            out = await hd.wait()
            d = await asyncio.wait_for(consumer, 10)
            assert out.status == "completed" and out.retries >= 2, out
            assert state["attempts"] == 3
            term_ops = [op for op in k.history if "complete" in op.get("kinds", ())]
            assert [op["type"] for op in term_ops if op["type"] != "invoke"] == ["info", "info", "ok"]
            assert term_ops[-1]["status"] == "DUP"  # the first, unanswered attempt had been applied
            rep = await k.check("kn", [d])
            assert rep.ok and rep.duplicates == 0, rep
    _run(main())


def test_consumer_connection_killed_mid_stream(cbchaos_redis_proc, cbchaos_redis_proxy, cbchaos_faults,
                                               cbchaos_redis_admin):
    """The consumer's Redis link is reset (reset_peer) three times and CLIENT KILLed once mid-stream;
    the producer is direct and healthy. The consumer resumes from its cursor: no loss, no duplicate,
    no entry from any writer but the producer (INV-7), the message ends completed."""
    async def main():
        async with Kit(cbchaos_redis_proc, cbchaos_redis_proxy, producer_via_proxy=False,
                       consumer_via_proxy=True) as k:
            hd = await k.relay.start("kc", ScriptedSource(text_turn(40), delay_s=0.01), model_id="m")
            state: dict[str, Any] = {"fault": None, "resets": 0, "kills": 0, "notices": 0}

            async def on_item(item, d):
                if isinstance(item, Notice):
                    state["notices"] += 1
                    if state["fault"] is not None:
                        state["fault"].heal()
                        state["fault"] = None
                    return
                if item.seq % 8 == 0 and state["resets"] < 3 and state["fault"] is None:
                    state["resets"] += 1
                    state["fault"] = cbchaos_faults.reset_peer(cbchaos_redis_proxy, timeout=0)
                elif item.seq == 30 and not state["kills"]:
                    for c in cbchaos_redis_admin.client_list():
                        if str(c.get("name", "")).startswith("cbchaos-consumer:"):
                            state["kills"] += cbchaos_redis_admin.client_kill_filter(_id=c["id"])

            d = await k.consume("kc", hd.message_id, hd.after_seq, "kc", on_item)
            out = await hd.wait()
            assert out.status == "completed", out
            assert state["resets"] == 3 and state["notices"] >= 3, state
            rep = await k.check("kc", [d])
            assert rep.ok, rep
            assert [e.seq for e, _ in d.items] == list(range(hd.first_seq, d.items[-1][0].seq + 1))
            assert {e.stream_id for e in await k.astore.read_all("kc")} == {hd.stream_id}
            assert fold([e for e, _ in d.items]).status == "completed"
            assert (await k.astore.record("kc", hd.message_id))["status"] == "completed"
    _run(main())
