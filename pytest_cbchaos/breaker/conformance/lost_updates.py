"""The lost-update check (docs/breaker-design.md#forced-interleavings): ``n`` threads × ``k``
``record_failure`` calls on one CLOSED record must count every applied call once. Each applied call's
reply carries the count it wrote, so the replies must be exactly 1..N (no two calls wrote the same
count) and the record must end at N. The first ``n`` calls meet in the store's window
(:class:`~.window.Rendezvous`), so a store that decides outside its lock loses updates on every run;
the rest run under a tiny switch interval."""

from __future__ import annotations

from ...testing.threads import run_together
from ..errors import StoreContentionError
from . import StoreTarget
from .window import Rendezvous, tiny_switch_interval

HIGH = 2**30  # a threshold never reached: the record stays CLOSED and counts


def lost_update_violations(target: StoreTarget, n: int = 8, k: int = 200, backend: str = "lost-updates") -> list[str]:
    """Run the check; an empty list is a pass. Contention errors (the WATCH fallback gives up after its
    retries) are not applied calls and are not counted."""
    st = target.make()
    st.clear(backend)
    rv = Rendezvous(st, n)
    if hasattr(st, "pause_hook"):
        st.pause_hook = rv
    counts: list[list[int]] = [[] for _ in range(n)]
    given_up = [0] * n

    def worker(w: int) -> None:
        for _ in range(k):
            try:
                d = st.atomic_record_failure(backend, HIGH, 60.0)
            except StoreContentionError:
                given_up[w] += 1
                continue
            counts[w].append(d["failure_count"])

    with tiny_switch_interval():  # an error propagates, a stuck worker fails the run
        run_together([lambda w=w: worker(w) for w in range(n)], 120, start_timeout=30, on_error=rv.leave)
    if hasattr(st, "pause_hook"):
        st.pause_hook = None
    applied = sorted(c for cs in counts for c in cs)
    final = st.get_state(backend)["failure_count"]
    st.clear(backend)
    v = []
    if applied != list(range(1, len(applied) + 1)):
        dup = len(applied) - len(set(applied))
        v.append(f"{len(applied)} applied failures wrote {len(set(applied))} distinct counts ({dup} lost updates)")
    if final != len(applied):
        v.append(f"{n} threads x {k} failures: {len(applied)} applied ({sum(given_up)} gave up on contention), "
                 f"record counts {final}")
    return v
