"""The lost-acknowledged-writes audit on hand-made histories (docs/redis-topologies.md#what-is-judged): a write
missing from a trail that cannot have dropped it is lost; one a full trail may have pushed out is undetermined,
never lost."""

from __future__ import annotations

from pytest_cbchaos.breaker.lost_writes import lost_acknowledged_writes
from pytest_cbchaos.breaker.record import RECENT_OPS_MAX, Record
from pytest_cbchaos.history.ops import Op


def write(i: int, call: float, ret: float, applied: bool = True, status: str = "ok") -> Op:
    return Op(i, 0, "record_failure", {"op_id": f"id{i}"}, {"applied": applied}, call, ret, status, key="b")


def trail(*ids: int) -> Record:
    return Record(recent_ops=tuple((f"id{i}", "closed", "closed") for i in ids))


def test_missing_from_a_trail_with_room_is_lost() -> None:
    ops = [write(1, 0, 1), write(2, 2, 3), write(3, 4, 5)]
    audit = lost_acknowledged_writes(ops, {"b": trail(1, 3)})
    assert [o.id for o in audit.lost] == [2] and audit.checked == 3


def test_not_applied_failed_or_indeterminate_ops_are_not_acknowledged_writes() -> None:
    ops = [write(1, 0, 1, applied=False), write(2, 2, 3, status="fail"), write(3, 4, float("inf"), status="info")]
    assert lost_acknowledged_writes(ops, {"b": trail()}).checked == 0


def test_a_gone_record_loses_every_acknowledged_write() -> None:
    assert lost_acknowledged_writes([write(1, 0, 1)], {"b": None}).count == 1


def test_a_full_trail_may_have_dropped_older_writes_undetermined_but_not_newer_ones() -> None:
    n = RECENT_OPS_MAX
    kept = [write(i, 10 + 2 * i, 11 + 2 * i) for i in range(1, n + 1)]
    older = write(100, 0, 1)  # acked before the oldest kept entry was invoked: may have been pushed out
    newer = write(101, 100, 101)  # invoked after the oldest kept entry completed: must be in the trail
    audit = lost_acknowledged_writes([older, *kept, newer], {"b": trail(*range(1, n + 1))})
    assert [o.id for o in audit.undetermined] == [100] and [o.id for o in audit.lost] == [101]
    assert audit.describe().startswith("lost acknowledged writes: 1 (record_failure[b] op_id=id101 by p0")
