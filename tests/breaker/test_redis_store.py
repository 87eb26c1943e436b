"""RedisStore on real redis-server through the fault proxy: round trips, scripts, errors, faults."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from pytest_cbchaos.breaker import (RedisStore, StoreConfigError, StoreContentionError, StoreDataError, StoreError,
                                    StoreIndeterminateError, StoreUnavailableError, make_store)

pytestmark = pytest.mark.requires_real_redis


def _store(client: Any, **kw: Any) -> RedisStore:
    return RedisStore(client, key_prefix=f"t{uuid.uuid4().hex[:8]}", **kw)


def _calls(admin: redis.Redis) -> dict[str, int]:
    stats = admin.info("commandstats")
    return {k.removeprefix("cmdstat_"): v["calls"] for k, v in stats.items()}


def test_one_round_trip_per_decision(cbchaos_redis: redis.Redis, cbchaos_redis_admin: redis.Redis) -> None:
    s = _store(cbchaos_redis)
    s.atomic_record_failure("b", 5, 60)  # loads the script (NOSCRIPT + SCRIPT LOAD)
    s.try_transition_and_claim_probe("b", None, 60)
    s.atomic_record_success("b")
    cbchaos_redis_admin.config_resetstat()
    for op in (lambda: s.try_transition_and_claim_probe("b", None, 60), lambda: s.atomic_record_success("b"),
               lambda: s.atomic_record_failure("b", 5, 60)):
        before = _calls(cbchaos_redis_admin)
        op()
        after = _calls(cbchaos_redis_admin)
        diff = {k: after.get(k, 0) - before.get(k, 0) for k in after if after.get(k, 0) != before.get(k, 0)}
        diff.pop("info", None)
        # commandstats also counts the script's own inner calls (time, hmget, hset, expire); the client sent
        # exactly one command: one EVALSHA and nothing a client would send on its own
        assert diff.pop("evalsha") == 1, diff
        assert set(diff) <= {"time", "hmget", "hset", "expire"}, diff


def test_noscript_reload_after_script_flush(cbchaos_redis: redis.Redis, cbchaos_redis_admin: redis.Redis) -> None:
    s = _store(cbchaos_redis)
    s.atomic_record_failure("b", 5, 60)
    loads = s.stats["script_load"]
    cbchaos_redis_admin.script_flush()
    d = s.atomic_record_failure("b", 5, 60)
    assert d["failure_count"] == 2 and not s.using_fallback and s.stats["script_load"] == loads + 1


def test_wrongtype_is_data_error_once(cbchaos_redis: redis.Redis, cbchaos_redis_admin: redis.Redis) -> None:
    s = _store(cbchaos_redis)
    cbchaos_redis_admin.set(s.key("b"), "not a hash")
    for fn in (lambda: s.atomic_record_failure("b", 5, 60), lambda: s.try_transition_and_claim_probe("b", None, 60),
               lambda: s.get_state("b")):
        before = s.stats["evalsha"]
        with pytest.raises(StoreDataError, match="not a hash"):
            fn()
        assert s.stats["evalsha"] - before <= 1  # CB-23: one attempt, never retried
    fb = _store(cbchaos_redis, scripting="disabled")
    cbchaos_redis_admin.set(fb.key("b"), "x")
    with pytest.raises(StoreDataError):
        fb.atomic_record_failure("b", 5, 60)
    assert fb.stats["pipelines_created"] == fb.stats["pipelines_reset"]  # CB-7 on the error path


def test_fallback_pipelines_released_with_pool_of_one(cbchaos_redis_proxy: Any, cbchaos_redis_proc: Any) -> None:
    """CB-7: with a one-connection blocking pool the next command never blocks."""
    pool = redis.BlockingConnectionPool(host=cbchaos_redis_proxy.listen_host, port=cbchaos_redis_proxy.listen_port,
                                        password=cbchaos_redis_proc.password, max_connections=1, timeout=1,
                                        socket_timeout=5)
    c = redis.Redis(connection_pool=pool)
    try:
        s = _store(c, scripting="disabled")
        for _ in range(3):
            s.atomic_record_failure("b", 2, 60)
        s.try_transition_and_claim_probe("b", None, 60)
        s.atomic_record_success("b", "closed")  # mismatch: no-op path
        s.force_open("b", 1)  # no-op path (already open longer)
        assert s.stats["pipelines_created"] == s.stats["pipelines_reset"] > 0
        assert c.ping()
    finally:
        c.close()
        pool.disconnect()


def test_scripting_required_and_fallback_contention(cbchaos_redis: redis.Redis) -> None:
    s = _store(cbchaos_redis, scripting="disabled", fallback_max_attempts=2)
    other = redis.Redis(connection_pool=cbchaos_redis.connection_pool)
    calls = [0]

    def before(op: str, attempt: int) -> None:
        pass

    orig = s._watch

    def contended(op, backend, key, kfn, cnow):  # type: ignore[no-untyped-def]
        def kfn2(r, t):  # type: ignore[no-untyped-def]
            calls[0] += 1
            other.hset(key, "failure_count", str(calls[0]))  # a concurrent writer between WATCH and EXEC
            return kfn(r, t)
        return orig(op, backend, key, kfn2, cnow)
    s._watch = contended  # type: ignore[method-assign]
    with pytest.raises(StoreContentionError, match=r"Failed to atomically record_failure for 'b' after 2 retries"):
        s.atomic_record_failure("b", 5, 60)
    assert s.stats["pipelines_created"] == s.stats["pipelines_reset"] == 2


def test_ttl_rules_server_time(cbchaos_redis: redis.Redis, cbchaos_redis_admin: redis.Redis) -> None:
    s = _store(cbchaos_redis, ttl=1, half_open_probe_ttl=300)
    s.force_open("b", 120)
    assert cbchaos_redis_admin.ttl(s.key("b")) >= 179
    s.cas_state("b", "open", {"last_failure_time": time.time()})
    assert cbchaos_redis_admin.ttl(s.key("b")) >= 179  # CB-12: merged record
    s.set_state("b", {"state": "open", "open_until": 0.0})
    c = s.try_transition_and_claim_probe("b", None, 60)
    assert c.won and cbchaos_redis_admin.ttl(s.key("b")) >= 250  # CB-10
    s.release_probe("b", c.token, "success", recovery_timeout=60)
    assert 0 < cbchaos_redis_admin.ttl(s.key("b")) <= 1


@pytest.mark.parametrize("kw,match", [
    ({"ttl": 0}, "ttl must be an int >= 1"), ({"ttl": -1}, "ttl"), ({"half_open_probe_ttl": 0}, "half_open_probe_ttl"),
    ({"probe_lease_seconds": 0}, "lease_seconds"), ({"time_source": "ntp"}, "time_source"),
    ({"scripting": "maybe"}, "scripting"), ({"fallback_max_attempts": 0}, "fallback_max_attempts"),
])
def test_invalid_construction_no_io(kw: dict, match: str) -> None:
    class Spy:
        connection_pool = type("P", (), {"connection_kwargs": {"socket_timeout": 1}})()

        def __getattr__(self, name: str) -> Any:
            raise AssertionError(f"I/O attempted: {name}")
    with pytest.raises(ValueError, match=match):
        RedisStore(Spy(), **kw)


def test_factory_errors_and_forwarding(cbchaos_redis: redis.Redis) -> None:
    with pytest.raises(ValueError, match="redis_client is required for RedisStore"):
        RedisStore(None)
    with pytest.raises(ValueError, match="redis_client is required for backend='redis'"):
        make_store("redis")
    with pytest.raises(ValueError, match="Unknown circuit breaker store backend: nope"):
        make_store("nope")
    s = make_store("redis", redis_client=cbchaos_redis, key_prefix="ns", ttl=7, half_open_probe_ttl=9,
                   probe_lease_seconds=3.0, time_source="client")
    assert (s.key_prefix, s.ttl, s.half_open_probe_ttl, s.probe_lease_seconds, s.time_source) == \
        ("ns", 7, 9, 3.0, "client")
    unbounded = redis.Redis(host="127.0.0.1", port=1, socket_timeout=None)
    with pytest.raises(ValueError, match="socket_timeout"):
        RedisStore(unbounded)
    with pytest.raises(ValueError, match="probe_token must match"):
        s.release_probe("b", "bogus", "success", recovery_timeout=1)


def test_latency_gives_correct_result(cbchaos_redis: redis.Redis, cbchaos_redis_proxy: Any, cbchaos_faults: Any,
                                      cbchaos_redis_admin: redis.Redis) -> None:
    s = _store(cbchaos_redis)
    with cbchaos_faults.latency(cbchaos_redis_proxy, ms=150, jitter=50):
        for _ in range(3):
            d = s.atomic_record_failure("b", 3, 60)
    assert d["state"] == "open" and d["_prev_state"] == "closed"
    assert cbchaos_redis_admin.hget(s.key("b"), "failure_count") == b"3"


def test_down_is_a_clear_error_and_record_intact(cbchaos_redis: redis.Redis, cbchaos_redis_proxy: Any,
                                                 cbchaos_faults: Any, cbchaos_redis_admin: redis.Redis) -> None:
    s = _store(cbchaos_redis, io_resends=1)
    s.atomic_record_failure("b", 3, 60)
    before = cbchaos_redis_admin.hgetall(s.key("b"))
    with cbchaos_faults.down(cbchaos_redis_proxy):
        with pytest.raises(StoreUnavailableError, match=r"claim|record_failure|gate"):
            s.atomic_record_failure("b", 3, 60)
        with pytest.raises(StoreUnavailableError):
            s.try_transition_and_claim_probe("b", None, 60)
    assert cbchaos_redis_admin.hgetall(s.key("b")) == before
    assert s.atomic_record_failure("b", 3, 60)["failure_count"] == 2  # healed: works again


def test_reset_peer_is_a_clear_error_and_never_corrupts(cbchaos_redis: redis.Redis, cbchaos_redis_proxy: Any,
                                                        cbchaos_faults: Any, cbchaos_redis_admin: redis.Redis) -> None:
    s = _store(cbchaos_redis, io_resends=1)
    s.atomic_record_failure("b", 10, 60)
    with cbchaos_faults.reset_peer(cbchaos_redis_proxy, timeout=0):
        with pytest.raises(StoreUnavailableError):
            s.atomic_record_failure("b", 10, 60)
    raw = cbchaos_redis_admin.hgetall(s.key("b"))
    d = s.get_state("b")
    assert d["_corrupt"] == [] and d["failure_count"] in (1, 2, 3)  # applied at most once per attempt
    assert set(k.decode() for k in raw) >= {"state", "failure_count", "recent_ops"}


SHORT_TIMEOUT = 0.3  # the bound inside a downstream partition: its reply never comes, however fast the box
HEALTHY_TIMEOUT = 10.0  # a fault-free request is waited for, not timed: the read returns when the reply is in


def _proxied(cbchaos_redis: redis.Redis, proxy: Any, timeout: float) -> redis.Redis:
    """A client through the proxy that never retries on its own (the store's resends are under test)."""
    return redis.Redis(host=proxy.listen_host, port=proxy.listen_port,
                       password=cbchaos_redis.connection_pool.connection_kwargs.get("password"),
                       socket_timeout=timeout, socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0))


