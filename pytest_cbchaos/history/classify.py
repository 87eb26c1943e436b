"""Default completion classifier for exceptions (docs/linearizability-design.md#completion table).

Returns ``(type, value, error)``. Definiteness is preserved: only provable no-effect cases are
``fail``; a Redis error reply is ``ok`` with the error as output; anything else is ``info``.
"""

from __future__ import annotations

from typing import Any, Callable

Classifier = Callable[[BaseException], tuple[str, Any, Any]]


def _err(exc: BaseException) -> list[str]:
    return [type(exc).__name__, str(exc)[:200]]


def default_classifier(exc: BaseException) -> tuple[str, Any, Any]:
    try:
        import redis.exceptions as rex
    except ImportError:  # pragma: no cover - redis is a dependency
        rex = None  # type: ignore[assignment]
    if rex is not None:
        if isinstance(exc, rex.NoScriptError):
            return "fail", None, ["noscript", str(exc)[:200]]
        if isinstance(exc, rex.ResponseError):
            return "ok", {"error": str(exc)[:200]}, None
        if isinstance(exc, (rex.TimeoutError, rex.ConnectionError)):
            if isinstance(exc.__cause__ or exc.__context__, ConnectionRefusedError):
                return "fail", None, ["refused", str(exc)[:200]]
            return "info", None, ["timeout" if isinstance(exc, rex.TimeoutError) else "conn",
                                  type(exc).__name__]
    if isinstance(exc, ConnectionRefusedError):
        return "fail", None, ["refused", str(exc)[:200]]
    # store errors from the breaker layer, by name (no import: lower layers only)
    name = type(exc).__name__
    if name == "StoreIndeterminateError":
        return "info", None, ["indeterminate", str(exc)[:200]]
    if name == "StoreUnavailableError":
        # the breaker store raises this only when no attempt can have reached the server
        return "fail", None, ["unavailable", str(exc)[:200]]
    if name in ("StoreDataError", "StoreConfigError"):
        return "ok", {"error": name}, None
    return "info", None, _err(exc)
