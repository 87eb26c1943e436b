"""The invariant suite (docs/breaker-design.md#invariants, CB-1..CB-27) as checks runnable against any store factory.

Point it at a store with a :class:`StoreTarget` and call :func:`run_conformance` (report) or use
:func:`check` per invariant (raises :class:`InvariantViolation`). Time is driven through the
protocol's ``now=`` keyword, so Redis stores are built with ``time_source="client"``; the server
time path is covered by the project's own tests.

Optional hooks a target may provide: ``raw_set`` (admin write of raw field values), ``ttl_of``
(remaining key TTL), ``keys`` (all keys of the shared keyspace). A check that needs a missing hook
is reported ``n/a``. A store may expose an attribute ``pause_hook`` (callable or None) that it calls
between its read and its write; the checks use it to force the interleavings of CB-3, CB-4, CB-15,
CB-16 and CB-25 deterministically (:mod:`.window`; a store that holds its lock across the hook also
reports ``lock_waiters()``, as ``InMemoryStore`` does).

Invariants that need processes, a breaker or a real server (5, 7, 13, 19, 23, 24, 26, 27) live in
``CHECKS`` with ``scope != "store"`` and are exercised by ``tests/breaker``; they are listed in the
report as such.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

from ...testing.threads import run_together
from ..record import CODEC_VECTORS
from .capabilities import Capabilities, capabilities_of
from .classify import BugClass, Finding
from .window import InWindow, Rendezvous, tiny_switch_interval


class InvariantViolation(AssertionError):
    def __init__(self, cb: int, message: str, measured: Any = None) -> None:
        super().__init__(f"CB-{cb}: {message}")
        self.cb, self.measured = cb, measured


@dataclass
class StoreTarget:
    """How the suite builds and inspects a store. ``make(**kw)`` returns a fresh store; it must accept
    ``ttl``, ``half_open_probe_ttl``, ``key_prefix`` (may ignore what makes no sense for it)."""

    name: str
    make: Callable[..., Any]
    raw_set: Callable[[Any, str, dict[str, Any]], None] | None = None
    ttl_of: Callable[[Any, str], float | None] | None = None
    keys: Callable[[], list[str]] | None = None
    third_party: bool = False
    capabilities: Capabilities | None = None  # None: asked from a store built by ``make``

    def caps(self) -> Capabilities:
        if self.capabilities is None:
            self.capabilities = capabilities_of(self.make())
        return self.capabilities

    def needs(self, *features: str) -> None:
        """Report the check n/a (NotImplementedError with the reason) when the store lacks a feature."""
        reason = self.caps().lacks(*features)
        if reason:
            raise NotImplementedError(reason)


@dataclass
class InvariantResult:
    cb: int
    title: str
    applicability: str  # E | M
    status: str  # pass | fail | n/a | elsewhere
    detail: str = ""
    measured: Any = None


@dataclass
class ConformanceReport:
    target: str
    results: list[InvariantResult] = field(default_factory=list)

    @property
    def failed(self) -> list[InvariantResult]:
        return [r for r in self.results if r.status == "fail"]

    def enforced_failures(self, strict: bool = False) -> list[InvariantResult]:
        return [r for r in self.failed if strict or r.applicability == "E"]

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target, "results": [r.__dict__ for r in self.results],
                "findings": [f.to_dict() for f in self.findings()]}

    def findings(self) -> list[Finding]:
        """The failures as findings (class = the invariant; docs/adapters.md#bug-classes)."""
        return [Finding(BugClass(f"cb-{r.cb}", f"CB-{r.cb}", f"{r.title}: violated"), r.detail, (), "conformance")
                for r in self.failed]


R = 60.0
T = 3


def _t0() -> float:
    return float(int(time.time()))


def _fail(cb: int, cond: bool, msg: str, measured: Any = None) -> None:
    if not cond:
        raise InvariantViolation(cb, msg, measured)


def _trip(st: Any, b: str, now: float, failure_threshold: int = T, recovery_timeout: float = R) -> dict:
    d: dict = {}
    for i in range(failure_threshold):
        d = st.atomic_record_failure(b, failure_threshold, recovery_timeout, now=now)
    return d


def _claim(st: Any, b: str, now: float, lease: float | None = None) -> Any:
    kw = {} if lease is None else {"lease_seconds": lease}
    return st.try_transition_and_claim_probe(b, now, R, **kw)


# ---- store-level checks -----------------------------------------------------------------------

def cb1(t: StoreTarget) -> None:
    st, now = t.make(), _t0()
    d = _trip(st, "cb1", now)
    rem = d["open_until"] - now
    _fail(1, abs(rem - R) <= 0.01, f"open_until - now = {rem}, expected {R} (wall-clock timestamps)", rem)
    _fail(1, abs(d["open_until"] - time.time()) < 10 * R, "open_until is not wall-clock Unix seconds",
          d["open_until"])


def cb2(t: StoreTarget) -> None:
    a, b = t.make(key_prefix="cbns1"), t.make(key_prefix="cbns2")
    _trip(a, "cb2", _t0())
    _fail(2, b.get_state("cb2")["state"] == "closed", "tripping one namespace opened another")
    if t.keys is not None:
        stray = [k for k in t.keys() if k.endswith(":cb2") and not k.startswith(("cbns1:", "cbns2:"))]
        _fail(2, not stray, f"keys outside the configured prefixes: {stray}", stray)


def cb3(t: StoreTarget, n: int = 16) -> None:
    st, now = t.make(), _t0()
    _trip(st, "cb3", now)
    rv = Rendezvous(st, n)
    if hasattr(st, "pause_hook"):
        st.pause_hook = rv  # every gate's read before any write (or blocked behind it)
    with tiny_switch_interval():  # a worker's error propagates (CB-13); a stuck one fails the run
        results = run_together([lambda: _claim(st, "cb3", now + R + 1)] * n, 20, on_error=rv.leave)
    won = sum(1 for r in results if r.won)
    opened = sum(1 for r in results if r.won and r.label == "open->half_open")
    _fail(3, won == 1, f"{won} of {n} concurrent gates won the probe", won)
    _fail(3, opened == 1, f"{opened} open->half_open claims", opened)


def cb4(t: StoreTarget) -> None:
    t.needs("force_open")
    st, now = t.make(), _t0()
    _trip(st, "cb4", now)
    later = now + R + 1
    with InWindow(st, lambda: st.force_open("cb4", 600, now=later)) as w:
        r = _claim(st, "cb4", later)
    landed = w.landed
    s = st.get_state("cb4")
    _fail(4, s["state"] == "open" and s["open_until"] >= later + 600 - 0.01,
          f"a stale gate undid force_open: state={s['state']} open_until-now={s['open_until'] - later:.1f}")
    _fail(4, not (landed and r.won), "a gate that saw OPEN-elapsed before force_open was admitted after it")


def cb6(t: StoreTarget) -> None:
    t.needs("force_open")
    st, now = t.make(), _t0()
    st.force_open("cb6", 600, now=now)
    d = st.atomic_record_success("cb6", now=now + 1)
    _fail(6, not d["_applied"] and d["_prev_state"] == d["_new_state"] == "open",
          f"success on a forced-open circuit applied {d['_prev_state']}->{d['_new_state']}")
    _fail(6, st.get_state("cb6")["state"] == "open", "success closed a forced-open circuit")


def cb8(t: StoreTarget) -> None:
    t.needs("force_open")
    st, now = t.make(), _t0()
    st.force_open("cb8", 600, now=now)
    before = st.get_state("cb8")["open_until"]
    d = st.force_open("cb8", 10, now=now + 1)
    after = st.get_state("cb8")["open_until"]
    _fail(8, after == before, f"force_open(10) rewrote open_until {before} -> {after}", after - before)
    _fail(8, not d["_applied"], "a losing force_open reported a write")


def cb9(t: StoreTarget) -> None:
    t.needs("force_open")
    st, now = t.make(), _t0()
    st.force_open("cb9", 1, now=now)
    st.atomic_record_failure("cb9", T, R, now=now)
    rem = st.get_state("cb9")["open_until"] - now
    _fail(9, rem >= R - 1 - 0.01, f"failure while OPEN left {rem:.2f}s of cooldown, expected >= {R - 1}", rem)


def cb10(t: StoreTarget) -> None:
    if t.ttl_of is None:
        raise NotImplementedError("needs ttl_of")
    st, now = t.make(ttl=1, half_open_probe_ttl=300), _t0()
    _trip(st, "cb10", now, recovery_timeout=0.001)
    r = _claim(st, "cb10", now + 1)
    _fail(10, r.won, "claim did not win")
    ttl = t.ttl_of(st, "cb10")
    _fail(10, ttl is not None and ttl >= 250, f"probe record TTL {ttl} < 250 with half_open_probe_ttl=300", ttl)


def cb11(t: StoreTarget) -> None:
    for kw in ({"ttl": 0}, {"ttl": -1}, {"half_open_probe_ttl": 0}):
        try:
            t.make(**kw)
        except ValueError:
            continue
        raise InvariantViolation(11, f"construction with {kw} did not raise ValueError")


def cb12(t: StoreTarget) -> None:
    if t.ttl_of is None:
        raise NotImplementedError("needs ttl_of")
    t.needs("force_open")
    st, now = t.make(ttl=1), time.time()
    if not hasattr(st, "cas_state"):
        raise NotImplementedError("n/a: no cas_state operation")
    st.force_open("cb12", 120, now=now)
    st.cas_state("cb12", "open", {"last_failure_time": now})
    ttl = t.ttl_of(st, "cb12")
    _fail(12, ttl is not None and ttl >= 170, f"TTL {ttl} after a partial cas_state on OPEN(+120s), expected >= 179", ttl)


def cb14(t: StoreTarget) -> None:
    t.needs("force_open")
    st, now = t.make(), _t0()
    st.force_open("cb14", 600, now=now)
    d = st.force_open("cb14", 10, now=now)
    _fail(14, not d["_applied"] and d["_prev_state"] == d["_new_state"],
          "force_open(10) with 600 s remaining reported an applied change")
    d = st.force_open("cb14", 1200, now=now)
    _fail(14, d["_applied"] and d["_prev_state"] == d["_new_state"] == "open",
          "growing the deadline must apply without a transition (open_extended)")


def cb15(t: StoreTarget) -> None:
    t.needs("release_probe")
    st, now = t.make(), _t0()
    _trip(st, "cb15", now)
    probe = _claim(st, "cb15", now + R + 1)
    _fail(15, probe.won, "probe claim failed")
    with InWindow(st, lambda: st.release_probe("cb15", probe.token, "success", recovery_timeout=R,
                                               now=now + R + 2)) as w:
        r = _claim(st, "cb15", now + R + 3)
    if not w.landed:  # the close ran after the gate: gate again, after it
        r = _claim(st, "cb15", now + R + 3)
    _fail(15, r.admitted or r.record.get("state") != "closed",
          "gate rejected although the record it returned is CLOSED", 1)


def cb16(t: StoreTarget) -> None:
    t.needs("force_open")
    st, now = t.make(), _t0()
    _trip(st, "cb16", now)
    seen = [st.get_state("cb16")["open_until"]]
    for d in (3600, 60, 5, 1200):
        st.force_open("cb16", d, now=now)
        seen.append(st.get_state("cb16")["open_until"])
        st.atomic_record_failure("cb16", T, 1, now=now)
        seen.append(st.get_state("cb16")["open_until"])
    dec = [(a, b) for a, b in zip(seen, seen[1:], strict=False) if b < a]
    _fail(16, not dec, f"open_until decreased: {dec[:3]}", len(dec))
    # the race: a longer force_open inside a failure's read-write window (forced through the hook)
    with InWindow(st, lambda: st.force_open("cb16", 7200, now=now)):
        st.atomic_record_failure("cb16", T, 1, now=now)
    final = st.get_state("cb16")["open_until"]
    _fail(16, final >= now + 7200 - 0.01,
          f"a failure racing force_open(7200) left open_until {final - now:.0f} s ahead", final - now)


def cb17(t: StoreTarget) -> None:
    t.needs("probe_tokens", "leases", "reset", "release_probe", "renew_probe")
    st, now = t.make(), _t0()
    _trip(st, "cb17", now)
    a = _claim(st, "cb17", now + R + 1, lease=5)
    _fail(17, a.won, "first claim failed")
    st.reset("cb17", now=now + R + 2)
    _trip(st, "cb17", now + R + 3)
    d = _claim(st, "cb17", now + 2 * R + 10, lease=5)
    _fail(17, d.won, "second claim failed")
    st.release_probe("cb17", a.token, "abort", recovery_timeout=R, now=now + 2 * R + 11)
    renewed = st.renew_probe("cb17", a.token, now=now + 2 * R + 11)
    s = st.get_state("cb17")
    _fail(17, s["state"] == "half_open" and s["probe_token"] == d.token and not renewed,
          f"a stale token changed the probe: state={s['state']} token_is_new={s['probe_token'] == d.token} renewed={renewed}")
    st.release_probe("cb17", d.token, "success", recovery_timeout=R, now=now + 2 * R + 12)
    _fail(17, st.get_state("cb17")["state"] == "closed", "the current owner's success did not close")


def cb18(t: StoreTarget) -> None:
    st, now = t.make(), _t0()
    _trip(st, "cb18", now)
    b = _claim(st, "cb18", now + R + 1)
    st.atomic_record_success("cb18", now=now + R + 2)  # the slow call admitted while CLOSED
    _fail(18, st.get_state("cb18")["state"] == "half_open", "a non-owner's success closed HALF_OPEN")
    st.atomic_record_failure("cb18", T, R, now=now + R + 3)
    _fail(18, st.get_state("cb18")["state"] == "open", "a failure from anyone must reopen HALF_OPEN (F4)")
    _fail(18, b.won, "claim failed")


def cb20(t: StoreTarget) -> None:
    now = _t0()
    for ttl in (1, 0, -1):
        try:
            st = t.make(ttl=ttl)
        except ValueError:
            _fail(20, ttl < 1, f"ttl={ttl} rejected although it is valid")
            continue
        b = f"cb20-{ttl}"
        for _ in range(T + 2):
            st.atomic_record_failure(b, T, R, now=now)
        state = st.get_state(b)["state"]
        _fail(20, state == "open", f"with ttl={ttl}, {T + 2} failures left the record {state} (key deleted?)", ttl)


_FLAG_VALUES: list[Any] = ["false", "0", "", "TRUE", " True", b"\xff", "True", "False"]


def cb21(t: StoreTarget) -> None:
    if t.raw_set is None:
        raise NotImplementedError("needs raw_set")
    now = _t0()
    for v in _FLAG_VALUES:
        st = t.make()
        b = f"cb21-{_FLAG_VALUES.index(v)}"
        _trip(st, b, now)
        st.force_open(b, 0, now=now)  # open, elapsed
        r0 = _claim(st, b, now + R + 1)
        _fail(21, r0.won, "setup claim failed")
        raw = {"half_open_probe_active": v, "probe_token": "", "probe_anchor": "0.000000",
               "probe_lease_until": "0.000000"}
        t.raw_set(st, b, {k: x for k, x in raw.items() if k in t.caps().fields})
        flag = st.get_state(b)["half_open_probe_active"]
        expect = v == "True"
        _fail(21, flag is expect, f"flag {v!r} read as {flag!r}, expected {expect}")
        r = _claim(st, b, now + R + 2)
        claimable = not expect
        _fail(21, r.won == claimable, f"flag {v!r}: get_state says claimable={claimable} but the gate won={r.won}")


def cb22(t: StoreTarget) -> None:
    if t.raw_set is None:
        raise NotImplementedError("needs raw_set")
    now, reports = _t0(), t.caps().corrupt_report
    for i, (fname, raw, expected) in enumerate(CODEC_VECTORS):
        if fname in ("probe_token",) or fname not in t.caps().fields:
            continue
        st = t.make()
        b = f"cb22-{i}"
        st.atomic_record_failure(b, 100, R, now=now)
        t.raw_set(st, b, {fname: raw})
        try:
            s = st.get_state(b)
            d = st.atomic_record_failure(b, 100, R, now=now + 1)
        except Exception as exc:
            raise InvariantViolation(22, f"{fname}={raw!r} raised {exc!r} (policy: repair to default)") from exc
        if expected is None:
            # our convention reports the repair; a store without it only has to survive (policy: no crash)
            _fail(22, not reports or (fname in s.get("_corrupt", ()) and fname in d.get("_corrupt", ())),
                  f"{fname}={raw!r} not reported in _corrupt")
        else:
            _fail(22, s[fname] == expected, f"{fname}={raw!r} read as {s[fname]!r}, expected {expected!r}")
        after = st.get_state(b)
        _fail(22, not after.get("_corrupt"), f"the next write after {fname}={raw!r} was not canonical")


def cb25(t: StoreTarget) -> None:
    t.needs("reset")
    st, now = t.make(), _t0()
    st.atomic_record_failure("cb25", T, R, now=now)
    st.atomic_record_failure("cb25", T, R, now=now)
    with InWindow(st, lambda: st.atomic_record_failure("cb25", T, R, now=now), run_after=False) as w:
        d = st.reset("cb25", now=now)
    tripped = [w.result] if w.landed else []
    final = st.get_state("cb25")
    if tripped and tripped[0]["_new_state"] == "open" and final["state"] == "closed":
        _fail(25, d["_prev_state"] == "open",
              f"reset reported prev={d['_prev_state']} though a trip completed before its write (not linearizable)")
    _fail(25, d["_applied"] and final["state"] == "closed", "reset did not apply atomically")


@dataclass(frozen=True)
class Check:
    cb: int
    title: str
    applicability: str
    fn: Callable[[StoreTarget], None] | None
    scope: str = "store"
    where: str = ""


CHECKS: dict[int, Check] = {c.cb: c for c in [
    Check(1, "wall-clock timestamps", "E", cb1),
    Check(2, "namespace isolation and factory forwarding", "E", cb2),
    Check(3, "single probe owner", "E", cb3),
    Check(4, "force_open not undone by a stale gate", "E", cb4),
    Check(5, "no wedge from an abandoned probe", "E", None, "breaker", "tests/breaker/test_breaker.py"),
    Check(6, "events reflect applied transitions", "E", cb6),
    Check(7, "every fallback pipeline is released", "E", None, "redis", "tests/breaker/test_redis_store.py"),
    Check(8, "force_open never blind-writes", "E", cb8),
    Check(9, "OPEN failures extend the cooldown", "E", cb9),
    Check(10, "the probe record outlives the probe", "E", cb10),
    Check(11, "invalid construction fails fast", "E", cb11),
    Check(12, "TTL from the merged record", "E", cb12),
    Check(13, "kit hygiene", "E", None, "kit", "tests/breaker/test_conformance.py"),
    Check(14, "no phantom force-open events", "M", cb14),
    Check(15, "no false rejection after a concurrent close", "M", cb15),
    Check(16, "open_until is monotone", "M", cb16),
    Check(17, "token-fenced probe resolution", "M", cb17),
    Check(18, "only the owner closes HALF_OPEN", "M", cb18),
    Check(19, "a claim holder is admitted on its next attempt", "M", None, "breaker", "tests/breaker/test_breaker.py"),
    Check(20, "TTL >= 1, always", "M", cb20),
    Check(21, "one truth value per stored field", "M", cb21),
    Check(22, "one corrupt-field policy", "M", cb22),
    Check(23, "non-transient errors are not retried", "M", None, "redis", "tests/breaker/test_redis_store.py"),
    Check(24, "a dead probe owner wedges for at most the lease", "M", None, "process",
          "tests/breaker/test_multiprocess.py"),
    Check(25, "reset is atomic", "M", cb25),
    Check(26, "clock skew is bounded", "M", None, "breaker", "tests/breaker/test_breaker.py"),
    Check(27, "the event loop is never blocked", "M", None, "async", "tests/breaker/test_async.py"),
]}

STORE_CHECKS = [c.cb for c in CHECKS.values() if c.fn is not None]


def check(target: StoreTarget, cb: int) -> None:
    """Run one store-level invariant; raises InvariantViolation (or NotImplementedError for n/a)."""
    c = CHECKS[cb]
    if c.fn is None:
        raise NotImplementedError(f"CB-{cb} is checked in {c.where}")
    c.fn(target)


def run_conformance(target: StoreTarget, ids: list[int] | None = None) -> ConformanceReport:
    """Run every store-level check and report; never raises for a violation."""
    rep = ConformanceReport(target.name)
    for cb in ids or sorted(CHECKS):
        c = CHECKS[cb]
        if c.fn is None:
            rep.results.append(InvariantResult(cb, c.title, c.applicability, "elsewhere", c.where))
            continue
        try:
            c.fn(target)
            rep.results.append(InvariantResult(cb, c.title, c.applicability, "pass"))
        except NotImplementedError as exc:
            rep.results.append(InvariantResult(cb, c.title, c.applicability, "n/a", str(exc)))
        except InvariantViolation as exc:
            rep.results.append(InvariantResult(cb, c.title, c.applicability, "fail", str(exc), exc.measured))
        except Exception as exc:
            rep.results.append(InvariantResult(cb, c.title, c.applicability, "fail", f"raised {exc!r}"))
    return rep


def memory_target(**defaults: Any) -> StoreTarget:
    from ..store import InMemoryStore

    def make(**kw: Any) -> Any:
        kw.pop("key_prefix", None)
        return InMemoryStore(**{**defaults, **kw})
    return StoreTarget("memory", make, raw_set=lambda s, b, f: s.raw_set(b, f), ttl_of=lambda s, b: s.ttl_of(b))


def redis_target(client: Any, name: str = "redis", **defaults: Any) -> StoreTarget:
    """RedisStore on ``client`` in client time mode; keys under the given prefix are the caller's to clean."""
    from ..redis_store import RedisStore

    def make(**kw: Any) -> Any:
        kw.setdefault("key_prefix", defaults.get("key_prefix", "cbconf"))
        opts = {"time_source": "client", "allow_unbounded_io": True, **defaults, **kw}
        return RedisStore(client, **opts)

    def raw_set(s: Any, b: str, f: dict[str, Any]) -> None:
        client.hset(s.key(b), mapping=f)

    def ttl_of(s: Any, b: str) -> float | None:
        v = client.ttl(s.key(b))
        return None if v is None or v < 0 else float(v)

    def keys() -> list[str]:
        return [k.decode() if isinstance(k, bytes) else k for k in client.scan_iter(count=1000)]

    return StoreTarget(name, make, raw_set=raw_set, ttl_of=ttl_of, keys=keys)


CheckResult = InvariantResult  # deprecated name of InvariantResult
