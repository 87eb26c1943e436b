"""Checker entry points: partitioning, round-robin scheduling, budgets, verdicts
(docs/linearizability-design.md#partitioning-and-scheduling).

Horn & Kroening, "Faster linearizability checking via P-compositionality" (FORTE'15) is the
reason for partitioning: a history is linearizable iff every partition is.
"""

from __future__ import annotations

import enum
import time
from operator import attrgetter
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

from ..history.ops import INF, Op, pair_events
from ..history.store import History
from .greedy import GreedyLinearized
from .replay import SequentialReplay, is_sequential
from .search import ILLEGAL, OK, RUNNING, UNKNOWN, PartitionSearch, entries, release_retired

#: steps per partition per round-robin turn (docs/linearizability-design.md#partitioning-and-scheduling)
SLICE = 1_024
#: a lone partition's turn: no other to share with
_ALONE = 1 << 62
_CALL_ORDER = attrgetter("call", "invoke_index")


class Verdict(str, enum.Enum):
    """OK | ILLEGAL | UNKNOWN; Jepsen ``true | false | :unknown``."""

    OK = "ok"
    ILLEGAL = "illegal"
    UNKNOWN = "unknown"

    @property
    def jepsen(self) -> Any:
        return {Verdict.OK: True, Verdict.ILLEGAL: False, Verdict.UNKNOWN: ":unknown"}[self]


_OK, _UNKNOWN_V, _ILLEGAL = Verdict.OK, Verdict.UNKNOWN, Verdict.ILLEGAL
#: a search's final status as a verdict
_VERDICT = {v.value: v for v in Verdict}


def compose(verdicts: Iterable[Verdict | str]) -> Verdict:
    """Worst wins: any ILLEGAL, else any UNKNOWN, else OK (Jepsen ``valid-priorities``)."""
    worst = _OK
    for v in verdicts:
        if type(v) is not Verdict:
            v = Verdict(v)
        if v is _ILLEGAL:
            return v
        if v is _UNKNOWN_V:
            worst = v
    return worst


class LinearizabilityViolation(AssertionError):
    """Raised by test helpers when a history is ILLEGAL; carries the result and artifact paths."""

    def __init__(self, message: str, result: "LinearizabilityResult | None" = None,
                 artifacts: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.result = result
        self.artifacts = dict(artifacts or {})


@dataclass
class PartitionResult:
    key: Any
    verdict: Verdict
    ops: int
    required: int
    steps: int
    cache_entries: int
    elapsed_s: float
    best_prefix_len: int
    counterexample: dict[str, Any] | None = None
    linearization: list[int] | None = None
    reason: str = ""
    partition_ops: list[Op] = field(default_factory=list, repr=False)
    #: an ILLEGAL sub-history found without a search (``zones.py``); the counterexample uses it
    witness_ops: list[Op] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "verdict": self.verdict.value, "ops": self.ops,
                "required": self.required, "steps": self.steps,
                "cache_entries": self.cache_entries, "elapsed_s": round(self.elapsed_s, 6),
                "best_prefix_len": self.best_prefix_len, "reason": self.reason}


class Later:
    """A field value computed when first read: ``fn()`` (see :class:`_Deferred`)."""

    __slots__ = ("fn",)

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.fn = fn


