"""``StoreModelMachine``: sequential rules for every breaker-store operation, each compared step
by step with the pure model (``breaker/kernel.py`` via ``breaker/model.py``), invariants after
every step. Point it at any store::

    from pytest_cbchaos.stateful import store_machine
    TestMyStore = store_machine(lambda: MyStore(...)).TestCase
"""

from __future__ import annotations

import itertools
from typing import Any, Callable

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from ..breaker import kernel
from ..breaker import model as bmodel
from ..breaker.cells import CellCoverage, cell_of
from ..breaker.conformance.capabilities import Capabilities, capabilities_of
from ..breaker.record import STATES, Record
from ..faults.clock import ManualClock
from .store_commands import OUTCOMES, Command, execute, history_input, op_id_for, won_token
from .survey import deviation_error, logged, merge_store_fields

#: fields compared after every step (``probe_lease_until`` only when the op's clock is known)
COMPARED = ("state", "failure_count", "last_failure_time", "open_until", "half_open_probe_active",
            "probe_token", "probe_anchor", "probe_generation", "recent_ops")

_salts = itertools.count(1)


def _as_plain_report(cmd: Command) -> Command:
    """A tokenless store cannot tell a non-owner's release from a plain outcome report, so the
    model judges it as one: success -> record_success, failure -> record_failure (threshold 1 in
    HALF_OPEN is moot: any failure reopens); abort has no plain form and stays a release."""
    o = cmd.args.get("outcome")
    if o == "success":
        return Command("record_success", cmd.backend, {"expected_state": None})
    if o == "failure":
        return Command("record_failure", cmd.backend, {"failure_threshold": 1,
                                                       "recovery_timeout": cmd.args["recovery_timeout"]})
    return cmd