def _connect(client: redis.Redis, within_s: float = 10.0) -> None:
    """Connect and authenticate ``client`` before a fault, so the fault hits an op's own request or reply. Fault-free,
    so waited for: a ping the box made slower than the client's short bound is sent again (bounded)."""
    deadline = time.monotonic() + within_s
    while True:
        try:
            client.ping()
            return
        except (redis.TimeoutError, redis.ConnectionError):
            if time.monotonic() > deadline:
                raise


def test_indeterminate_resend_is_exactly_once(cbchaos_redis: redis.Redis, cbchaos_redis_proxy: Any,
                                              cbchaos_faults: Any, cbchaos_redis_admin: redis.Redis) -> None:
    """Downstream blackhole: the op applies, its reply is lost → StoreIndeterminateError; a resend with the
    same op id is recognised as a duplicate and the failure is counted once. Only the blackholed op runs under
    the short bound; the fault-free ops before and after it go through a patient client on the same records."""
    short = _proxied(cbchaos_redis, cbchaos_redis_proxy, SHORT_TIMEOUT)
    patient = _proxied(cbchaos_redis, cbchaos_redis_proxy, HEALTHY_TIMEOUT)
    try:
        s = _store(short, io_resends=0)
        healthy = RedisStore(patient, key_prefix=s.key_prefix, io_resends=0)
        healthy.atomic_record_failure("b", 10, 60)  # script loaded (the script cache is the server's)
        _connect(short)
        oid = uuid.uuid4().hex
        with cbchaos_faults.partition(cbchaos_redis_proxy, "downstream"):
            with pytest.raises(StoreIndeterminateError):
                s.atomic_record_failure("b", 10, 60, op_id=oid)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and cbchaos_redis_admin.hget(s.key("b"), "failure_count") != b"2":
            time.sleep(0.01)
        patient.connection_pool.disconnect()  # the partition's heal closed the links it carried
        d = healthy.atomic_record_failure("b", 10, 60, op_id=oid)
        assert d["_duplicate"] and d["failure_count"] == 2
    finally:
        short.close()
        patient.close()


