"""CB-26, one op one clock, on any server-backed store path (docs/breaker-design.md#clock-skew): with
``time_source="server"`` and the *worker's* clock skewed far ahead or behind, every decision and
every deadline must be in the server's time. No sleeping: the skew (``WORKER_SKEWS``) is far larger
than the tolerance, so a store that takes ``now`` from the worker is off by the whole skew."""

from __future__ import annotations

from typing import Any, Callable

WORKER_SKEWS = (30.0, -30.0)
R = 60.0
TOL = 2.0  # round trips and a loaded machine; 15x below the skew


def server_time_violations(store: Any, server_now: Callable[[], float], backend: str = "cb26") -> list[str]:
    """Trip, gate, force_open and reset on ``store``; the replies' ``_now`` and ``open_until`` must be the
    server's clock (within ``TOL``), the gate must see the cooldown."""
    v: list[str] = []

    def near(what: str, got: float, lo: float, hi: float) -> None:
        if not lo - TOL <= got <= hi + TOL:
            v.append(f"{what} = {got:.3f}, server clock says [{lo:.3f}, {hi:.3f}] (± {TOL} s)")

    store.clear(backend)
    t0 = server_now()
    d = store.atomic_record_failure(backend, 1, R)
    t1 = server_now()
    near("record_failure _now", d["_now"], t0, t1)
    near("open_until after the trip", d["open_until"], t0 + R, t1 + R)
    t0 = server_now()
    g = store.try_transition_and_claim_probe(backend, None, R, lease_seconds=R)
    t1 = server_now()
    near("gate _now", g.record["_now"], t0, t1)
    if g.record["_reason"] != "cooldown" or g.won:
        v.append(f"gate right after the trip: reason={g.record['_reason']!r} won={g.won}, expected a cooldown reject")
    t0 = server_now()
    f = store.force_open(backend, 3 * R)
    t1 = server_now()
    near("force_open open_until", f["open_until"], t0 + 3 * R, t1 + 3 * R)
    r = store.reset(backend)
    near("reset _now", r["_now"], t0, server_now())
    store.clear(backend)
    return v
