"""Generated register histories with distinct written values, legal or with one stale read.

Shared by the zone decision's tests and ``bench/bench_linearizability.py``: clients are always
busy, every op takes effect at a random instant inside its interval, and every write writes a
fresh value, which is the case the register fast path decides (docs/linearizability-design.md#register-fast-path).
"""

from __future__ import annotations

import random
from typing import Any, Callable

from ..history.store import History


def busy_schedule(n_ops: int, procs: int, rng: random.Random, ops: Callable[[random.Random], tuple[str, Any]],
                  ) -> list[tuple[int, int, int, int, int, str, Any]]:
    """``(k, process, call, return, effect instant, f, input)`` per op: each client calls its next op
    0–2 ticks after its last returned; ``ops(rng)`` draws ``(f, input)``."""
    specs = []
    free_at = [0] * procs
    for k in range(n_ops):
        p = min(range(procs), key=lambda i: (free_at[i], i))
        call = free_at[p] + rng.randint(0, 2)
        dur = rng.randint(1, 3 * procs)
        f, inp = ops(rng)
        specs.append((k, p, call, call + dur, call + rng.randint(0, dur), f, inp))
        free_at[p] = call + dur + 1
    return specs


def to_history(specs: list[tuple[int, int, int, int, int, str, Any]], outs: dict[int, Any]) -> History:
    """Invoke and ok events of ``specs`` with outputs ``outs``, in time order."""
    evs = []
    for k, p, call, ret, _point, f, inp in specs:
        evs.append((call, 0, k, {"type": "invoke", "process": p, "f": f, "value": inp}))
        evs.append((ret, 1, k, {"type": "ok", "process": p, "f": f, "value": outs[k]}))
    evs.sort(key=lambda e: (e[0], e[1], e[2]))
    return History([dict(e, time=t, index=i) for i, (t, _, _, e) in enumerate(evs)])


def register_history(n_ops: int, procs: int, seed: int, *, stale_read: bool = False) -> History:
    """A linearizable read/write history; with ``stale_read``, one read in the second half
    returns a value overwritten by a write that had returned before the read was called."""
    rng = random.Random(seed)
    specs = busy_schedule(n_ops, procs, rng, lambda r: ("write" if r.random() < 0.4 else "read", None))
    state = None
    outs: dict[int, object] = {}
    writes = []  # (call, ret, value) of each write
    next_value = 1
    for i, (k, p, call, ret, point, f, _inp) in sorted(enumerate(specs), key=lambda e: (e[1][4], e[1][0])):
        if f == "read":
            outs[k] = state
        else:
            specs[i] = (k, p, call, ret, point, f, next_value)
            state, outs[k] = next_value, None
            writes.append((call, ret, next_value))
            next_value += 1
    if stale_read:
        _plant_stale_read(specs, outs, writes, rng)
    return to_history(specs, outs)


def _plant_stale_read(specs: list, outs: dict, writes: list, rng: random.Random) -> None:
    """Make one late read return a value that a later write (called after it returned, and
    returned before the read was called) had certainly overwritten."""
    reads = [s for s in specs[len(specs) // 2:] if s[5] == "read"]
    by_ret = sorted(writes, key=lambda w: w[1])
    for k, _p, call, _ret, _point, _f, _inp in rng.sample(reads, len(reads)):
        done = [w for w in by_ret if w[1] < call]  # writes that returned before the read
        if len(done) < 2:
            continue
        last_call = max(w[0] for w in done)
        stale = [w[2] for w in done if w[1] < last_call and w[2] != outs[k]]
        if stale:
            outs[k] = stale[-1]
            return
    raise ValueError("no read can be made stale in this history")
