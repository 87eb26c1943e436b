"""The durable-stream machines' judge: one consistent snapshot per conversation, judged by
:func:`~pytest_cbchaos.stream.check_stream` plus what only a sequence of snapshots can see
(INV-12: ``last_seq`` never decreases, a status changes once, a finished record equals the one
rebuilt from the log; INV-10: no log without meta; INV-30: no lease at quiescence).

Shared by the in-process machine (:mod:`.durable_stream`) and the child-process one
(:mod:`.durable_stream_process`), so both judge a run the same way.
"""

from __future__ import annotations

from typing import Any, Iterable

from pytest_cbchaos.stream import StreamStore, check_stream
from pytest_cbchaos.stream.checker import Delivery
from pytest_cbchaos.stream.envelope import Envelope, record_from_entries
from pytest_cbchaos.stream.store import INT_ATTRS, _s


async def snapshot(admin: Any, astore: StreamStore, conv: str) -> tuple[dict[str, Any] | None, list[Envelope],
                                                                        dict[str, dict[str, Any]]]:
    """meta, log and records read in one MULTI: the relay keeps writing while the machine judges."""
    meta_k, log_k, rec_k = astore.keys(conv)[:3]
    async with admin.pipeline(transaction=True) as pipe:
        pipe.hgetall(meta_k)
        pipe.xrange(log_k, "-", "+")
        pipe.hgetall(rec_k)
        raw_meta, rows, raw_recs = await pipe.execute()
    if not raw_meta:
        if rows:  # a log nobody's script wrote: no meta, no seq (INV-10)
            return {"last_seq": None, "floor_seq": 0, "orphan_log": True}, \
                [Envelope.from_entry(conv, eid, f) for eid, f in rows], {}
        return None, [], {}
    meta = {_s(k): _s(v) for k, v in raw_meta.items()}
    for k in ("last_seq", "floor_seq", "created_ms"):
        if k in meta:
            meta[k] = int(meta[k])
    entries = [Envelope.from_entry(conv, eid, f) for eid, f in rows]
    recs: dict[str, dict[str, Any]] = {}
    for k, v in raw_recs.items():
        mid, _, attr = _s(k).rpartition("|")
        recs.setdefault(mid, {})[attr] = int(v) if attr in INT_ATTRS else _s(v)
    return meta, entries, {m: r for m, r in recs.items() if "status" in r}


class StreamJudge:
    """Keeps what must hold across snapshots (last seqs, final statuses) for one machine run."""

    def __init__(self, admin: Any, astore: StreamStore) -> None:
        self.admin, self.astore = admin, astore
        self.last_seq: dict[str, int] = {}
        self.final_status: dict[str, str] = {}

    async def judge(self, conversations: Iterable[str], deliveries: dict[str, list[Delivery]],
                    emissions: Any, final: bool) -> list[str]:
        """``emissions``: the producer's emission list, or a callable returning it (called after each
        conversation's snapshot)."""
        bad: list[str] = []
        for conv in conversations:
            meta, entries, records = await snapshot(self.admin, self.astore, conv)
            if meta is None:
                continue
            # read after the snapshot, so a live producer's log is never ahead of its emissions
            ems = emissions() if callable(emissions) else emissions
            rep = check_stream(entries, floor_seq=meta["floor_seq"], last_seq=meta["last_seq"], records=records,
                               deliveries=deliveries.get(conv, []), emissions=ems, require_finished=final)
            bad += [f"[{conv}] {v}" for v in rep.violations]
            if meta.get("orphan_log"):
                bad.append(f"[{conv}] INV-10 dense: {len(entries)} log entries but no meta (written outside the scripts)")
                continue
            prev = self.last_seq.get(conv, 0)
            if meta["last_seq"] < prev:
                bad.append(f"[{conv}] INV-12 record: last_seq went back {prev} -> {meta['last_seq']}")
            self.last_seq[conv] = meta["last_seq"]
            for mid, rec in records.items():
                st_ = rec["status"]
                seen = self.final_status.get(mid)
                if seen is not None and st_ != seen:
                    bad.append(f"[{conv}] INV-12 record: {mid} status changed {seen} -> {st_}")
                if st_ != "in_progress":
                    self.final_status[mid] = st_
                    if rec["first_seq"] > meta["floor_seq"]:
                        rebuilt = record_from_entries(entries, mid)
                        stored = {k: rec.get(k) for k in (rebuilt or {})}
                        if rebuilt != stored:
                            bad.append(f"[{conv}] INV-12 record: {mid} stored {stored} != rebuilt {rebuilt}")
            if final:
                lease = await self.astore.lease_holder(conv)
                if lease is not None:
                    bad.append(f"[{conv}] INV-30: lease {lease} still held at quiescence")
        return bad
