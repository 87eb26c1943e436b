"""What counts as a breaker failure (docs/breaker.md, "What counts as a failure").

By default: a transport error (connection refused or reset, a timeout) of the standard library or of a
common HTTP client, or an exception carrying one of the retryable HTTP statuses. HTTP client libraries
are looked up in ``sys.modules`` instead of being imported: an exception of theirs can only exist once
they are imported, so the check never costs an import.
"""

from __future__ import annotations

import sys
from typing import Callable

RETRYABLE_STATUS_CODES = (500, 502, 503, 529)

# (module, class names) whose instances are transport failures, when that module is imported
TRANSPORT_ERRORS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("httpx", ("TimeoutException", "NetworkError", "RemoteProtocolError")),
    ("aiohttp", ("ClientConnectionError", "ServerTimeoutError")),
    ("requests", ("ConnectionError", "Timeout")),
)

FailurePredicate = Callable[[BaseException], bool]


def extract_status_code(exc: BaseException) -> int | None:
    """``exc.status_code`` or ``exc.response.status_code`` (httpx, requests, SDK errors), else None."""
    code = getattr(exc, "status_code", None)
    if code is None:
        code = getattr(getattr(exc, "response", None), "status_code", None)
    return code if isinstance(code, int) else None


def transport_error_types() -> tuple[type[BaseException], ...]:
    """Builtin ``ConnectionError`` and ``TimeoutError`` plus the imported HTTP clients' transport errors."""
    found: list[type[BaseException]] = [ConnectionError, TimeoutError]
    for module_name, names in TRANSPORT_ERRORS:
        module = sys.modules.get(module_name)
        if module is None:
            continue
        for name in names:
            cls = getattr(module, name, None)
            if isinstance(cls, type) and issubclass(cls, BaseException):
                found.append(cls)
    return tuple(found)


def is_transport_error(exc: BaseException) -> bool:
    return isinstance(exc, transport_error_types())


def default_is_failure(exc: BaseException, statuses: tuple[int, ...] = RETRYABLE_STATUS_CODES) -> bool:
    """The documented default: a transport error, or a status in ``statuses``. Compose your own with it:
    ``is_failure=lambda e: default_is_failure(e) or isinstance(e, MyProviderError)``."""
    return extract_status_code(exc) in statuses or is_transport_error(exc)


def counts_as_failure(exc: BaseException, statuses: tuple[int, ...], exceptions: tuple[type[BaseException], ...],
                      predicate: FailurePredicate | None) -> bool:
    """``BreakerConfig``'s rule: an instance of ``failure_exceptions``, else ``is_failure(exc)`` when given,
    else :func:`default_is_failure` with ``retryable_status_codes``."""
    if exceptions and isinstance(exc, exceptions):
        return True
    if predicate is not None:
        return bool(predicate(exc))
    return default_is_failure(exc, statuses)
