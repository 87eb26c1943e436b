"""Concurrent-history tests for breaker stores (docs/linearizability-design.md#concurrent-histories).

Hypothesis draws the whole program up front in the main thread: a short sequential prefix,
rounds of per-worker command lists, and fault actions at logical positions (latency,
reset_peer, down on the proxy; worker SIGKILL; clock skew). The program runs on threads or
processes released together, is recorded, and is checked against the breaker-store model. An
ILLEGAL verdict writes ``history.jsonl``, ``results.json``, ``program.txt`` and
``timeline.html`` and raises :class:`LinearizabilityViolation`; Hypothesis shrinks it.

Usage (see ``docs/stateful.md``)::

    cfg = ConcurrentConfig(workers=4, mode="threads")
    test_store = concurrent_store_test(lambda worker, clock: MyStore(...), cfg)
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from multiprocessing.connection import wait as wait_ready
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from hypothesis import given, settings as hsettings
from hypothesis import strategies as st

from ..breaker.conformance.capabilities import Capabilities
from ..faults.clock import SkewedClock
from ..history.recorder import Recorder
from ..history.store import History, write_jsonl
from ..breaker.checker_model import BreakerStoreModel
from ..linearizability.checker import LinearizabilityResult, LinearizabilityViolation, Verdict, check
from ..mpcontext import forkserver_context
from .concurrent_worker import process_main, run_commands
from .store_commands import Command, commands

# what a worker process imports (docs/stateful.md): preloaded by the fork server
_PRELOAD = ["redis", "pytest_cbchaos.stateful.concurrent_worker", "pytest_cbchaos.breaker.redis_store"]

FAULT_KINDS = ("latency", "reset_peer", "down", "sigkill", "skew")


@dataclass(frozen=True)
class FaultAction:
    """A fault at a logical position: before ``worker``'s command ``position`` in its round."""

    kind: str
    worker: int
    position: int
    params: tuple = ()

    def describe(self) -> str:
        p = ", ".join(f"{k}={v}" for k, v in self.params)
        return f"{self.kind}({p}) before w{self.worker}#{self.position}"


@dataclass(frozen=True)
class Round:
    commands: tuple[tuple[Command, ...], ...]
    faults: tuple[FaultAction, ...] = ()


@dataclass(frozen=True)
class ConcurrentProgram:
    prefix: tuple[Command, ...]
    rounds: tuple[Round, ...]
    seed: int = 0

    def n_ops(self) -> int:
        return len(self.prefix) + sum(len(c) for r in self.rounds for c in r.commands)

    def describe(self) -> str:
        lines = ["prefix: " + "; ".join(c.describe() for c in self.prefix)]
        for i, r in enumerate(self.rounds):
            lines.append(f"round {i}:")
            for w, cmds in enumerate(r.commands):
                lines.append(f"  w{w}: " + "; ".join(c.describe() for c in cmds))
            for f in r.faults:
                lines.append(f"  fault: {f.describe()}")
        return "\n".join(lines)


@dataclass
class ConcurrentConfig:
    workers: int = 4
    mode: str = "threads"                     # "threads" | "processes"
    backends: int = 2
    max_prefix: int = 5
    min_rounds: int = 1
    max_rounds: int = 3
    min_cmds: int = 1
    max_cmds: int = 5
    faults: tuple[str, ...] = FAULT_KINDS
    fault_probability: float = 0.3
    time_source: str = "client"               # "client": workers pass now; "server": store's clock
    lease: float = 3600.0
    rounds_per_key: int | None = None         # rotate backend names every k rounds (small partitions)
    key_prefix: str = "cc"
    round_timeout: float = 20.0
    check_timeout: float = 10.0
    artifacts_dir: Path | None = None
    command_weights: dict[str, int] = field(default_factory=dict)
    thresholds: tuple[int, ...] = (1, 2)
    # threads mode: told when each round starts and each worker finishes (a Lockstep schedule that
    # the workers' stores and a store's pause_hook follow: docs/breaker-design.md#forced-interleavings)
    window: Any = None
    # worker clocks scripted from this wall time: each reading advances the worker's clock by
    # ``time_step`` (plus any skew), so a program's cooldowns and leases decide the same way on every
    # replay; None = real time
    scripted_time: float | None = None
    time_step: float = 0.002
    capabilities: Capabilities | None = None  # the store's; None = ours (docs/adapters.md#capabilities)

    def weights(self) -> dict[str, int]:
        """``command_weights`` with the ops the store cannot express left out: ops it lacks, renew
        without leases, and release without tokens (probe ownership across workers needs them)."""
        w = dict(self.command_weights)
        caps = self.capabilities
        if caps is not None:
            for op in ("gate", "record_failure", "record_success", "release_probe", "renew_probe",
                       "force_open", "reset", "get_state"):
                if caps.lacks(op) or (op == "renew_probe" and not caps.leases) or \
                        (op == "release_probe" and not caps.probe_tokens):
                    w[op] = 0
        return w

    def __post_init__(self) -> None:
        if self.mode not in ("threads", "processes"):
            raise ValueError(f"mode must be 'threads' or 'processes', got {self.mode!r}")
        if self.time_source not in ("client", "server"):
            raise ValueError(f"time_source must be 'client' or 'server', got {self.time_source!r}")
        bad = set(self.faults) - set(FAULT_KINDS)
        if bad:
            raise ValueError(f"unknown fault kinds {sorted(bad)}; expected a subset of {FAULT_KINDS}")
        if not 1 <= self.workers <= 8:
            raise ValueError(f"workers must be in 1..8 (at most 8 in flight per partition), "
                             f"got {self.workers}")


