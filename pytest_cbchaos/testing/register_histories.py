"""Generated register histories with distinct written values, legal or with one stale read.

Shared by the zone decision's tests and ``bench/bench_linearizability.py``: clients are always
busy, every op takes effect at a random instant inside its interval, and every write writes a
fresh value, which is the case the register fast path decides (docs/linearizability-design.md#register-fast-path).
"""

from __future__ import annotations

import random

from ..history.store import History


def register_history(n_ops: int, procs: int, seed: int, *, stale_read: bool = False) -> History:
    """A linearizable read/write history; with ``stale_read``, one read in the second half
    returns a value overwritten by a write that had returned before the read was called."""
    rng = random.Random(seed)
    specs = []
    free_at = [0] * procs
    for k in range(n_ops):
        p = min(range(procs), key=lambda i: (free_at[i], i))
        call = free_at[p] + rng.randint(0, 2)
        dur = rng.randint(1, 3 * procs)
        f = "write" if rng.random() < 0.4 else "read"
        specs.append((k, p, call, call + dur, call + rng.randint(0, dur), f))
        free_at[p] = call + dur + 1
    state = None
    outs: dict[int, object] = {}
    inputs: dict[int, object] = {}
    writes = []  # (call, ret, value) of each write
    next_value = 1
    for k, p, call, ret, point, f in sorted(specs, key=lambda s: (s[4], s[0])):
        if f == "read":
            outs[k] = state
        else:
            inputs[k], state, outs[k] = next_value, next_value, None
            writes.append((call, ret, next_value))
            next_value += 1
    if stale_read:
        _plant_stale_read(specs, outs, writes, rng)
    evs = []
    for k, p, call, ret, point, f in specs:
        evs.append((call, 0, k, {"type": "invoke", "process": p, "f": f, "value": inputs.get(k)}))
        evs.append((ret, 1, k, {"type": "ok", "process": p, "f": f, "value": outs[k]}))
    evs.sort(key=lambda e: (e[0], e[1], e[2]))
    return History([dict(e, time=t, index=i) for i, (t, _, _, e) in enumerate(evs)])


def _plant_stale_read(specs: list, outs: dict, writes: list, rng: random.Random) -> None:
    """Make one late read return a value that a later write (called after it returned, and
    returned before the read was called) had certainly overwritten."""
    reads = [s for s in specs[len(specs) // 2:] if s[5] == "read"]
    by_ret = sorted(writes, key=lambda w: w[1])
    for k, _p, call, _ret, _point, _f in rng.sample(reads, len(reads)):
        done = [w for w in by_ret if w[1] < call]  # writes that returned before the read
        if len(done) < 2:
            continue
        last_call = max(w[0] for w in done)
        stale = [w[2] for w in done if w[1] < last_call and w[2] != outs[k]]
        if stale:
            outs[k] = stale[-1]
            return
    raise ValueError("no read can be made stale in this history")
