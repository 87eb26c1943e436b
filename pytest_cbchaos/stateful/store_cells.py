"""Deterministic cell walk: one short scripted program per transition cell
(docs/breaker-design.md#transition-cells), run on the sequential store machine with a
``ManualClock`` so every cell is reached on every store path in every run, each step compared with
the kernel model and followed by the machine's invariants. It runs beside the random machine,
which explores the orders the scripts do not."""

from __future__ import annotations

from typing import Any, Callable

from ..breaker.cells import CELLS, CellCoverage
from .store_machine import store_machine

Step = tuple[Any, ...]
_TRIP: tuple[Step, ...] = (("fail", 2, 1.0), ("fail", 2, 1.0))  # threshold failures (count 2), R = 1 s
_PROBE: tuple[Step, ...] = _TRIP + (("adv", 2.0), ("gate", 30.0))  # ... cooldown over, probe won

#: cell -> a program that reaches it
SCRIPTS: dict[str, tuple[Step, ...]] = {
    "gate:closed": (("gate", 30.0),),
    "gate:open-cooldown": _TRIP + (("gate", 30.0),),
    "gate:open-elapsed": _PROBE,
    "gate:half_open-free": _PROBE + (("release", "last", "free"), ("gate", 30.0)),
    "gate:half_open-busy": _PROBE + (("gate", 30.0),),
    "gate:half_open-lease-expired": _TRIP + (("adv", 2.0), ("gate", 0.5), ("adv", 1.0), ("gate", 30.0)),
    "gate:duplicate": _PROBE + (("resend",),),
    "record_failure:closed-below": (("fail", 3, 60.0),),
    "record_failure:closed-at-threshold": (("fail", 3, 60.0),) * 3,
    "record_failure:open": _TRIP + (("fail", 2, 60.0),),
    "record_failure:half_open": _PROBE + (("fail", 2, 1.0),),
    "record_failure:duplicate": (("fail", 3, 60.0), ("resend",)),
    "record_success:closed-zero": (("success", None),),
    "record_success:closed-nonzero": (("fail", 3, 60.0), ("success", None)),
    "record_success:open": _TRIP + (("success", None),),
    "record_success:half_open": _PROBE + (("success", None),),
    "record_success:expected-mismatch": (("success", "open"),),
    # then one failure: it must count 1 (below the threshold), not reopen on a kept count
    "release_probe:owner-success": _PROBE + (("release", "last", "success"), ("fail", 2, 1.0)),
    "release_probe:owner-failure": _PROBE + (("release", "last", "failure"),),
    "release_probe:owner-abort": _PROBE + (("release", "last", "abort"),),
    "release_probe:owner-free": _PROBE + (("release", "last", "free"),),
    "release_probe:stale-token": _TRIP + (("adv", 2.0), ("gate", 0.5), ("adv", 1.0), ("gate", 30.0),
                                          ("release", "first", "success")),
    "release_probe:not-half_open": (("release", "fake", "success"),),
    "renew_probe:own-extend": _TRIP + (("adv", 2.0), ("gate", 0.5), ("renew", "last", 30.0)),
    "renew_probe:own-no-change": _PROBE + (("renew", "last", 0.5),),
    "renew_probe:stale": _PROBE + (("renew", "fake", 30.0),),
    "force_open:closed": (("force", 600.0),),
    "force_open:half_open": _PROBE + (("force", 600.0),),
    "force_open:open-longer": (("force", 1.0), ("force", 600.0)),
    "force_open:open-shorter": (("force", 600.0), ("force", 1.0)),
    "reset:closed": (("reset",),),
    "reset:open": _TRIP + (("reset",),),
    "reset:half_open": _PROBE + (("reset",),),
}


def _step(m: Any, s: Step) -> None:
    kind = s[0]
    if kind == "fail":
        m.record_failure(b=0, t=s[1], r=s[2])
    elif kind == "gate":
        m.gate(b=0, lease=s[1])
    elif kind == "adv":
        m.advance_time(dt=s[1])
    elif kind == "release":
        m.release_probe(b=0, which=s[1], o=s[2], r=1.0)
    elif kind == "renew":
        m.renew_probe(b=0, which=s[1], lease=s[2])
    elif kind == "success":
        m.record_success(b=0, e=s[1])
    elif kind == "force":
        m.force_open(b=0, d=s[1])
    elif kind == "reset":
        m.reset(b=0)
    elif kind == "resend":
        m.resend_last(b=0)
    else:  # pragma: no cover - SCRIPTS only uses the kinds above
        raise ValueError(f"unknown step {s!r}")


def walk_cells(factory: Callable[[], Any], coverage: CellCoverage | None = None) -> CellCoverage:
    """Run every script on a fresh machine over ``factory()`` (a store taking ``now=``); raises the
    machine's AssertionError on the first model mismatch or broken invariant, and AssertionError if
    a script does not land in its cell."""
    cov = coverage if coverage is not None else CellCoverage()
    machine = store_machine(factory, coverage=cov, name="CellWalk")
    for cell, script in SCRIPTS.items():
        m = machine()
        try:
            m.clear_backends()
            before = cov.counts[cell]
            for s in script:
                _step(m, s)
                m.store_matches_model()
                m.record_well_formed()
                m.open_until_monotone_outside_reset()
            assert cov.counts[cell] > before, f"cell walk: the script for {cell} never reached it"
        finally:
            m.teardown()
    assert set(SCRIPTS) == set(CELLS), f"cells without a script: {sorted(set(CELLS) - set(SCRIPTS))}"
    return cov
