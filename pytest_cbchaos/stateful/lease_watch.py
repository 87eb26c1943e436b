"""Whether a producer fenced on a healthy link still held its lease (docs/stream-machine.md#lease-lapse).

A producer whose lease lapsed (its loop not run for ``lease_ttl_s``: a descheduled process, a
machine between steps) is fenced by design; one fenced with its lease intact is a relay or script
bug (INV-14). The watch observes the producer store's calls on the machine's own clock: every
lease grant (``open_turn`` ``OK``, ``renew`` ``OK``) and the first ``FENCED`` reply per stream.
Redis ran a grant no earlier than its send, so the lease lives at least until
``grant sent + lease_ttl_s``; a ``FENCED`` answered before that (counting only grants answered
before the fenced call was sent) came while the lease was certainly intact. Anything later may be
a lapse: excused, never guessed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass(frozen=True)
class Call:
    sent: float
    answered: float


@dataclass(frozen=True)
class LeaseJudgement:
    """The fenced call of one stream against its last grant: ``intact`` means certainly unexpired."""

    intact: bool
    text: str


@dataclass
class LeaseWatch:
    """Grants and the first ``FENCED`` per stream id, timed by ``clock`` (scripted in unit tests)."""

    lease_ttl_s: float
    clock: Callable[[], float] = time.monotonic
    grants: dict[str, list[Call]] = field(default_factory=dict)
    fenced: dict[str, Call] = field(default_factory=dict)

    def note(self, stream_id: str, status: str, sent: float, answered: float, *, grants: bool = True) -> None:
        if status == "OK" and grants:
            self.grants.setdefault(stream_id, []).append(Call(sent, answered))
        elif status == "FENCED":
            self.fenced.setdefault(stream_id, Call(sent, answered))

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

    def wrap(self, store: Any) -> None:
        """Observe ``store``'s ``open_turn``, ``renew`` and ``append`` (instance attributes; the class is untouched).
        An ``append`` never extends the lease: only its ``FENCED`` counts."""
        def timed(method: Any, sid_of: Callable[..., str], grants: bool) -> Any:
            async def call(*args: Any, **kw: Any) -> Any:
                sent = self.clock()
                reply = await method(*args, **kw)
                self.note(sid_of(*args, **kw), reply.status, sent, self.clock(), grants=grants)
                return reply
            return call
        store.open_turn = timed(store.open_turn, lambda conv, mid, sid, **_: sid, True)
        store.renew = timed(store.renew, lambda conv, sid: sid, True)
        store.append = timed(store.append, lambda call: call.stream_id, False)
