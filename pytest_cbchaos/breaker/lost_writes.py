"""Lost acknowledged writes of a breaker-store history (docs/redis-topologies.md#what-is-judged).

Replication is asynchronous: a write the old primary acknowledged can be missing on the replica the
sentinels promote. The linearizability check (model unchanged) says *that* the history is illegal; this
audit says *which* acknowledged writes the surviving record does not hold, from its write trail
(``recent_ops``: the ids of the newest ``RECENT_OPS_MAX`` applied ops, newest last).

An acknowledged applied op ``W`` that is not in the survivor's trail is **lost** when the trail cannot
have dropped it: the trail is not full, or its oldest entry ``E`` completed before ``W`` was invoked
(``E.ret < W.call``, so ``E`` is linearized before ``W`` and ``W`` would be newer than a kept entry).
Otherwise ``W`` may have been pushed out by newer ops and is counted as **undetermined**, never as lost.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from ..history.ops import Op
from .record import RECENT_OPS_MAX, Record

TRAILED = ("gate", "record_failure", "record_success", "release_probe", "force_open", "reset")


@dataclass
class LostWrites:
    """``lost``: the acknowledged ops the survivors do not hold; ``undetermined``: ones a full trail may have
    dropped legitimately."""

    lost: list[Op] = field(default_factory=list)
    undetermined: list[Op] = field(default_factory=list)
    checked: int = 0

    @property
    def count(self) -> int:
        return len(self.lost)

    def describe(self) -> str:
        ops = ", ".join(f"{o.f}[{o.key}] op_id={o.input.get('op_id')} by p{o.process} acknowledged at t={o.ret}"
                        for o in self.lost)
        text = f"lost acknowledged writes: {self.count}" + (f" ({ops})" if ops else "")
        if self.undetermined:
            text += f"; undetermined (trail full): {len(self.undetermined)}"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {"count": self.count, "checked": self.checked, "undetermined": len(self.undetermined),
                "ops": [{"f": o.f, "key": o.key, "op_id": o.input.get("op_id"), "process": o.process,
                         "call": o.call, "ret": o.ret} for o in self.lost]}


def acknowledged_writes(ops: Sequence[Op]) -> list[Op]:
    """Ops that completed ``ok`` with an applied effect that the trail records; a write fewer replicas
    acknowledged than asked (``durable: false``) was never acknowledged."""
    out = []
    for o in ops:
        if o.status != "ok" or o.f not in TRAILED or not isinstance(o.input, Mapping) or not o.input.get("op_id"):
            continue
        if isinstance(o.output, Mapping) and o.output.get("applied") and o.output.get("durable") is not False:
            out.append(o)
    return out


def lost_acknowledged_writes(ops: Sequence[Op], survivors: Mapping[Any, Record | None]) -> LostWrites:
    """Audit every key of ``survivors`` (key -> the record read after the fault, None when the key is gone)."""
    result = LostWrites()
    by_id = {o.input.get("op_id"): o for o in ops if isinstance(o.input, Mapping) and o.input.get("op_id")}
    for o in acknowledged_writes(ops):
        if o.key not in survivors:
            continue
        result.checked += 1
        rec = survivors[o.key]
        trail = [entry[0] for entry in rec.recent_ops] if rec is not None else []
        if o.input["op_id"] in trail:
            continue
        if len(trail) < RECENT_OPS_MAX:
            result.lost.append(o)
            continue
        oldest = by_id.get(trail[0])
        if oldest is not None and oldest.ret < o.call:
            result.lost.append(o)
        else:
            result.undetermined.append(o)
    return result


def read_survivors(client: Any, store: Any, backends: Sequence[str]) -> dict[str, Record | None]:
    """The records as they are now on ``client``'s server (None: the key is gone)."""
    from .record import decode

    out: dict[str, Record | None] = {}
    for b in backends:
        raw = client.hgetall(store.key(b))
        out[b] = decode(raw)[0] if raw else None
    return out


@dataclass
class FailoverJudgement:
    """The linearizability verdict of a breaker-store history and the lost acknowledged writes behind it."""

    verdict: str  # "ok" | "illegal" | "unknown"
    lost: LostWrites
    result: Any = None  # the LinearizabilityResult

    @property
    def explained_by_lost_writes(self) -> bool:
        return self.verdict == "illegal" and self.lost.count > 0

    def describe(self) -> str:
        cause = " caused by lost acknowledged writes" if self.explained_by_lost_writes else ""
        return f"linearizability: {self.verdict}{cause}; {self.lost.describe()}"


def judge(history: Any, survivors: Mapping[Any, Record | None], *, timeout: float = 10.0) -> FailoverJudgement:
    """Check ``history`` with the breaker-store model (unchanged) and audit lost acknowledged writes."""
    from ..linearizability.checker import check
    from .checker_model import BreakerStoreModel

    model = BreakerStoreModel()
    result = check(history, model, timeout=timeout)
    ops = history.ops(model.read_only) if hasattr(history, "ops") else list(history)
    return FailoverJudgement(result.verdict.value, lost_acknowledged_writes(ops, survivors), result)
