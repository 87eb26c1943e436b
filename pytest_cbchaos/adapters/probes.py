"""Weakness probes (docs/fault-kit-design.md#weakness-probes): each measures one value against a threshold.

Every probe runs against real Redis through the fault proxy (``ProbeContext``), builds its own
adapter instances with a unique breaker name, and is bounded in count and time. Waits are
condition polls with deadlines; the only fixed delays are the protected call's own workload
(``hold_s``), which is what the probes measure around.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from ..lag import LagSampler
from ..mpcontext import forkserver_context
from ..testing.threads import ThreadsStuck, run_together
from .base import AdapterConfig, BreakerAdapter, BreakerRejected, Unsupported

PROBE_IDS = ("W-HERD", "W-OPEN-TIME", "W-LOST-COUNT", "W-DIVERGENCE", "W-REDIS-DOWN", "W-LOOP-BLOCK",
             "W-SERIAL", "W-NO-TTL", "W-CONFIG", "W-LINEAR")


class ProbeError(Exception):
    """A probe could not run (setup failed, deadline passed): never reported as 'not weak'."""


@dataclass
class ProbeContext:
    """What a probe needs: the proxy's Redis URL + password, a direct admin client, the proxy, faults."""

    redis_url: str
    password: str | None
    admin: Any = None
    proxy: Any = None
    faults: Any = None


@dataclass
class ProbeResult:
    id: str
    adapter: str
    measured: Any
    threshold: Any
    weak: bool
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Boom(Exception):
    """The protected call's failure."""


def _raise() -> None:
    raise _Boom("probe failure")


def _ok() -> str:
    return "ok"


def _name(probe: str) -> str:
    return f"probe-{probe.lower()}-{uuid.uuid4().hex[:8]}"


def _wait_until(cond: Callable[[], bool], timeout: float, step: float = 0.01) -> bool:
    """Poll ``cond`` until true or the deadline (bounded by time and by count)."""
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / step) + 2):
        if cond():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(step)
    return cond()


class _Adapters:
    """Builds adapter instances ("workers") and closes them all at the end of a probe."""

    def __init__(self, ctx: ProbeContext, cls: type[BreakerAdapter]) -> None:
        self.ctx, self.cls, self.built = ctx, cls, []  # type: ignore[var-annotated]

    def __call__(self, name: str, config: AdapterConfig, **kw: Any) -> BreakerAdapter:
        a = self.cls().build(self.ctx.redis_url, self.ctx.password, name, config, **kw)
        self.built.append(a)
        return a

    def __enter__(self) -> "_Adapters":
        return self

    def __exit__(self, *exc: Any) -> None:
        for a in self.built:
            a.close()


def _trip(a: BreakerAdapter) -> None:
    for _ in range(a.config.failure_threshold):
        a.record_failure()


def _try(a: BreakerAdapter, fn: Callable[[], Any] = _ok) -> str:
    try:
        a.call(fn)
        return "executed"
    except BreakerRejected:
        return "rejected"
    except _Boom:
        return "executed"
    except Exception as exc:  # store errors surfacing to the caller
        return f"error:{type(exc).__name__}"


# --- W-HERD ------------------------------------------------------------------------------------

def _herd_worker(adapter_name: str, url: str, password: str | None, breaker: str, cfg: dict[str, Any],
                 barrier: Any, out: Any, hold_s: float, timeout: float) -> None:
    from pytest_cbchaos.adapters import get_adapter

    try:
        a = get_adapter(adapter_name)().build(url, password, breaker, AdapterConfig(**cfg))
    except Exception as exc:
        out.put(f"error:build:{type(exc).__name__}:{exc}")
        barrier.abort()
        return
    try:
        a.state()  # connect before the release so the race is about the gate, not connection setup
        barrier.wait(timeout)  # 1: everybody built
        barrier.wait(timeout)  # 2: released together after the cooldown
        out.put(_try(a, lambda: time.sleep(hold_s)))
    except threading.BrokenBarrierError:
        out.put("error:barrier")
    finally:
        a.close()


_PRELOAD = ["pytest_cbchaos.adapters", "redis", "redis.asyncio", "pybreaker", "aiobreaker", "aiobreaker_redis",
            "circuitbreaker", "pytest_cbchaos.breaker.breaker", "pytest_cbchaos.breaker.redis_store"]


def _mp_context() -> Any:
    return forkserver_context(_PRELOAD)


