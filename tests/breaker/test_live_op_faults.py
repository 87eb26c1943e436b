"""docs/breaker-design.md#faults-inside-one-op: proxy faults inside one chosen atomic op, armed exactly before it with
``before_command``.

Ops renew_probe, release_probe, force_open and reset (gate and the outcomes under latency/reset/down
are in test_redis_store.py; the blackholes below cover them too), against real redis-server through
the kit proxy: RedisStore with Lua, the WATCH/MULTI fallback (``scripting="disabled"``) and
AsyncRedisStore. Each fault is either *transient* (armed before attempt 0, healed before the store's
first resend) or *persistent* (kept for every resend, healed afterwards, then the op resent with the
same op id). Checked for every case:

* a clear error or the correct result; ``StoreIndeterminateError`` only after all ``io_resends``;
* the record is never corrupt (canonical encoding, every field, a TTL);
* an applied op, resent, is counted once: exactly one ``recent_ops`` entry for the whole op;
* exactly one transition event (through the breaker) per applied change, none without a reply;
* the recorded history (``info`` for indeterminate ops) is linearizable (model ``breaker-store``).

The harness is shared with test_live_sigstop.py (docs/breaker-design.md#indeterminate-outcomes), which adds Redis
SIGSTOP as a fault kind.
"""

from __future__ import annotations

import asyncio
import inspect
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

import pytest
import redis
import redis.asyncio as aredis
from redis.backoff import NoBackoff

from pytest_cbchaos.breaker import (AsyncCircuitBreaker, AsyncRedisStore, BreakerConfig, CircuitBreaker,
                                    CircuitBreakerOpenError, RedisStore, StoreIndeterminateError,
                                    StoreUnavailableError)
from pytest_cbchaos.breaker import model as bmodel
from pytest_cbchaos.breaker.record import FIELDS, decode, encode
from pytest_cbchaos.breaker.redis_store import _SCRIPTS
from pytest_cbchaos.testing.store_paths import REAL_REDIS
from pytest_cbchaos.history import Recorder
from pytest_cbchaos.linearizability import check, get_model
from pytest_cbchaos.servers.redis import no_retry
from pytest_cbchaos.testing.breaker_mutants import FreshOpIdResendRedisStore, NoResendRedisStore

pytestmark = pytest.mark.requires_real_redis

SOCKET_TIMEOUT = 0.25  # the bound of an attempt a fault is armed for: what each blackholed attempt costs
HEALTHY_TIMEOUT = 10.0  # every other request is waited for, not timed: a socket read returns as soon as the reply is in
WARM_WITHIN_S = 10.0  # bound of connecting the short-bound client before the fault (its pings retried meanwhile)
IO_RESENDS = 1
THRESHOLD = 3
LEASE = 60.0
OPEN_FOR = 600.0
BACKEND = "b"
STORE_METHOD = {"gate": "try_transition_and_claim_probe", "record_failure": "atomic_record_failure",
                "record_success": "atomic_record_success", "release_probe": "release_probe",
                "renew_probe": "renew_probe", "force_open": "force_open", "reset": "reset"}
HISTORY_F = {v: k for k, v in STORE_METHOD.items()}
# the transition each op makes from its set-up state (None: none; renew/record_success change no state)
TRANSITION = {"gate": ("open", "half_open"), "record_failure": ("closed", "open"), "record_success": None,
              "release_probe": ("half_open", "closed"), "renew_probe": None, "force_open": ("closed", "open"),
              "reset": ("open", "closed")}
APPLIED_THEN_LOST = {"reset_after", "blackhole_down", "sigstop"}  # Lua: the request ran, its reply was lost
LOST_BEFORE = {"reset_before", "blackhole_up"}  # the first request never reached Redis
FINAL_STATE = {"gate": "half_open", "record_failure": "open", "record_success": "closed",
               "release_probe": "closed", "renew_probe": "half_open", "force_open": "open", "reset": "closed"}


async def aw(x: Any) -> Any:
    """Await ``x`` if it is awaitable: one driver for the sync and the async store."""
    return await x if inspect.isawaitable(x) else x


# ---- fault kinds -----------------------------------------------------------------------------------------------