def programs(cfg: ConcurrentConfig) -> st.SearchStrategy[ConcurrentProgram]:
    """Strategy for whole programs, drawn in the main thread (never by workers)."""
    cmd = commands(cfg.backends, thresholds=cfg.thresholds, weights=cfg.weights())

    @st.composite
    def _round(draw: Any) -> Round:
        cmds = tuple(tuple(draw(st.lists(cmd, min_size=cfg.min_cmds, max_size=cfg.max_cmds)))
                     for _ in range(cfg.workers))
        faults: list[FaultAction] = []
        kinds = [k for k in cfg.faults if not (k == "skew" and cfg.time_source != "client")]
        if kinds and draw(st.floats(0, 1)) < cfg.fault_probability:
            kind = draw(st.sampled_from(kinds))
            w = draw(st.integers(0, cfg.workers - 1))
            pos = draw(st.integers(0, max(0, len(cmds[w]) - 1)))
            params: tuple = ()
            if kind == "latency":
                params = (("ms", draw(st.sampled_from([1, 5, 20]))),)
            elif kind == "skew":
                params = (("offset_s", draw(st.sampled_from([-5.0, 5.0, 2.5]))),)
            faults.append(FaultAction(kind, w, pos, params))
        return Round(cmds, tuple(faults))

    return st.builds(ConcurrentProgram,
                     st.lists(cmd, max_size=cfg.max_prefix).map(tuple),
                     st.lists(_round(), min_size=cfg.min_rounds, max_size=cfg.max_rounds).map(tuple),
                     st.integers(0, 2**31 - 1))


class ProxyFaults:
    """Adapter from the fixture's ``FaultController`` + a proxy to the actions programs draw."""

    def __init__(self, controller: Any, proxy: Any) -> None:
        self.controller = controller
        self.proxy = proxy

    @property
    def journal(self) -> Any:
        return self.controller.journal

    def start(self, action: FaultAction) -> Any:
        p = dict(action.params)
        if action.kind == "latency":
            return self.controller.latency(self.proxy, ms=p.get("ms", 20), jitter=0)
        if action.kind == "reset_peer":
            return self.controller.reset_peer(self.proxy, timeout=0)
        if action.kind == "down":
            return self.controller.down(self.proxy)
        return None

    def heal_all(self) -> None:
        self.controller.heal_all()


class _StepClock(SkewedClock):
    """Wall time that starts at ``t`` and advances ``step`` per reading, shifted by the skew."""

    def __init__(self, t: float, step: float) -> None:
        super().__init__()
        self._t, self._step, self._n = t, step, 0

    def time(self) -> float:
        self._n += 1
        return self._t + self._n * self._step + self.offset


@dataclass
class RunStats:
    examples: int = 0
    ops: int = 0
    crashed: int = 0
    verdicts: dict[str, int] = field(default_factory=dict)
    failures: list[Path] = field(default_factory=list)