def test_readonly_and_noperm_classes() -> None:
    from pytest_cbchaos.breaker.redis_store import classify

    assert isinstance(classify(redis.exceptions.ReadOnlyError("READONLY x"), "gate", "b"), StoreUnavailableError)
    assert isinstance(classify(redis.exceptions.NoPermissionError("NOPERM x"), "gate", "b"), StoreConfigError)
    assert isinstance(classify(redis.exceptions.ResponseError("ERR boom"), "gate", "b"), StoreError)
    assert isinstance(classify(redis.exceptions.BusyLoadingError("LOADING"), "gate", "b"), StoreUnavailableError)


def test_renamed_scripting_falls_back(fake_client: Any) -> None:
    """fakeredis without scripting support stands in for renamed EVAL/EVALSHA (auto → fallback)."""

    class NoScripts:
        def __init__(self, inner: Any) -> None:
            self.inner = inner
            self.connection_pool = inner.connection_pool

        def execute_command(self, *a: Any, **k: Any) -> Any:
            if str(a[0]).upper() in ("EVALSHA", "EVAL", "SCRIPT"):
                raise redis.exceptions.ResponseError(f"unknown command '{a[0]}', with args beginning with:")
            return self.inner.execute_command(*a, **k)

        def __getattr__(self, n: str) -> Any:
            return getattr(self.inner, n)
    s = RedisStore(NoScripts(fake_client), allow_unbounded_io=True)
    assert s.atomic_record_failure("b", 1, 60)["state"] == "open" and s.using_fallback
    assert s.events == [("scripting_fallback", "")]
    r = RedisStore(NoScripts(fake_client), allow_unbounded_io=True, scripting="required")
    with pytest.raises(StoreConfigError, match="scripting required"):
        r.atomic_record_failure("b", 1, 60)


