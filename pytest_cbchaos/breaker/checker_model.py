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
invoke (docs/linearizability-design.md#completion). The model branches over the times where the op's effect can
differ (:func:`_candidate_times`): the lower bound (``now_min``, the invoke's wall time, and the
record's ``last_failure_time``), the record's own deadlines above it (``open_until``: the
cooldown has ended; ``probe_lease_until``: the probe lease has lapsed) and the partition's latest
observed server time (``now_max``, added by :meth:`BreakerStoreModel.partition`: the op ran late,
so the deadlines it writes are as far out as any observed op can see). The state is then a set
of records (:class:`Alternatives`) until later ops' outputs leave one. Replaying a crashed op at
its invoke time only, as this model did before, gave false violations when a cooldown of 1 ms
ended between the invoke and the op's real execution.

A write whose reply came back with fewer replicas than asked (``WAIT``, docs/redis-topologies.md#scenarios)
completed with ``durable: false`` in its value: it ran at its reply's ``now`` with its observed output, but a
failover may have lost it. Such an op is either applied exactly as observed or not at all (:func:`maybe_lost`):
two successors, inside the op's own ``[call, ret]``. Recording it as crashed instead (any time, any output,
until the history's end) left the search no bound: two dozen such writes exhausted the budget
(docs/linearizability.md#not-durable-writes).

A resent op answered ``_duplicate`` (the store had already applied it under the same op id)
completed with a known output, but its reply's time is the resend's, not the op's: the op took
effect at some server time between its invoke and the resend. Its completion value carries that
bound as ``now_max`` instead of ``now`` (:func:`~pytest_cbchaos.scenario.targets.breaker_store.observed`),
and the model judges it like a crashed op whose output is known: the same candidate times, capped
by ``now_max``, each kept only if it gives the observed output. Its ``won`` is compared only when
true: the resend reports whether the claim is *still* current, which a later reclaim can undo.

Two later ops can see a deadline the op writes (``now + d``: the lease, the cooldown) on opposite
sides, which needs a time strictly between those candidates. Only a gate tells a lapsed deadline
from a live one, and the one that sees it lapsed claims (``won``); so the candidates also hold
``now_lapses``: each ``t`` in the op's window with ``t + d`` equal to a winning gate's ``now``
(that gate sees the deadline lapsed, every earlier one sees it live; a resent gate that answered an
applied claim counts as winning whatever its ``won``, at its ``now_min``, the earliest it can have run)
or to the ``now`` of an op that saw HALF_OPEN (the claim before it may have crashed). Exact for server time
(microseconds, the deadlines' resolution); a client clock finer than that may round a deadline
past its gate.
"""

from __future__ import annotations

from typing import Any, Collection, Sequence

from ..history.ops import Op
from ..linearizability.model import Model, _short, partition_by_key
from ..linearizability.search import OK, PartitionSearch
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


#: blame (``BreakerStoreModel.blame``) runs on partitions of at most this many ops, with at most this
#: many search steps per set-aside group and in all (a failing check stays cheap)
BLAME_MAX_OPS = 64
BLAME_STEPS = 20_000
BLAME_TOTAL_STEPS = 200_000
#: the classes that name no mechanism; an explanation with a specific class is preferred
GENERIC_CLASSES = ("wrong-transition", "record-differs")
#: specific classes a lenient success explains (it closes HALF_OPEN without the probe): ranked after the
#: other specific ones, which no reading of the reply explains (docs/adapters.md#bug-classes)
LENIENT_CLASSES = ("non-owner-closed",)

_DURATIONS = ("lease_seconds", "recovery_timeout", "open_for_seconds")  # the deadlines an op writes: now + d
#: input key ``partition`` sets on an op whose ``op_id`` no other op of the partition carries or names in a
#: token: no later lookup can find it, so the model keeps its ``recent_ops`` entry under ``_ANON``
PRIVATE_ID = "id_private"
_ANON = ""  # never an op's id: an op without one runs under the kernel's zero id
_ANNOTATIONS = ("now_max", "now_lapses", PRIVATE_ID)  # what ``partition`` adds to inputs


def _candidate_times(state: Record, now_min: Any, hi: Any, capped: bool = False,
                     lapses: Sequence[float] = ()) -> list[float]:
    """Server times at which a crashed or resent op's effect can differ (see the module docstring).
    ``capped``: ``hi`` is a hard upper bound (a resend's time), not just the latest observed time."""
    lo = _lower_bound(state, now_min)
    if capped:
        lo = min(lo, float(hi))  # the store's own reading wins over the client's invoke time
    times = [lo]
    for t in (state.open_until, state.probe_lease_until, *lapses, hi):
        if t is not None and float(t) > lo and float(t) not in times and not (capped and float(t) > float(hi)):
            times.append(float(t))
    return times


def time_uncertain(op: Op) -> bool:
    """Crashed, or answered ``_duplicate`` after a resend: the op's server time is not observed."""
    return op.unknown or (isinstance(op.output, dict) and op.output.get("now") is None
                          and op.output.get("now_max") is not None)


def maybe_lost(op: Op) -> bool:
    """Completed with fewer replicas than asked: applied as observed, or lost in a failover."""
    return not op.unknown and isinstance(op.output, dict) and op.output.get("durable") is False


def _compared(out: dict[str, Any]) -> dict[str, Any]:
    """The observed output the model compares: no times, no durability; a resent op's ``won`` only when true."""
    obs = {k: v for k, v in out.items() if k not in ("now", "now_max", "durable")}
    if out.get("now_max") is not None and out.get("now") is None and not obs.get("won", True):
        obs.pop("won")
    return obs


def _earliest(op: Op) -> float | None:
    """The earliest server time a completed op can have run at: ``now``, or for a resent op its
    invoke's ``now_min``."""
    if op.output.get("now") is not None:
        return float(op.output["now"])
    if op.output.get("now_max") is not None and isinstance(op.input, dict) and op.input.get("now_min") is not None:
        return float(op.input["now_min"])
    return None


def _lapse_seen(op: Op) -> bool:
    """A completed op whose reply shows a deadline lapsed by its time: a gate that claimed the probe
    (``won``, or resent and answered an applied claim: that ``won`` says only whether the claim is still
    current at the resend), or any op that saw HALF_OPEN (a claim, maybe a crashed one, came first)."""
    if op.unknown or not isinstance(op.output, dict):
        return False
    out = op.output
    if out.get("prev_state") == "half_open":
        return True
    resent = out.get("now") is None and out.get("now_max") is not None
    return op.f == "gate" and (bool(out.get("won")) or (
        resent and bool(out.get("applied")) and out.get("new_state") == "half_open"))


def _bounded(op: Op, hi: float | None, wins: Sequence[float]) -> Op:
    """``op`` with ``now_max`` (crashed: the partition's latest observed time) and ``now_lapses``:
    the times ``t`` in its window for which ``t + d`` (a deadline it writes) equals the time of an op
    that saw a deadline lapsed (:func:`_lapse_seen`), so that op sees it lapsed and every earlier one
    does not."""
    inp = dict(op.input)
    if op.unknown:
        if hi is None:
            return op
        inp["now_max"] = hi
    top = float(op.output["now_max"]) if not op.unknown else float("inf")
    lo = float(inp.get("now_min") or 0.0)
    ds = {float(inp[k]) for k in _DURATIONS if isinstance(inp.get(k), (int, float))}
    lapses = sorted({w - d for w in wins for d in ds if lo < w - d <= top})
    if lapses:
        inp["now_lapses"] = tuple(lapses)
    return op.replace(input=inp)


def _private_ids(ops: Sequence[Op]) -> set[str]:
    """Op ids carried by one op of ``ops`` only and named in no token (tokens are ``gen:op_id``)."""
    seen: dict[Any, int] = {}
    named = set()
    for op in ops:
        inp = op.input if isinstance(op.input, dict) else {}
        seen[inp.get("op_id")] = seen.get(inp.get("op_id"), 0) + 1
        if isinstance(inp.get("token"), str):
            named.add(inp["token"].rsplit(":", 1)[-1])
    return {i for i, n in seen.items() if isinstance(i, str) and i and n == 1 and i not in named}


def _anonymous(state: Any, op: Op) -> Any:
    """``state`` with ``op``'s own ``recent_ops`` entry under ``_ANON`` when its id is private: records that
    differ only in ids no op can look up are one state for the search's cache (docs/linearizability.md,
    "breaker-store and server time")."""
    if not (isinstance(op.input, dict) and op.input.get(PRIVATE_ID)):
        return state
    if isinstance(state, Alternatives):
        return Alternatives(_anonymous(m, op) for m in state)
    ops = state.recent_ops
    if ops and ops[-1][0] == op.input["op_id"]:
        return state.replace(recent_ops=ops[:-1] + ((_ANON,) + ops[-1][1:],))
    return state


def _set_aside(op: Op, keep_reply: bool = False) -> Op:
    """``op`` with its reply not compared (only its time kept); a success is lenient (closes HALF_OPEN
    without owning the probe), so a store that did that can still be linearized around it.
    ``keep_reply``: only the lenience, the reply still compared (a success given back as lenient)."""
    inp = {**op.input, "strict": False} if op.f == "record_success" and isinstance(op.input, dict) else op.input
    return op.replace(input=inp, output=op.output if keep_reply else
                      {k: v for k, v in op.output.items() if k == "now"})


def _private(op: Op, private: set[str]) -> Op:
    if isinstance(op.input, dict) and op.input.get("op_id") in private:
        return op.replace(input={**op.input, PRIVATE_ID: True})
    return op


def _generic(found: Sequence[dict[str, Any]]) -> int:
    return sum(k["id"] in GENERIC_CLASSES for k in found)


class BreakerStoreModel(Model):
    """``branch_crashed=False`` (the default) replays a crashed op at its lower bound only: one
    feasible time, so an OK verdict is a real linearization, and the search stays as fast as for
    a deterministic model. The checker re-checks an ILLEGAL partition that has crashed ops with
    :attr:`confirm_model`, which branches over every candidate time."""

    name = "breaker-store"
    read_only = bmodel.READ_ONLY

    def __init__(self, branch_crashed: bool = False) -> None:
        self.branch_crashed = branch_crashed

    def needs_confirm(self, op: Op) -> bool:
        """Ops the fast model replays at one assumed time (the checker re-checks their partitions)."""
        return time_uncertain(op)

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
        for k in _ANNOTATIONS:
            inp.pop(k, None)
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
            inp["now"] = _candidate_times(state, lo, out.get("now_max"), capped=out.get("now_max") is not None)[0]
        return inp, _compared(out)

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
        if not time_uncertain(op):
            ok, new = self._step_one(state, op)
            return [new] if ok else []
        inp = dict(op.input or {})
        lo, hi, lapses = inp.pop("now_min", None), inp.pop("now_max", None), inp.pop("now_lapses", ())
        inp.pop(PRIVATE_ID, None)
        observed = None
        if not op.unknown:  # resent: the output is known, the time is bounded by the resend's
            hi, observed = op.output["now_max"], _compared(op.output)
        out = []
        for now in _candidate_times(state, lo, hi, capped=observed is not None, lapses=lapses):
            try:
                new, expected = bmodel.apply(state, op.f, {**inp, "now": now})
            except (ValueError, TypeError, KeyError):
                continue
            if bmodel.output_matches(expected, observed) and new not in out:
                out.append(new)
        return out

    def step(self, state: Record | Alternatives, op: Op) -> tuple[bool, Any]:
        ok, new = self._step(state, op)
        return ok, (_anonymous(new, op) if ok else new)

    def op_class(self, op: Op) -> Any:
        """Crashed resets with private ids are interchangeable: a reset writes the same record whenever
        it runs (symmetry reduction, docs/linearizability-design.md#search)."""
        if op.unknown and op.f == "reset" and isinstance(op.input, dict) and op.input.get(PRIVATE_ID):
            return ("reset", op.key)
        return None

    def _step(self, state: Record | Alternatives, op: Op) -> tuple[bool, Any]:
        lossy = maybe_lost(op)
        if not isinstance(state, Alternatives) and not lossy:
            if not time_uncertain(op) or not self.branch_crashed:
                return self._step_one(state, op)
            nexts = self._successors(state, op)
        else:
            nexts = []
            for member in (state if isinstance(state, Alternatives) else (state,)):
                for new in self._successors(member, op) + ([member] if lossy else []):
                    if new not in nexts:
                        nexts.append(new)
        if not nexts:
            return False, state
        return True, nexts[0] if len(nexts) == 1 else Alternatives(nexts)

    def read_only(self, f: str) -> bool:
        return f in bmodel.READ_ONLY

    def partition(self, ops: Sequence[Op]) -> dict[Any, list[Op]]:
        """By backend; each crashed op learns its partition's latest observed server time, and each
        crashed or resent op the times at which a deadline it writes lapses exactly at a gate that won."""
        parts = partition_by_key(ops)
        for key, pops in parts.items():
            nows = [float(t) for op in pops if not op.unknown and isinstance(op.output, dict)
                    for t in (op.output.get("now"), op.output.get("now_max")) if t is not None]
            wins = sorted({t for op in pops if _lapse_seen(op) for t in [_earliest(op)] if t is not None})
            hi = max(nows) if nows else None
            private = _private_ids(pops)
            parts[key] = [_private(_bounded(op, hi, wins) if time_uncertain(op) and isinstance(op.input, dict) else op,
                                   private) for op in pops]
        return parts

    def describe_op(self, op: Op) -> str:
        inp = dict(op.input or {})
        args = ", ".join(f"{k}={_short(v, 40)}" for k, v in sorted(inp.items())
                         if k not in ("op_id", "now_min") + _ANNOTATIONS)
        out = "?" if op.unknown else _short({k: v for k, v in (op.output or {}).items()
                                             if k not in ("now", "now_max", "durable")}, 100)
        if time_uncertain(op) and not op.unknown:
            out += " (resent, _duplicate)"
        if maybe_lost(op):
            out += " (not durable: applied or lost)"
        return f"{op.f}[{op.key}]({args}) -> {out}"

    def describe_state(self, s: Record | Alternatives) -> str:
        if isinstance(s, Alternatives):
            return "one of {" + "; ".join(sorted(self.describe_state(m) for m in s)) + "}"
        parts = [s.state, f"failures={s.failure_count}"]
        if s.half_open_probe_active:
            parts.append(f"probe={s.probe_token[:12]}")
        return " ".join(parts)

    def classify(self, s: Record | Alternatives, op: Op) -> dict[str, str] | None:
        """The bug class of an unplaceable op (docs/adapters.md#bug-classes), judged from the first
        candidate state; None for an indeterminate op."""
        from .conformance.classify import Deviation, classify

        rec = min(s, key=repr) if isinstance(s, Alternatives) else s
        inp, observed = self._inputs(rec, op)
        if observed is None:
            return None
        try:
            new, expected = bmodel.apply(rec, op.f, inp)
        except (ValueError, TypeError, KeyError):
            return None
        k = classify(Deviation(op.f, inp, rec.to_dict(), expected, observed, new.to_dict(), {}))
        return {"id": k.id, "cb": k.cb, "message": k.message}

    def blame(self, ops: Sequence[Op], state: Record | Alternatives, op: Op) -> dict[str, Any] | None:
        """The bug class of an ILLEGAL partition (docs/adapters.md#bug-classes): ``op`` (the first
        unplaceable one) classified in ``state`` (the longest prefix's), unless that class is generic;
        then the first specific one :meth:`explanations` finds, if any."""
        k = self.classify(state, op)
        if k is not None and k["id"] not in GENERIC_CLASSES:
            return k
        return next((e for e in self.explanations(ops) if e["id"] not in GENERIC_CLASSES), k)

    def explanations(self, ops: Sequence[Op]) -> list[dict[str, Any]]:
        """Deviations that explain why ``ops`` is illegal, best first.

        The longest prefix puts the first unplaceable op in one arbitrary state (another order places
        it where its deviation is plain), so its class can be a generic one for a specific deviation.
        Here replies are set aside: each op's alone, then all of one operation's (two stale resets
        need both), then all of two operations' (a phantom force_open and a stale reset); if the
        partition is then linearizable, each set-aside op whose reply differs from the model's in the
        state that linearization gives it is a deviation, classified there. A specific class comes
        before a generic one, then the earlier tier, then the earliest invoked; each dict also has the
        op's ``op`` (id), ``index``, ``describe`` and ``state``, as ``first_unplaceable`` does. Empty:
        no such explanation (or the partition is too large to try)."""
        if len(ops) > BLAME_MAX_OPS:
            return []
        model = self.confirm_model if any(map(time_uncertain, ops)) and self.confirm_model else self
        known = [op for op in ops if not time_uncertain(op) and isinstance(op.output, dict)]
        kinds = sorted({op.f for op in known})
        tiers = [[[op] for op in known],
                 [[op for op in known if op.f == f] for f in kinds],
                 [[op for op in known if op.f in (f, g)] for n, f in enumerate(kinds) for g in kinds[n + 1:]]]
        found: list[tuple[bool, int, bool, int, dict[str, Any]]] = []
        budget = [BLAME_TOTAL_STEPS]
        for tier, groups in enumerate(tiers):
            for group in groups:
                if budget[0] > 0 and (tier == 0 or len(group) > 1):
                    found.extend((k["id"] in GENERIC_CLASSES, tier, k["id"] in LENIENT_CLASSES, k["index"], k)
                                 for k in self._deviations(model, ops, group, budget))
        return [f[4] for f in sorted(found, key=lambda f: f[:4])]

    def _deviations(self, model: "BreakerStoreModel", ops: Sequence[Op], group: Sequence[Op],
                    budget: list[int]) -> list[dict[str, Any]]:
        """With the replies of ``group`` set aside: [] if still illegal (or undecided within the steps
        left in ``budget``, which it decrements), else the ops whose reply differs from the model's,
        each classified in the state the linearization gives it. A success whose deviation is generic
        is first given its reply back as a lenient success (it closed HALF_OPEN without the probe):
        set aside, the search may place it after a non-atomic reset's write, where its reply reads as
        generic and the reset's stale one as honest (docs/adapters.md#bug-classes); kept when that
        gives fewer generic classes. Then the set is shrunk: a reply is given back when the rest still
        linearizes without more generic classes (a reply a linearization can place elsewhere honestly
        is no deviation; but two specific deviations are kept over one generic)."""
        ids = {op.id for op in group}
        lin = self._linearize(model, ops, ids, budget)
        if lin is None:
            return []
        out = self._classified(model, ops, lin)
        lenient: set[int] = set()
        for k in [k for k in out if k["id"] in GENERIC_CLASSES and ops[k["op"]].f == "record_success"]:
            trial = self._linearize(model, ops, ids - {k["op"]}, budget, lenient | {k["op"]})
            if trial is not None:
                given = self._classified(model, ops, trial)
                if _generic(given) < _generic(out):
                    out, lenient, ids = given, lenient | {k["op"]}, ids - {k["op"]}
        for i in sorted(k["op"] for k in out):
            rest = {k["op"] for k in out}
            if i not in rest or i in lenient or len(rest) < 2:
                continue
            trial = self._linearize(model, ops, rest - lenient - {i}, budget, lenient)
            if trial is not None:
                shrunk = self._classified(model, ops, trial)
                if _generic(shrunk) <= _generic(out):
                    out = shrunk
        return out

    def _classified(self, model: "BreakerStoreModel", ops: Sequence[Op],
                    lin: list[tuple[int, Any]]) -> list[dict[str, Any]]:
        """The ops whose reply the model refuses in the state ``lin`` places them in, classified there."""
        out = []
        befores = [model.init()] + [after for _, after in lin[:-1]]
        for (i, _), before in zip(lin, befores):
            k = None if model.step(before, ops[i])[0] else self.classify(before, ops[i])
            if k is not None:
                out.append({**k, "op": i, "index": ops[i].invoke_index, "describe": self.describe_op(ops[i]),
                            "state": self.describe_state(before)})
        return out

    @staticmethod
    def _linearize(model: "BreakerStoreModel", ops: Sequence[Op], ids: set[int], budget: list[int],
                   lenient: Collection[int] = ()) -> list[tuple[int, Any]] | None:
        """A linearization with the replies of ``ids`` set aside and the successes of ``lenient`` lenient
        with their replies compared (:func:`_set_aside`), or None."""
        if budget[0] <= 0:
            return None
        s = PartitionSearch([_set_aside(op) if op.id in ids else _set_aside(op, keep_reply=True)
                             if op.id in lenient else op for op in ops], model)
        verdict = s.run(min(BLAME_STEPS, budget[0]))
        budget[0] -= s.steps
        return s.linearization if verdict == OK else None

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