class _Runner:
    """Executes programs; one per test (process workers persist across rounds)."""

    def __init__(self, factory: Callable[..., Any], cfg: ConcurrentConfig,
                 faults: ProxyFaults | None) -> None:
        self.factory = factory
        self.cfg = cfg
        self.faults = faults
        self.example = 0

    def run(self, program: ConcurrentProgram) -> tuple[History, Recorder]:
        cfg = self.cfg
        self.example += 1
        salt = (program.seed ^ (self.example << 8)) & 0xFFFFFFFF
        journal = self.faults.journal if self.faults is not None else None
        rec = Recorder(cfg.workers, journal=journal)
        clocks = [SkewedClock() if cfg.scripted_time is None else _StepClock(cfg.scripted_time, cfg.time_step)
                  for _ in range(cfg.workers)]
        epoch_names = lambda r: [f"{cfg.key_prefix}:{salt:08x}:{(r // cfg.rounds_per_key) if cfg.rounds_per_key else 0}:{i}"  # noqa: E731
                                 for i in range(cfg.backends)]
        # prefix: sequential, worker 0, main thread, its own store
        store0 = self.factory(0, clocks[0])
        try:
            for b in epoch_names(0):
                store0.clear(b)
            tokens: dict[str, str] = {}
            seq = run_commands(store0, rec, 0, epoch_names(0), list(program.prefix), clock=clocks[0],
                               lease=cfg.lease, time_source=cfg.time_source, seq0=0, salt=salt,
                               tokens=tokens)
        finally:
            close = getattr(store0, "close", None)
            if callable(close):
                close()
        if cfg.mode == "threads":
            self._run_threads(program, rec, clocks, epoch_names, salt, seq)
        else:
            self._run_processes(program, rec, epoch_names, salt, seq)
        rec.close()
        return rec.history(), rec

    # -- threads ---------------------------------------------------------------------------
    def _run_threads(self, program: ConcurrentProgram, rec: Recorder, clocks: list[SkewedClock],
                     names: Callable[[int], list[str]], salt: int, seq: int) -> None:
        cfg = self.cfg
        stores = [self.factory(w, clocks[w]) for w in range(cfg.workers)]
        tokens: list[dict[str, str]] = [{} for _ in range(cfg.workers)]
        try:
            for r, rnd in enumerate(program.rounds):
                backends = names(r)
                if cfg.rounds_per_key and r % cfg.rounds_per_key == 0 and r:
                    tokens = [{} for _ in range(cfg.workers)]
                barrier = threading.Barrier(cfg.workers)
                errors: list[BaseException] = []
                if self.faults is not None:
                    # "down" closes live connections: applied between rounds, never mid-request
                    for f in rnd.faults:
                        if f.kind == "down":
                            self.faults.start(f)

                def work(w: int) -> None:
                    try:
                        _work(w)
                    finally:
                        if cfg.window is not None:
                            cfg.window.worker_done(w)

                def _work(w: int) -> None:
                    try:
                        cmds = list(rnd.commands[w])
                        kill_at = None
                        acts = {}
                        for f in rnd.faults:
                            if f.worker == w:
                                if f.kind == "sigkill":
                                    kill_at = f.position
                                elif f.kind == "skew":
                                    clocks[w].set_skew(dict(f.params)["offset_s"])
                                elif f.kind != "down":
                                    acts[f.position] = f
                        barrier.wait(cfg.round_timeout)
                        done = 0
                        # run the list in segments split at fault positions
                        points = sorted(set(acts) | ({kill_at} if kill_at is not None else set()))
                        start = 0
                        base = (w + 1) * 10_000_000 + r * 10_000
                        for p in points + [len(cmds)]:
                            if p in acts and self.faults is not None:
                                run_commands(stores[w], rec, w, backends, cmds[start:p],
                                             clock=clocks[w], lease=cfg.lease,
                                             time_source=cfg.time_source, seq0=base + start,
                                             salt=salt, tokens=tokens[w])
                                self.faults.start(acts[p])
                                start = p
                            if p == kill_at:
                                run_commands(stores[w], rec, w, backends, cmds[start:],
                                             clock=clocks[w], lease=cfg.lease,
                                             time_source=cfg.time_source, seq0=base + start,
                                             salt=salt, tokens=tokens[w], kill_at=p - start)
                                return
                        run_commands(stores[w], rec, w, backends, cmds[start:], clock=clocks[w],
                                     lease=cfg.lease, time_source=cfg.time_source,
                                     seq0=base + start, salt=salt, tokens=tokens[w])
                        done += 1
                    except BaseException as exc:  # propagated below, never swallowed
                        errors.append(exc)

                if cfg.window is not None:
                    cfg.window.start_round(cfg.workers)
                threads = [threading.Thread(target=work, args=(w,), daemon=True)
                           for w in range(cfg.workers)]
                for t in threads:
                    t.start()
                deadline = time.monotonic() + cfg.round_timeout
                for t in threads:
                    t.join(max(0.0, deadline - time.monotonic()))
                if self.faults is not None:
                    self.faults.heal_all()
                for t in threads:
                    t.join(cfg.round_timeout)
                if cfg.window is not None:
                    cfg.window.start_round(0)
                for w in rec.pending_workers():
                    rec.crash_worker(w, ("round-timeout",))
                for c in clocks:
                    c.set_skew(0.0)
                if errors:
                    raise errors[0]
        finally:
            for s in stores:
                close = getattr(s, "close", None)
                if callable(close):
                    close()

    # -- processes -------------------------------------------------------------------------
    def _run_processes(self, program: ConcurrentProgram, rec: Recorder,
                       names: Callable[[int], list[str]], salt: int, seq: int) -> None:
        cfg = self.cfg
        ctx = forkserver_context(_PRELOAD)
        procs: list[Any] = [None] * cfg.workers
        ctrls: list[Any] = [None] * cfg.workers
        remotes: list[Any] = [None] * cfg.workers

        def spawn(w: int) -> None:
            remote = rec.remote(w, ctx=ctx)
            parent, child = ctx.Pipe()
            p = ctx.Process(target=process_main,
                            args=(self.factory, w, remote, child, cfg.lease, cfg.time_source, salt),
                            daemon=True)
            p.start()
            remote.conn.close()  # the child holds the write end; EOF when it dies
            child.close()
            procs[w], ctrls[w], remotes[w] = p, parent, remote

        try:
            for w in range(cfg.workers):
                spawn(w)
            for r, rnd in enumerate(program.rounds):
                backends = names(r)
                kill = {f.worker: f.position for f in rnd.faults if f.kind == "sigkill"}
                skew = {f.worker: dict(f.params)["offset_s"] for f in rnd.faults if f.kind == "skew"}
                proxy_faults = [f for f in rnd.faults if f.kind in ("latency", "reset_peer", "down")]
                if self.faults is not None:
                    for f in proxy_faults:  # process mode: applied at round start
                        self.faults.start(f)
                for w in range(cfg.workers):
                    ctrls[w].send(("round", backends, [tuple(c) for c in rnd.commands[w]],
                                   skew.get(w), kill.get(w), (w + 1) * 10_000_000 + r * 10_000))
                deadline = time.monotonic() + cfg.round_timeout
                pending = set(range(cfg.workers))
                killed: list[int] = []
                while pending and (left := deadline - time.monotonic()) > 0:
                    # woken by the first worker that answers (or dies: EOF), not by polling each in turn
                    for conn in wait_ready([ctrls[w] for w in pending], timeout=left):
                        w = ctrls.index(conn)
                        try:
                            msg = conn.recv()
                        except EOFError:
                            pending.discard(w)
                            killed.append(w)
                            continue
                        if msg[0] == "kill":
                            os.kill(procs[w].pid, signal.SIGKILL)
                            pending.discard(w)
                            killed.append(w)
                        elif msg[0] == "done":
                            pending.discard(w)
                for w in pending:  # round timeout: treat as crashed
                    procs[w].kill()
                    killed.append(w)
                if self.faults is not None:
                    self.faults.heal_all()
                for w in killed:
                    procs[w].join(10)
                    rec.join_remote(remotes[w], 10)
                    rec.crash_worker(w, ("sigkill",))
                    ctrls[w].close()
                    spawn(w)
        finally:
            for w in range(cfg.workers):
                if ctrls[w] is not None:
                    try:
                        ctrls[w].send(("stop",))
                    except (OSError, ValueError):
                        pass
            for w in range(cfg.workers):
                p = procs[w]
                if p is not None:
                    p.join(5)
                    if p.is_alive():
                        p.kill()
                        p.join(5)
                if remotes[w] is not None:
                    rec.join_remote(remotes[w], 5)
                if ctrls[w] is not None:
                    ctrls[w].close()