def fault_kinds(faults: Any, proxy: Any, proc: Any) -> dict[str, Callable[[], Any]]:
    """name → arm() returning a healable fault (all journaled and healed at teardown by cbchaos_faults)."""
    return {
        "latency_jitter": lambda: faults.latency(proxy, ms=120, jitter=60),
        "reset_before": lambda: faults.reset_peer(proxy, timeout=0, stream="upstream"),  # request never arrives
        "reset_after": lambda: faults.reset_peer(proxy, timeout=0, stream="downstream"),  # applied, then RST
        "blackhole_up": lambda: faults.partition(proxy, "upstream"),  # request lost
        "blackhole_down": lambda: faults.partition(proxy, "downstream"),  # applied, reply lost
        "proxy_down": lambda: faults.down(proxy),  # disabled (live links closed), re-enabled on heal
        "sigstop": lambda: faults.process(proc).pause(),  # Redis frozen longer than the socket timeout
    }


class Links:
    """The store's clients through the proxy: ``short`` (``SOCKET_TIMEOUT``) for the attempts a fault is armed
    for, where the fault, not the box's speed, decides that the reply does not come in time; a patient one
    (``HEALTHY_TIMEOUT``) for every fault-free request (set-up, a transient fault's healed resend, the resend
    after the heal), so a slow box makes a healthy request slower, never a timeout."""

    def __init__(self, short: Any, make_patient: Callable[[], Any]) -> None:
        self.short, self._make = short, make_patient
        self.clients: list[Any] = [short]  # every client made, closed by the case
        self.patient = self._fresh()
        self.store: Any = None

    def _fresh(self) -> Any:
        client = self._make()
        self.clients.append(client)
        return client

    def use(self, short: bool) -> None:
        """Point the store at one client: it reads ``store.client`` afresh for each attempt (the hook runs first).
        Back from the short one, a new patient client: a heal may close every link the proxy carried (a timeout
        partition's does), and a pooled connection closed under it would fail the healed resend."""
        if short:
            self.store.client = self.short
        elif self.store.client is self.short:
            self.patient = self._fresh()
            self.store.client = self.patient


class Arm:
    """The store's ``before_command`` hook: arms the fault before the chosen op's first attempt and, when
    transient, heals it before the next attempt of that op. Logs every (op, attempt) it sees. With ``links``
    the attempts made while the fault is armed use the short-bound client, all others the patient one."""

    def __init__(self, arm: Callable[[], Any], op: str, transient: bool) -> None:
        self.arm, self.op, self.transient = arm, op, transient
        self.enabled = False
        self.fault: Any = None
        self.calls: list[tuple[str, int]] = []
        self.links: Links | None = None

    def __call__(self, op: str, attempt: int) -> None:
        self.calls.append((op, attempt))
        if not self.enabled or op != self.op:
            return
        if self.fault is None:
            self.fault = self.arm()
            self._use(short=True)
        elif self.transient:
            self.heal()

    def heal(self) -> None:
        self.enabled = False
        if self.fault is not None:
            self.fault.heal()
        self._use(short=False)

    def _use(self, short: bool) -> None:
        if self.links is not None:
            self.links.use(short)


# ---- history recording store wrapper ----------------------------------------------------------------------------

