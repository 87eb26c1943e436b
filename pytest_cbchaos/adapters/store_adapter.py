"""Base for adapters that put someone else's breaker *store* behind the kit's store protocol
(docs/adapters.md#store-adapters).

A subclass declares :attr:`capabilities` and implements the ops its store has; the rest raise
:class:`~.base.Unsupported` with the capability's n/a reason, which the suites report instead of
failing. Replies carry ``_prev_state``, ``_new_state``, ``_applied`` and ``_now`` (see :meth:`meta`).
"""

from __future__ import annotations

from typing import Any, ClassVar

from ..breaker.conformance.capabilities import Capabilities
from ..breaker.store import ClaimResult
from .base import Unsupported


class StoreAdapter:
    """One foreign store instance, spoken to through the kit's store protocol."""

    capabilities: ClassVar[Capabilities] = Capabilities()
    #: called between the read and the write of an op the adapter composes from several calls
    pause_hook: Any = None

    def __init__(self, store: Any) -> None:
        self.store = store

    # -- helpers for subclasses ---------------------------------------------------------------
    def fields(self, record: dict[str, Any]) -> dict[str, Any]:
        """Only the declared fields of a store record."""
        return {k: record[k] for k in self.capabilities.fields if k in record}

    @staticmethod
    def meta(prev_state: str, new_state: str, applied: bool, now: float | None) -> dict[str, Any]:
        return {"_prev_state": prev_state, "_new_state": new_state, "_applied": bool(applied), "_now": now}

    def claim(self, won: bool, record: dict[str, Any], label: str | None, prev_state: str,
              applied: bool, now: float | None) -> ClaimResult:
        return ClaimResult(bool(won), {**self.fields(record), **self.meta(prev_state, record["state"],
                                                                          applied, now)}, label or "")

    def _pause(self) -> None:
        hook = self.pause_hook
        if callable(hook):
            hook()

    def unsupported(self, feature: str) -> Unsupported:
        return Unsupported(self.capabilities.lacks(feature) or f"n/a: {feature}")

    # -- the protocol (override what the store has) ---------------------------------------------
    def get_state(self, backend: str) -> dict[str, Any]:
        raise NotImplementedError

    def atomic_record_failure(self, backend: str, failure_threshold: int, recovery_timeout: float,
                              **kw: Any) -> dict[str, Any]:
        raise NotImplementedError

    def atomic_record_success(self, backend: str, expected_state: str | None = None,
                              **kw: Any) -> dict[str, Any]:
        raise NotImplementedError

    def try_transition_and_claim_probe(self, backend: str, now: float | None, recovery_timeout: float | None,
                                       **kw: Any) -> ClaimResult:
        raise NotImplementedError

    def release_probe(self, backend: str, probe_token: str, outcome: str, **kw: Any) -> dict[str, Any]:
        raise self.unsupported("release_probe")

    def renew_probe(self, backend: str, probe_token: str, **kw: Any) -> bool:
        raise self.unsupported("leases")

    def force_open(self, backend: str, open_for_seconds: float, **kw: Any) -> dict[str, Any]:
        raise self.unsupported("force_open")

    def reset(self, backend: str, **kw: Any) -> dict[str, Any]:
        raise self.unsupported("reset")

    def clear(self, backend: str) -> None:
        raise NotImplementedError

    def close(self) -> None:
        close = getattr(self.store, "close", None)
        if callable(close):
            close()