def test_worker_clock_skew_server_vs_client_time(cbchaos_redis: redis.Redis) -> None:
    """Server time: skewed workers (±5 s) see the same cooldown; client time: shifted by their skew."""
    from pytest_cbchaos.faults.clock import SkewedClock

    prefix = f"sk{uuid.uuid4().hex[:6]}"
    fast = RedisStore(cbchaos_redis, key_prefix=prefix, clock=SkewedClock(5.0))
    slow = RedisStore(cbchaos_redis, key_prefix=prefix, clock=SkewedClock(-5.0))
    fast.force_open("srv", 30)
    assert not fast.try_transition_and_claim_probe("srv").admitted
    assert not slow.try_transition_and_claim_probe("srv").admitted
    cfast = RedisStore(cbchaos_redis, key_prefix=prefix, clock=SkewedClock(5.0), time_source="client")
    cslow = RedisStore(cbchaos_redis, key_prefix=prefix, clock=SkewedClock(-5.0), time_source="client")
    cslow.force_open("cli", 3)  # written with the slow clock: ends 2 s *before* real now
    r = cfast.try_transition_and_claim_probe("cli")
    assert r.won  # the fast worker (+5 s) is admitted at once: client-time admission differs by the skew
    d = cslow.atomic_record_failure("cli2", 1, 3)
    assert abs(d["_now"] - (time.time() - 5.0)) < 1.0  # one op, one clock: the caller's


