"""The harness (docs/stream-design.md#harness) with the relay as a child process: faults that need a real process.

Each test drives ``cbchaos_stream`` (relay child behind ``redis-producer``, app child behind
``redis-consumer`` and ``stream-http``, reaper in the app child) and judges with the stream checker
plus the bounds of docs/stream-design.md#harness: ``T_orphan = lease_ttl_s + reaper_interval_s + deliver_bound_s`` after
the producer's death, ``T_live = deliver_bound_s`` after the terminal is written.
"""

from __future__ import annotations

import threading
import time

import pytest
from tests.stream.sched_lag import PathLag, wait_within

from pytest_cbchaos.stream.config import StreamConfig
from pytest_cbchaos.stream.harness import BackgroundConsumer, HarnessError, StreamHarness
from pytest_cbchaos.stream.scripted import ScriptError, TurnScript
from pytest_cbchaos.waiting import wait_until

pytestmark = pytest.mark.requires_real_redis
# the terminal-call faults: a lease that outlives a frozen Redis on a slow runner (checked per run)
LONG_LEASE = StreamConfig.ci(lease_ttl_s=10.0, lease_renew_s=1.0)


def t_orphan(h: StreamHarness) -> float:
    c = h.config
    return c.lease_ttl_s + c.reaper_interval_s + c.deliver_bound_s


def path_lag(h: StreamHarness, *threads: threading.Thread, relay: bool = False) -> PathLag:
    """Scheduling lag of the processes that reap and deliver (app child, Redis, the fault proxy;
    the relay child too when it writes the terminal), and of ``threads`` of this process."""
    proxy = getattr(h.toxiproxy, "process", None)
    pids = [h.app.process.pid if h.app else None, h.redis.pid, proxy.pid if proxy else None]
    return PathLag(pids + [h.relay_pid if relay else None], threads)


def record(h: StreamHarness, conv: str, mid: str) -> dict:
    with h.admin() as admin:
        raw = admin.hgetall(f"{h.config.prefix}{{{conv}}}:msgs")
    out: dict = {}
    for k, v in raw.items():
        m, _, attr = k.decode().rpartition("|")
        if m == mid:
            out[attr] = v.decode()
    return out


def wait_status(h: StreamHarness, conv: str, mid: str, want: set[str], timeout: float) -> dict:
    return wait_until(lambda: (r := record(h, conv, mid)).get("status") in want and r, timeout,
                      f"{conv}/{mid} status in {sorted(want)}")


def test_turn_through_child_relay_reaches_sse_consumer(cbchaos_stream: StreamHarness) -> None:
    h = cbchaos_stream
    started = h.start_turn("c1", "m1", TurnScript(deltas=5, hold_at=2))
    consumer = h.consumer("c1", "m1", after_seq=started["after_seq"])
    h.release("m1")
    out = h.outcome("m1", timeout=15)
    assert out is not None and out["status"] == "completed", out
    consumer.join(h.config.deliver_bound_s + 5)
    assert consumer.error is None, consumer.error
    env, _ = consumer.terminal()
    assert env.kind == "complete"
    rep = h.check("c1", [consumer])
    assert rep.ok, rep.violations
    assert len(h.emissions()) == rep.entries == 8  # turn_started, 5 deltas, usage, complete
    assert h.status("c1")["producer_live"] is False


def test_bad_script_is_a_located_400(cbchaos_stream: StreamHarness) -> None:
    with pytest.raises(HarnessError, match=r"400 .*outcome='explode'.*expected one of complete"):
        cbchaos_stream._relay_post("/v1/conversations/c1/turns",
                                   {"message_id": "m1", "model_id": "x", "script": {"outcome": "explode"}})
    with pytest.raises(ScriptError, match="deltas=-1"):
        TurnScript(deltas=-1)