def probe_herd(ctx: ProbeContext, cls: type[BreakerAdapter], *, workers: int = 8, hold_s: float = 0.5,
               cooldown_s: float = 1.0, timeout: float = 30.0) -> ProbeResult:
    """``workers`` processes released together once the cooldown elapsed: how many execute?"""
    cfg = AdapterConfig(failure_threshold=1, cooldown_s=cooldown_s, half_open_permits=1)
    name = _name("herd")
    mp = _mp_context()
    barrier, out = mp.Barrier(workers + 1), mp.Queue()
    procs = [mp.Process(target=_herd_worker, daemon=True,
                        args=(cls.name, ctx.redis_url, ctx.password, name, asdict(cfg), barrier, out, hold_s,
                              timeout)) for _ in range(workers)]
    results: list[str] = []
    with _Adapters(ctx, cls) as make:
        a = make(name, cfg)
        for p in procs:
            p.start()
        try:
            barrier.wait(timeout)
            _trip(a)
            tripped = time.time()
            tripped_state = a.state()
            # the cooldown is the subject under test: wait for the clock, then a margin for
            # whole-second timestamps (pybreaker/aiobreaker: effective open time <= R)
            _wait_until(lambda: time.time() >= tripped + cooldown_s + 0.15, cooldown_s + 1.0)
            barrier.wait(timeout)
            for _ in range(workers):
                try:
                    results.append(out.get(timeout=timeout))
                except queue.Empty:
                    results.append("error:no-reply")
                    break
        except threading.BrokenBarrierError:
            while not out.empty() and len(results) < workers:
                results.append(out.get_nowait())
            raise ProbeError(f"W-HERD: a worker failed before the release: {results}")
        finally:
            for p in procs:
                p.join(timeout=5)
                if p.is_alive():
                    p.kill()
                    p.join(timeout=5)
            out.close()
    executed = results.count("executed")
    budget = cfg.half_open_permits or 1
    return ProbeResult("W-HERD", cls.name, executed, budget, executed > budget,
                       {"workers": workers, "rejected": results.count("rejected"),
                        "errors": [r for r in results if r.startswith("error")], "state_after_trip": tripped_state})


# --- W-OPEN-TIME -------------------------------------------------------------------------------

def probe_open_time(ctx: ProbeContext, cls: type[BreakerAdapter], *, cooldown_s: float = 1.0,
                    tolerance: float = 0.1, late_tolerance: float = 0.5, poll: float = 0.01) -> ProbeResult:
    """Effective open duration seen by a second worker B after worker A tripped, vs configured R.

    Weak if B is admitted more than ``tolerance`` early (the dangerous direction), or more than
    ``late_tolerance`` late (generous: a loaded CI machine polls late)."""
    cfg = AdapterConfig(failure_threshold=1, cooldown_s=cooldown_s)
    name = _name("open-time")
    with _Adapters(ctx, cls) as make:
        a, b = make(name, cfg), make(name, cfg)
        b.state()
        # trip mid-second so whole-second truncation of opened_at is visible, not luck
        _wait_until(lambda: 0.3 <= time.time() % 1.0 <= 0.6, 1.2, step=0.005)
        _trip(a)
        t0 = time.monotonic()
        outcome = _try(b)
        first = outcome
        budget = cooldown_s + 2.0
        for _ in range(int(budget / poll) + 1):
            if outcome == "executed" or time.monotonic() - t0 > budget:
                break
            time.sleep(poll)
            outcome = _try(b)
        effective = round(time.monotonic() - t0, 3) if outcome == "executed" else None
    weak = effective is None or not (cooldown_s - tolerance <= effective <= cooldown_s + late_tolerance)
    return ProbeResult("W-OPEN-TIME", cls.name, effective, cooldown_s, weak,
                       {"early_tolerance_s": tolerance, "late_tolerance_s": late_tolerance,
                        "first_gate_by_other_worker": first,
                        "never_reopened_within_s": None if effective is not None else budget})


# --- W-LOST-COUNT ------------------------------------------------------------------------------

def _run_threads(fns: list[Callable[[], Any]], timeout: float) -> list[Any]:
    """Run callables on threads started together; the first exception propagates; bounded by ``timeout``
    (a stuck thread is a ProbeError, which the matrix reports as the probe's error)."""
    try:
        return run_together(fns, timeout, start_timeout=timeout)
    except ThreadsStuck as exc:
        raise ProbeError(str(exc)) from None