class RecordedStore:
    """Records every mutating store call as a history op (ok / info on indeterminate / fail when nothing was
    sent) for the breaker-store model, gives every call an explicit op id, and checks that an
    indeterminate error comes only after all resends."""

    def __init__(self, store: Any, rec: Recorder, hook: Arm, io_resends: int) -> None:
        self.store, self.rec, self.hook, self.io_resends = store, rec, hook, io_resends
        self.is_async = bool(getattr(store, "is_async", False))
        self.op_ids: list[tuple[str, str]] = []  # (history f, op id) in call order
        self.replies: list[tuple[str, Any]] = []  # (op id, reply) of every call that returned
        self.errors: list[BaseException] = []  # every exception a call raised
        self.violations: list[str] = []

    def __getattr__(self, name: str) -> Any:
        fn = getattr(self.store, name)
        f = HISTORY_F.get(name)
        if f is None:
            return fn
        if self.is_async:
            async def acall(*a: Any, **kw: Any) -> Any:
                h, kw, mark = self._begin(name, f, a, kw)
                try:
                    r = await fn(*a, **kw)
                except BaseException as exc:
                    self._failed(h, f, exc, mark)
                    raise
                return self._ok(h, f, r)
            return acall

        def call(*a: Any, **kw: Any) -> Any:
            h, kw, mark = self._begin(name, f, a, kw)
            try:
                r = fn(*a, **kw)
            except BaseException as exc:
                self._failed(h, f, exc, mark)
                raise
            return self._ok(h, f, r)
        return call

    def _begin(self, name: str, f: str, a: tuple, kw: dict) -> tuple[Any, dict, int]:
        args = inspect.signature(getattr(RedisStore, name)).bind(None, *a, **kw).arguments
        kw = dict(kw)
        op_id = args.get("op_id") or uuid.uuid4().hex
        kw["op_id"] = op_id
        default_lease = self.store.probe_lease_seconds
        inp: dict[str, Any] = {
            "gate": lambda: {"lease_seconds": args.get("lease_seconds") or default_lease},
            "record_failure": lambda: {"failure_threshold": args["failure_threshold"],
                                       "recovery_timeout": args["recovery_timeout"]},
            "record_success": lambda: {"expected_state": args.get("expected_state")},
            "release_probe": lambda: {"token": args["probe_token"], "outcome": args["outcome"],
                                      "recovery_timeout": args["recovery_timeout"]},
            "renew_probe": lambda: {"token": args["probe_token"], "lease_seconds": args.get("lease_seconds")
                                    or default_lease},
            "force_open": lambda: {"open_for_seconds": args["open_for_seconds"]},
            "reset": lambda: {},
        }[f]()
        self.op_ids.append((f, op_id))
        h = self.rec.invoke(0, f, {"op_id": op_id, **inp, "now_min": time.time()}, key=BACKEND)
        return h, kw, len(self.hook.calls)

    def _ok(self, h: Any, f: str, r: Any) -> Any:
        self.replies.append((self.op_ids[-1][1], r))
        out = bmodel.output_from_reply(f, r)
        d = r.record if hasattr(r, "record") else r
        if isinstance(d, dict):
            out["now"] = d["_now"]
        h.ok(out)
        return r

    def _failed(self, h: Any, f: str, exc: BaseException, mark: int) -> None:
        self.errors.append(exc)
        if isinstance(exc, StoreIndeterminateError):
            seen = [a for op, a in self.hook.calls[mark:] if op == f]
            if seen != list(range(self.io_resends + 1)):
                self.violations.append(f"{f}: StoreIndeterminateError after attempts {seen}, "
                                       f"not after all {self.io_resends + 1}")
            h.info(("indeterminate", str(exc)))
        elif isinstance(exc, StoreUnavailableError):
            h.fail(("unavailable", str(exc)))  # raised only when no attempt can have reached the server
        else:
            h.info((type(exc).__name__, str(exc)))


class Events:
    def __init__(self) -> None:
        self.transitions: list[tuple[str, str, str]] = []
        self.store: list[tuple[str, str]] = []

    def on_transition(self, ev: Any) -> None:
        self.transitions.append((ev.op, ev.prev_state, ev.state))

    def on_store_event(self, ev: Any) -> None:
        self.store.append((ev.kind, ev.detail))


# ---- one case ---------------------------------------------------------------------------------------------------

@dataclass
class Env:
    proxy: Any
    proc: Any
    admin: redis.Redis
    faults: Any


@dataclass
class CaseResult:
    violations: list[str] = field(default_factory=list)
    outcome: Any = None


def _clients(env: Env, is_async: bool, timeout: float) -> Any:
    """A client through the proxy that never retries on its own (the store's resends are under test)."""
    kw = dict(host=env.proxy.listen_host, port=env.proxy.listen_port, password=env.proc.password,
              socket_timeout=timeout, socket_connect_timeout=timeout)
    if is_async:
        return aredis.Redis(retry=aredis.retry.Retry(NoBackoff(), 0), **kw)
    return redis.Redis(retry=no_retry(), **kw)


async def _warm(client: Any) -> None:
    """Connect and authenticate ``client`` (the short-bound one) before the fault, so the fault hits the op's own
    request/reply. Fault-free, so not timed: a ping the box made slower than the short bound is sent again."""
    deadline = time.monotonic() + WARM_WITHIN_S
    while True:
        try:
            await aw(client.ping())
            return
        except (redis.TimeoutError, redis.ConnectionError):
            if time.monotonic() > deadline:
                raise


def _record_violations(env: Env, key: str) -> list[str]:
    raw = {k.decode(): v.decode("utf-8", "replace") for k, v in env.admin.hgetall(key).items()}
    rec, corrupt = decode(raw)
    v = []
    if corrupt:
        v.append(f"corrupt fields after the fault: {corrupt} in {raw}")
    canon = encode(rec)
    bad = {k: (raw.get(k), canon[k]) for k in FIELDS if raw.get(k) != canon[k]}
    if bad:
        v.append(f"record not canonical / fields missing: {bad}")
    if env.admin.ttl(key) < 1:
        v.append(f"key without a TTL: {env.admin.ttl(key)}")
    return v