@pytest.mark.parametrize("where", ["mid_stream", "before_first_append", "terminal_call_sent"])
def test_inv15_relay_sigkill_is_reaped_and_delivered(cbchaos_stream: StreamHarness, cbchaos_faults, where: str) -> None:
    """INV-15: after a relay SIGKILL no message stays in_progress beyond T_orphan; it ends
    ``cancelled{producer_lost}`` and the live consumer gets it within T_orphan. Killed between
    sending the terminal call and its reply, the terminal it wrote stands (INV-3: one terminal)."""
    h = cbchaos_stream
    if where == "mid_stream":
        started = h.start_turn("c1", "m1", TurnScript(deltas=6, hold_at=3))
    elif where == "before_first_append":
        armed = h.arm("append")
        started = h.start_turn("c1", "m1", TurnScript(deltas=3))
        armed.wait_hit()
    else:
        armed = h.arm("append", kinds=["complete"])
        started = h.start_turn("c1", "m1", TurnScript(deltas=3, hold_at=1))
        wait_until(lambda: record(h, "c1", "m1").get("last_seq", "1") != "1", 10, "first batch applied")
        h.release("m1")  # the script is loaded now (see test_inv4)
        armed.wait_hit()
        cbchaos_faults.partition(h.proxies["redis-producer"], "downstream")  # applied, reply lost
        armed.release()
        wait_until(lambda: record(h, "c1", "m1").get("status") == "completed", 10, "terminal applied")
    consumer = h.consumer("c1", "m1", after_seq=started["after_seq"])
    wait_until(lambda: consumer.items or where == "before_first_append", 10, "consumer attached")
    lag = path_lag(h, consumer._thread)
    killed_at = time.monotonic()
    h.kill_relay()
    cbchaos_faults.heal_all()
    want = {"completed"} if where == "terminal_call_sent" else {"interrupted"}
    rec = wait_within(lambda: (r := record(h, "c1", "m1")).get("status") in want and r, t_orphan(h), lag,
                      f"c1/m1 status in {sorted(want)}")
    items = consumer.join(t_orphan(h) + lag.waited() + 5)
    env, at = consumer.terminal()
    # T_orphan plus the scheduling lag measured on the reap-and-deliver path (tests/stream/sched_lag.py)
    assert at - killed_at <= t_orphan(h) + lag.waited(), \
        f"terminal {at - killed_at:.2f}s after the kill; T_orphan {t_orphan(h)}s + measured lag {lag.waited():.2f}s"
    if where != "terminal_call_sent":
        assert env.kind == "cancelled" and env.payload.get("reason") == "producer_lost", env
    rep = h.check("c1", [consumer], emissions=False)
    assert rep.ok, (rep.violations, rec, [e.kind for e, _ in items])


def test_inv16_relay_sigstop_past_lease_is_fenced(cbchaos_stream: StreamHarness) -> None:
    """INV-16: a relay SIGSTOPped for ``lease_ttl_s + 2*reaper_interval_s`` and resumed writes nothing;
    its outcome names ``superseded_by``; the message keeps exactly one terminal (the reaper's)."""
    h = cbchaos_stream
    cfg = h.config
    started = h.start_turn("c1", "m1", TurnScript(deltas=6, hold_at=3))
    consumer = h.consumer("c1", "m1", after_seq=started["after_seq"])
    wait_until(lambda: len(consumer.items) >= 3, 10, "first deltas delivered")
    h.pause_relay()
    rec = wait_status(h, "c1", "m1", {"interrupted"}, cfg.lease_ttl_s + 2 * cfg.reaper_interval_s + 5)
    h.resume_relay()
    h.release("m1")
    out = h.outcome("m1", timeout=cfg.write_deadline_s + cfg.terminal_deadline_s + 5)
    assert out is not None and out["superseded_by"], out
    consumer.join(cfg.deliver_bound_s + 5)
    rep = h.check("c1", [consumer])
    assert rep.ok, (rep.violations, rec, out)
    assert record(h, "c1", "m1")["status"] == "interrupted"


def test_inv16_mutant_without_fencing_is_caught(cbchaos_stream_factory) -> None:
    """M13 (no fencing check) in the child relay: the resumed producer writes after the reaper's
    terminal, and the checker reports it."""
    with cbchaos_stream_factory(store_class="pytest_cbchaos.testing.stream_mutants:M13NoFencingStore") as h:
        cfg = h.config
        started = h.start_turn("c1", "m1", TurnScript(deltas=6, hold_at=3))
        # as in the pass test: the first deltas are written before the pause, so the resumed relay
        # has more to write after the reaper's terminal whichever of its loops runs first
        wait_until(lambda: int(record(h, "c1", "m1").get("last_seq", 0)) >= started["after_seq"] + 3, 10,
                   "first deltas written")
        h.pause_relay()
        wait_status(h, "c1", "m1", {"interrupted"}, cfg.lease_ttl_s + 2 * cfg.reaper_interval_s + 5)
        h.resume_relay()
        h.release("m1")
        h.outcome("m1", timeout=cfg.write_deadline_s + cfg.terminal_deadline_s + 5)
        rep = h.check("c1")
    assert not rep.ok and any("INV-3" in v or "INV-16" in v or "terminal" in v for v in rep.violations), rep.violations


