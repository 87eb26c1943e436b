"""A minimal breaker store following docs/breaker-design.md#state-machine rows (for the breaker-store target's tests,
used through ``workload.params.store_factory``) and its mutant whose gate is not atomic.

State is shared by all instances with the same key prefix (workers are threads); every op first
pings Redis through the worker's client (so proxy faults make ops fail with a StoreError).
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any, NamedTuple

import redis

_LOCK = threading.Lock()
_RECORDS: dict[str, dict[str, Any]] = {}
#: the mutant's read-then-write window is held open until a second gate has read the same record: the overlap
#: CB-3 must catch is forced, not left to whether two workers' gates happen to land within a few milliseconds
_RACE = threading.Barrier(2)
RACE_WAIT_S = 5.0  # bound on waiting for the second gate (workers gate every few ms while the workload runs)


class StoreUnavailableError(Exception):
    pass


class Claim(NamedTuple):
    won: bool
    record: dict[str, Any]
    label: str

    @property
    def token(self) -> str | None:
        return self.record.get("probe_token") if self.won else None

    @property
    def admitted(self) -> bool:
        return self.won or self.record.get("_prev_state") == "closed"


def _default() -> dict[str, Any]:
    return {"state": "closed", "failure_count": 0, "open_until": 0.0, "probe_token": "", "probe_lease_until": 0.0,
            "generation": 0}


class SampleStore:
    atomic_gate = True

    def __init__(self, client: redis.Redis, *, key_prefix: str, probe_lease_seconds: float = 0.5, **_: Any) -> None:
        self.client, self.prefix, self.lease = client, key_prefix, probe_lease_seconds

    def _io(self) -> None:
        try:
            self.client.ping()
        except redis.RedisError as exc:
            raise StoreUnavailableError(f"{type(exc).__name__}: {exc}") from None

    def _rec(self, backend: str) -> dict[str, Any]:
        return _RECORDS.setdefault(f"{self.prefix}:{backend}", _default())

    @staticmethod
    def _reply(rec: dict[str, Any], prev: str, applied: bool, now: float, reason: str = "") -> dict[str, Any]:
        return {**rec, "_prev_state": prev, "_new_state": rec["state"], "_applied": applied, "_now": now, "_reason": reason}

    def try_transition_and_claim_probe(self, backend: str, now: Any, recovery_timeout: float, *,
                                       lease_seconds: float | None = None) -> Claim:
        self._io()
        lease = lease_seconds or self.lease
        if not self.atomic_gate:
            return self._racy_gate(backend, lease)
        with _LOCK:
            rec = self._rec(backend)
            now, prev = time.time(), rec["state"]
            if prev == "closed":
                return Claim(False, self._reply(rec, prev, False, now), "")
            if prev == "open" and now < rec["open_until"]:
                return Claim(False, self._reply(rec, prev, False, now, "cooldown"), "")
            if prev == "half_open" and rec["probe_token"] and now < rec["probe_lease_until"]:
                return Claim(False, self._reply(rec, prev, False, now, "probe_busy"), "")
            label = ("open->half_open" if prev == "open" else
                     "half_open_probe_reclaimed" if rec["probe_token"] else "half_open_probe_claimed")
            self._claim(rec, now, lease)
            return Claim(True, self._reply(rec, prev, True, now), label)

    @staticmethod
    def _claim(rec: dict[str, Any], now: float, lease: float) -> None:
        rec.update(state="half_open", generation=rec["generation"] + 1, probe_lease_until=now + lease)
        rec["probe_token"] = f"{rec['generation']}:{uuid.uuid4().hex}"

    def _racy_gate(self, backend: str, lease: float) -> Claim:
        rec = self._rec(backend)
        now, prev = time.time(), rec["state"]
        if prev == "closed":
            return Claim(False, self._reply(rec, prev, False, now), "")
        if prev == "open" and now < rec["open_until"]:
            return Claim(False, self._reply(rec, prev, False, now, "cooldown"), "")
        if prev == "half_open" and rec["probe_token"] and now < rec["probe_lease_until"]:
            return Claim(False, self._reply(rec, prev, False, now, "probe_busy"), "")
        try:  # the mutant's read-then-write window, until a second gate has read this record too
            _RACE.wait(RACE_WAIT_S)
        except threading.BrokenBarrierError:
            _RACE.reset()  # no second gate came (the workload ended): this one claims alone
        self._claim(rec, now, lease)
        return Claim(True, self._reply(rec, prev, True, now), "open->half_open")

    def atomic_record_failure(self, backend: str, failure_threshold: int, recovery_timeout: float) -> dict[str, Any]:
        self._io()
        with _LOCK:
            rec = self._rec(backend)
            now, prev = time.time(), rec["state"]
            rec["failure_count"] += 1
            if prev != "closed" or rec["failure_count"] >= failure_threshold:
                rec.update(state="open", open_until=max(rec["open_until"], now + recovery_timeout),
                           probe_token="", probe_lease_until=0.0)
            return self._reply(rec, prev, True, now)

    def atomic_record_success(self, backend: str, expected_state: str | None = None) -> dict[str, Any]:
        self._io()
        with _LOCK:
            rec = self._rec(backend)
            now, prev = time.time(), rec["state"]
            if prev == "closed":
                applied = rec["failure_count"] != 0
                rec["failure_count"] = 0
                return self._reply(rec, prev, applied, now)
            return self._reply(rec, prev, False, now, "guard_open" if prev == "open" else "stale_token")

    def release_probe(self, backend: str, probe_token: str, outcome: str, *, recovery_timeout: float) -> dict[str, Any]:
        self._io()
        with _LOCK:
            rec = self._rec(backend)
            now, prev = time.time(), rec["state"]
            if prev != "half_open" or rec["probe_token"] != probe_token:
                return self._reply(rec, prev, False, now, "stale_token")
            if outcome == "success":
                rec.update(state="closed", failure_count=0, probe_token="", probe_lease_until=0.0)
            else:
                rec.update(state="open", failure_count=rec["failure_count"] + 1,
                           open_until=max(rec["open_until"], now + recovery_timeout), probe_token="", probe_lease_until=0.0)
            return self._reply(rec, prev, True, now)


class RacyGateStore(SampleStore):
    atomic_gate = False


def good(client: redis.Redis, **kw: Any) -> SampleStore:
    return SampleStore(client, **kw)


def racy(client: redis.Redis, **kw: Any) -> SampleStore:
    return RacyGateStore(client, **kw)


# -- in-memory stores from the project, for the linearizability check (they take op_id=) -----------------
_SHARED: dict[tuple[str, str], Any] = {}


def _shared(kind: str, key_prefix: str, make: Any) -> Any:
    with _LOCK:  # one store per run, shared by its worker threads (like one Redis)
        if (kind, key_prefix) not in _SHARED:
            _SHARED[(kind, key_prefix)] = make()
        return _SHARED[(kind, key_prefix)]


def memory(client: redis.Redis, *, key_prefix: str, probe_lease_seconds: float = 0.5, **_: Any) -> Any:
    """The project's atomic InMemoryStore: linearizable."""
    from pytest_cbchaos.breaker.store import InMemoryStore

    return _shared("memory", key_prefix, lambda: InMemoryStore(probe_lease_seconds=probe_lease_seconds))


def nonatomic_failures(client: redis.Redis, *, key_prefix: str, probe_lease_seconds: float = 0.5, **_: Any) -> Any:
    """``testing.linearizability_mutants.NonAtomicFailureCountStore``: concurrent failures are lost."""
    from pytest_cbchaos.testing.linearizability_mutants import NonAtomicFailureCountStore

    return _shared("nonatomic", key_prefix,
                   lambda: NonAtomicFailureCountStore(gap_s=0.01, probe_lease_seconds=probe_lease_seconds))
