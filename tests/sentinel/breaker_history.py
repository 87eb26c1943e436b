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
