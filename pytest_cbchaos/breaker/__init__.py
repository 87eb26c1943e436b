"""The distributed circuit breaker (docs/breaker-design.md).

Layers: ``record`` (codec) → ``kernel`` (pure transitions, the one truth) → ``store`` (protocols,
``InMemoryStore``) / ``redis_store`` (Lua + WATCH fallback) → ``breaker`` (sync/async breakers).
``model`` wraps ``kernel`` for the linearizability checker; ``checker_model.BreakerStoreModel`` is
that model as the checker's ``breaker-store`` (registered by :mod:`pytest_cbchaos.systems`).
"""

from __future__ import annotations

from typing import Any

from . import kernel, model
from .errors import (StoreConfigError, StoreContentionError, StoreDataError, StoreError,
                     StoreIndeterminateError, StoreUnavailableError)
from .record import DEFAULT, Record, decode, encode
from .store import (AsyncCircuitBreakerStore, AsyncInMemoryStore, CircuitBreakerStore, ClaimResult,
                    InMemoryStore, make_store)

_LAZY = {
    "RedisStore": "redis_store", "AsyncRedisStore": "redis_store",
    "CircuitBreaker": "breaker", "AsyncCircuitBreaker": "breaker", "BreakerConfig": "breaker",
    "CircuitBreakerOpenError": "breaker", "CircuitState": "breaker", "Permit": "breaker",
    "BreakerStoreModel": "checker_model",
}

__all__ = [
    "kernel", "model", "Record", "DEFAULT", "decode", "encode", "ClaimResult",
    "CircuitBreakerStore", "AsyncCircuitBreakerStore", "InMemoryStore", "AsyncInMemoryStore", "make_store",
    "StoreError", "StoreUnavailableError", "StoreIndeterminateError", "StoreContentionError",
    "StoreDataError", "StoreConfigError", *_LAZY,
]


def __getattr__(name: str) -> Any:
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(name)
    import importlib

    return getattr(importlib.import_module(f"{__name__}.{mod}"), name)