def probe_lost_count(ctx: ProbeContext, cls: type[BreakerAdapter], *, workers: int = 4, per_worker: int = 10,
                     jitter_ms: int = 3, timeout: float = 30.0) -> ProbeResult:
    """``workers`` instances record failures concurrently (latency jitter on the proxy); the shared
    counter must equal the number recorded and the breaker must trip at exactly that threshold."""
    total = workers * per_worker
    cfg = AdapterConfig(failure_threshold=total, cooldown_s=30)
    name = _name("lost")
    fault = None
    with _Adapters(ctx, cls) as make:
        ws = [make(name, cfg) for _ in range(workers)]
        for w in ws:
            w.state()
        if ctx.faults is not None and ctx.proxy is not None and jitter_ms:
            fault = ctx.faults.latency(ctx.proxy, ms=1, jitter=jitter_ms)
        try:
            _run_threads([lambda w=w: [w.record_failure() for _ in range(per_worker)] for w in ws], timeout)
        finally:
            if fault is not None:
                fault.heal()
        reader = make(name, cfg)
        counted = reader.counters().get("failures") or 0
        state = reader.state()
        # stale success: a call admitted before further failures completes after them (informational)
        name2 = _name("stale")
        cfg2 = AdapterConfig(failure_threshold=100, cooldown_s=30)
        s1, s2 = make(name2, cfg2), make(name2, cfg2)
        for _ in range(3):
            s2.record_failure()
        s1.record_success()
        after_success = make(name2, cfg2).counters().get("failures")
    lost = total - int(counted)
    weak = lost != 0 or state != "open"
    return ProbeResult("W-LOST-COUNT", cls.name, lost, 0, weak,
                       {"recorded": total, "counter": counted, "state_at_threshold": state,
                        "failures_left_after_one_success": after_success})


# --- W-DIVERGENCE ------------------------------------------------------------------------------

def probe_divergence(ctx: ProbeContext, cls: type[BreakerAdapter], *, cooldown_s: float = 1.0,
                     retry_after_tolerance: float = 0.5) -> ProbeResult:
    """Worker A trips; A and B are compared right after the trip and after the cooldown."""
    cfg = AdapterConfig(failure_threshold=2, cooldown_s=cooldown_s)
    name = _name("diverge")
    samples = []
    with _Adapters(ctx, cls) as make:
        a, b = make(name, cfg), make(name, cfg)
        b.state()
        _trip(a)
        t0 = time.monotonic()
        ra, rb = a.retry_after(), b.retry_after()
        samples.append({"at": "after_trip", "a": a.state(), "b": b.state(), "a_retry_after": ra,
                        "b_retry_after": rb})
        _wait_until(lambda: time.monotonic() - t0 >= cooldown_s + 0.2, cooldown_s + 1.0)
        samples.append({"at": "after_cooldown", "a": a.state(), "b": b.state()})
    disagreements = 0
    for s in samples:
        if s["a"] != s["b"]:
            disagreements += 1
        elif s.get("a_retry_after") is not None and s.get("b_retry_after") is not None and \
                abs(s["a_retry_after"] - s["b_retry_after"]) > retry_after_tolerance:
            disagreements += 1
    return ProbeResult("W-DIVERGENCE", cls.name, disagreements, 0, disagreements > 0, {"samples": samples})


# --- W-REDIS-DOWN ------------------------------------------------------------------------------

def probe_redis_down(ctx: ProbeContext, cls: type[BreakerAdapter]) -> ProbeResult:
    """Failures during a Redis outage (proxy disabled): surfaced, or silently uncounted?"""
    if not cls.shared_state:
        return ProbeResult("W-REDIS-DOWN", cls.name, None, "error surfaced or failures counted", False,
                           {"n/a": "in-memory library: no Redis dependency"})
    if ctx.faults is None or ctx.proxy is None:
        raise ProbeError("W-REDIS-DOWN needs ctx.faults and ctx.proxy")
    cfg = AdapterConfig(failure_threshold=3, cooldown_s=30)
    name = _name("down")
    with _Adapters(ctx, cls) as make:
        a = make(name, cfg)
        a.state()
        with ctx.faults.down(ctx.proxy):
            outcomes = [_try(a, _raise) for _ in range(cfg.failure_threshold + 1)]
        after = make(name, cfg)
        state_after = after.state()
        counted = after.counters().get("failures")
    silent = sum(o == "executed" for o in outcomes)
    weak = silent > 0 and state_after != "open"
    return ProbeResult("W-REDIS-DOWN", cls.name, silent, 0, weak,
                       {"outcomes_during_outage": outcomes, "state_after_outage": state_after,
                        "failures_counted": counted})


