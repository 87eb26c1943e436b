"""Unit tests of each toxic's semantics on a real Link/Stage chain with fake transports."""

from __future__ import annotations

import asyncio
import random
import time

import pytest

from pytest_cbchaos.proxy.gojson import Float32
from pytest_cbchaos.proxy.link import Link
from pytest_cbchaos.proxy.server import ToxicSpec
from pytest_cbchaos.proxy.toxics import REGISTRY
from pytest_cbchaos.proxy.toxics.slicer import SlicerToxic


class FakeTransport:
    def __init__(self) -> None:
        self.data = bytearray()
        self.writes: list[tuple[float, bytes]] = []
        self.closed_at: float | None = None
        self.paused = False

    def write(self, data: bytes) -> None:
        self.data += data
        self.writes.append((time.monotonic(), bytes(data)))

    def close(self) -> None:
        if self.closed_at is None:
            self.closed_at = time.monotonic()

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def get_extra_info(self, name):
        return None


class FakeConn:
    def link_closed(self, link) -> None:
        pass


def spec(type_: str, name: str | None = None, toxicity: float = 1.0, **attrs) -> ToxicSpec:
    base = REGISTRY[type_].defaults()
    base.update(attrs)
    return ToxicSpec(name or f"{type_}_downstream", type_, "downstream", Float32(toxicity), base)


def make_link(*specs: ToxicSpec, seed: int = 1) -> tuple[Link, FakeTransport]:
    dest = FakeTransport()
    link = Link(FakeConn(), "downstream", FakeTransport(), dest, random.Random(seed))  # type: ignore[arg-type]
    link.start(list(specs))
    return link, dest


async def until(pred, timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.002)


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 10))


def test_fast_path_writes_synchronously():
    async def main():
        link, dest = make_link()
        link.feed(b"abc")
        assert dest.data == b"abc"  # no task hop without toxics
        link.feed_eof()
        assert dest.closed_at is not None
    run(main())


def test_latency_delays_and_keeps_order_and_chains_add():
    async def main():
        link, dest = make_link(spec("latency", "a", latency=30), spec("latency", "b", latency=30))
        start = time.monotonic()
        for i in range(5):
            link.feed(bytes([i]))
        await until(lambda: len(dest.data) == 5)
        assert bytes(dest.data) == bytes(range(5))
        assert dest.writes[0][0] - start >= 0.060
        assert dest.writes[-1][0] - start < 0.060 + 0.1  # no throttling: all arrive together
    run(main())


def test_chained_latencies_add_up_when_the_first_pickup_is_late():
    async def main():
        link, dest = make_link(spec("latency", "a", latency=30), spec("latency", "b", latency=30))
        start = time.monotonic()
        link.feed(b"x")
        time.sleep(0.02)  # the loop is blocked: the first toxic picks the chunk up 20 ms late
        await until(lambda: len(dest.data) == 1)
        assert dest.writes[0][0] - start >= 0.060  # a late pickup must not shorten the chain
    run(main())


def test_latency_interrupt_forwards_in_flight_chunk():
    async def main():
        link, dest = make_link(spec("latency", latency=10_000))
        link.feed(b"held")
        await asyncio.sleep(0.01)
        await link.remove("latency_downstream")
        assert dest.data == b"held"
        link.feed(b"!")
        assert dest.data == b"held!"  # back on the fast path
    run(main())


def test_jitter_range_is_seeded():
    tox = REGISTRY["latency"](latency=100, jitter=20)
    a = [tox.delay(random.Random(5)) for _ in range(3)]
    b = [tox.delay(random.Random(5)) for _ in range(3)]
    assert a == b
    rng = random.Random(1)
    assert all(0.080 <= tox.delay(rng) < 0.120 for _ in range(500))


def test_bandwidth_rate_and_zero_stalls():
    async def main():
        link, dest = make_link(spec("bandwidth", rate=50))  # 50 KB/s
        start = time.monotonic()
        link.feed(b"x" * 10_000)  # 0.2 s
        await until(lambda: len(dest.data) == 10_000)
        assert time.monotonic() - start >= 0.18
        stalled, sdest = make_link(spec("bandwidth", rate=0))
        stalled.feed(b"never")
        await asyncio.sleep(0.25)
        assert sdest.data == b""
        await stalled.remove("bandwidth_downstream")  # interrupt flushes the chunk
        assert sdest.data == b"never"
    run(main())


def test_slow_close_delays_eof():
    async def main():
        link, dest = make_link(spec("slow_close", delay=80))
        link.feed(b"data")
        start = time.monotonic()
        link.feed_eof()
        await until(lambda: dest.closed_at is not None)
        assert dest.data == b"data" and dest.closed_at - start >= 0.08
    run(main())


IDLE_TIMEOUT_S = 0.1
FEED_EVERY_S = 0.06  # below the idle timeout: each feed re-arms the timer before it fires
REALIZE_TRIES = 5  # runs allowed for one whose feeds all came in time


