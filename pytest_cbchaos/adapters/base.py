"""Adapter contract (docs/fault-kit-design.md#adapter-contract): one normalised face over third-party breakers.

Async libraries get a sync facade: each async adapter owns a private event loop (``run``) and
also exposes ``acall`` for probes that must run inside that loop (W-LOOP-BLOCK).
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass
from typing import Any, Awaitable, Callable, ClassVar

from pytest_cbchaos.renames import accepts_renamed

STATES = ("closed", "open", "half_open", "unknown")


class AdapterUnavailable(Exception):
    """The library is not installed or cannot work in this environment (reason in the message)."""


class BreakerRejected(Exception):
    """The breaker refused the call without running it (normalised from the library's error)."""

    def __init__(self, adapter: str, original: BaseException | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(f"{adapter}: call rejected ({type(original).__name__ if original else 'open'})")
        self.adapter, self.original, self.retry_after = adapter, original, retry_after


class Unsupported(Exception):
    """The library lacks this operation (contract says: ``n/a``)."""


@accepts_renamed
@dataclass(frozen=True)
class AdapterConfig:
    """Normalised breaker configuration (docs/fault-kit-design.md#adapter-contract)."""

    failure_threshold: int = 3
    cooldown_s: float = 1.0
    half_open_permits: int | None = 1
    success_threshold: int = 1

    def __post_init__(self) -> None:
        if isinstance(self.failure_threshold, bool) or not isinstance(self.failure_threshold, int) \
                or self.failure_threshold < 1:
            raise ValueError(f"AdapterConfig.failure_threshold: expected an int >= 1, got {self.failure_threshold!r}")
        if not isinstance(self.cooldown_s, (int, float)) or not self.cooldown_s > 0:
            raise ValueError(f"AdapterConfig.cooldown_s: expected a number > 0, got {self.cooldown_s!r}")
        if self.half_open_permits is not None and (not isinstance(self.half_open_permits, int)
                                                   or self.half_open_permits < 1):
            raise ValueError(f"AdapterConfig.half_open_permits: expected None or an int >= 1, "
                             f"got {self.half_open_permits!r}")
        if not isinstance(self.success_threshold, int) or self.success_threshold < 1:
            raise ValueError(f"AdapterConfig.success_threshold: expected an int >= 1, got {self.success_threshold!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Fail(Exception):
    """The exception the adapters raise to record a failure when a library has no explicit API."""


def normalise_state(raw: Any) -> str:
    """Map a library's state spelling (``half-open``, ``OPENED``, enum members …) to the four values of
    docs/fault-kit-design.md#adapter-contract."""
    if raw is None:
        return "unknown"
    import enum

    s = str(raw.name) if isinstance(raw, enum.Enum) else str(raw)
    s = s.strip().lower().replace("-", "_").replace(" ", "_")
    s = s.rsplit(".", 1)[-1]
    return {"closed": "closed", "open": "open", "opened": "open", "half_open": "half_open",
            "half_opened": "half_open"}.get(s, "unknown")


class BreakerAdapter:
    """Base class; subclasses set the class attributes and implement ``_build``/``call``/``state``."""

    name: ClassVar[str] = ""
    library: ClassVar[str] = ""  # PyPI distribution name
    import_name: ClassVar[str] = ""
    shared_state: ClassVar[bool] = True
    is_async: ClassVar[bool] = False
    known_weaknesses: ClassVar[tuple[str, ...]] = ()

    def __init__(self) -> None:
        self.breaker_name = ""
        self.config = AdapterConfig()
        self.redis_url = ""
        self.password: str | None = None
        self._clients: list[Any] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self.library_defaults = False

    # --- class level ---------------------------------------------------------------------------
    @classmethod
    def library_version(cls) -> str | None:
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version(cls.library)
        except PackageNotFoundError:
            return None

    @classmethod
    def unavailable_reason(cls) -> str | None:
        """None when usable here, else why not (shown as the skip reason)."""
        import importlib

        try:
            importlib.import_module(cls.import_name)
        except Exception as exc:  # ImportError or a broken install
            return f"{cls.library} not installed ({type(exc).__name__}: {exc}); pip install 'pytest-cbchaos[adapters]'"
        return None

    # --- construction --------------------------------------------------------------------------
    def build(self, redis_url: str, password: str | None, breaker_name: str,
              config: AdapterConfig | dict[str, Any] | None = None, *,
              library_defaults: bool = False) -> "BreakerAdapter":
        """Construct the library's breaker against ``redis_url`` (always the fault proxy's address).

        ``library_defaults=True`` leaves namespace/prefix at the library's default (W-CONFIG probe
        only: such breakers may share keys with every other default-configured breaker).
        """
        reason = self.unavailable_reason()
        if reason:
            raise AdapterUnavailable(reason)
        if not isinstance(breaker_name, str) or not breaker_name:
            raise ValueError(f"breaker_name: expected a non-empty str, got {breaker_name!r}")
        if isinstance(config, dict):
            config = AdapterConfig(**config)
        self.redis_url, self.password, self.breaker_name = redis_url, password, breaker_name
        self.config = config or AdapterConfig()
        self.library_defaults = library_defaults
        self._build()
        return self

    def _build(self) -> None:
        raise NotImplementedError

    def redis_client(self, *, asyncio_client: bool = False, decode_responses: bool = False,
                     socket_timeout: float = 2.0) -> Any:
        """A client on the proxy address that never retries (retries would hide injected faults)."""
        from redis.backoff import NoBackoff

        if asyncio_client:
            import redis.asyncio
            import redis.asyncio.retry

            c = redis.asyncio.Redis.from_url(self.redis_url, password=self.password,
                                             decode_responses=decode_responses, socket_timeout=socket_timeout,
                                             socket_connect_timeout=socket_timeout,
                                             retry=redis.asyncio.retry.Retry(NoBackoff(), 0))
        else:
            import redis
            from redis.retry import Retry

            c = redis.Redis.from_url(self.redis_url, password=self.password, decode_responses=decode_responses,
                                     socket_timeout=socket_timeout, socket_connect_timeout=socket_timeout,
                                     retry=Retry(NoBackoff(), 0))
        self._clients.append(c)
        return c

    # --- async facade --------------------------------------------------------------------------
    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        return self._loop

    def run(self, coro: Awaitable[Any]) -> Any:
        """Run a coroutine on this adapter's private loop (async libraries bind clients to it)."""
        return self.loop.run_until_complete(coro)

    # --- contract ------------------------------------------------------------------------------
    def call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` through the breaker; ``BreakerRejected`` if refused, else ``fn``'s result/exception."""
        raise NotImplementedError

    async def acall(self, fn: Callable[[], Awaitable[Any]]) -> Any:
        """Async variant (async adapters only)."""
        raise Unsupported(f"{self.name} is synchronous")

    def record_success(self) -> None:
        self._outcome(True)

    def record_failure(self) -> None:
        self._outcome(False)

    def _outcome(self, ok: bool) -> None:
        def fn() -> None:
            if not ok:
                raise _Fail("recorded failure")

        try:
            self.call(fn)
        except (_Fail, BreakerRejected):
            pass

    def state(self) -> str:
        raise NotImplementedError

    def counters(self) -> dict[str, int | None]:
        return {}

    def keys(self) -> list[str]:
        """Redis keys this breaker owns (for state dumps and TTL audits)."""
        return []

    def force(self, state: str) -> None:
        raise Unsupported(f"{self.name} cannot force {state!r}")

    def retry_after(self) -> float | None:
        """Seconds until the breaker would admit again, as this instance believes (None if n/a)."""
        return None

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "library": self.library, "library_version": self.library_version(),
                "shared_state": self.shared_state, "is_async": self.is_async,
                "known_weaknesses": list(self.known_weaknesses)}

    def close(self) -> None:
        for c in self._clients:
            try:
                if hasattr(c, "aclose"):
                    self.run(c.aclose())
                else:
                    c.close()
            except Exception:
                pass
        self._clients.clear()
        if self._loop is not None:
            self._loop.close()
            self._loop = None

    def __enter__(self) -> "BreakerAdapter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} breaker={self.breaker_name!r}>"


class Ran:
    """Wraps ``fn`` to learn whether the library actually executed it (pybreaker raises its own
    error on the call that trips, which is not a rejection)."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.fn, self.ran = fn, False
        self.error: BaseException | None = None

    def __call__(self, *a: Any, **k: Any) -> Any:
        self.ran = True
        try:
            return self.fn(*a, **k)
        except BaseException as exc:
            self.error = exc
            raise

    def reraise(self, lib_error: BaseException) -> BaseException:
        """fn's own exception when the library replaced it with its "tripped" error."""
        return self.error if self.error is not None else lib_error


class ARan(Ran):
    async def __call__(self, *a: Any, **k: Any) -> Any:  # type: ignore[override]
        self.ran = True
        try:
            return await self.fn(*a, **k)
        except BaseException as exc:
            self.error = exc
            raise
