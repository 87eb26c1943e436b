"""``RedisStore``'s hot ops do what its general path does (docs/breaker-design.md#hot-path), on a real redis-server.

Two worlds (scripted clock, client time, seeded resend jitter, same op-id prefix) run the same generated program:
a breaker on an exact ``RedisStore`` (hot ops) and one on a ``RedisStore`` subclass (general path only). After
every op the answers, events, metrics, stored hash, TTL, record-loss state, op-id counter and store stats must
be equal. Programs cover calls that succeed or fail, records of every state (corrupt, lost, holding the next op
ids), SCRIPT FLUSH (NOSCRIPT on the next EVALSHA), and connection resets injected into a chosen EVALSHA, before
it is sent or after the server ran it (the reply lost). Weakened hot ops are caught by fixed programs. Three
threads under resets and a SCRIPT FLUSH leave a history linearizable for the breaker-store model.
"""

from __future__ import annotations

import random
import time
import uuid
from typing import Any

import pytest
import redis
from hypothesis import given, strategies as st

from pytest_cbchaos.breaker import (BreakerConfig, CircuitBreaker, RedisStore, StoreError, StoreIndeterminateError,
                                    StoreUnavailableError)
from pytest_cbchaos.breaker import model as bmodel
from pytest_cbchaos.breaker.record import DEFAULT, STATES, encode
from pytest_cbchaos.breaker.redis_hot import RedisHotOps
from pytest_cbchaos.breaker.redis_store import _SCRIPTS
from pytest_cbchaos.breaker.store import ClaimResult
from pytest_cbchaos.faults.clock import ManualClock
from pytest_cbchaos.history import Recorder as History
from pytest_cbchaos.linearizability import check, get_model
from pytest_cbchaos.servers.redis import no_retry
from pytest_cbchaos.testing.threads import run_together

import record_strategies
from test_hot_path import Recorder, _fn, answer

pytestmark = pytest.mark.requires_real_redis

T0 = 1_795_000_000.0
PREFIX = "0123456789abcdef"
PREFIX2 = "fedcba9876543210"  # a renewed op-id prefix, as a forked child's
OTHER = ["e" * 32, "f" * 32]


class GeneralStore(RedisStore):
    """The reference: a subclass, so ``hot_ops`` declines and every op takes the general path."""


class FaultConnection(redis.Connection):
    """Resets the connection at a chosen EVALSHA: ``arm`` holds one entry per coming EVALSHA (None: no fault,
    "before": reset before sending, "lost": the server runs it, then the reply is lost)."""

    arm: list[str | None] = []

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        self._lose = False
        # the hot ops' pre-packed EVALSHA and execute_command's alike
        if type(self).arm and b"\r\nEVALSHA\r\n" in bytes(command[0][:32]).upper():
            if self._sock is None:  # connect first: the handshake's own sends would clear ``_lose``
                self.connect()
            try:
                fault = type(self).arm.pop(0)  # one atomic step: threads share ``arm``
            except IndexError:  # another thread took the last entry since the check
                fault = None
            if fault == "before":
                self.disconnect()
                raise redis.ConnectionError("Connection reset by peer (injected before EVALSHA)")
            self._lose = fault == "lost"
        super().send_packed_command(command, check_health)

    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        r = super().read_response(*args, **kwargs)
        if getattr(self, "_lose", False):
            self._lose = False
            self.disconnect()
            raise redis.ConnectionError("Connection reset by peer (injected after EVALSHA ran)")
        return r


class World:
    def __init__(self, server: Any, store_cls: type[RedisStore], hot_cls: type[RedisHotOps] | None = None) -> None:
        self.conn = type("Conn", (FaultConnection,), {"arm": []})
        pool = redis.ConnectionPool(connection_class=self.conn, host=server.host, port=server.port,
                                    password=server.password, socket_timeout=5.0, retry=no_retry())
        self.client = redis.Redis(connection_pool=pool)
        self.clock = ManualClock(T0)
        self.store = store_cls(self.client, key_prefix=f"hot-{uuid.uuid4().hex[:8]}", time_source="client",
                               clock=self.clock)
        self.store._rng = random.Random(7)
        self.store._ids._prefix = PREFIX
        self.rec = Recorder()
        cfg = BreakerConfig(failure_threshold=2, cooldown_s=10, probe_heartbeat=False)
        self.cb = CircuitBreaker("b", cfg, store=self.store, clock=self.clock, listeners=[self.rec], metrics=self.rec)
        if hot_cls is not None:
            self.cb._hot = hot_cls(self.store)
        self.cb._op_ids = self.store._ids  # the general world's gate draws from the store: same id sequence
        self.key = self.store.key("b")
        self.load_scripts()

    def load_scripts(self) -> None:
        """Every script loaded: each world starts an op in the same script cache."""
        for text, _ in _SCRIPTS.values():
            self.client.script_load(text)

    def next_counter(self) -> int:
        return int(repr(self.store._ids.counter)[6:-1])

    def close(self) -> None:
        self.client.delete(self.key)
        self.client.close()


