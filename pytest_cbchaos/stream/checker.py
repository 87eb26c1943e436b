"""The stream checker: runs on any recorded stream (log entries, records, deliveries, emissions).

It checks the log (dense seq, contiguous messages, exactly one terminal that is the message's last
entry, records agreeing with the log, errors visible on replay) and, when given, every consumer's
delivery list (no gap, no duplicate, bytes equal to the log, terminal within a bound) and the
producer's emissions (each emitted step once, in order, with the same bytes).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

from pytest_cbchaos.stream.envelope import TERMINAL_STATUS, Envelope


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class Delivery:
    """What one consumer handed to its application: its starting cursor and (envelope, arrival time)."""

    cursor0: int
    items: list[tuple[Envelope, float]] = field(default_factory=list)
    name: str = "consumer"
    target: str | None = None

    def add(self, env: Envelope, at: float) -> None:
        self.items.append((env, at))


@dataclass
class StreamReport:
    violations: list[str] = field(default_factory=list)
    messages: int = 0
    entries: int = 0
    gaps: int = 0
    duplicates: int = 0
    late_terminals: int = 0

    @property
    def ok(self) -> bool:
        return not self.violations

    def add(self, rule: str, text: str) -> None:
        self.violations.append(f"{rule}: {text}")

    def __str__(self) -> str:
        head = f"{self.entries} entries, {self.messages} messages, {len(self.violations)} violation(s)"
        return "\n".join([head] + ["  " + v for v in self.violations[:50]])


def check_stream(entries: Sequence[Envelope], *, floor_seq: int = 0, last_seq: int | None = None,
                 records: Mapping[str, Mapping[str, Any]] | None = None,
                 deliveries: Iterable[Delivery] = (),
                 emissions: Iterable[tuple[str, int, str, bytes]] | None = None,
                 terminal_written_at: Mapping[str, float] | None = None, live_bound_s: float | None = None,
                 replay: Callable[[int, str], Sequence[Envelope]] | None = None,
                 require_finished: bool = True) -> StreamReport:
    r = StreamReport(entries=len(entries))
    by_seq = {e.seq: e for e in entries}
    # INV-10 dense seq
    seqs = [e.seq for e in entries]
    top = last_seq if last_seq is not None else (max(seqs) if seqs else floor_seq)
    if top - floor_seq > 2 * len(seqs) + 1000:  # ids that are not seqs at all (e.g. `XADD *`)
        r.gaps += 1
        r.add("INV-10 dense", f"log ids are not <seq>-0 in {floor_seq + 1}..: top {top} for {len(seqs)} entries")
        expected = seqs
    else:
        expected = list(range(floor_seq + 1, top + 1))
    if seqs != expected:
        missing = sorted(set(expected) - set(seqs))
        dup = len(seqs) - len(set(seqs))
        r.gaps += len(missing)
        r.duplicates += dup
        r.add("INV-10 dense", f"log seqs are not {floor_seq + 1}..{expected[-1] if expected else floor_seq}: "
                              f"missing {missing[:10]}, duplicates {dup}, order ok={seqs == sorted(seqs)}")
    # INV-3/11 messages
    msgs: dict[str, list[Envelope]] = {}
    order: list[str] = []
    for e in entries:
        if e.message_id not in msgs:
            order.append(e.message_id)
        msgs.setdefault(e.message_id, []).append(e)
    r.messages = len(msgs)
    for mid, es in msgs.items():
        s = [e.seq for e in es]
        if s != list(range(s[0], s[0] + len(s))):
            r.add("INV-11 contiguous", f"message {mid} entries are not contiguous: {s[:20]}")
        if es[0].kind != "turn_started" and s[0] > floor_seq + 1:
            r.add("INV-11 contiguous", f"message {mid} starts with {es[0].kind} at seq {s[0]}, not turn_started")
        terms = [e for e in es if e.is_terminal]
        if len(terms) > 1:
            r.add("INV-3 one terminal", f"message {mid} has {len(terms)} terminals at {[t.seq for t in terms]}")
        if not terms and require_finished:
            r.add("INV-3 one terminal", f"message {mid} has no terminal (last seq {s[-1]})")
        if terms and terms[0] is not es[-1]:
            r.add("INV-3 one terminal", f"message {mid}: entries follow its terminal at seq {terms[0].seq}")
        rec = (records or {}).get(mid) if records is not None else None
        if records is not None:
            if rec is None:
                if s[0] > floor_seq:
                    r.add("INV-12 record", f"message {mid} has no record")
            else:
                if int(rec.get("last_seq", -1)) != s[-1]:
                    r.add("INV-12 record", f"message {mid}: record last_seq {rec.get('last_seq')} != newest entry {s[-1]}")
                want = TERMINAL_STATUS[terms[0].kind] if terms else "in_progress"
                if rec.get("status") != want:
                    r.add("INV-12 record", f"message {mid}: status {rec.get('status')!r} but log says {want!r}")
                if terms and terms[0].kind == "error":
                    p = terms[0].payload
                    if rec.get("error_code") != p.get("code"):
                        r.add("INV-5 error visible", f"message {mid}: record error_code {rec.get('error_code')!r} != {p.get('code')!r}")
        if terms and terms[0].kind == "error" and replay is not None:
            for cursor in sorted({0, s[0] - 1, s[0], terms[0].seq - 1}):
                got = replay(cursor, mid)
                if not got or not got[-1].is_terminal or got[-1].kind != "error" or got[-1].message_id != mid:
                    r.add("INV-5 error visible", f"message {mid}: replay from {cursor} does not end with its error "
                                                 f"(got {[g.kind for g in got[-3:]]})")
    if records is not None:
        for mid, rec in records.items():
            if mid not in msgs and int(rec.get("first_seq", 0)) > floor_seq:
                r.add("INV-12 record", f"record {mid} has no entries in the log")
    # deliveries: INV-1, 2, 4, 9
    for d in deliveries:
        cur = d.cursor0
        seen: set[tuple[str, int]] = set()
        for env, at in d.items:
            key = (env.epoch, env.seq)
            if key in seen or env.seq <= cur:
                r.duplicates += 1
                r.add("INV-2 no duplicate", f"{d.name}: seq {env.seq} delivered again (cursor {cur})")
                continue
            seen.add(key)
            if env.seq != cur + 1:
                r.gaps += env.seq - cur - 1
                r.add("INV-1 no gap", f"{d.name}: delivered {env.seq} after {cur}")
            cur = env.seq
            logged = by_seq.get(env.seq)
            if logged is not None and sha(logged.payload_bytes) != sha(env.payload_bytes):
                r.add("INV-9 immutable", f"{d.name}: seq {env.seq} bytes differ from the log")
            if env.is_terminal and terminal_written_at and live_bound_s is not None and env.message_id in terminal_written_at:
                late = at - terminal_written_at[env.message_id]
                if late > live_bound_s:
                    r.late_terminals += 1
                    r.add("INV-4 live terminal", f"{d.name}: terminal of {env.message_id} arrived {late:.2f}s after it was written")
        if d.target is not None:
            ends = [e for e, _ in d.items if e.is_terminal and e.message_id == d.target]
            if not ends:
                r.add("INV-6 reaches terminal", f"{d.name}: never received the terminal of {d.target}")
    # INV-14/9: emissions
    if emissions is not None:
        per_run: dict[str, list[tuple[int, str, str]]] = {}
        for sid, step, kind, data in emissions:
            per_run.setdefault(sid, []).append((step, kind, sha(data)))
        logged_runs: dict[str, list[tuple[int, str, str]]] = {}
        for e in entries:
            logged_runs.setdefault(e.stream_id, []).append((e.step, e.kind, sha(e.payload_bytes)))
        for sid, logged in logged_runs.items():
            if sid not in per_run:
                continue
            emitted = per_run[sid]
            steps = [x[0] for x in logged]
            if len(steps) != len(set(steps)):
                r.duplicates += len(steps) - len(set(steps))
                r.add("INV-14 idempotent", f"run {sid}: a step was written twice: {steps[:20]}")
            if logged != emitted[:len(logged)]:
                r.add("INV-14 idempotent", f"run {sid}: log (step, kind, sha) differs from the emitted sequence")
    return r
