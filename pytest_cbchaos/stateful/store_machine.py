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

from ..breaker import model as bmodel
from ..breaker.cells import CellCoverage, cell_of
from ..breaker.record import STATES, Record
from ..faults.clock import ManualClock
from .store_commands import OUTCOMES, Command, execute, history_input, op_id_for, won_token

#: fields compared after every step (``probe_lease_until`` only when the op's clock is known)
COMPARED = ("state", "failure_count", "last_failure_time", "open_until", "half_open_probe_active",
            "probe_token", "probe_anchor", "probe_generation", "recent_ops")

_salts = itertools.count(1)


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

    def __init__(self) -> None:
        super().__init__()
        if type(self).store_factory is None:
            raise TypeError(f"{type(self).__name__}.store_factory is not set")
        self.store = type(self).store_factory()
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
        reply, observed = execute(self.store, b, cmd, op_id, token=token, lease=lease, now=now)
        inp = history_input(cmd, op_id, token=token, lease=lease, now=None)
        if observed.get("now") is not None:
            inp["now"] = observed["now"]
        elif now is not None:
            inp["now"] = now
        else:
            # no reply clock (renew on a server-clock store): lease values become approximate
            self.exact_lease[b] = False
            inp["now"] = max(self.model[b].open_until, self.model[b].last_failure_time)
        if self.coverage is not None:
            self.coverage.add(cell_of(cmd.op, self.model[b], inp))
        new, expected = bmodel.apply(self.model[b], cmd.op, inp)
        obs = {k: v for k, v in observed.items() if k != "now"}
        mism = {k: (v, expected.get(k)) for k, v in obs.items() if expected.get(k) != v}
        assert not mism, (f"{cmd.describe()} on {b}: store replied {obs}, model expects "
                          f"{ {k: expected.get(k) for k in obs} } (mismatch {mism}); "
                          f"model state before: {self.model[b]}")
        if cmd.op == "gate" and cmd.backend is not None and observed.get("won"):
            self.exact_lease[b] = observed.get("now") is not None or now is not None
        self.model[b] = new
        t = won_token(cmd, reply)
        if t:
            self.tokens[b].append(t)
        return reply

    # -- rules ---------------------------------------------------------------------------
    bidx = st.integers(0, 1)

    @rule(b=bidx, lease=st.sampled_from([0.5, 30.0]))
    def gate(self, b: int, lease: float) -> None:
        self._do(Command("gate", b, {}), lease=lease)

    @rule(b=bidx, t=st.integers(1, 3), r=st.sampled_from([0.001, 1.0, 60.0]))
    def record_failure(self, b: int, t: int, r: float) -> None:
        self._do(Command("record_failure", b, {"failure_threshold": t, "recovery_timeout": r}))

    @rule(b=bidx, e=st.sampled_from([None, "closed", "open", "half_open"]))
    def record_success(self, b: int, e: str | None) -> None:
        self._do(Command("record_success", b, {"expected_state": e}))

    @rule(b=bidx, which=st.sampled_from(["last", "first", "fake"]), o=st.sampled_from(OUTCOMES),
          r=st.sampled_from([0.001, 60.0]))
    def release_probe(self, b: int, which: str, o: str, r: float) -> None:
        self._do(Command("release_probe", b, {"outcome": o, "recovery_timeout": r}),
                 token=self._token(b, which))

    @rule(b=bidx, which=st.sampled_from(["last", "first", "fake"]),
          lease=st.sampled_from([0.5, 30.0]))
    def renew_probe(self, b: int, which: str, lease: float) -> None:
        self._do(Command("renew_probe", b, {}), token=self._token(b, which), lease=lease)

    @rule(b=bidx, d=st.sampled_from([0.0, 1.0, 600.0]))
    def force_open(self, b: int, d: float) -> None:
        self._do(Command("force_open", b, {"open_for_seconds": d}))

    @rule(b=bidx)
    def reset(self, b: int) -> None:
        self._do(Command("reset", b, {}))
        self.last_open_until[self.backends[b]] = 0.0

    @rule(b=bidx, t=st.integers(2, 3), r=st.sampled_from([1.0, 60.0]))
    def trip(self, b: int, t: int, r: float) -> None:
        """Threshold failures in a row: the path to OPEN a random draw rarely takes."""
        for _ in range(t):
            self.record_failure(b, t, r)

    @precondition(lambda self: bool(self.last))
    @rule(b=bidx)
    def resend_last(self, b: int) -> None:
        """The backend's last op again with the same op id (exactly-once through recent_ops)."""
        last = self.last.get(self.backends[b])
        if last is not None:
            cmd, op_id, token, lease = last
            self._do(cmd, token=token, lease=lease, op_id=op_id)

    @rule(b=bidx)
    def get_state(self, b: int) -> None:
        self._do(Command("get_state", b, {}))

    @precondition(lambda self: self.clock is not None)
    @rule(dt=st.sampled_from([0.25, 1.0, 31.0, 61.0]))
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
            fields = COMPARED + (("probe_lease_until",) if self.exact_lease.get(b, True) else ())
            diff = {f: (got.get(f), want[f]) for f in fields if got.get(f) != want[f]}
            assert not diff, f"{b}: store record differs from model (store, model): {diff}"

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
                  coverage: CellCoverage | None = None) -> type[StoreModelMachine]:
    """A :class:`StoreModelMachine` subclass bound to ``factory`` (use its ``.TestCase``)."""
    if time_source not in ("client", "server"):
        raise ValueError(f"time_source must be 'client' or 'server', got {time_source!r}")
    return type(name, (StoreModelMachine,), {"store_factory": staticmethod(factory),
                                             "backends": tuple(backends),
                                             "time_source": time_source, "coverage": coverage})
