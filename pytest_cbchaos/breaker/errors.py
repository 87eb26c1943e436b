"""Store error classes (docs/breaker-design.md#store-protocol, docs/breaker-design.md#error-classes)."""

from __future__ import annotations


class StoreError(Exception):
    """Base class of every breaker-store error."""


class StoreUnavailableError(StoreError):
    """Connection, timeout before send, READONLY, LOADING, BUSY, MASTERDOWN, TRYAGAIN, pool exhausted."""


class StoreIndeterminateError(StoreUnavailableError):
    """The op may have executed and every resend failed (``info`` in histories)."""


class StoreContentionError(StoreError, RuntimeError):
    """WATCH fallback attempts exhausted (massgen message shape)."""


class StoreDataError(StoreError):
    """The key holds a non-hash value (WRONGTYPE)."""


class StoreConfigError(StoreError):
    """NOPERM, or scripting required but unavailable."""
