"""circuitbreaker 2.1.3: in-memory only (no storage hook), so ``shared_state`` is False."""

from __future__ import annotations

from typing import Any, Callable

from .base import BreakerAdapter, BreakerRejected, Ran, Unsupported, _Fail, normalise_state


class CircuitbreakerAdapter(BreakerAdapter):
    name = "circuitbreaker"
    library = "circuitbreaker"
    import_name = "circuitbreaker"
    shared_state = False
    known_weaknesses = ("W-HERD", "W-OPEN-TIME", "W-LOST-COUNT", "W-DIVERGENCE", "W-LINEAR")

    def _build(self) -> None:
        import circuitbreaker

        self.cb = circuitbreaker.CircuitBreaker(failure_threshold=self.config.failure_threshold,
                                                recovery_timeout=self.config.cooldown_s,
                                                expected_exception=Exception, name=self.breaker_name)
        self._err = circuitbreaker.CircuitBreakerError
        # cb.call() never rejects (docs/fault-kit-design.md#adapter-contract): go through the decorator,
        # which checks the state
        self._guarded = self.cb(lambda f: f())

    def call(self, fn: Callable[[], Any]) -> Any:
        ran = Ran(fn)
        try:
            return self._guarded(ran)
        except self._err as exc:
            if ran.ran:
                raise
            raise BreakerRejected(self.name, exc, self.cb.open_remaining) from exc

    def state(self) -> str:
        return normalise_state(self.cb.state)  # OPEN past its timeout reads half_open

    def counters(self) -> dict[str, int | None]:
        return {"failures": int(self.cb.failure_count), "successes": None}

    def keys(self) -> list[str]:
        return []

    def force(self, state: str) -> None:
        if state == "closed":
            self.cb.reset()
            return
        if state == "open":
            for _ in range(self.config.failure_threshold):
                try:
                    self._guarded(_raise_fail)
                except (_Fail, self._err):
                    pass
            return
        raise Unsupported(f"circuitbreaker cannot force {state!r}")

    def retry_after(self) -> float | None:
        return max(0.0, self.cb.open_remaining) if self.cb.opened else None


def _raise_fail() -> None:
    raise _Fail("forced open")