def _sigterm_mid_turn(h: StreamHarness) -> tuple[StreamHarness, BackgroundConsumer, float, PathLag]:
    """SIGTERM the relay while a consumer follows a live turn; returns when the consumer ended, with
    the scheduling lag measured on the shutdown-and-deliver path since the SIGTERM."""
    started = h.start_turn("c1", "m1", TurnScript(deltas=6, hold_at=2))
    consumer = h.consumer("c1", "m1", after_seq=started["after_seq"])
    wait_until(lambda: len(consumer.items) >= 2, 10, "first deltas delivered")
    lag = path_lag(h, consumer._thread, relay=True)
    t0 = time.monotonic()
    code = h.terminate_relay()
    assert code is not None, "relay did not exit after SIGTERM"
    consumer.join(t_orphan(h) + 5)
    return h, consumer, t0, lag


def test_inv17_relay_sigterm_ends_turn_cancelled(cbchaos_stream: StreamHarness) -> None:
    """INV-17: SIGTERM of the relay ends a live turn with ``cancelled{relay_shutdown}``, delivered
    to the live consumer within T_live, and the relay exits."""
    h, consumer, t0, lag = _sigterm_mid_turn(cbchaos_stream)
    env, at = consumer.terminal()
    assert env.kind == "cancelled" and env.payload.get("reason") == "relay_shutdown", env
    bound = h.config.shutdown_grace_s + h.config.deliver_bound_s
    assert at - t0 <= bound + lag.waited(), f"{at - t0:.2f}s after SIGTERM; {bound}s + measured lag {lag.waited():.2f}s"
    rep = h.check("c1", [consumer], emissions=False)
    assert rep.ok, rep.violations


def test_inv17_mutant_silent_shutdown_is_caught(cbchaos_stream_factory) -> None:
    """M17: a relay that abandons its runs on shutdown: the consumer gets only the reaper's
    ``producer_lost``, after the lease, and the INV-17 check above rejects it."""
    h, consumer, t0, _ = _sigterm_mid_turn(
        cbchaos_stream_factory(run_class="pytest_cbchaos.testing.stream_mutants:M17SilentShutdownRun"))
    env, at = consumer.terminal()
    assert not (env.kind == "cancelled" and env.payload.get("reason") == "relay_shutdown"), env


def _fault_the_terminal_call(h: StreamHarness, redis_server, faults, fault: str, *, applied_first: bool = False
                             ) -> tuple[dict | None, BackgroundConsumer, float, PathLag]:
    """Fault exactly the terminal call's first attempt: the call is held before it runs, the fault
    applied, the call released; its resend is held too, so the fault window holds that one attempt
    whatever the machine's load. The window ends (heal) once that attempt has an outcome; with
    ``applied_first`` the resend waits until the first attempt is applied (the resend then always
    meets it). Returns the relay's outcome, the live consumer, the heal time and the scheduling lag
    measured on the delivery path since."""
    armed = h.arm("append", kinds=["complete"])
    started = h.start_turn("c1", "m1", TurnScript(deltas=4, hold_at=2))
    consumer = h.consumer("c1", "m1", after_seq=started["after_seq"])
    # a first append before the terminal one loads the script: an EVALSHA whose NOSCRIPT reply is
    # lost would never apply, and "applied, reply lost" is the case under test
    wait_until(lambda: len(consumer.items) >= 3, 10, "first batch delivered")
    h.release("m1")
    armed.wait_hit()
    px = h.proxies["redis-producer"]
    faulted = time.monotonic()
    if fault == "downstream_blackhole":
        f = faults.partition(px, "downstream")
    elif fault == "reset_peer":
        f = faults.reset_peer(px, timeout=0)
    else:
        f = faults.process(redis_server).pause()
    resend = h.arm("append", kinds=["complete"])
    armed.release()
    # the first attempt has an outcome (reset, or socket timeout) once the relay is about to resend
    resend.wait_hit(h.config.write_deadline_s + 10)
    lag = path_lag(h, consumer._thread)
    f.heal()
    healed = time.monotonic()
    # the lease must outlive the window (a frozen Redis expires it meanwhile: the terminal would be
    # FENCED, another scenario); measured, so a slow runner reports this, not a false violation
    c = h.config
    assert healed - faulted < c.lease_ttl_s - c.lease_renew_s, \
        f"fault window {healed - faulted:.2f}s outlasted the lease: scenario not realized"
    if applied_first:  # before the reply was lost (blackhole, reset) or from Redis' buffer after SIGCONT;
        # not when the attempt went out on a fresh connection whose handshake met the fault
        wait_until(lambda: record(h, "c1", "m1").get("status") == "completed", 10,
                   "the first attempt applied (else: scenario not realized, it never reached Redis)")
    resend.release()
    out = h.outcome("m1", timeout=h.config.write_deadline_s + h.config.terminal_deadline_s + 5)
    consumer.join(h.config.deliver_bound_s + 5)
    return out, consumer, healed, lag