# --- W-LOOP-BLOCK ------------------------------------------------------------------------------

def probe_loop_block(ctx: ProbeContext, cls: type[BreakerAdapter], *, latency_ms: int = 150, calls: int = 3,
                     tick_s: float = 0.01, max_lag_s: float = 0.1) -> ProbeResult:
    """Max event-loop lag seen by a 10 ms ticker while async calls go through a slow Redis; judged with
    each tick's observed scheduling lag taken off (a thread sampler: a loop blocked in a call keeps it
    on time, a busy machine delays both alike; docs/fault-kit-design.md#weakness-probes)."""
    if not cls.is_async:
        return ProbeResult("W-LOOP-BLOCK", cls.name, None, max_lag_s, False,
                           {"n/a": "synchronous library (no async API)"})
    if ctx.faults is None or ctx.proxy is None:
        raise ProbeError("W-LOOP-BLOCK needs ctx.faults and ctx.proxy")
    cfg = AdapterConfig(failure_threshold=100, cooldown_s=30)
    ticks: list[tuple[float, float, float]] = []  # (start, end, loop lag) of each tick
    with _Adapters(ctx, cls) as make:
        a = make(_name("loop"), cfg)
        a.state()

        async def scenario() -> None:
            stop = asyncio.Event()

            async def ticker() -> None:
                for _ in range(10_000):
                    if stop.is_set():
                        return
                    t = a.loop.time()
                    await asyncio.sleep(tick_s)
                    end = a.loop.time()
                    ticks.append((t, end, end - t - tick_s))

            async def noop() -> str:
                return "ok"

            task = asyncio.ensure_future(ticker())
            await asyncio.sleep(0)
            try:
                for _ in range(calls):
                    await asyncio.wait_for(a.acall(noop), timeout=10)
            finally:
                stop.set()
                await asyncio.wait_for(task, timeout=5)

        sampler = LagSampler(interval=tick_s).start_thread()
        try:
            with ctx.faults.latency(ctx.proxy, ms=latency_ms):
                a.run(scenario())
        finally:
            sampler.stop()
    raw, judged, sched = judge_ticks(ticks, sampler)
    return ProbeResult("W-LOOP-BLOCK", cls.name, round(raw, 4), max_lag_s, judged > max_lag_s,
                       {"latency_ms": latency_ms, "calls": calls, "judged_s": round(judged, 4),
                        "sched_lag_s": round(sched, 4)})


def judge_ticks(ticks: list[tuple[float, float, float]], sampler: LagSampler) -> tuple[float, float, float]:
    """(raw, judged, scheduling lag) of ticks ``(start, end, loop lag)``: raw is the worst loop lag;
    judged the worst loop lag less the scheduling lag ``sampler`` saw inside that same tick."""
    if not ticks:
        raise ProbeError("W-LOOP-BLOCK: the ticker never woke during the calls (nothing observed)")
    seen = [(lag, sampler.window(t0, t1).sum_s) for t0, t1, lag in ticks]  # (loop lag, scheduling lag)
    judged, sched = max((lag - sched, sched) for lag, sched in seen)
    return max(lag for lag, _ in seen), judged, sched


# --- W-SERIAL ----------------------------------------------------------------------------------

def probe_serial(ctx: ProbeContext, cls: type[BreakerAdapter], *, workers: int = 4, hold_s: float = 0.2,
                 timeout: float = 20.0) -> ProbeResult:
    """Max concurrency inside protected calls of ONE breaker instance from ``workers`` callers."""
    cfg = AdapterConfig(failure_threshold=100, cooldown_s=30)
    lock = threading.Lock()
    cur = peak = 0

    def enter() -> None:
        nonlocal cur, peak
        with lock:
            cur += 1
            peak = max(peak, cur)

    def leave() -> None:
        nonlocal cur
        with lock:
            cur -= 1

    with _Adapters(ctx, cls) as make:
        a = make(_name("serial"), cfg)
        a.state()
        if cls.is_async:
            async def held() -> None:
                enter()
                try:
                    await asyncio.sleep(hold_s)
                finally:
                    leave()

            async def all_calls() -> None:
                await asyncio.wait_for(asyncio.gather(*[a.acall(held) for _ in range(workers)]), timeout)

            a.run(all_calls())
        else:
            def held_sync() -> None:
                enter()
                try:
                    time.sleep(hold_s)
                finally:
                    leave()

            _run_threads([lambda: a.call(held_sync) for _ in range(workers)], timeout)
    return ProbeResult("W-SERIAL", cls.name, peak, workers, peak < workers,
                       {"mode": "tasks" if cls.is_async else "threads", "hold_s": hold_s})