@pytest.fixture
def world(cbchaos_redis_proc: Any) -> Any:
    """A hot-ops breaker over a plain ``RedisStore`` on the session's server, its key deleted after."""
    w = World(cbchaos_redis_proc, RedisStore)
    yield w
    w.close()


def _apply(w: World, op: tuple[Any, ...]) -> Any:
    kind = op[0]
    if kind == "call":
        return w.cb.call(_fn(w, op[1], None), "r", y=1)
    if kind == "raw":
        w.client.hset(w.key, mapping={**encode(op[1]), **op[2]})
        return w.client.expire(w.key, 100)
    if kind == "raw_next_ids":  # recent_ops holding the ids the store draws next (duplicates)
        n = w.next_counter()
        ops = tuple((f"{PREFIX}{n + i:016x}", a, b) for i, (a, b) in enumerate(op[1]))
        return w.client.hset(w.key, mapping=encode(DEFAULT.replace(recent_ops=ops)))
    if kind == "clear":
        return w.client.delete(w.key)
    if kind == "advance":
        return w.clock.advance(op[1])
    if kind == "flush":  # a call meeting NOSCRIPT (in each world alike), then every script loaded again
        w.client.script_flush()
        try:
            return w.cb.call(_fn(w, op[1], None), "r", y=1)
        finally:
            w.load_scripts()
    if kind == "renew":
        w.store._ids._prefix = PREFIX2
        return None
    if kind == "store_event":  # as a scripting fallback logs it; the next op's reply forwards it
        return w.store._store_event("scripting_fallback", "injected")
    if kind == "fault":
        w.conn.arm[:] = [None] * op[2] + [op[1]] * op[3]
        return None
    raise AssertionError(kind)


def _observe(w: World, op: tuple[Any, ...]) -> tuple[Any, ...]:
    out = answer(lambda: _apply(w, op))
    if out[0] == "raised":  # the worlds' keys differ
        out = (*out[:2], out[2].replace(w.store.key_prefix, "P"))
    events, w.rec.log = w.rec.log, []
    stored = {k.decode(): v.decode("utf-8", "replace") for k, v in w.client.hgetall(w.key).items()}
    ttl = w.client.ttl(w.key)
    return (out, events, stored, ttl, w.cb._hw_gen, w.cb._hw_hist, w.next_counter(),
            dict(w.store.stats), w.store.using_fallback)


def _same_ttl(a: int, b: int) -> bool:
    """Equal TTLs read a few ms apart: the same, or one second less across a second boundary."""
    return a == b or (min(a, b) >= 0 and abs(a - b) <= 1)


def first_mismatch(server: Any, program: list[tuple[Any, ...]], hot_cls: type[RedisHotOps] = RedisHotOps) -> str | None:
    """Run ``program`` on a hot-ops world and on the general-path world; describe the first difference."""
    hot, ref = World(server, RedisStore, hot_cls), World(server, GeneralStore)
    try:
        assert isinstance(hot.cb._hot, hot_cls) and ref.cb._hot is None
        for i, op in enumerate(program):
            got, want = _observe(hot, op), _observe(ref, op)
            if got[:3] + got[4:] != want[:3] + want[4:] or not _same_ttl(got[3], want[3]):
                return f"op {i} {op!r}:\n  hot ops  {got!r}\n  general  {want!r}"
        return None
    finally:
        hot.close()
        ref.close()


pairs = st.tuples(st.sampled_from(STATES), st.sampled_from(STATES))
records = record_strategies.records(T0, 30, OTHER, counts=[0, 0, 1, 3], generation=4, token_gen=2, max_ops=2)
corrupt = record_strategies.corrupt_fields(["failure_count", "state", "probe_generation", "recent_ops"],
                                           ["abc", "-1", "zz=open>closed"], 1)
