"""Process workers for multi-process breaker scenarios (importable under the spawn start method).

Each worker builds its own store (own pool) from ``conn`` = dict(host, port, password, key_prefix,
time_source, factory) and reports through a queue. ``factory`` (optional) is a picklable callable
``factory(client, key_prefix) -> store`` (a module-level function or a ``functools.partial`` of
one), so the workers run someone else's store; without it they build our ``RedisStore``.
Used by the project's tests and the bench.
"""

from __future__ import annotations

import time
from typing import Any


def _store(conn: dict[str, Any]) -> Any:
    import redis

    from pytest_cbchaos.breaker.redis_store import RedisStore

    client = redis.Redis(host=conn["host"], port=conn["port"], password=conn.get("password"), socket_timeout=5,
                         socket_connect_timeout=5)
    if conn.get("factory") is not None:
        return conn["factory"](client, conn["key_prefix"])
    return RedisStore(client, key_prefix=conn["key_prefix"], time_source=conn.get("time_source", "server"),
                      probe_lease_seconds=conn.get("lease", 30.0))


def gate_once(conn: dict[str, Any], backend: str, barrier: Any, out: Any) -> None:
    """Wait on the barrier, run one gate, report ``(won, label, prev_state)``."""
    st = _store(conn)
    st.get_state(backend)  # connect before the barrier
    barrier.wait(timeout=30)
    r = st.try_transition_and_claim_probe(backend, None, 60)
    out.put((r.won, r.label, r.record["_prev_state"]))
    _close(st)


def acquire_twice(conn: dict[str, Any], backend: str, barrier: Any, out: Any) -> None:
    """Two rounds of one breaker ``acquire()`` each, all processes together (the barrier); the
    round-1 winner holds its permit through round 2. Reports ``("admitted" | rejected state, ...)``
    (docs/breaker-design.md#half-open-admission)."""
    from ..breaker import CircuitBreakerOpenError
    from .admission import probe_breaker

    st = _store(conn)
    st.get_state(backend)  # connect before the barrier
    cls = None
    if conn.get("breaker"):  # "module:Class", e.g. a mutant breaker
        import importlib

        mod, _, name = conn["breaker"].partition(":")
        cls = getattr(importlib.import_module(mod), name)
    b = probe_breaker(st, backend, cls)
    got: list[str] = []
    permits: list[Any] = []
    for _ in range(2):
        barrier.wait(timeout=30)
        try:
            permits.append(b.acquire())
            got.append("admitted")
        except CircuitBreakerOpenError as exc:
            got.append(exc.state)
    barrier.wait(timeout=30)
    for p in permits:
        p.release()
    out.put(tuple(got))
    _close(st)


def claim_and_hang(conn: dict[str, Any], backend: str, out: Any) -> None:
    """Claim the probe, report the token, then hang in the 'call' until killed (bounded: 120 s)."""
    st = _store(conn)
    r = st.try_transition_and_claim_probe(backend, None, 60)
    out.put((r.won, r.token))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        time.sleep(0.05)


def load(conn: dict[str, Any], backend: str, n: int, barrier: Any, out: Any) -> None:
    """``n`` allow+record pairs; reports elapsed seconds (bench)."""
    st = _store(conn)
    st.get_state(backend)
    barrier.wait(timeout=30)
    t0 = time.perf_counter()
    for _ in range(n):
        r = st.try_transition_and_claim_probe(backend, None, 60)
        if r.admitted:
            st.atomic_record_success(backend)
    out.put(time.perf_counter() - t0)
    _close(st)


def _close(st: Any) -> None:
    client = getattr(st, "client", None)
    if client is not None:
        client.close()
