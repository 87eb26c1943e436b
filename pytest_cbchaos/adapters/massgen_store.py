"""massgen 0.1.97's Redis breaker store behind the kit's store protocol (docs/adapters.md#massgen).

``massgen/backend/cb_store.py`` is loaded from the installed distribution as a private module,
without importing the ``massgen`` package (whose ``__init__`` imports every provider SDK). The copy's
``time`` global is a scripted clock, so the ops massgen stamps with ``time.time()`` use the caller's
``now``. Ops massgen's store lacks are composed the way massgen's ``LLMCircuitBreaker`` composes
them (``force_open``: read, max-merge, ``cas_state`` on the read state, 5 attempts; ``reset``:
``set_state`` of the defaults; a probe's abnormal end: ``cas_state`` HALF_OPEN -> OPEN).
"""

from __future__ import annotations

import importlib.util
import threading
import time as _time
from types import ModuleType
from typing import Any

from ..breaker.conformance.capabilities import Capabilities
from ..breaker.record import MASSGEN_FIELDS
from ..breaker.store import ClaimResult
from .base import AdapterUnavailable
from .snapshot import SnapshotClient, WriteObservation
from .store_adapter import StoreAdapter

DIST = "massgen"
VERSION = "0.1.97"
MODULE_PATH = "massgen/backend/cb_store.py"
_lock = threading.Lock()
_module: ModuleType | None = None


class _ScriptedTime:
    """Stands in for the ``time`` module inside the loaded copy: ``time()`` is the caller's ``now``."""

    def __init__(self) -> None:
        self._local = threading.local()

    def time(self) -> float:
        now = getattr(self._local, "now", None)
        return _time.time() if now is None else now

    def set(self, now: float | None) -> None:
        self._local.now = now

    def __getattr__(self, name: str) -> Any:
        return getattr(_time, name)


CLOCK = _ScriptedTime()


def unavailable_reason() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        v = version(DIST)
    except PackageNotFoundError:
        return f"massgen not installed; pip install --no-deps 'massgen=={VERSION}'"
    if v != VERSION:
        return f"massgen {v} installed, the adapter is for {VERSION}"
    return None


def load_cb_store() -> ModuleType:
    """massgen's ``cb_store`` module, loaded once from the installed files."""
    global _module
    with _lock:
        if _module is None:
            reason = unavailable_reason()
            if reason:
                raise AdapterUnavailable(reason)
            from importlib.metadata import distribution

            path = distribution(DIST).locate_file(MODULE_PATH)
            spec = importlib.util.spec_from_file_location("cbchaos_massgen_cb_store", str(path))
            assert spec is not None and spec.loader is not None
            mod = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(mod)
            mod.time = CLOCK  # type: ignore[attr-defined]
            _module = mod
        return _module


