"""Agent gateway: a request runs a turn whose every upstream call goes through a circuit breaker
(state in Redis) and whose every event lands in the durable stream."""

from pytest_cbchaos.gateway.core import (BreakerGuardedSource, CircuitOpen, Gateway, ProviderHTTPError,
                                         ProviderSource)

__all__ = ["BreakerGuardedSource", "CircuitOpen", "Gateway", "ProviderHTTPError", "ProviderSource"]
