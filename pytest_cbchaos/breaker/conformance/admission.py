"""HALF_OPEN admission at the breaker level (docs/breaker-design.md#half-open-admission).

A store that grants one probe is not enough: the breaker turns the store's reply into a permit, and
a breaker that admits a caller the store rejected in HALF_OPEN lets a crowd through a recovering
backend. :func:`admission_violations` asks it directly, with ``n`` breakers (one per caller, as
separate workers have) on one store: from OPEN-elapsed exactly one caller is admitted, and while
that probe is in flight every other caller is rejected. The concurrent gates are forced to read
before any writes through the store's ``pause_hook`` when it has one (:mod:`.window`).
"""

from __future__ import annotations

from typing import Any, Callable

from ...testing.threads import run_together
from .window import Rendezvous, tiny_switch_interval

BACKEND = "admission"


def _round(breakers: list[Any], store: Any) -> tuple[list[Any], list[str]]:
    """Every breaker's ``acquire()`` at once: (admitted permits, rejected states). Any other error
    propagates, and a caller still stuck after 30 s fails the run (never a shorter list)."""
    from ..breaker import CircuitBreakerOpenError

    rv = Rendezvous(store, len(breakers))

    def caller(b: Any) -> tuple[bool, Any]:
        try:
            return True, b.acquire()
        except CircuitBreakerOpenError as exc:
            return False, exc.state

    hooked = hasattr(store, "pause_hook")
    if hooked:
        store.pause_hook = rv
    try:
        with tiny_switch_interval():
            outcomes = run_together([lambda b=b: caller(b) for b in breakers], 30, on_error=rv.leave)
    finally:
        if hooked:
            store.pause_hook = None
    return [v for admitted, v in outcomes if admitted], [v for admitted, v in outcomes if not admitted]


def admission_violations(store: Any, make_breaker: Callable[[Any], Any], n: int = 8) -> list[str]:
    """Run both rounds on ``store`` (``make_breaker(store)`` builds one caller's breaker, with the
    heartbeat off); the broken promises, empty when the breaker holds."""
    breakers = [make_breaker(store) for _ in range(n)]
    store.force_open(BACKEND, 0)  # OPEN, cooldown elapsed
    out: list[str] = []
    won, rejected = _round(breakers, store)
    if len(won) != 1:
        out.append(f"OPEN-elapsed: {len(won)} of {n} concurrent callers admitted (expected exactly 1)")
    busy, rejected = _round(breakers, store)
    if busy:
        out.append(f"HALF_OPEN with a busy probe: {len(busy)} of {n} other callers admitted (expected 0; "
                   f"their permits: {[p.state for p in busy]})")
    if rejected and set(rejected) != {"half_open"}:
        out.append(f"HALF_OPEN with a busy probe: rejections name {sorted(set(rejected))}, expected half_open")
    for p in won + busy:
        p.release()
    return out


def probe_breaker(store: Any, backend: str = BACKEND, cls: Any = None) -> Any:
    """One caller's breaker for :func:`admission_violations`: long cooldown and lease, no heartbeat."""
    from ..breaker import BreakerConfig, CircuitBreaker

    cfg = BreakerConfig(failure_threshold=1, cooldown_s=600, probe_lease_seconds=600, probe_heartbeat=False)
    return (cls or CircuitBreaker)(backend, cfg, store=store)