class StoreModelMachine(RuleBasedStateMachine):
    """Subclass and set ``store_factory`` (or use :func:`store_machine`).

    ``time_source="client"``: the machine passes ``now`` from a :class:`ManualClock` it advances
    (leases and cooldowns are exercised); ``"server"``: the store's clock decides and the model
    replays with the reply's ``_now``.
    """

    store_factory: Callable[[], Any] | None = None
    #: when set, every op's transition cell is counted here (docs/breaker-design.md#transition-cells)
    coverage: CellCoverage | None = None
    backends: tuple[str, ...] = ("sm-a", "sm-b")
    time_source: str = "client"
    start_time: float = 1_800_000_000.0
    #: bug classes already reported (survey mode): on such a deviation the model adopts the store's record
    excluded: frozenset[str] = frozenset()

    def __init__(self) -> None:
        super().__init__()
        if type(self).store_factory is None:
            raise TypeError(f"{type(self).__name__}.store_factory is not set")
        self.store = type(self).store_factory()
        self.caps: Capabilities = capabilities_of(self.store)
        self.steps: list[str] = []
        self.calls: list[tuple[str, dict[str, Any]]] = []  # rule calls, for the survey's minimiser
        self._last: tuple[Command, Record, dict, dict, bool | None] | None = None
        self.clock = ManualClock(start=self.start_time) if self.time_source == "client" else None
        self.model: dict[str, Record] = {}
        self.tokens: dict[str, list[str]] = {}
        self.seq = 0
        self.salt = next(_salts)
        self.last_open_until: dict[str, float] = {}
        self.exact_lease: dict[str, bool] = {}
        self.last: dict[str, tuple[Command, str, str | None, float]] = {}

    @initialize()
    def clear_backends(self) -> None:
        for b in self.backends:
            self.store.clear(b)
            self.model[b] = bmodel.init()
            self.tokens[b] = []
            self.last_open_until[b] = 0.0
            self.exact_lease[b] = True

    # -- step helper ---------------------------------------------------------------------
    def _now(self) -> float | None:
        return None if self.clock is None else self.clock.time()

    def _do(self, cmd: Command, token: str | None = None, lease: float = 30.0, op_id: str | None = None) -> Any:
        b = self.backends[cmd.backend]
        self.seq += 1
        op_id = op_id or op_id_for(self.seq, self.salt)
        if cmd.op not in ("renew_probe", "get_state"):
            self.last[b] = (cmd, op_id, token, lease)
        now = self._now()
        owner = kernel.token_current(self.model[b], token) if token else None
        if cmd.op in ("release_probe", "renew_probe"):
            owner = bool(owner)
        self.steps.append(cmd.describe() + ("" if owner is None else f" by {'owner' if owner else 'non-owner'}")
                          + ("" if now is None else f" @t+{now - self.start_time:g}"))
        store_token = token if self.caps.probe_tokens else None
        reply, observed = execute(self.store, b, cmd, op_id, token=store_token, lease=lease, now=now)
        judged = _as_plain_report(cmd) if owner is False and not self.caps.probe_tokens else cmd
        inp = history_input(judged, op_id, token=token, lease=lease, now=None)
        if observed.get("now") is not None:
            inp["now"] = observed["now"]
        elif now is not None:
            inp["now"] = now
        else:
            # no reply clock (renew on a server-clock store): lease values become approximate
            self.exact_lease[b] = False
            inp["now"] = max(self.model[b].open_until, self.model[b].last_failure_time)
        before = self.model[b]
        if self.coverage is not None:
            self.coverage.add(cell_of(judged.op, before, inp))
        new, expected = bmodel.apply(before, judged.op, inp)
        obs = {k: v for k, v in observed.items() if k != "now"}
        self._last = (cmd, before, expected, obs, owner)
        mism = {k: (v, expected.get(k)) for k, v in obs.items() if expected.get(k) != v}
        if mism:
            got = self.store.get_state(b)
            err = deviation_error(self, cmd, before, expected, obs, new, got, owner,
                                  f"{cmd.describe()} on {b}: store replied {obs}, model expects "
                                  f"{ {k: expected.get(k) for k in obs} } (mismatch {mism}); "
                                  f"model state before: {before}")
            if err.finding.klass.id not in self.excluded:
                raise err
            new = merge_store_fields(new, got, self.caps.fields)
            self.last_open_until[b] = new.open_until  # the accepted deviation rebases the model
        if cmd.op == "gate" and cmd.backend is not None and observed.get("won"):
            self.exact_lease[b] = observed.get("now") is not None or now is not None
        self.model[b] = new
        t = won_token(cmd, reply) if self.caps.probe_tokens else \
            (new.probe_token if cmd.op == "gate" and observed.get("won") else None)
        if t:
            self.tokens[b].append(t)
        return reply

    # -- rules ---------------------------------------------------------------------------
    bidx = st.integers(0, 1)

    @rule(b=bidx, lease=st.sampled_from([0.5, 30.0]))
    @logged
    def gate(self, b: int, lease: float) -> None:
        self._do(Command("gate", b, {}), lease=lease)

    @rule(b=bidx, t=st.integers(1, 3), r=st.sampled_from([0.001, 1.0, 60.0]))
    @logged
    def record_failure(self, b: int, t: int, r: float) -> None:
        self._do(Command("record_failure", b, {"failure_threshold": t, "recovery_timeout": r}))

    @rule(b=bidx, e=st.sampled_from([None, "closed", "open", "half_open"]))
    @logged
    def record_success(self, b: int, e: str | None) -> None:
        self._do(Command("record_success", b, {"expected_state": e}))

    @precondition(lambda self: not self.caps.lacks("release_probe"))
    @rule(b=bidx, which=st.sampled_from(["last", "first", "fake"]), o=st.sampled_from(OUTCOMES),
          r=st.sampled_from([0.001, 60.0]))
    @logged
    def release_probe(self, b: int, which: str, o: str, r: float) -> None:
        outs = self.caps.release_outcomes  # a store without some outcomes gets one it has
        o = o if o in outs else outs[OUTCOMES.index(o) % len(outs)]
        self._do(Command("release_probe", b, {"outcome": o, "recovery_timeout": r}),
                 token=self._token(b, which))

    @precondition(lambda self: not self.caps.lacks("leases", "renew_probe"))
    @rule(b=bidx, which=st.sampled_from(["last", "first", "fake"]),
          lease=st.sampled_from([0.5, 30.0]))
    @logged
    def renew_probe(self, b: int, which: str, lease: float) -> None:
        self._do(Command("renew_probe", b, {}), token=self._token(b, which), lease=lease)

    @precondition(lambda self: not self.caps.lacks("force_open"))
    @rule(b=bidx, d=st.sampled_from([0.0, 1.0, 600.0]))
    @logged
    def force_open(self, b: int, d: float) -> None:
        self._do(Command("force_open", b, {"open_for_seconds": d}))

    @precondition(lambda self: not self.caps.lacks("reset"))
    @rule(b=bidx)
    @logged
    def reset(self, b: int) -> None:
        self._do(Command("reset", b, {}))
        self.last_open_until[self.backends[b]] = 0.0

    @rule(b=bidx, t=st.integers(2, 3), r=st.sampled_from([1.0, 60.0]))
    @logged
    def trip(self, b: int, t: int, r: float) -> None:
        """Threshold failures in a row: the path to OPEN a random draw rarely takes."""
        for _ in range(t):
            self._do(Command("record_failure", b, {"failure_threshold": t, "recovery_timeout": r}))

    @staticmethod
    def simpler(name: str, kw: dict[str, Any]) -> list[list[tuple[str, dict[str, Any]]]]:
        """Shorter stand-ins for a composite rule call (the survey's minimiser tries them)."""
        if name == "trip":
            return [[("record_failure", {"b": kw["b"], "t": 1, "r": kw["r"]})]]
        return []

    @precondition(lambda self: bool(self.last) and not self.caps.lacks("op_ids"))
    @rule(b=bidx)
    @logged
    def resend_last(self, b: int) -> None:
        """The backend's last op again with the same op id (exactly-once through recent_ops)."""
        last = self.last.get(self.backends[b])
        if last is not None:
            cmd, op_id, token, lease = last
            self._do(cmd, token=token, lease=lease, op_id=op_id)

    @rule(b=bidx)
    @logged
    def get_state(self, b: int) -> None:
        self._do(Command("get_state", b, {}))

    @precondition(lambda self: self.clock is not None)
    @rule(dt=st.sampled_from([0.25, 1.0, 31.0, 61.0]))
    @logged
    def advance_time(self, dt: float) -> None:
        assert self.clock is not None
        self.clock.advance(dt)

    def _token(self, b: int, which: str) -> str | None:
        toks = self.tokens[self.backends[b]]
        if which == "fake" or not toks:
            return None
        return toks[-1] if which == "last" else toks[0]

    # -- invariants ----------------------------------------------------------------------
    @invariant()
    def store_matches_model(self) -> None:
        for b in self.backends if self.model else ():
            got = self.store.get_state(b)
            want = self.model[b].to_dict()
            fields = [f for f in COMPARED + (("probe_lease_until",) if self.exact_lease.get(b, True) else ())
                      if f in self.caps.fields]
            diff = {f: (got.get(f), want[f]) for f in fields if not self.caps.same(f, got.get(f), want[f])}
            if not diff:
                continue
            msg = f"{b}: store record differs from model (store, model): {diff}"
            cmd, before, expected, obs, owner = self._last or (Command("get_state", 0, {}), self.model[b], {}, {}, None)
            if self.backends[cmd.backend] != b:
                cmd, before, expected, obs, owner = Command("get_state", self.backends.index(b), {}), self.model[b], {}, {}, None
            err = deviation_error(self, cmd, before, expected, obs, self.model[b], got, owner, msg)
            if err.finding.klass.id not in self.excluded:
                raise err
            self.model[b] = merge_store_fields(self.model[b], got, self.caps.fields)
            self.last_open_until[b] = self.model[b].open_until

    @invariant()
    def record_well_formed(self) -> None:
        for b, rec in self.model.items():
            assert rec.state in STATES
            assert rec.failure_count >= 0
            if rec.half_open_probe_active and rec.probe_token:
                assert rec.state == "half_open"
                assert rec.probe_token.startswith(f"{rec.probe_generation}:")

    @invariant()
    def open_until_monotone_outside_reset(self) -> None:
        for b, rec in self.model.items():
            assert rec.open_until >= self.last_open_until.get(b, 0.0) or rec.state == "closed"
            self.last_open_until[b] = rec.open_until

    def teardown(self) -> None:
        close = getattr(self.store, "close", None)
        if callable(close):
            close()


def store_machine(factory: Callable[[], Any], *, backends: tuple[str, str] = ("sm-a", "sm-b"),
                  time_source: str = "client", name: str = "StoreMachine",
                  excluded: frozenset[str] = frozenset(),
                  coverage: CellCoverage | None = None) -> type[StoreModelMachine]:
    """A :class:`StoreModelMachine` subclass bound to ``factory`` (use its ``.TestCase``; for a
    survey of every bug class use :func:`pytest_cbchaos.stateful.survey.survey`)."""
    if time_source not in ("client", "server"):
        raise ValueError(f"time_source must be 'client' or 'server', got {time_source!r}")
    return type(name, (StoreModelMachine,), {"store_factory": staticmethod(factory),
                                             "backends": tuple(backends),
                                             "time_source": time_source, "coverage": coverage,
                                             "excluded": frozenset(excluded)})
