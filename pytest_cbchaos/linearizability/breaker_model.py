"""The breaker-store model for the checker: :mod:`pytest_cbchaos.breaker.model` behind the
:class:`~.model.Model` protocol, partitioned by backend (``op.key``).

History shape (what :mod:`pytest_cbchaos.stateful` records): ``f`` is a store op name
(``gate``, ``record_failure``, ``record_success``, ``release_probe``, ``renew_probe``,
``force_open``, ``reset``, ``get_state``), ``key`` the backend, the invoke ``value`` the op's
arguments (``op_id`` always, so tokens and dedupe replay exactly), and the completion ``value``
the observed output (``breaker.model.output_from_reply``) plus ``now``: the reply's ``_now``.

Indeterminate ops have no reply, so no ``now``: the step uses a lower bound (``now_min``, the
invoke's wall time, and the record's ``last_failure_time``). This is an approximation: an op
delayed long after its invoke is replayed a little early. Tests keep cooldowns tiny or long and
leases long so decisions do not hinge on it.
"""

from __future__ import annotations

from typing import Any, Sequence

from ..breaker import model as bmodel
from ..breaker.record import Record
from ..history.ops import Op
from .model import Model, _short, partition_by_key


def _lower_bound(state: Record, now_min: Any) -> float:
    """A lower bound of the op's server time: its invoke wall time (same host) and the last
    failure it must follow. Never ``open_until``: that is a deadline in the future."""
    lo = state.last_failure_time
    if now_min is not None:
        lo = max(lo, float(now_min))
    return lo


class BreakerStoreModel(Model):
    name = "breaker-store"

    def init(self) -> Record:
        return bmodel.init()

    def _inputs(self, state: Record, op: Op) -> tuple[dict[str, Any], dict[str, Any] | None]:
        inp = dict(op.input or {})
        if op.unknown:
            inp["now"] = _lower_bound(state, inp.pop("now_min", None))
            return inp, None
        lo = inp.pop("now_min", None)
        out = op.output
        if not isinstance(out, dict):
            return inp, {"__unexpected__": out}
        if out.get("now") is not None:
            inp["now"] = out["now"]
        else:
            inp["now"] = _lower_bound(state, lo)
        return inp, {k: v for k, v in out.items() if k != "now"}

    def step(self, state: Record, op: Op) -> tuple[bool, Record]:
        inp, observed = self._inputs(state, op)
        try:
            new, expected = bmodel.apply(state, op.f, inp)
        except (ValueError, TypeError, KeyError):
            return False, state
        if observed is not None and "__unexpected__" in observed:
            return False, state
        return bmodel.output_matches(expected, observed), new

    def read_only(self, f: str) -> bool:
        return f in bmodel.READ_ONLY

    def partition(self, ops: Sequence[Op]) -> dict[Any, list[Op]]:
        return partition_by_key(ops)

    def describe_op(self, op: Op) -> str:
        inp = dict(op.input or {})
        args = ", ".join(f"{k}={_short(v, 40)}" for k, v in sorted(inp.items())
                         if k not in ("op_id", "now_min"))
        out = "?" if op.unknown else _short({k: v for k, v in (op.output or {}).items()
                                             if k != "now"}, 100)
        return f"{op.f}[{op.key}]({args}) -> {out}"

    def describe_state(self, s: Record) -> str:
        parts = [s.state, f"failures={s.failure_count}"]
        if s.half_open_probe_active:
            parts.append(f"probe={s.probe_token[:12]}")
        return " ".join(parts)

    def explain(self, s: Record, op: Op) -> str:
        inp, observed = self._inputs(s, op)
        try:
            _, expected = bmodel.apply(s, op.f, inp)
        except (ValueError, TypeError, KeyError) as exc:
            return f"{op.f}: model rejects the input ({exc})"
        if observed is None:
            return f"{self.describe_op(op)}: indeterminate, always legal"
        diff = {k: (v, expected.get(k)) for k, v in observed.items()
                if k in expected and expected.get(k) != v}
        if not diff:
            return f"{self.describe_op(op)} is legal in {self.describe_state(s)}"
        d = "; ".join(f"{k} observed {a!r}, model says {b!r}" for k, (a, b) in diff.items())
        return f"in {self.describe_state(s)}: {d}"