class MassgenStoreAdapter(StoreAdapter):
    """massgen's ``RedisStore`` on a :class:`SnapshotClient` (it does not report whether an op wrote)."""

    capabilities = Capabilities(probe_tokens=False, leases=False, op_ids=False, time="client",
                                fields=MASSGEN_FIELDS, release_outcomes=("success", "abort"),
                                applied="snapshot", corrupt_report=False, time_precision=1e-3,
                                notes=("probe owner = caller identity (no tokens)",
                                       "force_open/reset/abort composed as massgen's LLMCircuitBreaker does"))

    def __init__(self, client: Any, **kw: Any) -> None:
        mod = load_cb_store()
        self.client = SnapshotClient(client)
        super().__init__(mod.RedisStore(self.client, **kw))

    # -- helpers ----------------------------------------------------------------------------------
    def _call(self, now: float | None, fn: Any, *a: Any) -> tuple[Any, bool]:
        out, seen = self._observed(now, fn, *a)
        return out, self._changed(seen)

    def _changed(self, seen: list[WriteObservation]) -> bool:
        """A write that changed the decoded record (a missing hash reads as the defaults)."""
        return any(self._decoded(o.before) != self._decoded(o.after) for o in seen)

    def _observed(self, now: float | None, fn: Any, *a: Any) -> tuple[Any, list[WriteObservation]]:
        self.client.take()
        CLOCK.set(now)
        try:
            out = fn(*a)
        finally:
            CLOCK.set(None)
        return out, self.client.take()

    def _decoded(self, raw: dict[str, str]) -> dict[str, Any]:
        return self.store._state_from_items(raw.items())

    def _reply(self, rec: dict[str, Any], prev: str, wrote: bool, now: float | None) -> dict[str, Any]:
        return {**self.fields(rec), **self.meta(prev, rec["state"], wrote, now)}

    # -- protocol ---------------------------------------------------------------------------------
    def get_state(self, backend: str) -> dict[str, Any]:
        return self.fields(self.store.get_state(backend))

    def atomic_record_failure(self, backend: str, failure_threshold: int, recovery_timeout: float, *,
                              now: float | None = None, **kw: Any) -> dict[str, Any]:
        rec, wrote = self._call(now, self.store.atomic_record_failure, backend, failure_threshold,
                                recovery_timeout)
        return self._reply(rec, rec["_prev_state"], wrote, rec["last_failure_time"])

    def atomic_record_success(self, backend: str, expected_state: str | None = None, *,
                              now: float | None = None, **kw: Any) -> dict[str, Any]:
        rec, wrote = self._call(now, self.store.atomic_record_success, backend, expected_state)
        return self._reply(rec, rec["_prev_state"], wrote, now)

    def try_transition_and_claim_probe(self, backend: str, now: float | None, recovery_timeout: float | None,
                                       **kw: Any) -> ClaimResult:
        when = _time.time() if now is None else now
        (won, rec, label), seen = self._observed(when, self.store.try_transition_and_claim_probe, backend, when,
                                                 recovery_timeout or 0.0)
        prev = self._decoded(seen[-1].before)["state"] if seen else rec["state"]
        return self.claim(won, rec, label, prev, self._changed(seen), when)

    def release_probe(self, backend: str, probe_token: str | None, outcome: str, *, recovery_timeout: float = 60.0,
                      now: float | None = None, **kw: Any) -> dict[str, Any]:
        """Tokenless: whoever calls resolves the probe (massgen's breaker: ``record_success`` /
        abnormal end ``cas_state``)."""
        if outcome == "success":
            return self.atomic_record_success(backend, None, now=now)
        if outcome != "abort":
            raise self.unsupported(f"release outcome {outcome!r}")
        when = _time.time() if now is None else now
        updates = {"state": "open", "open_until": when + recovery_timeout, "half_open_probe_active": False}
        _, seen = self._observed(when, self.store.cas_state, backend, "half_open", updates)
        before, after = self._decoded(seen[-1].before), self._decoded(seen[-1].after)
        return self._reply(after, before["state"], self._changed(seen[-1:]), when)

    def force_open(self, backend: str, open_for_seconds: float, *, now: float | None = None,
                   **kw: Any) -> dict[str, Any]:
        when = _time.time() if now is None else now
        first = None
        for _attempt in range(5):
            cur = self.store.get_state(backend)
            first = first or cur
            self._pause()
            updates = {"state": "open", "last_failure_time": max(when, float(cur["last_failure_time"])),
                       "open_until": max(when + open_for_seconds, float(cur["open_until"])),
                       "half_open_probe_active": False}
            applied, seen = self._observed(when, self.store.cas_state, backend, cur["state"], updates)
            if applied:  # the record this CAS wrote, not a re-read that may show a later writer's
                return self._reply(self._decoded(seen[-1].after), cur["state"], self._changed(seen), when)
        assert first is not None
        return self._reply(self.store.get_state(backend), first["state"], False, when)

    def reset(self, backend: str, *, now: float | None = None, **kw: Any) -> dict[str, Any]:
        when = _time.time() if now is None else now
        prev = self.store.get_state(backend)["state"]
        self._pause()
        mod = load_cb_store()
        CLOCK.set(when)
        try:
            self.store.set_state(backend, dict(mod.DEFAULT_CIRCUIT_BREAKER_STATE))
        finally:
            CLOCK.set(None)
        return self._reply(dict(mod.DEFAULT_CIRCUIT_BREAKER_STATE), prev, True, when)  # what it wrote

    def cas_state(self, backend: str, expected_state: str, updates: dict[str, Any], **kw: Any) -> bool:
        return bool(self.store.cas_state(backend, expected_state, dict(updates)))

    def clear(self, backend: str) -> None:
        self.store.clear(backend)

    def key(self, backend: str) -> str:
        return self.store._key(backend)


def massgen_store(client: Any, **kw: Any) -> MassgenStoreAdapter:
    """Factory: massgen's RedisStore on ``client`` (``ttl``, ``key_prefix``, ``half_open_probe_ttl``)."""
    return MassgenStoreAdapter(client, **kw)