def _ops_entries(env: Env, key: str) -> list[str]:
    raw = env.admin.hget(key, "recent_ops")
    return raw.decode().split() if raw else []


async def run_case(env: Env, mode: str, op: str, fault: str, shape: str,
                   store_cls: type | None = None) -> CaseResult:
    """Set the record up for ``op``, run it once with ``fault`` armed before it, heal, check."""
    res = CaseResult()
    is_async = mode.startswith("async")
    links = Links(_clients(env, is_async, SOCKET_TIMEOUT), lambda: _clients(env, is_async, HEALTHY_TIMEOUT))
    hook = Arm(fault_kinds(env.faults, env.proxy, env.proc)[fault], op, transient=shape == "transient")
    hook.links = links
    cls = store_cls or (AsyncRedisStore if is_async else RedisStore)
    store = links.store = cls(links.patient, key_prefix=f"of{uuid.uuid4().hex[:8]}", io_resends=IO_RESENDS,
                              probe_lease_seconds=LEASE, before_command=hook,
                              **({"scripting": "disabled"} if mode.endswith("fallback") else {}))
    rec = Recorder(1)
    rs = RecordedStore(store, rec, hook, IO_RESENDS)
    ev = Events()
    cfg = BreakerConfig(failure_threshold=THRESHOLD, cooldown_s=60, probe_lease_seconds=LEASE,
                        probe_heartbeat=False)
    cb = (AsyncCircuitBreaker if is_async else CircuitBreaker)(BACKEND, cfg, store=rs, listeners=[ev])
    key = store.key(BACKEND)
    try:
        # set-up (fault-free, recorded): bring the record into the op's pre-state
        permit = token = None
        if op in ("gate", "renew_probe", "release_probe"):
            await aw(rs.force_open(BACKEND, 0))  # OPEN, cooldown elapsed
            if op == "renew_probe":
                token = (await aw(rs.try_transition_and_claim_probe(BACKEND, None, 60, lease_seconds=LEASE))).token
            elif op == "release_probe":
                permit = await aw(cb.acquire())
                assert permit.probe_token, permit
        elif op in ("record_failure", "record_success"):
            for _ in range(THRESHOLD - 1):
                await aw(rs.atomic_record_failure(BACKEND, THRESHOLD, 60))
            permit = await aw(cb.acquire())
        elif op == "reset":
            await aw(rs.force_open(BACKEND, OPEN_FOR))
        # warm: connected and authenticated, scripts cached, so the fault hits the op's own request/reply
        for text, _ in _SCRIPTS.values():
            env.admin.script_load(text)
        await aw(store.get_state(BACKEND))
        await _warm(links.short)
        before_ops = _ops_entries(env, key)
        n_tr = len(ev.transitions)
        n_ids = len(rs.op_ids)
        hook.enabled = True
        outcome: Any
        try:
            if op == "gate":
                outcome = await aw(cb.acquire())
            elif op == "record_failure":
                outcome = await aw(permit.failure("http_503"))
            elif op in ("record_success", "release_probe"):
                outcome = await aw(permit.success())
            elif op == "renew_probe":
                outcome = await aw(rs.renew_probe(BACKEND, token, lease_seconds=LEASE))
            elif op == "force_open":
                outcome = await aw(cb.force_open("test", OPEN_FOR))
            else:
                outcome = await aw(cb.reset())
        except (StoreUnavailableError, CircuitBreakerOpenError) as exc:
            outcome = exc
        finally:
            hook.heal()
        res.outcome = outcome
        v = res.violations
        target = [oid for f, oid in rs.op_ids[n_ids:] if f == op]
        if not target:
            return _fail(res, f"the {op} op never reached the store")
        op_id = target[0]
        if len(set(target)) != 1:
            v.append(f"the breaker resent {op} under different op ids: {target}")
        errored = isinstance(outcome, Exception) or (outcome is None and op in ("record_failure", "record_success",
                                                                                 "release_probe"))
        events = ev.transitions[n_tr:]
        if isinstance(outcome, CircuitBreakerOpenError):
            v.append(f"{op}: rejected by the circuit ({outcome}) instead of a clear error or the correct result")
        if shape == "transient" and errored:
            v.append(f"{op} under a transient {fault}: {outcome!r} (the store's resend should have succeeded)")
        if errored:
            if events:
                v.append(f"transition events without a reply: {events}")
            if outcome is None and rs.errors:  # an outcome recording swallowed by the breaker: reported once
                want_kind = "indeterminate" if isinstance(rs.errors[-1], StoreIndeterminateError) else "store_error"
                kinds = [k for k, _ in ev.store if k in ("indeterminate", "store_error")]
                if kinds != [want_kind]:
                    v.append(f"the swallowed {op} error ({type(rs.errors[-1]).__name__}) was reported as {kinds}, "
                             f"want exactly [{want_kind!r}] (docs/breaker-design.md#events-listeners-and-metrics)")
            # heal, then resend with the same op id (what a caller does after an indeterminate outcome)
            env.admin.ping()  # answered after any request queued during a SIGSTOP
            reply = await aw(_resend(rs, op, op_id, token or getattr(permit, "probe_token", None)))
        else:
            reply = outcome
            want = TRANSITION[op]
            got = [(p, n) for _, p, n in events]
            if got != ([want] if want else []):
                v.append(f"{op}: transition events {got}, want exactly {[want] if want else []}")
        v.extend(_result_violations(op, reply, token))
        # the fault really hit where it was meant to: after the request was applied, or before it arrived
        last = [r for oid, r in rs.replies if oid == op_id]
        d = last[-1].record if last and hasattr(last[-1], "record") else (last[-1] if last else None)
        if isinstance(d, dict) and not mode.endswith("fallback"):
            if fault in APPLIED_THEN_LOST and not d["_duplicate"]:
                v.append(f"{fault} did not hit after the {op} applied: its resend was not a duplicate")
            if fault in LOST_BEFORE and d["_duplicate"]:
                v.append(f"{fault} did not stop the {op} request: its resend was a duplicate")
        after_ops = _ops_entries(env, key)
        added = after_ops[len(before_ops):] if after_ops[:len(before_ops)] == before_ops else after_ops
        mine = [e for e in after_ops if e.split("=", 1)[0] == op_id]
        if op != "renew_probe" and (len(mine) != 1 or len(added) != 1):
            v.append(f"{op} not counted once: recent_ops gained {added} (op id {op_id[:8]}… {len(mine)}×)")
        state = env.admin.hget(key, "state")
        if state != FINAL_STATE[op].encode():
            v.append(f"{op}: final state {state!r}, want {FINAL_STATE[op]!r}")
        v.extend(_record_violations(env, key))
        v.extend(rs.violations)
        result = check(rec.history(), get_model("breaker-store"), timeout=20)
        if not result.ok:
            v.append(f"history not linearizable: {result.summary()}")
        return res
    finally:
        hook.heal()
        for client in links.clients:
            if is_async:
                await client.aclose()
            else:
                client.close()