async def _idle_timer_run() -> tuple[float, list[float], FakeTransport]:
    """Three feeds ``FEED_EVERY_S`` apart on a link under the timeout toxic; the feed times and the sink."""
    link, dest = make_link(spec("timeout", timeout=int(IDLE_TIMEOUT_S * 1000)))
    start = time.monotonic()
    fed: list[float] = []
    for _ in range(3):
        await asyncio.sleep(FEED_EVERY_S)
        fed.append(time.monotonic())
        link.feed(b"x")  # re-arms the idle timer
    await until(lambda: dest.closed_at is not None)
    return start, fed, dest


def test_timeout_idle_timer_rearms_and_drops():
    """The scenario needs each feed to come before the idle timer fires; a loop a busy box woke late (a gap of a
    whole timeout) may rightly be closed early, which is not this scenario: such a run is run again (bounded),
    never judged. A timer that does not re-arm closes every in-time run before its last feed."""
    async def main():
        for _ in range(REALIZE_TRIES):
            start, fed, dest = await _idle_timer_run()
            gaps = [b - a for a, b in zip([start, *fed], fed)]
            if max(gaps) < IDLE_TIMEOUT_S - 0.005:
                break
        else:
            pytest.skip(f"scenario not realized: a feed came a whole idle timeout late in {REALIZE_TRIES} runs")
        assert dest.data == b""
        assert dest.closed_at - fed[-1] >= IDLE_TIMEOUT_S - 0.02, (start, fed, dest.closed_at)
        assert dest.closed_at - start >= 3 * FEED_EVERY_S + IDLE_TIMEOUT_S - 0.02
    run(main())


def test_timeout_removal_closes():
    async def main():
        link, dest = make_link(spec("timeout", timeout=0))
        link.feed(b"x")
        await asyncio.sleep(0.02)
        assert dest.closed_at is None
        await link.remove("timeout_downstream")
        assert dest.closed_at is not None
    run(main())


def test_reset_peer_drops_first_chunk_then_closes_after_timeout():
    async def main():
        link, dest = make_link(spec("reset_peer", timeout=50))
        start = time.monotonic()
        link.feed(b"gone")
        await until(lambda: dest.closed_at is not None)
        assert dest.data == b"" and dest.closed_at - start >= 0.05
    run(main())


def test_slicer_pieces_and_reassembly():
    async def main():
        link, dest = make_link(spec("slicer", average_size=8, size_variation=2, delay=10))
        payload = bytes(range(200))
        link.feed(payload)
        await until(lambda: len(dest.data) == len(payload))
        assert bytes(dest.data) == payload
        assert len(dest.writes) > 10 and all(len(w) <= 10 for _, w in dest.writes)
    run(main())


def test_slicer_cuts_zero_variation():
    cuts = SlicerToxic(average_size=10).cuts(0, 100, random.Random(0))
    assert cuts[0] == 0 and cuts[-1] == 100 and cuts == sorted(cuts)


def test_limit_data_truncates_and_survives_restart():
    async def main():
        link, dest = make_link(spec("limit_data", bytes=10))
        link.feed(b"12345")
        await until(lambda: len(dest.data) == 5)
        await link.update(spec("limit_data", bytes=10))  # restart keeps the per-link count
        link.feed(b"6789abcdef")
        await until(lambda: dest.closed_at is not None)
        assert bytes(dest.data) == b"123456789a"
    run(main())


def test_toxicity_zero_is_passthrough_and_rolls_are_seeded():
    async def main():
        link, dest = make_link(spec("latency", latency=10_000, toxicity=0))
        link.feed(b"fast")
        await until(lambda: dest.data == b"fast", timeout=5)  # returns at once; the toxic would hold it 10 s
        rolls = []
        for _ in range(2):
            l2, _ = make_link(*[spec("noop", f"n{i}", toxicity=0.5) for i in range(20)], seed=42)
            rolls.append([s.applies for s in l2.stages])
            l2.stop()
        assert rolls[0] == rolls[1] and any(rolls[0]) and not all(rolls[0])
        link.stop()
    run(main())


def test_blackhole_hold_delivers_on_removal_without_closing():
    async def main():
        link, dest = make_link(spec("cbchaos_blackhole", mode="hold"))
        link.feed(b"one")
        link.feed(b"two")
        await asyncio.sleep(0.02)
        assert dest.data == b""
        await link.remove("cbchaos_blackhole_downstream")
        assert dest.data == b"onetwo" and dest.closed_at is None
    run(main())


def test_blackhole_drop_closes_on_removal():
    async def main():
        link, dest = make_link(spec("cbchaos_blackhole", mode="drop"))
        link.feed(b"one")
        await asyncio.sleep(0.01)
        await link.remove("cbchaos_blackhole_downstream")
        assert dest.data == b"" and dest.closed_at is not None
    run(main())


def test_head_queue_backpressure_pauses_source():
    async def main():
        link, dest = make_link(spec("bandwidth", rate=0))
        for _ in range(300):
            link.feed(b"x")
        assert link.source.paused
        await link.remove("bandwidth_downstream")
        assert not link.source.paused and len(dest.data) == 300
    run(main())


@pytest.mark.parametrize("type_,attrs", [("latency", {"latency": -1}), ("bandwidth", {"rate": -5}),
                                          ("cbchaos_blackhole", {"mode": "leak"})])
def test_validation_rejects_nonsense(type_, attrs):
    cls = REGISTRY[type_]
    full = cls.defaults()
    full.update(attrs)
    assert cls.validate(full) is not None
