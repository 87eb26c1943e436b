"""The breaker-store model for the checker: :mod:`pytest_cbchaos.breaker.model` behind the
:class:`pytest_cbchaos.linearizability.model.Model` protocol, partitioned by backend (``op.key``).
The breaker registers it with the checker as ``breaker-store`` (docs/scenarios.md, "Registering a
system").

History shape (what :mod:`pytest_cbchaos.stateful` records): ``f`` is a store op name
(``gate``, ``record_failure``, ``record_success``, ``release_probe``, ``renew_probe``,
``force_open``, ``reset``, ``get_state``), ``key`` the backend, the invoke ``value`` the op's
arguments (``op_id`` always, so tokens and dedupe replay exactly), and the completion ``value``
the observed output (``breaker.model.output_from_reply``) plus ``now``: the reply's ``_now``.

Indeterminate ops have no reply, so no ``now``: the op may have run at any server time after its
invoke (linearizability.md §1.3). The model branches over the times where the op's effect can
differ (:func:`_candidate_times`): the lower bound (``now_min``, the invoke's wall time, and the
record's ``last_failure_time``), the record's own deadlines above it (``open_until``: the
cooldown has ended; ``probe_lease_until``: the probe lease has lapsed) and the partition's latest
observed server time (``now_max``, added by :meth:`BreakerStoreModel.partition`: the op ran late,
so the deadlines it writes are as far out as any observed op can see). The state is then a set
of records (:class:`Alternatives`) until later ops' outputs leave one. Replaying a crashed op at
its invoke time only, as this model did before, gave false violations when a cooldown of 1 ms
ended between the invoke and the op's real execution.

What the branching does not cover: two later ops that see the crashed op's deadline on opposite
sides need a time strictly between the candidates. The candidates make that a window of
``recovery_timeout`` (or the lease) around those ops, so tests keep cooldowns tiny or long.
"""

from __future__ import annotations

from typing import Any, Sequence

from ..history.ops import Op
from ..linearizability.model import Model, _short, partition_by_key
from . import model as bmodel
from .record import Record


def _lower_bound(state: Record, now_min: Any) -> float:
    """A lower bound of the op's server time: its invoke wall time (same host) and the last
    failure it must follow. Never ``open_until``: that is a deadline in the future."""
    lo = state.last_failure_time
    if now_min is not None:
        lo = max(lo, float(now_min))
    return lo


class Alternatives(frozenset):
    """The records a history may be in after an indeterminate op (two or more)."""

    __slots__ = ()


def _candidate_times(state: Record, now_min: Any, hi: Any) -> list[float]:
    """Server times at which a crashed op's effect can differ (see the module docstring)."""
    lo = _lower_bound(state, now_min)
    times = [lo]
    for t in (state.open_until, state.probe_lease_until, hi):
        if t is not None and float(t) > lo and float(t) not in times:
            times.append(float(t))
    return times


class BreakerStoreModel(Model):
    """``branch_crashed=False`` (the default) replays a crashed op at its lower bound only: one
    feasible time, so an OK verdict is a real linearization, and the search stays as fast as for
    a deterministic model. The checker re-checks an ILLEGAL partition that has crashed ops with
    :attr:`confirm_model`, which branches over every candidate time."""

    name = "breaker-store"
    read_only = bmodel.READ_ONLY

    def __init__(self, branch_crashed: bool = False) -> None:
        self.branch_crashed = branch_crashed

    @property
    def confirm_model(self) -> "BreakerStoreModel | None":
        return None if self.branch_crashed else BreakerStoreModel(branch_crashed=True)

    def init(self) -> Record:
        return bmodel.init()

    def step(self, state: Record, f: str, inp: Any) -> tuple[Record, dict[str, Any]]:
        """One op on one record (the sequential model, without the checker's op framing)."""
        return bmodel.apply(state, f, inp)

    def matches(self, expected: Any, observed: Any) -> bool:
        return bmodel.output_matches(expected, observed)

    def _inputs(self, state: Record, op: Op) -> tuple[dict[str, Any], dict[str, Any] | None]:
        inp = dict(op.input or {})
        inp.pop("now_max", None)
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

    def _step_one(self, state: Record, op: Op) -> tuple[bool, Record]:
        inp, observed = self._inputs(state, op)
        try:
            new, expected = bmodel.apply(state, op.f, inp)
        except (ValueError, TypeError, KeyError):
            return False, state
        if observed is not None and "__unexpected__" in observed:
            return False, state
        return bmodel.output_matches(expected, observed), new

    def _successors(self, state: Record, op: Op) -> list[Record]:
        if not op.unknown:
            ok, new = self._step_one(state, op)
            return [new] if ok else []
        inp = dict(op.input or {})
        times = _candidate_times(state, inp.pop("now_min", None), inp.pop("now_max", None))
        out = []
        for now in times:
            try:
                new, _ = bmodel.apply(state, op.f, {**inp, "now": now})
            except (ValueError, TypeError, KeyError):
                continue
            if new not in out:
                out.append(new)
        return out

    def step(self, state: Record | Alternatives, op: Op) -> tuple[bool, Any]:
        if not isinstance(state, Alternatives):
            if not op.unknown or not self.branch_crashed:
                return self._step_one(state, op)
            nexts = self._successors(state, op)
        else:
            nexts = []
            for member in state:
                for new in self._successors(member, op):
                    if new not in nexts:
                        nexts.append(new)
        if not nexts:
            return False, state
        return True, nexts[0] if len(nexts) == 1 else Alternatives(nexts)

    def read_only(self, f: str) -> bool:
        return f in bmodel.READ_ONLY

    def partition(self, ops: Sequence[Op]) -> dict[Any, list[Op]]:
        """By backend; each crashed op learns its partition's latest observed server time."""
        parts = partition_by_key(ops)
        for key, pops in parts.items():
            nows = [float(op.output["now"]) for op in pops if not op.unknown and isinstance(op.output, dict)
                    and op.output.get("now") is not None]
            if nows and any(op.unknown for op in pops):
                hi = max(nows)
                parts[key] = [op.replace(input={**(op.input or {}), "now_max": hi})
                              if op.unknown and isinstance(op.input, dict) else op for op in pops]
        return parts

    def describe_op(self, op: Op) -> str:
        inp = dict(op.input or {})
        args = ", ".join(f"{k}={_short(v, 40)}" for k, v in sorted(inp.items())
                         if k not in ("op_id", "now_min", "now_max"))
        out = "?" if op.unknown else _short({k: v for k, v in (op.output or {}).items()
                                             if k != "now"}, 100)
        return f"{op.f}[{op.key}]({args}) -> {out}"

    def describe_state(self, s: Record | Alternatives) -> str:
        if isinstance(s, Alternatives):
            return "one of {" + "; ".join(sorted(self.describe_state(m) for m in s)) + "}"
        parts = [s.state, f"failures={s.failure_count}"]
        if s.half_open_probe_active:
            parts.append(f"probe={s.probe_token[:12]}")
        return " ".join(parts)

    def explain(self, s: Record | Alternatives, op: Op) -> str:
        if isinstance(s, Alternatives):
            return " / ".join(sorted(self.explain(m, op) for m in s))
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
