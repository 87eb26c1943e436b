"""Sequential model of one breaker record for the linearizability checker (partition: backend).

State: a :class:`~.record.Record` (frozen, hashable; ``Record.to_dict()`` / ``record_from_dict``
for JSON). One step applies one op through :mod:`.kernel`, so the checker's model *is* the
reference semantics.

History op shape (``f``, ``value`` on invoke)::

    f = "gate"            input {"now", "op_id", "lease_seconds"}
    f = "record_failure"  input {"now", "op_id", "failure_threshold", "recovery_timeout"}
    f = "record_success"  input {"now", "op_id", "expected_state"?}
    f = "release_probe"   input {"now", "op_id", "token", "outcome", "recovery_timeout"}
    f = "renew_probe"     input {"now", "token", "lease_seconds"}
    f = "force_open"      input {"now", "op_id", "open_for_seconds"}
    f = "reset"           input {"now", "op_id"}
    f = "get_state"       input {} (read-only)

``now`` is the reply's ``_now`` in server time (filled in at completion by the recorder; for
indeterminate ops the checker may leave it None, meaning "any time": the model then uses the
record's own timestamps, which is only an approximation and is documented as such).

Output (compared by :func:`output_matches`): ``{"prev_state", "new_state", "applied", "won"}``;
``get_state`` outputs ``{"state", "failure_count"}``. Keys absent from the observed output are
not compared, so a recorder may log less.
"""

from __future__ import annotations

from typing import Any, Mapping

from . import kernel
from .record import DEFAULT, Record

READ_ONLY = frozenset({"get_state"})
OPS = ("gate", "record_failure", "record_success", "release_probe", "renew_probe", "force_open", "reset",
       "get_state")
_ZERO_ID = "0" * 32


def init() -> Record:
    return DEFAULT


def _now(inp: Mapping[str, Any], rec: Record) -> float:
    n = inp.get("now")
    return float(n) if n is not None else max(rec.open_until, rec.last_failure_time)


def apply(state: Record, f: str, inp: Mapping[str, Any] | None) -> tuple[Record, dict[str, Any]]:
    """Apply one op; returns ``(new_state, output)``. Unknown ``f`` raises ``ValueError``."""
    inp = inp or {}
    if f == "get_state":
        r = kernel.normalize(state)
        return state, {"state": r.state, "failure_count": r.failure_count}
    now = _now(inp, state)
    op_id = inp.get("op_id") or _ZERO_ID
    if f == "gate":
        o = kernel.gate(state, now, op_id, float(inp.get("lease_seconds", 30.0)))
    elif f == "record_failure":
        o = kernel.record_failure(state, now, op_id, int(inp.get("failure_threshold", 5)),
                                  float(inp.get("recovery_timeout", 60.0)))
    elif f == "record_success":
        o = kernel.record_success(state, now, op_id, inp.get("expected_state") or None,
                                  bool(inp.get("strict", True)))
    elif f == "release_probe":
        o = kernel.release_probe(state, now, op_id, inp.get("token", ""), inp.get("outcome", "abort"),
                                 float(inp.get("recovery_timeout", 60.0)))
    elif f == "renew_probe":
        o = kernel.renew_probe(state, now, inp.get("token", ""), float(inp.get("lease_seconds", 30.0)))
    elif f == "force_open":
        o = kernel.force_open(state, now, op_id, float(inp.get("open_for_seconds", 0.0)))
    elif f == "reset":
        o = kernel.reset(state, now, op_id)
    else:
        raise ValueError(f"unknown breaker op {f!r}; expected one of {OPS}")
    out = {"prev_state": o.prev_state, "new_state": o.new_state, "applied": o.applied or o.duplicate,
           "won": o.won}
    if f == "renew_probe":
        out["renewed"] = bool(o.value)
    return o.record, out


def output_matches(expected: Mapping[str, Any], observed: Mapping[str, Any] | None) -> bool:
    """True iff every key the observer recorded equals the model's value."""
    if observed is None:
        return True
    return all(expected.get(k) == v for k, v in observed.items() if k in expected)


def output_from_reply(f: str, reply: Any) -> dict[str, Any]:
    """Observed output from a store reply (dict, ClaimResult, bool), for recorders."""
    if f == "get_state":
        return {"state": reply["state"], "failure_count": reply["failure_count"]}
    if f == "renew_probe":
        return {"renewed": bool(reply)}
    rec = reply.record if hasattr(reply, "record") else reply
    out = {"prev_state": rec["_prev_state"], "new_state": rec["_new_state"],
           "applied": bool(rec["_applied"] or rec.get("_duplicate"))}
    if f == "gate":
        out["won"] = bool(reply.won)
    return out


def __getattr__(name: str) -> Any:
    """``BreakerStoreModel`` is the one model class, in :mod:`.checker_model` (it needs the checker)."""
    if name == "BreakerStoreModel":
        from .checker_model import BreakerStoreModel

        return BreakerStoreModel
    raise AttributeError(name)