# --- W-NO-TTL ----------------------------------------------------------------------------------

def probe_no_ttl(ctx: ProbeContext, cls: type[BreakerAdapter]) -> ProbeResult:
    """Keys the breaker leaves in Redis without a TTL after a trip and a recovery."""
    if ctx.admin is None:
        raise ProbeError("W-NO-TTL needs ctx.admin")
    cfg = AdapterConfig(failure_threshold=2, cooldown_s=1)
    name = _name("ttl")
    with _Adapters(ctx, cls) as make:
        a = make(name, cfg)
        a.call(_ok)
        _trip(a)
        _try(a)
        keys = set(a.keys())
        keys.update(k.decode() if isinstance(k, bytes) else k
                    for k in ctx.admin.scan_iter(match=f"*{name}*", count=1000))
    ttls = {k: ctx.admin.ttl(k) for k in sorted(keys)}
    existing = {k: t for k, t in ttls.items() if t != -2}
    no_ttl = sorted(k for k, t in existing.items() if t == -1)
    return ProbeResult("W-NO-TTL", cls.name, len(no_ttl), 0, bool(no_ttl),
                       {"keys": existing, "without_ttl": no_ttl} if existing else {"n/a": "no Redis keys"})


# --- W-CONFIG ----------------------------------------------------------------------------------

def probe_config(ctx: ProbeContext, cls: type[BreakerAdapter]) -> ProbeResult:
    """Two breakers with different names, library-default namespace: does tripping one open the other?"""
    cfg = AdapterConfig(failure_threshold=2, cooldown_s=30)
    with _Adapters(ctx, cls) as make:
        a = make(_name("cfg-a"), cfg, library_defaults=True)
        b = make(_name("cfg-b"), cfg, library_defaults=True)
        before = b.state()
        _trip(a)
        other = b.state()
        keys = a.keys()
        try:
            a.force("closed")
        except Unsupported:
            pass
        if ctx.admin is not None and keys:
            ctx.admin.delete(*keys)  # default-namespace keys are global: leave nothing behind
    collided = before == "closed" and other != "closed"
    return ProbeResult("W-CONFIG", cls.name, collided, False, collided,
                       {"other_breaker_state_after_trip": other, "default_keys": keys})


# --- W-LINEAR hook -----------------------------------------------------------------------------

def record_breaker_history(adapters: list[BreakerAdapter], recorder: Any, *, ops_per_worker: int = 20,
                           fail_every: int = 3, timeout: float = 30.0) -> Any:
    """Drive ``adapters`` (one per worker, same breaker) from threads and record every op in a
    ``pytest_cbchaos.history.recorder.Recorder``: f = ``call`` with value ``ok``/``fail``; completion
    value ``executed``/``rejected``; store errors are classified by the recorder. The linearizability
    engineer checks the history against the sequential breaker model (W-LINEAR)."""

    def worker(i: int, a: BreakerAdapter) -> None:
        for n in range(ops_per_worker):
            want = "fail" if fail_every and n % fail_every == 0 else "ok"
            with recorder.op(i, "call", want, key=a.breaker_name) as h:
                try:
                    a.call(_raise if want == "fail" else _ok)
                    h.ok("executed")
                except _Boom:
                    h.ok("executed")
                except BreakerRejected:
                    h.ok("rejected")

    _run_threads([lambda i=i, a=a: worker(i, a) for i, a in enumerate(adapters)], timeout)
    return recorder


PROBES: dict[str, Callable[..., ProbeResult]] = {
    "W-HERD": probe_herd, "W-OPEN-TIME": probe_open_time, "W-LOST-COUNT": probe_lost_count,
    "W-DIVERGENCE": probe_divergence, "W-REDIS-DOWN": probe_redis_down, "W-LOOP-BLOCK": probe_loop_block,
    "W-SERIAL": probe_serial, "W-NO-TTL": probe_no_ttl, "W-CONFIG": probe_config,
}


def run_probe(probe_id: str, ctx: ProbeContext, cls: type[BreakerAdapter], **kw: Any) -> ProbeResult:
    """Run one probe by ID (``W-LINEAR`` is a recording hook: see ``record_breaker_history``)."""
    fn = PROBES.get(probe_id)
    if fn is None:
        raise ValueError(f"unknown probe id {probe_id!r}; expected one of {sorted(PROBES)}")
    return fn(ctx, cls, **kw)