ops = st.one_of(
    st.tuples(st.just("call"), st.sampled_from(["ok", "ok", "ok", "counted", "uncounted", "stop"])),
    st.tuples(st.just("raw"), records, corrupt),
    st.tuples(st.just("raw_next_ids"), st.lists(pairs, min_size=1, max_size=2)),
    st.tuples(st.just("clear")),
    st.tuples(st.just("advance"), st.sampled_from([0.5, 3.0, 11.0])),
    st.tuples(st.just("flush"), st.sampled_from(["ok", "counted"])),
    st.tuples(st.just("fault"), st.sampled_from(["before", "lost"]), st.integers(0, 1), st.integers(1, 3)),
)


@given(program=st.lists(ops, min_size=1, max_size=20))
def test_hot_ops_equal_general_path_over_programs(cbchaos_redis_proc: Any, program: list[tuple[Any, ...]]) -> None:
    assert first_mismatch(cbchaos_redis_proc, program) is None


OK = ("call", "ok")
LOST_SUCCESS = [("call", "counted"), ("fault", "lost", 1, 1), OK]  # the success that clears the count: reply lost
PROGRAMS = {  # each hand-over case, deterministic
    "gate_store_error": [("fault", "before", 0, 3), OK],
    "success_store_error": [("call", "counted"), ("fault", "before", 1, 6), OK],
    "success_lost_reply": LOST_SUCCESS,
    "gate_lost_reply_open": [("call", "counted"), ("call", "counted"), ("advance", 11.0), ("fault", "lost", 0, 1), OK],
    "noscript": [("call", "counted"), ("flush", "ok"), ("flush", "counted"), OK],
    "duplicate": [("raw_next_ids", [("closed", "closed"), ("closed", "open")]), OK],
    "corrupt": [("raw", DEFAULT, {"failure_count": "abc"}), OK, OK],
    "record_missing": [("call", "counted"), OK, ("clear",), OK],
    "store_event": [OK, ("store_event",), OK],
    "renewed_prefix": [OK, ("renew",), ("call", "counted"), OK],
    # history seen first on a brief no-op (generation 0: only recent_ops shows it), then the record lost
    "history_on_brief_no_op": [("raw", DEFAULT.replace(recent_ops=((OTHER[0], "closed", "open"),)), {}), OK,
                               ("clear",), OK],
}


@pytest.mark.parametrize("name", list(PROGRAMS))
def test_hot_ops_equal_general_path_on_hand_over_programs(cbchaos_redis_proc: Any, name: str) -> None:
    assert first_mismatch(cbchaos_redis_proc, PROGRAMS[name]) is None


def test_lost_reply_is_resent_with_the_same_op_id_and_applied_once(world: World) -> None:
    w = world
    assert isinstance(w.cb._hot, RedisHotOps)
    for op in LOST_SUCCESS:
        _observe(w, op)
    stored = w.client.hgetall(w.key)
    entries = stored[b"recent_ops"].decode().split()
    assert stored[b"failure_count"] == b"0" and len(entries) == len({e.split("=")[0] for e in entries}) == 2
    assert w.store.stats["evalsha"] == 5 and w.conn.arm == []  # 2 gates, failure, success sent twice


def test_noscript_after_script_flush_is_loaded_and_resent(world: World) -> None:
    w = world
    _observe(w, OK)
    before = w.store.stats["script_load"]
    assert _observe(w, ("flush", "ok"))[0] == ("ok", ("r", 1))
    assert w.store.stats["script_load"] == before + 2  # gate and success scripts reloaded


def test_hot_ops_take_the_no_op_replies(world: World) -> None:
    """The equivalence above compares something: no-ops come back as views, one view per unchanged record."""
    w = world
    _observe(w, OK)
    hot = w.cb._hot
    assert isinstance(hot, RedisHotOps)
    a, b = hot.hot_gate("b", next(w.store._ids.counter), 30.0), hot.hot_success("b", next(w.store._ids.counter))
    assert a.__class__ is tuple and b.__class__ is tuple and a[0] is b[0] and w.cb._noted is a[0]


def test_hot_no_op_replies_are_brief(world: World) -> None:
    """On a record with history a hot no-op's reply carries the entry count, not the entries; the general path's
    reply of the same op carries them all."""
    w = world
    ops = tuple((f"{i:032x}", "closed", "open") for i in range(16))
    w.client.hset(w.key, mapping=encode(DEFAULT.replace(recent_ops=ops)))
    hot = w.cb._hot
    assert isinstance(hot, RedisHotOps)
    for r in (hot.hot_gate("b", next(w.store._ids.counter), 30.0), hot.hot_success("b", next(w.store._ids.counter))):
        assert r.__class__ is tuple and r[0][0].endswith(b"|~16")
        d = hot.noop_reply(*r)
        assert "recent_ops" not in d and d["_recent_ops_omitted"] == 16
    assert w.store.atomic_record_success("b")["recent_ops"] == encode(DEFAULT.replace(recent_ops=ops))["recent_ops"]