def _fail(res: CaseResult, msg: str) -> CaseResult:
    res.violations.append(msg)
    return res


def _resend(rs: RecordedStore, op: str, op_id: str, token: str | None) -> Any:
    b = BACKEND
    return {"gate": lambda: rs.try_transition_and_claim_probe(b, None, 60, lease_seconds=LEASE, op_id=op_id),
            "record_failure": lambda: rs.atomic_record_failure(b, THRESHOLD, 60, op_id=op_id),
            "record_success": lambda: rs.atomic_record_success(b, op_id=op_id),
            "release_probe": lambda: rs.release_probe(b, token, "success", recovery_timeout=60, op_id=op_id),
            "renew_probe": lambda: rs.renew_probe(b, token, lease_seconds=LEASE, op_id=op_id),
            "force_open": lambda: rs.force_open(b, OPEN_FOR, op_id=op_id),
            "reset": lambda: rs.reset(b, op_id=op_id)}[op]()


def _result_violations(op: str, reply: Any, token: str | None) -> list[str]:
    """The op's own (or its same-id resend's) reply is the fault-free one."""
    if op == "renew_probe":
        return [] if reply is True else [f"renew_probe of the current token returned {reply!r}"]
    if op == "gate":
        ok = getattr(reply, "probe_token", None) or getattr(reply, "won", False)
        d = reply.record if hasattr(reply, "record") else None
        if not ok:
            return [f"gate on an elapsed OPEN record did not admit a probe: {reply!r}"]
        if d is not None and (d["_prev_state"], d["_new_state"]) != ("open", "half_open"):
            return [f"resent gate reply {d['_prev_state']}->{d['_new_state']}, want the first one's open->half_open"]
        return []
    if not isinstance(reply, dict):
        return [f"{op}: no reply dict: {reply!r}"]
    pair = (reply["_prev_state"], reply["_new_state"])
    want = TRANSITION[op] or ("closed", "closed")
    v = []
    if pair != want or not (reply["_applied"] or reply["_duplicate"]):
        v.append(f"{op} reply {pair} applied={reply['_applied']} dup={reply['_duplicate']}, want {want} applied once")
    if op == "record_failure" and reply["failure_count"] != THRESHOLD:
        v.append(f"failure_count {reply['failure_count']} after the op, want {THRESHOLD}: a failure counted twice or lost")
    if op == "record_success" and reply["failure_count"] != 0:
        v.append(f"success left failure_count {reply['failure_count']}")
    if op == "force_open" and abs(reply["open_until"] - reply["_now"] - OPEN_FOR) > 1.0 and not reply["_duplicate"]:
        v.append(f"force_open deadline {reply['open_until'] - reply['_now']:.3f} s ahead, want {OPEN_FOR}")
    return v