def check_history(history: History, *, timeout: float = 10.0) -> LinearizabilityResult:
    return check(history, BreakerStoreModel(), timeout=timeout, mode="report")


def write_artifacts(out: Path, history: History, result: LinearizabilityResult,
                    program: ConcurrentProgram | None = None) -> dict[str, str]:
    from ..linearizability.html import write_timeline
    out.mkdir(parents=True, exist_ok=True)
    paths = {"history": str(write_jsonl(history, out / "history.jsonl"))}
    res = result.to_dict()
    res["faults"] = history.faults
    res["seed"] = program.seed if program is not None else None
    (out / "results.json").write_text(json.dumps(res, indent=1, default=repr))
    paths["results"] = str(out / "results.json")
    if program is not None:
        (out / "program.txt").write_text(program.describe() + "\n")
        paths["program"] = str(out / "program.txt")
    paths["timeline"] = str(write_timeline(
        result, out / "timeline.html", history=history,
        title="concurrent breaker-store program",
        recheck=f"cbchaos check {out / 'history.jsonl'} --model breaker-store",
        seed=program.seed if program is not None else None))
    return paths


def _failure_dir(root: Path, stats: RunStats | None) -> Path:
    """Artifacts of the first failure and of the latest one only: while Hypothesis shrinks, each
    failing candidate replaces ``failure-final`` (the last one is the shrunk example)."""
    import shutil

    first = root / "failure-first"
    if not first.exists():
        out = first
    else:
        out = root / "failure-final"
        shutil.rmtree(out, ignore_errors=True)
    if stats is not None and out not in stats.failures:
        stats.failures.append(out)
    return out