@pytest.mark.parametrize("marker", [b"~0", b"~17", b"~", b"~1x", b"~016"])
def test_a_brief_marker_the_fast_path_cannot_send_is_malformed(world: World, marker: bytes) -> None:
    """Not taken for entries (the general path's parser would keep it as the ``recent_ops`` string)."""
    hot = world.cb._hot
    assert isinstance(hot, RedisHotOps)
    good = b"closed|0|0|0|False||0|0|0|~16|closed|closed|0|1795000000|||0|0||"
    assert hot.noop_reply(*hot._noop("b", good))["_recent_ops_omitted"] == 16
    with pytest.raises(StoreError, match="malformed"):
        hot._noop("b", good.replace(b"~16", marker))


def test_declining_stores_get_the_general_path(cbchaos_redis: redis.Redis) -> None:
    assert RedisStore(cbchaos_redis, before_command=lambda op, attempt: None).hot_ops() is None
    assert RedisStore(cbchaos_redis, wait_replicas=1).hot_ops() is None
    assert GeneralStore(cbchaos_redis).hot_ops() is None
    assert isinstance(RedisStore(cbchaos_redis).hot_ops(), RedisHotOps)


# ---- weakened hot ops, each caught by a fixed program ----------------------------------------------

class CorruptBlind(RedisHotOps):
    """Takes any closed-to-closed unapplied reply for the plain no-op (corrupt fields, duplicates ignored)."""

    def _noop(self, backend: str, raw: Any) -> Any:
        rec, meta, rest = raw.rpartition(b"|closed|closed|0|")
        return super()._noop(backend, rec + meta + rest.split(b"|")[0] + b"|||0|0||") if meta else None


class StaleView(RedisHotOps):
    """Keeps the first view of a backend forever (a changed record noted as the old one)."""

    def _noop(self, backend: str, raw: Any) -> Any:
        old = self._views.get(backend)
        r = super()._noop(backend, raw)
        if r is not None and old is not None:
            self._views[backend] = old
            return old, r[1]
        return r


class Unhanded(RedisHotOps):
    """Lets an exception of its EVALSHA through instead of handing it to the general path."""

    def _general(self, op: str, backend: str, n: int, args: list[Any], post: Any, cnow: Any, first: Any) -> Any:
        if first is not None:
            raise first
        return super()._general(op, backend, n, args, post, cnow, first)


class FreshId(RedisHotOps):
    """Hands a failed EVALSHA over under a new op id (its resend is no longer deduplicated)."""

    def _general(self, op: str, backend: str, n: int, args: list[Any], post: Any, cnow: Any, first: Any) -> Any:
        return super()._general(op, backend, next(self.op_ids.counter) if first else n, args, post, cnow, None)


class Resent(RedisHotOps):
    """Hands a failed EVALSHA over as a fresh op (the general path's resend budget starts again)."""

    def _general(self, op: str, backend: str, n: int, args: list[Any], post: Any, cnow: Any, first: Any) -> Any:
        return super()._general(op, backend, n, args, post, cnow, None)


class StalePrefix(RedisHotOps):
    """Keeps a backend's packed command after the op-id prefix was renewed (a forked child sends its parent's ids)."""

    def _prebuilt(self, op: str, backend: str, args: list[Any]) -> Any:
        return self.__dict__.setdefault("_first", {}).setdefault((op, backend), super()._prebuilt(op, backend, args))


class OmittedBlind(RedisHotOps):
    """Takes a brief no-op reply's left-out ``recent_ops`` for none (history shown only there is missed)."""

    def _template(self, rec: bytes) -> Any:
        d = super()._template(rec)
        if d is not None and d.pop("_recent_ops_omitted", None):
            d["recent_ops"] = ""
        return d


MUTANTS = {
    CorruptBlind: [("raw", DEFAULT, {"probe_generation": "abc"}), OK],
    StaleView: [OK, ("call", "counted"), OK],
    Unhanded: [("fault", "before", 0, 1), OK],
    FreshId: [("fault", "lost", 0, 1), OK],
    Resent: [("fault", "lost", 0, 3), OK],
    StalePrefix: PROGRAMS["renewed_prefix"],
    OmittedBlind: PROGRAMS["history_on_brief_no_op"],
}


