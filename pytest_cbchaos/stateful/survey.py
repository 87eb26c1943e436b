"""Survey mode for the store machine (docs/stateful.md#survey-mode).

Fail-fast stops at the first deviation. A survey records it (bug class, invariant, the shrunk
example), then runs again with that class excluded (the model adopts the store's record when it
sees it again) until a round finds nothing new or the round budget ends, and returns every finding.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from hypothesis import Phase
from hypothesis import settings as hsettings
from hypothesis import seed as hseed
from hypothesis.stateful import get_state_machine_test

from ..breaker import kernel
from ..breaker.conformance.classify import Deviation, Finding, classify, describe
from ..breaker.record import Record, decode_recent_ops


class StoreDeviation(AssertionError):
    """The store disagreed with the model; ``finding`` names the class."""

    def __init__(self, message: str, finding: Finding, calls: tuple = ()) -> None:
        super().__init__(f"{finding.klass.message} [{finding.klass.cb}, {finding.klass.id}]: {message}")
        self.finding, self.calls = finding, calls


def deviation_error(machine: Any, cmd: Any, before: Record, expected: Mapping[str, Any],
                    observed: Mapping[str, Any], want: Record, got: Mapping[str, Any], owner: bool | None,
                    message: str) -> StoreDeviation:
    fields = machine.caps.fields
    w = {k: v for k, v in want.to_dict().items() if k in fields}
    d = Deviation(cmd.op, dict(cmd.args), {k: v for k, v in before.to_dict().items() if k in fields},
                  dict(expected), dict(observed), w, {k: got.get(k) for k in fields}, owner)
    k = classify(d)
    return StoreDeviation(message, Finding(k, describe(d, k), tuple(machine.steps)), tuple(machine.calls))


def merge_store_fields(rec: Record, got: Mapping[str, Any], fields: tuple[str, ...]) -> Record:
    """The model record with the store's values for the declared fields (the deviation is accepted)."""
    upd = {k: got[k] for k in fields if k in got and k != "recent_ops"}
    if "recent_ops" in fields and "recent_ops" in got:
        upd["recent_ops"] = decode_recent_ops(got["recent_ops"])[0]
    return kernel.normalize(rec.replace(**upd))


