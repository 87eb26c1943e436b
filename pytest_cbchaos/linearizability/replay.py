"""A partition whose ops are totally ordered in real time has a single candidate linearization,
its call order: it is decided by replaying ``model.step``, without the search's entry lists and
memo (docs/linearizability-design.md#partitioning-and-scheduling). So is one whose model says no
order of its ops can be illegal (``never_illegal``): call order respects real time. Same interface as
:class:`~.search.PartitionSearch` for the scheduler; a tracked (counterexample) run always searches.
"""

from __future__ import annotations

import time
from typing import Any, Sequence

from ..history.ops import INF, Op
from .search import ILLEGAL, OK, RUNNING


def is_sequential(ops: Sequence[Op]) -> bool:
    """Every op determinate and invoked after the previous one returned (``ops`` in call order;
    an equal time is concurrent, as the search orders a call before a return)."""
    prev = -INF
    for op in ops:
        if op.unknown or op.call <= prev:
            return False
        prev = op.ret
    return True


class SequentialReplay:
    """Replays a sequential partition (ids 0..n-1 in call order) through ``model.step``."""

    cache_entries = 0

    def __init__(self, ops: Sequence[Op], model: Any, n_required: int | None = None) -> None:
        """``n_required``: the determinate ops, if some are crashed (a sequential partition has none)."""
        self.ops = list(ops)
        self.model = model
        self.n_required = len(self.ops) if n_required is None else n_required
        self.state = model.init()
        self.steps = 0
        self.elapsed_s = 0.0
        self.reason = ""
        # nothing required (every op crashed): OK at once, as the search says
        self.status = RUNNING if self.n_required else OK
        self.afters: list[Any] = []
        self.linearization: list[tuple[int, Any]] | None = None if self.n_required else []

    def run(self, max_steps: int, deadline: float | None = None) -> str:
        """Replay up to ``max_steps`` more ops (a replay is never longer than its partition, so
        the deadline is checked by the scheduler between slices)."""
        if self.status != RUNNING:
            return self.status
        t0 = time.perf_counter()
        ops, step, state, afters = self.ops, self.model.step, self.state, self.afters
        pos = len(afters)
        add = afters.append
        for op in ops if pos == 0 and max_steps >= len(ops) else ops[pos:pos + max(max_steps, 0)]:
            ok, state = step(state, op)
            if not ok:
                self.steps += len(afters) - pos + 1
                self.status = ILLEGAL
                break
            add(state)
        else:
            self.steps += len(afters) - pos
            self.state = state
            if len(afters) == len(ops):
                self.status = OK
                self.linearization = list(enumerate(afters))
        self.elapsed_s += time.perf_counter() - t0
        return self.status

    @property
    def best_prefix_len(self) -> int:
        return self.n_required if self.status == OK else len(self.afters)
