"""A breaker store whose ops are recorded for the breaker-store model (tests of docs/redis-topologies.md)."""

from __future__ import annotations

import time
import uuid
from typing import Any, Callable

from pytest_cbchaos.breaker import RedisStore
from pytest_cbchaos.history.recorder import Recorder
from pytest_cbchaos.scenario.targets.breaker_store import observed

BACKEND = "b"


class Recorded:
    """A store whose ops are recorded for the breaker-store model (op ids passed, replies observed)."""

    def __init__(self, store: RedisStore, recorder: Recorder) -> None:
        self.store, self.rec = store, recorder
        self.last_op_id = ""

    def _op(self, f: str, call: Callable[..., Any], **inp: Any) -> Any:
        op_id = self.last_op_id = uuid.uuid4().hex
        h = self.rec.invoke(0, f, {"op_id": op_id, **inp, "now_min": time.time()}, key=BACKEND)
        try:
            reply = call(op_id)
        except Exception as exc:
            h.exception(exc)
            raise
        h.ok(observed(f, reply))
        return reply

    def failure(self) -> dict:
        return self._op("record_failure", lambda i: self.store.atomic_record_failure(BACKEND, 3, 60, op_id=i),
                        failure_threshold=3, recovery_timeout=60)

    def state(self) -> dict:
        h = self.rec.invoke(0, "get_state", {}, key=BACKEND)
        st = self.store.get_state(BACKEND)
        h.ok(observed("get_state", st))
        return st


def replicated_first_failure(topo: Any, client: Any, prefix: str) -> tuple[Recorder, RedisStore, Recorded]:
    """A recorded store on ``client`` with one failure replicated everywhere (it survives any split)."""
    recorder = Recorder(1)
    store = RedisStore(client, key_prefix=f"{prefix}{uuid.uuid4().hex[:8]}")
    s = Recorded(store, recorder)
    s.failure()
    topo.wait_ready(10)
    return recorder, store, s


def two_failures(s: Recorded) -> list[str]:
    """Two recorded failures; their op ids."""
    ids = []
    for _ in range(2):
        s.failure()
        ids.append(s.last_op_id)
    return ids


def judged_split_brain(recorder: Recorder, new: Any, store: RedisStore, lost_ids: list[str]) -> Any:
    """The history judged against ``new``'s survivors: illegal, explained by exactly ``lost_ids`` lost."""
    from pytest_cbchaos.breaker.lost_writes import judge, read_survivors

    recorder.close()
    with new.admin() as admin:
        verdict = judge(recorder.history(), read_survivors(admin, store, [BACKEND]))
    assert verdict.verdict == "illegal" and verdict.explained_by_lost_writes, verdict.describe()
    assert verdict.lost.count == len(lost_ids) and not verdict.lost.undetermined
    assert [o.input["op_id"] for o in verdict.lost.lost] == lost_ids
    return verdict
