"""pybreaker 1.4.1 on ``CircuitRedisStorage`` (keys ``<ns>:pybreaker:{fail_counter,success_counter,state,opened_at}``)."""

from __future__ import annotations

from typing import Any, Callable

from .base import BreakerAdapter, BreakerRejected, Ran, Unsupported, normalise_state


class PybreakerAdapter(BreakerAdapter):
    name = "pybreaker"
    library = "pybreaker"
    import_name = "pybreaker"
    known_weaknesses = ("W-HERD", "W-OPEN-TIME", "W-LOST-COUNT", "W-REDIS-DOWN", "W-SERIAL", "W-NO-TTL",
                        "W-CONFIG", "W-LINEAR")

    def _build(self) -> None:
        import pybreaker

        self.ns = None if self.library_defaults else f"cbchaos-ad:{self.breaker_name}"
        self.client = self.redis_client(decode_responses=False)  # pybreaker needs bytes (W-CONFIG)
        storage = pybreaker.CircuitRedisStorage(pybreaker.STATE_CLOSED, self.client, namespace=self.ns,
                                                fallback_circuit_state=pybreaker.STATE_CLOSED)
        self.cb = pybreaker.CircuitBreaker(fail_max=self.config.failure_threshold,
                                           reset_timeout=self.config.cooldown_s,
                                           success_threshold=self.config.success_threshold,
                                           state_storage=storage, name=self.breaker_name)
        self._err = pybreaker.CircuitBreakerError

    def call(self, fn: Callable[[], Any]) -> Any:
        ran = Ran(fn)
        try:
            return self.cb.call(ran)
        except self._err as exc:
            if ran.ran:  # the failing call that tripped: the library replaces fn's error with its own
                raise ran.reraise(exc) from None
            raise BreakerRejected(self.name, exc) from exc

    def state(self) -> str:
        return normalise_state(self.cb.current_state)

    def counters(self) -> dict[str, int | None]:
        return {"failures": int(self.cb.fail_counter), "successes": int(self.cb.success_counter)}

    def keys(self) -> list[str]:
        pre = f"{self.ns}:" if self.ns else ""
        return [f"{pre}pybreaker:{k}" for k in ("fail_counter", "success_counter", "state", "opened_at")]

    def force(self, state: str) -> None:
        fn = {"open": self.cb.open, "half_open": self.cb.half_open, "closed": self.cb.close}.get(state)
        if fn is None:
            raise Unsupported(f"pybreaker cannot force {state!r}")
        try:
            fn()
        except self._err:
            pass  # open() raises CircuitBreakerError when throw_new_error_on_trip

    def retry_after(self) -> float | None:
        import time

        opened = self.cb._state_storage.opened_at
        if opened is None or self.state() != "open":
            return None
        return max(0.0, opened.timestamp() + self.config.cooldown_s - time.time())