@pytest.mark.parametrize("mutant", list(MUTANTS), ids=lambda m: m.__name__)
def test_weakened_hot_ops_are_caught(cbchaos_redis_proc: Any, mutant: type[RedisHotOps]) -> None:
    assert first_mismatch(cbchaos_redis_proc, MUTANTS[mutant]) is None  # the program passes the real hot ops
    assert first_mismatch(cbchaos_redis_proc, MUTANTS[mutant], mutant) is not None


# ---- linearizable under faults, concurrently --------------------------------------------------------------

class GuessOnError(RedisHotOps):
    """Answers a failed EVALSHA from the backend's last view (a no-op on the record last seen)."""

    def _general(self, op: str, backend: str, n: int, args: list[Any], post: Any, cnow: Any, first: Any) -> Any:
        v = self._views.get(backend)
        if first is not None and v is not None:
            return v, time.time()
        return super()._general(op, backend, n, args, post, cnow, first)


def _linearizable_run(server: Any, hot_cls: type[RedisHotOps], threads: int) -> tuple[bool, str, list[str]]:
    """``threads`` workers on one backend run hot gates and successes on the CLOSED record, then general-path
    failures (threshold 2), then gates and successes on the OPEN record, while resets hit every third EVALSHA
    (before it is sent or after it ran), every gate on the OPEN record loses its reply and worker 0 flushes the
    scripts once mid-run. Answers (history linearizable for breaker-store, its summary, the stored op ids)."""
    w = World(server, RedisStore)
    w.store.time_source = "server"  # what the bench and most users run (read when a backend's arguments are built)
    store, hot, hist = w.store, hot_cls(w.store), History(threads)
    faults = ["lost", None, None, "before", None, None] * 8
    w.conn.arm[:] = faults

    def work(p: int) -> None:
        for i in range(12):
            if p == 0 and i == 6:
                w.client.script_flush()
            f = "record_failure" if i in (6, 7) else "gate" if i % 2 == 0 else "record_success"
            if f == "gate" and i >= 8:
                w.conn.arm.insert(0, "lost")  # a gate on the OPEN record loses its reply
            n = next(store._ids.counter)
            oid = store._ids.format(n)
            inp: dict[str, Any] = {"op_id": oid, "now_min": 0.0}
            inp.update({"gate": {"lease_seconds": 30.0}, "record_success": {"expected_state": None},
                        "record_failure": {"failure_threshold": 2, "recovery_timeout": 60.0}}[f])
            h = hist.invoke(p, f, inp, key="b")
            try:
                if f == "gate":
                    r: Any = hot.hot_gate("b", n, 30.0)
                    r = ClaimResult(False, hot.noop_reply(*r), "") if r.__class__ is tuple else r
                elif f == "record_success":
                    r = hot.hot_success("b", n)
                    r = hot.noop_reply(*r) if r.__class__ is tuple else r
                else:
                    r = store.atomic_record_failure("b", 2, 60.0, op_id=oid)
            except (StoreIndeterminateError, redis.RedisError) as exc:  # may have run (a StoreUnavailableError too)
                h.info((type(exc).__name__, str(exc)))
                continue
            except StoreUnavailableError as exc:  # raised only when no attempt can have reached the server
                h.fail(("unavailable", str(exc)))
                continue
            out = bmodel.output_from_reply(f, r)
            out["now"] = (r.record if hasattr(r, "record") else r)["_now"]
            h.ok(out)

    try:
        # a worker that dies or hangs fails the run, never shortens its history
        run_together([lambda p=p: work(p) for p in range(threads)], 60)
        assert len(w.conn.arm) <= len(faults) - 10 and store.stats["script_load"] >= 1  # faults applied
        assert w.client.hget(w.key, "state") == b"open"
        result = check(hist.history(), get_model("breaker-store"), timeout=20)
        stored = w.client.hget(w.key, "recent_ops") or b""
        return result.ok, result.summary(), [e.split("=")[0] for e in stored.decode().split()]
    finally:
        w.close()


def test_hot_ops_under_resets_and_noscript_are_linearizable(cbchaos_redis_proc: Any) -> None:
    ok, summary, ops = _linearizable_run(cbchaos_redis_proc, RedisHotOps, 3)
    assert ok, summary
    assert len(ops) == len(set(ops))  # each op id applied at most once


def test_hot_ops_answering_errors_from_the_cache_are_not_linearizable(cbchaos_redis_proc: Any) -> None:
    assert _linearizable_run(cbchaos_redis_proc, RedisHotOps, 1)[0]  # the same sequential run passes
    assert not _linearizable_run(cbchaos_redis_proc, GuessOnError, 1)[0]