class _Deferred:
    """A dataclass field that may be given as :class:`Later`: the check builds the history's op
    list only if a report reads it (docs/linearizability-design.md#performance)."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.slot = "_" + name

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return Later(list)  # the field's default
        v = obj.__dict__[self.slot]
        if type(v) is Later:
            v = obj.__dict__[self.slot] = v.fn()
        return v

    def __set__(self, obj: Any, value: Any) -> None:
        obj.__dict__[self.slot] = value


@dataclass
class LinearizabilityResult:
    verdict: Verdict
    partitions: dict[Any, PartitionResult]
    elapsed_s: float
    budget_exhausted: bool
    model: str = ""
    ops: list[Op] = field(default=_Deferred(), repr=False)  # type: ignore[assignment]

    @property
    def ok(self) -> bool:
        return self.verdict is Verdict.OK

    @property
    def counterexample(self) -> dict[str, Any] | None:
        for p in self.partitions.values():
            if p.counterexample is not None:
                return p.counterexample
        return None

    def failing(self) -> list[PartitionResult]:
        return [p for p in self.partitions.values() if p.verdict is Verdict.ILLEGAL]

    def summary(self) -> str:
        n = len(self.partitions)
        bad = sum(p.verdict is Verdict.ILLEGAL for p in self.partitions.values())
        unk = sum(p.verdict is Verdict.UNKNOWN for p in self.partitions.values())
        crashed = sum(op.status == "info" for op in self.ops)
        return (f"{self.verdict.value.upper()} model={self.model} ops={len(self.ops)} "
                f"crashed={crashed} partitions={n} illegal={bad} unknown={unk} "
                f"elapsed={self.elapsed_s * 1000:.1f}ms")

    def to_dict(self) -> dict[str, Any]:
        return {"verdict": self.verdict.value, "model": self.model,
                "elapsed_s": round(self.elapsed_s, 6), "budget_exhausted": self.budget_exhausted,
                "partitions": [p.to_dict() for p in self.partitions.values()],
                "counterexample": _jsonable(self.counterexample)}


def _jsonable(v: Any) -> Any:
    if v is None or isinstance(v, (bool, int, str)):
        return v
    if isinstance(v, float):
        return None if v == INF else v
    if isinstance(v, Mapping):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, (set, frozenset)):
        return sorted((_jsonable(x) for x in v), key=repr)
    return repr(v)


# ----------------------------------------------------------------------------------------
def prepare(ops: Sequence[Op], model: Any) -> dict[Any, list[Op]]:
    """Drop fail ops and crashed reads, partition, validate, and renumber each partition 0..n-1.

    ``model.validate(key, ops)`` (optional) raises ``MalformedHistory`` for values the model
    cannot compare, e.g. ``values.ValueTypeMismatch``.
    """
    ro = model.read_only
    is_pure = getattr(model, "is_pure", None)
    # crashed reads and other crashed pure ops have no effect and no checked output: drop them
    kept = [op for op in ops if op.status != "fail" and not (
        op.unknown and (ro(op.f) or (is_pure is not None and is_pure(op))))]
    parts = model.partition(kept)
    validate = getattr(model, "validate", None)  # optional: input errors before any search
    out: dict[Any, list[Op]] = {}
    for key, pops in parts.items():
        if validate is not None:
            validate(key, pops)
        pops = sorted(pops, key=_CALL_ORDER)
        # an op already numbered by its place is kept (ops are never changed after pairing)
        out[key] = [op if op.id == i else op.with_id(i) for i, op in enumerate(pops)]
    return out


def check(history: History | Sequence[Op] | Sequence[dict[str, Any]], model: Any, *,
          timeout: float | None = 10.0, max_cache_entries: int = 2_000_000,
          mode: str = "fast", workers: int = 1, max_steps: int | None = None,
          fast_path: bool = True) -> LinearizabilityResult:
    """Check a history (a :class:`History`, paired ops or raw events) against ``model``.

    ``mode="fast"`` stops at the first ILLEGAL partition; ``mode="report"`` decides every
    partition, then re-runs the failing ones with counterexample tracking and adds the
    ``minimal_window`` cut. Budgets (``timeout`` seconds, ``max_steps`` per partition,
    ``max_cache_entries``) exhausted with no ILLEGAL partition give UNKNOWN; ``timeout`` bounds the
    whole call, counterexample included. A model's ``decide(ops)`` (the register fast path,
    ``zones.py``) settles a partition before any search unless ``fast_path=False``.
    """
    if mode not in ("fast", "report"):
        raise ValueError(f"mode must be 'fast' or 'report', got {mode!r}")
    release_retired()  # the previous checks' large memos, before this check's clock starts
    t0 = time.monotonic()
    deadline = None if timeout is None else t0 + timeout
    ops, parts = _prepared(history, model)
    decided = _decide_fast(parts, model) if fast_path else {}
    if mode == "fast" and any(r.verdict is Verdict.ILLEGAL for r in decided.values()):
        searched = {k: _cancelled(k, v) for k, v in parts.items() if k not in decided}
    else:
        searched = _schedule({k: v for k, v in parts.items() if k not in decided} if decided else parts,
                             model, deadline=deadline, max_cache=max_cache_entries,
                             stop_on_illegal=(mode == "fast"), max_steps=max_steps, track=False)
    results = {k: decided.get(k) or searched[k] for k in parts} if decided else searched
    _attach_linearizations(decided, model, deadline=deadline, max_cache=max_cache_entries)
    if mode == "report":
        for key, res in results.items():
            if res.verdict is Verdict.ILLEGAL:
                witness = _renumber(res.witness_ops) if res.witness_ops else parts[key]
                _add_counterexample(res, witness, model, deadline=deadline,
                                    max_cache=max_cache_entries)
    verdict = compose(r.verdict for r in results.values())
    exhausted = any(r.verdict is Verdict.UNKNOWN for r in results.values())
    return LinearizabilityResult(verdict, results, time.monotonic() - t0, exhausted,
                       model=getattr(model, "name", type(model).__name__), ops=ops)


def check_events(events: Sequence[dict[str, Any]], model: Any, **kw: Any) -> LinearizabilityResult:
    """Check raw Jepsen-shaped events (docs/linearizability-design.md#events)."""
    return check(History(list(events)), model, **kw)


def _prepared(history: Any, model: Any) -> tuple[list[Op] | Later, dict[Any, list[Op]]]:
    """The history's ops and ``prepare``'s partitions; a history that builds both in one pass
    (``history.one_pass_partitions(model)``, e.g. ``PorcupineKvHistory``) builds the op list when read."""
    one_pass = getattr(history, "one_pass_partitions", None) if isinstance(history, History) else None
    got = one_pass(model) if one_pass is not None else None
    if got is not None:
        return Later(got[1]), got[0]
    ops = _as_ops(history, model)
    return ops, prepare(ops, model)


def _as_ops(history: Any, model: Any) -> list[Op]:
    if isinstance(history, History):
        return history.ops(model.read_only)
    seq = list(history)
    if seq and isinstance(seq[0], dict):
        return pair_events(seq, model.read_only)
    return seq


def _schedule(parts: Mapping[Any, list[Op]], model: Any, *, deadline: float | None,
              max_cache: int, stop_on_illegal: bool, max_steps: int | None,
              track: bool) -> dict[Any, PartitionResult]:
    """Round-robin over partitions in equal slices of 1,024 steps
    (docs/linearizability-design.md#partitioning-and-scheduling)."""
    # a search is built when first run: in fast mode an early ILLEGAL partition spares the others' setup
    searches: dict[Any, Any] = {}
    active = list(parts)
    confirm = getattr(model, "confirm_model", None)
    uncertain = getattr(model, "needs_confirm", None) or (lambda op: op.unknown)  # default: crashed ops
    confirming: set[Any] = set()
    stopped = False
    first_round = True
    while active and not stopped:
        nxt_active = []
        for k in active:
            s = searches.get(k)
            if s is None:
                s = searches[k] = _searcher(parts[k], _search_model(model, k), track, max_cache, deadline)
            budget = SLICE if len(active) > 1 else _ALONE
            if max_steps is not None:
                budget = min(budget, max_steps - s.steps)
            st = s.run(budget, deadline) if budget > 0 else RUNNING
            if st == ILLEGAL and confirm is not None and k not in confirming and any(map(uncertain, s.ops)):
                # the fast model approximates these ops; only the confirming one may say ILLEGAL
                confirming.add(k)
                searches[k] = PartitionSearch(parts[k], confirm, track=track, max_cache_entries=max_cache)
                nxt_active.append(k)
                continue
            if st == ILLEGAL and stop_on_illegal:
                stopped = True
                break
            if st == RUNNING:
                out_of_steps = max_steps is not None and s.steps >= max_steps
                out_of_time = deadline is not None and time.monotonic() > deadline
                if out_of_steps or out_of_time:
                    s.status = UNKNOWN
                    s.reason = "max_steps" if out_of_steps else "timeout"
                else:
                    nxt_active.append(k)
        if first_round:
            first_round = False
            # partitions whose greedy got stuck earliest first (stable: the others keep their order)
            nxt_active.sort(key=lambda k: getattr(searches[k], "first_hint", 1.0))
        active = nxt_active
    out = {}
    for k in parts:
        s = searches.get(k)
        if s is None:
            unknown = sum(map(_UNKNOWN, parts[k]))
            if unknown < len(parts[k]):
                out[k] = _cancelled(k, parts[k], unknown)
                continue
            s = _searcher(parts[k], _search_model(model, k), track, max_cache)  # OK with no search
        status = s.status
        if status == RUNNING:
            status = UNKNOWN
            s.reason = s.reason or "cancelled: another partition is illegal"
        out[k] = PartitionResult(  # positional: _RESULT_FIELDS
            k, _VERDICT[status], len(s.ops), s.n_required, s.steps, s.cache_entries, s.elapsed_s,
            s.best_prefix_len, None, None if s.linearization is None else [i for i, _ in s.linearization],
            s.reason, s.ops)
        if track:
            out[k].counterexample = (_counterexample(s, k, _search_model(model, k))
                                     if status == ILLEGAL else None)
    return out


def _searcher(ops: list[Op], model: Any, track: bool, max_cache: int,
              deadline: float | None = None) -> Any:
    """A replay of call order for a sequential partition (the one candidate order) or one the
    model says no order of can be illegal (``model.never_illegal(ops)``), a linearization the
    model's greedy finds (``model.greedy(ops, entries)``: OK), else the search (``first_hint``:
    where the greedy got stuck, the scheduler's order)."""
    if not track:
        if is_sequential(ops):
            return SequentialReplay(ops, model)
        never_illegal = getattr(model, "never_illegal", None)
        if never_illegal is not None and never_illegal(ops):
            return SequentialReplay(ops, model, sum(not op.unknown for op in ops))
        greedy = getattr(model, "greedy", None)
        if greedy is not None:  # an OK partition placed greedily; else the search, on the same entries
            t0 = time.perf_counter()
            ents = entries(ops)
            got = greedy(ops, ents, deadline)
            if got is not None:
                lin, stuck = got
                if lin is not None:
                    return GreedyLinearized(ops, lin, time.perf_counter() - t0)
                s = PartitionSearch(ops, model, max_cache_entries=max_cache, ents=ents)
                s.first_hint = stuck
                return s
    return PartitionSearch(ops, model, track=track, max_cache_entries=max_cache)


def _search_model(model: Any, key: Any) -> Any:
    """The model one partition is searched with: ``model.partition_model(key)`` where the model
    narrows its state to the partition (docs/linearizability-design.md#partitioning-and-scheduling), else the model."""
    narrow = getattr(model, "partition_model", None)
    return model if narrow is None else narrow(key)


def _counterexample(s: PartitionSearch, key: Any, model: Any) -> dict[str, Any]:
    ops = s.ops
    prefix = [{"op": i, "index": ops[i].invoke_index, "describe": model.describe_op(ops[i]),
               "state_after": model.describe_state(st)} for i, st in s.best_path]
    fu = s.first_unplaceable or {"op": None, "state": model.init(), "attempts": []}
    first = None
    if fu["op"] is not None:
        op = ops[fu["op"]]
        first = {"op": op.id, "index": op.invoke_index, "describe": model.describe_op(op),
                 "call": op.call, "ret": None if op.ret == INF else op.ret,
                 "process": op.process, "state": model.describe_state(fu["state"])}
        blame = getattr(model, "blame", None)  # optional model hook: name the bug class of the partition
        classify = getattr(model, "classify", None)  # optional model hook: name the bug class of one op
        if callable(blame):
            first["bug_class"] = blame(ops, fu["state"], op)
        elif callable(classify):
            first["bug_class"] = classify(fu["state"], op)
    attempts = [{"op": a["op"], "index": ops[a["op"]].invoke_index,
                 "describe": model.describe_op(ops[a["op"]]),
                 "state": model.describe_state(a["state"]), "explain": a["explain"]}
                for a in fu["attempts"]]
    return {"partition": key, "longest_prefix": prefix, "first_unplaceable": first,
            "attempts": attempts}


def _decide_fast(parts: Mapping[Any, list[Op]], model: Any) -> dict[Any, PartitionResult]:
    """Partitions the model decides without a search (``Model.decide``); an ILLEGAL one keeps
    its witness so the counterexample is searched on that small sub-history alone."""
    decide = getattr(model, "decide", None)
    out: dict[Any, PartitionResult] = {}
    if decide is None:
        return out
    for key, ops in parts.items():
        t0 = time.perf_counter()
        d = decide(ops)
        if d is None:
            continue
        verdict = Verdict.OK if d.legal else Verdict.ILLEGAL
        out[key] = PartitionResult(
            key=key, verdict=verdict, ops=len(ops), required=sum(not o.unknown for o in ops),
            steps=0, cache_entries=0, elapsed_s=time.perf_counter() - t0, best_prefix_len=0,
            reason="decided by zones" + ("" if d.legal else f": {d.reason}"),
            partition_ops=ops, witness_ops=sorted(d.witness, key=lambda o: o.id))
    return out


#: steps spent, over all partitions, on finding a linearization for a partition the fast path
#: judged OK (the timeline draws it), at most ``LINEARIZATION_STEPS_PER_OP`` per op of the
#: partition; past them the verdict stands without one
LINEARIZATION_STEPS = 100_000
LINEARIZATION_STEPS_PER_OP = 20


def _attach_linearizations(decided: Mapping[Any, PartitionResult], model: Any, *,
                           deadline: float | None, max_cache: int) -> None:
    budget = LINEARIZATION_STEPS
    for res in decided.values():
        if res.verdict is not Verdict.OK or budget <= 0:
            continue
        s = PartitionSearch(res.partition_ops, _search_model(model, res.key), max_cache_entries=max_cache)
        if s.run(min(budget, 1024 + LINEARIZATION_STEPS_PER_OP * res.ops), deadline) == OK and s.linearization is not None:
            res.linearization = [i for i, _ in s.linearization]
        budget -= s.steps


def _cancelled(key: Any, ops: list[Op], unknown: int | None = None) -> PartitionResult:
    """A partition never searched; ``unknown``: its crashed ops, if counted already."""
    if unknown is None:
        unknown = sum(map(_UNKNOWN, ops))
    return PartitionResult(key, _UNKNOWN_V, len(ops), len(ops) - unknown, 0, 0, 0.0, 0,
                           None, None, "cancelled: another partition is illegal", ops)  # _RESULT_FIELDS


#: the order of ``PartitionResult``'s fields the scheduler's results are built in, by position: a
#: dataclass built by keyword costs twice as long (0.5 us a partition; c01-bad has eight), and
#: ``tests/linearizability/test_greedy.py`` checks the order still holds
_RESULT_FIELDS = ("key", "verdict", "ops", "required", "steps", "cache_entries", "elapsed_s",
                  "best_prefix_len", "counterexample", "linearization", "reason", "partition_ops")
_UNKNOWN = attrgetter("unknown")


def _renumber(ops: Sequence[Op]) -> list[Op]:
    return [op.replace(id=i) for i, op in enumerate(ops)]


def _add_counterexample(res: PartitionResult, ops: list[Op], model: Any, *,
                        deadline: float | None, max_cache: int) -> None:
    """Re-run one ILLEGAL partition with tracking, then bisect for the minimal window; both
    share the check's deadline."""
    tracked = _schedule({res.key: ops}, model, deadline=deadline, max_cache=max_cache,
                        stop_on_illegal=True, max_steps=None, track=True)[res.key]
    res.counterexample = tracked.counterexample or {"partition": res.key, "longest_prefix": [],
                                                    "first_unplaceable": None, "attempts": []}
    if tracked.verdict is not Verdict.ILLEGAL:
        res.counterexample["incomplete"] = tracked.reason or "timeout"
    res.best_prefix_len = tracked.best_prefix_len
    res.counterexample["minimal_window"] = minimal_window(ops, model, deadline=deadline,
                                                          max_cache=max_cache)


def cut(ops: Sequence[Op], t: float) -> list[Op]:
    """Keep ops invoked at or before ``t``; those still pending at ``t`` become ``info``
    (docs/linearizability-design.md#counterexamples)."""
    out = []
    for op in ops:
        if op.call > t:
            continue
        if op.ret > t and not op.unknown:
            op = op.replace(status="info", ret=INF)
        out.append(op.replace(id=len(out)))
    return out


def minimal_window(ops: Sequence[Op], model: Any, *, deadline: float | None = None,
                   max_cache: int = 2_000_000) -> dict[str, Any] | None:
    """Shortest time-prefix that is still ILLEGAL, by bisection over return times."""
    times = sorted({op.ret for op in ops if op.ret != INF})
    if not times:
        return None

    model = getattr(model, "confirm_model", None) or model  # a cut is judged as strictly as the whole

    def illegal(t: float) -> bool | None:
        sub = cut(ops, t)
        s = PartitionSearch(sub, model, max_cache_entries=max_cache)
        st = s.run(10**12, deadline)
        if st == RUNNING or st == UNKNOWN:
            return None
        return st == ILLEGAL

    lo, hi = 0, len(times) - 1
    if not illegal(times[hi]):
        return None
    while lo < hi:
        mid = (lo + hi) // 2
        r = illegal(times[mid])
        if r is None:
            break
        if r:
            hi = mid
        else:
            lo = mid + 1
    t = times[hi]
    return {"cut_ns": t, "ops": [op.invoke_index for op in ops if op.call <= t]}


CheckResult = LinearizabilityResult  # deprecated name of LinearizabilityResult
