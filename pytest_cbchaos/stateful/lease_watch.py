"""Whether a producer fenced on a healthy link still held its lease, and whether it renewed it on time
(docs/stream-machine.md#lease-lapse, #renewal-cadence).

A producer whose lease lapsed (its loop not run for ``lease_ttl_s``: a descheduled process, a
machine between steps) is fenced by design; one fenced with its lease intact is a relay or script
bug (INV-14). The watch observes the producer store's calls on the machine's own clock: every
lease grant (``open_turn`` ``OK``, ``renew`` ``OK``) and the first ``FENCED`` reply per stream.
Redis ran a grant no earlier than its send, so the lease lives at least until
``grant sent + lease_ttl_s``; a ``FENCED`` answered before that (counting only grants answered
before the fenced call was sent) came while the lease was certainly intact. Anything later may be
a lapse, excused only when the producer renewed on time: :meth:`LeaseWatch.cadence` judges every
gap in which the producer's renewal loop was its own master against ``lease_renew_s`` plus the
scheduling lag observed in the producer's process meanwhile (:class:`pytest_cbchaos.lag.LagSampler`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from pytest_cbchaos.lag import LagSampler

#: points in one renewal gap where the renewal loop waits to be run (the first gap: the run's start, its
#: renewal task's start, the wake-up; later gaps: the wake-up): each may hide a delay shorter than one
#: sampling interval from the sampler (docs/stream-machine.md#renewal-cadence)
UNSAMPLED_WAITS = 3


@dataclass(frozen=True)
class Call:
    sent: float
    answered: float


@dataclass
class Attempt:
    """A store call of the renewal loop; ``answered`` (a reply or an error) is ``inf`` while in flight."""

    sent: float
    answered: float = math.inf


@dataclass(frozen=True)
class LeaseJudgement:
    """The fenced call of one stream against its last grant: ``intact`` means certainly unexpired."""

    intact: bool
    text: str


@dataclass
class LeaseWatch:
    """Grants, renewal attempts and the first ``FENCED`` per stream id, timed by ``clock`` (scripted in
    unit tests). ``renew_s`` and ``lag`` (a sampler running in the producer's process since before the
    first grant) enable :meth:`cadence`."""

    lease_ttl_s: float
    clock: Callable[[], float] = time.monotonic
    renew_s: float | None = None
    lag: LagSampler | None = None
    grants: dict[str, list[Call]] = field(default_factory=dict)
    fenced: dict[str, Call] = field(default_factory=dict)
    opened: dict[str, Call] = field(default_factory=dict)  # the open_turn grant that starts the renewals
    conv_of: dict[str, str] = field(default_factory=dict)
    renewals: dict[str, list[Attempt]] = field(default_factory=dict)
    side_calls: dict[str, list[Attempt]] = field(default_factory=dict)  # per conversation: ``active_add``
    ended: dict[str, float] = field(default_factory=dict)  # terminal sent or FENCED/CLOSED: no renewal due after
    last_call: dict[str, float] = field(default_factory=dict)  # the stream's latest answered store call

    def note(self, stream_id: str, status: str, sent: float, answered: float, *, grants: bool = True) -> None:
        if status == "OK" and grants:
            self.grants.setdefault(stream_id, []).append(Call(sent, answered))
        elif status == "FENCED":
            self.fenced.setdefault(stream_id, Call(sent, answered))
        if status in ("FENCED", "CLOSED"):
            self.ended.setdefault(stream_id, sent)

    def judge(self, stream_id: str) -> LeaseJudgement | None:
        """``None`` when the stream was never answered ``FENCED``."""
        f = self.fenced.get(stream_id)
        if f is None:
            return None
        before = [g.sent for g in self.grants.get(stream_id, []) if g.answered <= f.sent]
        if not before:
            return LeaseJudgement(False, "FENCED with no lease grant answered before it")
        age = f.answered - max(before)
        intact = age < self.lease_ttl_s
        what = "< lease_ttl: the lease was intact" if intact else ">= lease_ttl: the lease may have lapsed"
        return LeaseJudgement(intact, f"FENCED answered {age:.3f} s after the last lease grant was sent, "
                                      f"{what} ({self.lease_ttl_s:g} s)")

    # -- renewal cadence -----------------------------------------------------------------------
    def gaps(self, stream_id: str, until: float | None = None) -> list[tuple[float, float]]:
        """The spans in which the renewal loop owed the next renewal: from the open grant (or a renewal's
        answer) to the next renewal's send; the last one ends where no renewal was due any more (the
        terminal's send, a ``FENCED``/``CLOSED``) or at the stream's last answered call (a run that ended
        otherwise), or at ``until`` (a live stream). A renewal in flight closes the list."""
        opened = self.opened.get(stream_id)
        if opened is None:
            return []
        end = self.ended.get(stream_id)
        if until is None:
            until = end if end is not None else self.last_call.get(stream_id, opened.answered)
        elif end is not None:
            until = min(until, end)
        out: list[tuple[float, float]] = []
        start = opened.answered
        for a in sorted(self.renewals.get(stream_id, []), key=lambda a: a.sent):
            if a.sent > until:
                break
            out.append((start, a.sent))
            start = a.answered
        if start < until:
            out.append((start, until))
        return out

    def _in_calls(self, conv: str | None, t0: float, t1: float) -> float:
        """Time inside ``[t0, t1]`` the renewal loop spent waiting on its other store calls."""
        return sum(max(0.0, min(a.answered, t1) - max(a.sent, t0)) for a in self.side_calls.get(conv or "", []))

    def cadence(self, stream_id: str, until: float | None = None) -> list[str]:
        """Every renewal gap longer than ``renew_s`` (plus the sampler's resolution) once the lag observed in
        it and the loop's own store calls are taken out; empty when none (or when not enabled). A gap's
        own time never shrinks as it grows (lag accrues no faster than time): late up to ``until`` stays late."""
        if self.renew_s is None or self.lag is None:
            return []
        allowed = self.renew_s + UNSAMPLED_WAITS * self.lag.interval
        bad = []
        for t0, t1 in self.gaps(stream_id, until):
            lag = self.lag.window(t0, t1).sum_s
            store = self._in_calls(self.conv_of.get(stream_id), t0, t1)
            own = (t1 - t0) - lag - store
            if own > allowed:
                bad.append(f"no lease renewal sent for {t1 - t0:.3f} s measured - {lag:.3f} s observed lag - "
                           f"{store:.3f} s in store calls = {own:.3f} s > allowed {allowed:.3f} s "
                           f"(lease_renew_s {self.renew_s:g} + {UNSAMPLED_WAITS} x {self.lag.interval:g} s "
                           f"sampling interval), from {t0:.3f} to {t1:.3f}")
        return bad

    # -- observing the store -------------------------------------------------------------------
    def wrap(self, store: Any) -> None:
        """Observe ``store``'s ``open_turn``, ``renew``, ``append`` and ``active_add`` (instance attributes;
        the class is untouched). An ``append`` never extends the lease: only its ``FENCED`` counts."""
        def timed(method: Any, sid_of: Callable[..., str], kind: str) -> Any:
            async def call(*args: Any, **kw: Any) -> Any:
                sid, attempt = sid_of(*args, **kw), Attempt(self.clock())
                if kind == "renew":
                    self.renewals.setdefault(sid, []).append(attempt)
                elif kind == "active_add":
                    self.side_calls.setdefault(sid, []).append(attempt)
                elif kind == "append" and args[0].is_terminal:
                    self.ended.setdefault(sid, attempt.sent)
                try:
                    reply = await method(*args, **kw)
                finally:
                    attempt.answered = self.clock()
                    if kind != "active_add":
                        self.last_call[sid] = attempt.answered
                if kind != "active_add":
                    self.note(sid, reply.status, attempt.sent, attempt.answered, grants=kind != "append")
                if kind == "open_turn" and reply.status == "OK":
                    self.opened.setdefault(sid, Call(attempt.sent, attempt.answered))
                    self.conv_of[sid] = args[0]
                return reply
            return call
        store.open_turn = timed(store.open_turn, lambda conv, mid, sid, **_: sid, "open_turn")
        store.renew = timed(store.renew, lambda conv, sid: sid, "renew")
        store.append = timed(store.append, lambda call: call.stream_id, "append")
        store.active_add = timed(store.active_add, lambda conv: conv, "active_add")
