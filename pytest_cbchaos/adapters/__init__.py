"""Third-party circuit-breaker adapters (docs/fault-kit-design.md#adapters) and the registry of available ones.

``available_adapters()`` returns the adapter classes usable here; ``unavailable_adapters()`` maps
the others to the reason (library missing, or purgatory's ``redis<6`` pin against redis-py >= 6).
"""

from __future__ import annotations

from .aiobreaker_adapter import AiobreakerAdapter
from .aiobreaker_redis_adapter import AiobreakerRedisAdapter
from .base import (AdapterConfig, AdapterUnavailable, BreakerAdapter, BreakerRejected, Unsupported,
                   normalise_state)
from .cbchaos_adapter import CbchaosAdapter, CbchaosAsyncAdapter
from .circuitbreaker_adapter import CircuitbreakerAdapter
from .purgatory_adapter import PurgatoryAdapter, PurgatorySyncAdapter
from .pybreaker_adapter import PybreakerAdapter

ALL_ADAPTERS: tuple[type[BreakerAdapter], ...] = (
    PybreakerAdapter, AiobreakerAdapter, AiobreakerRedisAdapter, CircuitbreakerAdapter, PurgatoryAdapter,
    PurgatorySyncAdapter, CbchaosAdapter, CbchaosAsyncAdapter)


def unavailable_adapters() -> dict[str, str]:
    """Adapter name -> why it cannot run here."""
    out = {}
    for cls in ALL_ADAPTERS:
        reason = cls.unavailable_reason()
        if reason:
            out[cls.name] = reason
    return out


def available_adapters() -> list[type[BreakerAdapter]]:
    """Adapter classes whose library is installed and usable in this environment."""
    skip = unavailable_adapters()
    return [cls for cls in ALL_ADAPTERS if cls.name not in skip]


def get_adapter(name: str) -> type[BreakerAdapter]:
    for cls in ALL_ADAPTERS:
        if cls.name == name:
            return cls
    raise KeyError(f"unknown breaker adapter {name!r}; expected one of {[c.name for c in ALL_ADAPTERS]}")


__all__ = ["AdapterConfig", "AdapterUnavailable", "BreakerAdapter", "BreakerRejected", "Unsupported",
           "normalise_state", "ALL_ADAPTERS", "available_adapters", "unavailable_adapters", "get_adapter",
           "PybreakerAdapter", "AiobreakerAdapter", "AiobreakerRedisAdapter", "CircuitbreakerAdapter",
           "PurgatoryAdapter", "PurgatorySyncAdapter", "CbchaosAdapter", "CbchaosAsyncAdapter"]