def logged(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Record a rule call on the machine (``calls``) so a failing run can be replayed and minimised."""
    @functools.wraps(fn)
    def wrapper(self: Any, **kw: Any) -> Any:
        self.calls.append((fn.__name__, kw))
        return fn(self, **kw)
    return wrapper


def replay(machine: type, calls: list[tuple[str, dict[str, Any]]]) -> StoreDeviation | None:
    """Run ``calls`` on a fresh machine with the invariants after each; the deviation raised, if any."""
    m = machine()
    invariants = [i.function for i in machine.setup_state().invariants]
    try:
        for init in machine.setup_state().initializers:
            init.function(m)
        for name, kw in calls:
            getattr(m, name)(**kw)
            for inv in invariants:
                inv(m)
    except StoreDeviation as exc:
        return exc
    finally:
        m.teardown()
    return None


def minimise(machine: type, calls: list[tuple[str, dict[str, Any]]], klass: str,
             max_replays: int = 400) -> StoreDeviation | None:
    """Delete chunks of steps while the same bug class still shows (a delta-debugging pass).

    Faster than Hypothesis' shrinker for a store behind I/O, and it keeps the class fixed, so a
    shrink can never turn one bug into another."""
    best = replay(machine, calls)
    if best is None or best.finding.klass.id != klass:
        return None
    calls = list(best.calls)
    budget, n = max_replays, max(1, len(calls) // 2)
    while n >= 1 and budget > 0:
        i, shrunk = 0, False
        while i < len(calls) and budget > 0:
            cand = calls[:i] + calls[i + n:]
            budget -= 1
            got = replay(machine, cand)
            if got is not None and got.finding.klass.id == klass:
                calls, best, shrunk = list(got.calls), got, True
            else:
                i += n
        n = n if shrunk and n > 1 else n // 2
    simpler = getattr(machine, "simpler", None)
    for i, (name, kw) in enumerate(list(calls) if simpler else ()):
        for alt in simpler(name, kw):  # a composite rule (trip) replaced by its short form
            if budget <= 0:
                return best
            budget -= 1
            got = replay(machine, calls[:i] + alt + calls[i + 1:])
            if got is not None and got.finding.klass.id == klass and len(got.finding.example) < len(best.finding.example):
                calls, best = list(got.calls), got
                break
    return best


@dataclass
class SurveyReport:
    findings: list[Finding] = field(default_factory=list)
    rounds: int = 0
    exhausted: bool = False  # the round budget ended before a clean round

    @property
    def classes(self) -> list[str]:
        return [f.klass.id for f in self.findings]

    def format(self) -> str:
        head = f"survey: {len(self.findings)} bug class(es) in {self.rounds} round(s)" + \
            (" (round budget ended)" if self.exhausted else "")
        return "\n".join([head, *(f.format() for f in self.findings)])

    def to_dict(self) -> dict[str, Any]:
        return {"rounds": self.rounds, "exhausted": self.exhausted,
                "findings": [f.to_dict() for f in self.findings]}


def run_survey(machine: type, *, settings: hsettings | None = None, max_rounds: int = 12, clean_rounds: int = 2,
           on_finding: Callable[[Finding], None] | None = None) -> SurveyReport:
    """Run ``machine`` (a ``StoreModelMachine`` subclass) round after round, excluding each found class,
    until ``clean_rounds`` rounds in a row find nothing new or ``max_rounds`` rounds ran. Each round
    has the settings' example budget. Under a derandomized profile round ``n`` uses seed ``n``, so
    rounds explore different programs and a rerun reproduces the survey."""
    s = hsettings(settings or hsettings(), report_multiple_bugs=False, database=None,
                  phases=[Phase.explicit, Phase.generate])
    rep = SurveyReport()
    excluded: set[str] = set(getattr(machine, "excluded", frozenset()))
    clean = 0
    for _ in range(max_rounds):
        rep.rounds += 1
        bound = type(f"{machine.__name__}Survey{rep.rounds}", (machine,), {"excluded": frozenset(excluded)})
        test = get_state_machine_test(bound, settings=s)
        if s.derandomize:
            test = hseed(rep.rounds)(test)
        try:
            test()
        except StoreDeviation as exc:
            klass = exc.finding.klass.id
            excluded.add(klass)
            small = minimise(bound, list(exc.calls), klass) if exc.calls else None
            rep.findings.append((small or exc).finding)
            if on_finding is not None:
                on_finding(rep.findings[-1])
            clean = 0
            continue
        clean += 1
        if clean >= clean_rounds:
            return rep
    rep.exhausted = True
    return rep


def check_store(machine: type, *, survey: bool = False, settings: hsettings | None = None,
                **kw: Any) -> SurveyReport:
    """Fail-fast (the default: raises the first :class:`StoreDeviation`) or a survey that raises one
    AssertionError listing every finding at the end."""
    if not survey:
        walk_first(machine)
        get_state_machine_test(machine, settings=settings)()
        return SurveyReport(rounds=1)
    rep = run_survey(machine, settings=settings, **kw)
    if rep.findings:
        raise SurveyFailed(rep)
    return rep


def walk_first(machine: type) -> bool:
    """Run the deterministic cell walk (docs/breaker-design.md#transition-cells) on ``machine``'s store
    before the random machine, so a defect on a long path is found whatever the draws. Only for a
    client-clock store that can express every op (the scripts need tokens, leases and op ids)."""
    from ..breaker.conformance.capabilities import ALL_OPS, ALL_OUTCOMES, capabilities_of
    from .store_cells import walk_cells

    factory = getattr(machine, "store_factory", None)
    if factory is None or getattr(machine, "time_source", "client") != "client":
        return False
    probe = factory()
    try:
        caps = capabilities_of(probe)
    finally:
        close = getattr(probe, "close", None)
        if callable(close):
            close()
    if caps.lacks("probe_tokens", "leases", "op_ids", "client_time", *sorted(ALL_OPS)) or \
            set(caps.release_outcomes) != set(ALL_OUTCOMES):
        return False
    walk_cells(factory)
    return True


class SurveyFailed(AssertionError):
    """A survey found bug classes; the message lists them with their minimal examples."""

    def __init__(self, report: SurveyReport) -> None:
        super().__init__(report.format())
        self.report = report