def test_model_replays_a_real_history(cbchaos_redis: redis.Redis) -> None:
    """The checker's model reproduces every reply of a sequential real-Redis history (server time)."""
    from pytest_cbchaos.breaker import model

    s = _store(cbchaos_redis, probe_lease_seconds=5)
    hist: list[tuple[str, dict, dict]] = []

    def rec(f: str, inp: dict, r: Any) -> Any:
        d = r.record if hasattr(r, "record") else r
        hist.append((f, {**inp, "now": d["_now"]}, model.output_from_reply(f, r)))
        return r
    oid = lambda: uuid.uuid4().hex  # noqa: E731
    for _ in range(3):
        i = oid()
        rec("record_failure", {"op_id": i, "failure_threshold": 3, "recovery_timeout": 0.05},
            s.atomic_record_failure("b", 3, 0.05, op_id=i))
    i = oid()
    rec("gate", {"op_id": i, "lease_seconds": 5}, s.try_transition_and_claim_probe("b", op_id=i))
    deadline = time.monotonic() + 5
    won = None
    while won is None and time.monotonic() < deadline:
        i = oid()
        r = rec("gate", {"op_id": i, "lease_seconds": 5}, s.try_transition_and_claim_probe("b", op_id=i))
        won = r if r.won else None
    assert won is not None
    i = oid()
    rec("release_probe", {"op_id": i, "token": won.token, "outcome": "failure", "recovery_timeout": 60},
        s.release_probe("b", won.token, "failure", recovery_timeout=60, op_id=i))
    i = oid()
    rec("force_open", {"op_id": i, "open_for_seconds": 10}, s.force_open("b", 10, op_id=i))
    i = oid()
    rec("reset", {"op_id": i}, s.reset("b", op_id=i))
    state = model.init()
    for f, inp, observed in hist:
        state, expected = model.apply(state, f, inp)
        assert model.output_matches(expected, observed), (f, expected, observed)
    # and a mutated observation is rejected
    assert not model.output_matches(expected, {**observed, "prev_state": "half_open"})


@pytest.mark.parametrize("fault", ["latency", "reset_peer", "down"])
@pytest.mark.parametrize("op", ["gate", "record_failure", "release_probe"])
def test_fault_during_atomic_op_never_corrupts(op: str, fault: str, cbchaos_redis: redis.Redis,
                                               cbchaos_redis_proxy: Any, cbchaos_faults: Any,
                                               cbchaos_redis_admin: redis.Redis) -> None:
    s = _store(cbchaos_redis, io_resends=1)
    s.force_open("b", 0)
    claim = s.try_transition_and_claim_probe("b") if op == "release_probe" else None
    run = {"gate": lambda: s.try_transition_and_claim_probe("b"),
           "record_failure": lambda: s.atomic_record_failure("b", 3, 60),
           "release_probe": lambda: s.release_probe("b", claim.token, "success", recovery_timeout=60)}[op]
    inject = {"latency": lambda: cbchaos_faults.latency(cbchaos_redis_proxy, ms=100, jitter=50),
              "reset_peer": lambda: cbchaos_faults.reset_peer(cbchaos_redis_proxy, timeout=0),
              "down": lambda: cbchaos_faults.down(cbchaos_redis_proxy)}[fault]
    outcome: Any
    with inject():
        try:
            outcome = run()
        except StoreUnavailableError as exc:  # a clear error naming the op and backend
            assert "'b'" in str(exc)
            outcome = exc
    if fault == "latency":
        assert not isinstance(outcome, Exception)
    raw = cbchaos_redis_admin.hgetall(s.key("b"))
    st = s.get_state("b")
    assert st["_corrupt"] == [] and raw  # never a corrupt or missing record
    # applied or not applied, never anything in between
    expected_states = {"gate": {"open", "half_open"}, "record_failure": {"open"}, "release_probe": {"half_open", "closed"}}
    assert st["state"] in expected_states[op]
    if not isinstance(outcome, Exception):
        reply = outcome.record if hasattr(outcome, "record") else outcome
        assert reply["state"] == st["state"]