# ---- tests ------------------------------------------------------------------------------------------------------

OPS = ("renew_probe", "release_probe", "force_open", "reset")
FAULTS = ("reset_before", "reset_after", "blackhole_up", "blackhole_down", "proxy_down")


@pytest.fixture
def env(cbchaos_redis_proxy: Any, cbchaos_redis_proc: Any, cbchaos_redis_admin: redis.Redis,
        cbchaos_faults: Any) -> Env:
    return Env(cbchaos_redis_proxy, cbchaos_redis_proc, cbchaos_redis_admin, cbchaos_faults)


#: mode -> the store path it is (pytest_cbchaos/testing/store_paths.py: the real-Redis paths), plus
#: the async store on Lua; the paths without a network (memory, fakeredis) have no socket to fault
MODES = {"lua": "redis-proxy", "fallback": "redis-proxy-fallback", "async-fallback": "redis-proxy-fallback-async",
         "async": "async Lua"}


def test_modes_cover_every_real_redis_path() -> None:
    assert set(REAL_REDIS) <= set(MODES.values()), f"real-Redis store paths without fault-in-op cases: " \
        f"{sorted(set(REAL_REDIS) - set(MODES.values()))}"


def _cases() -> list[Any]:
    out = []
    for mode in MODES:
        for op in OPS:
            out.append(pytest.param(mode, op, "latency_jitter", "transient", id=f"{mode}-{op}-latency_jitter"))
            for fault in FAULTS:
                out.append(pytest.param(mode, op, fault, "transient", id=f"{mode}-{op}-{fault}-transient"))
                if mode == "lua":  # persistent faults: the Lua path (each costs every resend's timeout)
                    out.append(pytest.param(mode, op, fault, "persistent", id=f"{mode}-{op}-{fault}-persistent"))
    # the ops already covered by test_redis_store.py, under the faults it lacks (blackholes)
    for op in ("gate", "record_failure", "record_success"):
        for fault in ("blackhole_up", "blackhole_down"):
            out.append(pytest.param("lua", op, fault, "transient", id=f"lua-{op}-{fault}-transient"))
    return out


@pytest.mark.parametrize("mode,op,fault,shape", _cases())
def test_fault_inside_op(env: Env, mode: str, op: str, fault: str, shape: str) -> None:
    res = asyncio.run(run_case(env, mode, op, fault, shape))
    assert res.violations == [], res.violations


def test_no_resend_mutant_is_caught(env: Env) -> None:
    """A store that raises StoreIndeterminateError without resending is caught."""
    res = asyncio.run(run_case(env, "lua", "force_open", "blackhole_down", "persistent", store_cls=NoResendRedisStore))
    assert any("not after all" in x for x in res.violations), res.violations


@pytest.mark.parametrize("op", ["release_probe", "force_open", "reset"])
def test_fresh_op_id_resend_mutant_is_caught(env: Env, op: str) -> None:
    """A store resending under a new op id double-applies a reply-lost op: caught by the counted-once,
    one-transition and linearizability checks."""
    res = asyncio.run(run_case(env, "lua", op, "blackhole_down", "transient", store_cls=FreshOpIdResendRedisStore))
    text = " | ".join(res.violations)
    assert "transition events" in text and "not linearizable" in text, res.violations
    if op != "release_probe":  # a resent release is fenced by its token: the second one is a no-op
        assert "not counted once" in text, res.violations