def run_and_check(program: ConcurrentProgram, factory: Callable[..., Any], cfg: ConcurrentConfig,
                  *, faults: ProxyFaults | None = None, stats: RunStats | None = None,
                  runner: _Runner | None = None) -> LinearizabilityResult:
    """Run one program, check it, write artifacts and raise on ILLEGAL."""
    runner = runner or _Runner(factory, cfg, faults)
    history, _ = runner.run(program)
    result = check_history(history, timeout=cfg.check_timeout)
    if stats is not None:
        stats.examples += 1
        stats.ops += len(result.ops)
        stats.crashed += sum(op.status == "info" for op in result.ops)
        stats.verdicts[result.verdict.value] = stats.verdicts.get(result.verdict.value, 0) + 1
    if result.verdict is Verdict.ILLEGAL:
        paths: dict[str, str] = {}
        if cfg.artifacts_dir is not None:
            out = _failure_dir(Path(cfg.artifacts_dir), stats)
            paths = write_artifacts(out, history, result, program)
        cx = result.counterexample or {}
        fu = cx.get("first_unplaceable") or {}
        bug = fu.get("bug_class") or {}
        raise LinearizabilityViolation(
            (f"{bug['message']} [{bug['cb']}, {bug['id']}]" if bug else "") +
            (f" by {bug['describe']} in state {bug['state']}" if bug.get("describe") else "") + (": " if bug else "") +
            f"breaker-store history is not linearizable ({result.summary()}); first unplaceable "
            f"op: {fu.get('describe')} in state {fu.get('state')}; artifacts: "
            f"{paths.get('timeline', '(none)')}\nprogram:\n{program.describe()}",
            result, paths)
    return result


def find_violation(exc: BaseException, kind: type[BaseException] = LinearizabilityViolation) -> Any:
    """The violation (of type ``kind``) a test raised: itself, or inside the ``FlakyFailure`` Hypothesis
    wraps it in when a race does not recur on replay (the recorded violation is real)."""
    if isinstance(exc, kind):
        return exc
    for sub in getattr(exc, "exceptions", ()):
        found = find_violation(sub, kind)
        if found is not None:
            return found
    return None


def concurrent_store_test(factory: Callable[..., Any], cfg: ConcurrentConfig | None = None, *,
                          faults: Callable[[], ProxyFaults | None] | ProxyFaults | None = None,
                          settings: hsettings | None = None,
                          stats: RunStats | None = None) -> Callable[[], None]:
    """Build a Hypothesis test: draws programs, runs them with ``factory(worker, clock)`` stores
    (picklable for ``mode="processes"``), checks each recorded history."""
    cfg = cfg or ConcurrentConfig()
    stats = stats if stats is not None else RunStats()
    holder: dict[str, Any] = {}

    @given(programs(cfg))
    def _test(program: ConcurrentProgram) -> None:
        if "runner" not in holder:
            f = faults() if callable(faults) else faults
            holder["runner"] = _Runner(factory, cfg, f)
        runner = holder["runner"]
        run_and_check(program, factory, cfg, faults=runner.faults, stats=stats, runner=runner)

    if settings is not None:
        _test = settings(_test)
    _test.stats = stats  # type: ignore[attr-defined]
    return _test