@pytest.mark.parametrize("fault", ["downstream_blackhole", "reset_peer", "redis_sigstop"])
def test_inv4_terminal_call_disrupted_still_delivered(cbchaos_stream_factory, cbchaos_stream_redis,
                                                      cbchaos_faults, fault: str) -> None:
    """INV-4/14: a fault armed exactly before the terminal call (applied with the reply lost, reset,
    or Redis frozen across it): the live consumer still gets the one terminal within T_live of the
    fault window's end, and the log equals the producer's emissions."""
    h = cbchaos_stream_factory(config=LONG_LEASE)
    out, consumer, healed, lag = _fault_the_terminal_call(h, cbchaos_stream_redis, cbchaos_faults, fault)
    assert out is not None and out["status"] == "completed", out
    env, at = consumer.terminal()
    assert env.kind == "complete", env
    assert at - healed <= h.config.deliver_bound_s + lag.waited(), \
        f"terminal {at - healed:.2f}s after the heal; T_live {h.config.deliver_bound_s}s + measured lag {lag.waited():.2f}s"
    rep = h.check("c1", [consumer])
    assert rep.ok, rep.violations


@pytest.mark.parametrize("fault", ["downstream_blackhole", "reset_peer", "redis_sigstop"])
def test_inv14_mutant_retry_that_writes_again_is_caught(cbchaos_stream_factory, cbchaos_stream_redis,
                                                        cbchaos_faults, fault: str) -> None:
    """M5 in the child relay's store: the resend of the applied terminal call writes it again. The
    resend is held until the first attempt is applied and the fault healed, so exactly one resend
    meets it: exactly two terminals, whatever the load."""
    with cbchaos_stream_factory(config=LONG_LEASE,
                                store_class="pytest_cbchaos.testing.stream_mutants:M5RetryWritesAgainStore") as h:
        _fault_the_terminal_call(h, cbchaos_stream_redis, cbchaos_faults, fault, applied_first=True)
        rep = h.check("c1")
    assert rep.duplicates and any("has 2 terminals" in v for v in rep.violations), rep.violations


def test_inv29_status_from_redis_after_relay_death(cbchaos_stream: StreamHarness) -> None:
    """INV-29: a turn started through the relay process is reported by the app process from Redis
    alone; after the relay's SIGKILL, ``producer_live`` turns false once the lease expires."""
    h = cbchaos_stream
    h.start_turn("c1", "m1", TurnScript(deltas=4, hold_at=1))
    st = wait_until(lambda: (s := h.status("c1"))["current_status"] == "in_progress" and s, 5, "status")
    assert st["producer_live"] is True and st["current_message_id"] == "m1"
    lag = path_lag(h, threading.current_thread())
    h.kill_relay()
    st = wait_within(lambda: (s := h.status("c1"))["producer_live"] is False and s, t_orphan(h), lag, "lease gone")
    wait_within(lambda: h.status("c1")["current_status"] == "interrupted", t_orphan(h), lag, "reaped")


def test_inv29_mutant_status_from_task_map_is_caught(cbchaos_stream_factory) -> None:
    """M29 in the app process: ``producer_live`` from its own task map. The relay is another
    process, so the app says "not live" while the relay holds the lease and produces."""
    with cbchaos_stream_factory(liveness="pytest_cbchaos.testing.stream_mutants:m29_liveness") as h:
        h.start_turn("c1", "m1", TurnScript(deltas=4, hold_at=1))
        st = wait_until(lambda: (s := h.status("c1"))["current_status"] == "in_progress" and s, 5, "status")
        with h.admin() as admin:
            assert admin.get(f"{h.config.prefix}{{c1}}:lease") is not None  # the relay is producing
        h.release("m1")
    assert st["producer_live"] is False, st
