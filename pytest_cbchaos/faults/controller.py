"""``cbchaos_faults``: add and heal faults, each recorded as a window in the fault journal.

Every method applies its fault at once and returns a :class:`Fault` that heals on ``.heal()``
or at the end of a ``with`` block, so both styles work::

    with cbchaos_faults.latency(cbchaos_redis_proxy, ms=200):
        ...
    f = cbchaos_faults.down(cbchaos_redis_proxy); ...; f.heal()

Everything still active is healed at teardown (process faults first: SIGCONT before anything,
so teardown never hangs on a stopped server).

A fault whose parameters are invalid or whose control call raises is recorded as a *failure* in
the journal, never as a window, and the error propagates (docs/report-schema.md, "Verdict and audit").
"""

from __future__ import annotations

import math
import threading
from typing import Any, Callable, TypeVar

from pytest_cbchaos.faults.clock import SkewedClock
from pytest_cbchaos.faults.cpu import CAP_GRACE_S, DEFAULT_CAP_S, Burners, check_cpu_params
from pytest_cbchaos.faults.journal import FaultJournal, FaultWindow


T = TypeVar("T")

# toxic attributes that are sizes or durations: finite and >= 0 (toxiproxy's own vocabulary)
NON_NEGATIVE_ATTRIBUTES = ("latency", "jitter", "rate", "delay", "timeout", "bytes", "average_size",
                           "size_variation")


class FaultParameterError(ValueError):
    """A fault asked for with a value outside its vocabulary (e.g. ``toxicity`` 2.0)."""


class FaultNotApplicable(TypeError):
    """A fault asked for on a target that cannot take it (e.g. ``pause`` on a ``url`` Redis)."""


def check_toxic_params(type: str, target: str, toxicity: Any, attributes: dict[str, Any]) -> None:
    """Raise :class:`FaultParameterError` naming the toxic, the key, the value and what was expected."""
    if isinstance(toxicity, bool) or not isinstance(toxicity, (int, float)) or not (
            math.isfinite(toxicity) and 0.0 <= toxicity <= 1.0):
        raise FaultParameterError(f"toxic {type!r} on {target!r}: toxicity={toxicity!r}, "
                                  "expected a number in [0, 1]")
    for key in NON_NEGATIVE_ATTRIBUTES:
        if key not in attributes:
            continue
        value = attributes[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
                math.isfinite(value) and value >= 0):
            raise FaultParameterError(f"toxic {type!r} on {target!r}: {key}={value!r}, "
                                      "expected a finite number >= 0")


def _with_hint(exc: Exception, type: str, target: str, toxic_name: str) -> Exception:
    """The proxy's refusal with what to pass instead: the valid types for a 400 on the type, ``name=``
    for a 409 (a toxic of that name exists). Same exception class, so callers' ``except`` still match."""
    from pytest_cbchaos.proxy.client import BadRequest, Conflict

    if isinstance(exc, Conflict):
        return Conflict(exc.status, f"{exc.message}: {target!r} already has a toxic named {toxic_name!r}; pass "
                                    f"name='...' (e.g. name='{type}_2') to add another {type} toxic beside it")
    if isinstance(exc, BadRequest) and "toxic type" in exc.message:
        from pytest_cbchaos.proxy.toxics import EXTENSION_TYPES, REGISTRY

        standard = sorted(t for t in REGISTRY if t not in EXTENSION_TYPES)
        return BadRequest(exc.status, f"{exc.message} {type!r} on {target!r}; expected one of "
                                      f"{', '.join(standard)} (embedded proxy also: "
                                      f"{', '.join(sorted(EXTENSION_TYPES))})")
    return exc


class Fault:
    """One active fault; ``heal()`` is idempotent."""

    def __init__(self, controller: "FaultController", window: FaultWindow, heal: Callable[[], None],
                 order: int = 1) -> None:
        self._controller = controller
        self.window = window
        self._heal = heal
        self.order = order  # process faults (0) heal before proxy faults (1)
        self.healed = False  # True only once the heal has run and the window is closed
        self._healing = False
        self._lock = threading.RLock()  # a timer thread (cpu_stress for_s) and teardown may heal at once

    @property
    def kind(self) -> str:
        return self.window.kind

    def heal(self) -> None:
        with self._lock:
            if self._healing:
                return
            self._healing = True
            try:
                self._heal()
            finally:
                self._controller.journal.end(self.window)
                self._controller._forget(self)
                self.healed = True

    def __enter__(self) -> "Fault":
        return self

    def __exit__(self, *exc: object) -> None:
        self.heal()


def _target_name(target: Any) -> str:
    return str(getattr(target, "name", None) or target)


def _process_name(proc: Any, target: Any) -> str:
    """A journal name without the target's repr (a server's repr carries its password)."""
    for obj in (proc, target):
        if getattr(obj, "name", None):
            return str(obj.name)
    backend = getattr(target, "backend", None)
    return f"{type(target).__name__}({backend})" if backend else type(target).__name__


class ProcessFaults:
    """Process faults on a managed server (anything with ``.process`` or a ManagedProcess)."""

    def __init__(self, controller: "FaultController", target: Any) -> None:
        self._c = controller
        self._proc = getattr(target, "process", None) or target
        self._target = target
        self.name = _process_name(self._proc, target)

    def _method(self, kind: str, method: str) -> Callable[..., Any]:
        fn = getattr(self._proc, method, None)
        if not callable(fn) and callable(getattr(self._target, "add_toxic", None)):
            raise FaultNotApplicable(
                f"{kind} on {self.name!r}: that is a fault proxy, not a process; pass the server behind it "
                f"(e.g. process(cbchaos_redis_proc).{kind}()), or cut the link with down(proxy) / partition(proxy)")
        if not callable(fn):
            raise FaultNotApplicable(
                f"{kind} on {self.name!r}: not a process the kit started ({type(self._proc).__name__}, no "
                f"{method}()); process faults need a managed server, not a 'url' backend")
        return fn

    def pause(self) -> Fault:
        """SIGSTOP; requests hang, queued commands execute after resume (indeterminate ops)."""
        window = self._c.journal.begin("pause", self.name)
        resume = None

        def stop() -> None:
            nonlocal resume
            resume = self._method("pause", "resume")  # checked first: a pause that cannot heal is not applied
            self._method("pause", "pause")()

        self._c._start(window, stop)
        return self._c._track(Fault(self._c, window, resume, order=0))  # type: ignore[arg-type]

    def kill(self) -> FaultWindow:
        """SIGKILL the process group; the server stays down until :meth:`restart`."""
        window = self._c.journal.begin("kill", self.name)
        self._c._start(window, lambda: self._method("kill", "kill")())
        self._c.journal.end(window)
        return window

    def restart(self, *, graceful: bool = False) -> FaultWindow:
        """Kill (or SHUTDOWN) and relaunch on the same port; readiness re-checked before returning."""
        window = self._c.journal.begin("restart", self.name, {"graceful": graceful})
        self._c._start(window, lambda: self._method("restart", "restart")(graceful=graceful))
        self._c.journal.end(window)
        return window


class FaultController:
    def __init__(self, journal: FaultJournal | None = None) -> None:
        self.journal = journal or FaultJournal()
        self._active: list[Fault] = []
        self._lock = threading.Lock()
        self._watchers: dict[int, Any] = {}  # id(topology) -> its primary watcher (faults/watch.py)

    # -- bookkeeping ----------------------------------------------------------------------
    def _start(self, window: FaultWindow, call: Callable[[], T]) -> T:
        """Run the control call that starts ``window``; if it raises, the window becomes a failure."""
        try:
            result = call()
        except BaseException as exc:
            self.journal.fail(window, exc)
            raise
        self.journal.started(window)
        return result

    def _track(self, fault: Fault) -> Fault:
        with self._lock:
            self._active.append(fault)
        return fault

    def _forget(self, fault: Fault) -> None:
        with self._lock:
            if fault in self._active:
                self._active.remove(fault)

    @property
    def active(self) -> list[Fault]:
        with self._lock:
            return list(self._active)

    def heal_all(self) -> None:
        errors: list[BaseException] = []
        for fault in sorted(self.active, key=lambda f: f.order):
            try:
                fault.heal()
            except Exception as exc:  # keep healing the rest
                errors.append(exc)
        if errors:
            raise errors[0]

    def _watch(self, kind: str, topology: Any) -> None:
        """Observe ``topology``'s primaries for the report's topology lane (the first topology's lane)."""
        from pytest_cbchaos.faults.watch import watch

        with self._lock:
            if id(topology) in self._watchers:
                return
            self._watchers[id(topology)] = w = watch(kind, topology)
        if getattr(self.journal, "lane", None) is None:
            self.journal.lane = w.lane

    def stop_watching(self) -> None:
        """Stop the topology watchers (each reads what is still buffered first); idempotent."""
        with self._lock:
            watchers, self._watchers = list(self._watchers.values()), {}
        for w in watchers:
            w.stop()

    # -- proxy faults ----------------------------------------------------------------------
    def toxic(self, proxy: Any, type: str, *, stream: str = "downstream", toxicity: float = 1.0,
              name: str | None = None, **attributes: Any) -> Fault:
        """Any toxic by type (including extension toxics on the embedded backend)."""
        params = {"type": type, "stream": stream, "toxicity": toxicity, "attributes": attributes}
        target = _target_name(proxy)
        window = self.journal.begin(f"toxic:{type}", target, params)

        def add() -> Any:
            check_toxic_params(type, target, toxicity, attributes)
            try:
                return proxy.add_toxic(type, stream=stream, toxicity=toxicity, name=name, **attributes)
            except Exception as exc:
                raise _with_hint(exc, type, target, name or f"{type}_{stream}") from None

        toxic = self._start(window, add)
        toxic_name = getattr(toxic, "name", None) or name or f"{type}_{stream}"
        return self._track(Fault(self, window, lambda: proxy.remove_toxic(toxic_name)))

    # the typed toxics below take ``name=`` too: two toxics of one type on one proxy and stream need names
    def latency(self, proxy: Any, *, ms: int, jitter: int = 0, stream: str = "downstream",
                toxicity: float = 1.0, name: str | None = None) -> Fault:
        return self.toxic(proxy, "latency", stream=stream, toxicity=toxicity, name=name, latency=ms, jitter=jitter)

    def bandwidth(self, proxy: Any, *, rate: int, stream: str = "downstream", toxicity: float = 1.0,
                  name: str | None = None) -> Fault:
        return self.toxic(proxy, "bandwidth", stream=stream, toxicity=toxicity, name=name, rate=rate)

    def slow_close(self, proxy: Any, *, delay: int, stream: str = "downstream", toxicity: float = 1.0,
                   name: str | None = None) -> Fault:
        return self.toxic(proxy, "slow_close", stream=stream, toxicity=toxicity, name=name, delay=delay)

    def timeout(self, proxy: Any, *, ms: int, stream: str = "downstream", toxicity: float = 1.0,
                name: str | None = None) -> Fault:
        return self.toxic(proxy, "timeout", stream=stream, toxicity=toxicity, name=name, timeout=ms)

    def reset_peer(self, proxy: Any, *, timeout: int = 0, stream: str = "downstream",
                   toxicity: float = 1.0, name: str | None = None) -> Fault:
        return self.toxic(proxy, "reset_peer", stream=stream, toxicity=toxicity, name=name, timeout=timeout)

    def slicer(self, proxy: Any, *, average_size: int, size_variation: int = 0, delay: int = 0,
               stream: str = "downstream", toxicity: float = 1.0, name: str | None = None) -> Fault:
        return self.toxic(proxy, "slicer", stream=stream, toxicity=toxicity, name=name, average_size=average_size,
                          size_variation=size_variation, delay=delay)

    def limit_data(self, proxy: Any, *, bytes: int, stream: str = "downstream", toxicity: float = 1.0,
                   name: str | None = None) -> Fault:
        return self.toxic(proxy, "limit_data", stream=stream, toxicity=toxicity, name=name, bytes=bytes)

    def partition(self, proxy: Any, stream: str = "downstream") -> Fault:
        """Half-open partition: one direction blackholed (portable: timeout toxic with timeout 0)."""
        window = self.journal.begin(f"partition:{stream}", _target_name(proxy), {"stream": stream})
        name = f"cbchaos_partition_{stream}"
        self._start(window, lambda: proxy.add_toxic("timeout", stream=stream, toxicity=1.0, name=name, timeout=0))
        return self._track(Fault(self, window, lambda: proxy.remove_toxic(name)))

    def down(self, proxy: Any) -> Fault:
        """Disable the proxy: new connects are refused, live connections closed."""
        window = self.journal.begin("down", _target_name(proxy))
        self._start(window, proxy.disable)
        return self._track(Fault(self, window, proxy.enable))

    # -- process and clock faults -----------------------------------------------------------
    def process(self, target: Any) -> ProcessFaults:
        return ProcessFaults(self, target)

    def sentinel(self, topology: Any) -> Any:
        """The nemesis of a Sentinel topology (failover, isolate_primary, kill, pause; docs/redis-topologies.md)."""
        from pytest_cbchaos.faults.sentinel import SentinelNemesis

        self._watch("sentinel", topology)
        return SentinelNemesis(self, topology)

    def cluster(self, topology: Any) -> Any:
        """The nemesis of a Redis Cluster (a shard's failover; docs/redis-topologies.md#redis-cluster)."""
        from pytest_cbchaos.faults.cluster import ClusterNemesis

        self._watch("cluster", topology)
        return ClusterNemesis(self, topology)

    def skew_clock(self, clock: SkewedClock, offset_s: float, drift_ppm: float = 0.0,
                   worker: str = "worker") -> Fault:
        """Shift a kit-aware clock's wall time; healing restores the previous skew."""
        window = self.journal.begin("clock_skew", worker, {"offset_s": offset_s, "drift_ppm": drift_ppm})
        previous = self._start(window, lambda: _skew(clock, offset_s, drift_ppm))
        return self._track(Fault(self, window, lambda: clock.set_skew(previous), order=0))

    def cpu_stress(self, workers: int, for_s: float | None = None) -> Fault:
        """``workers`` busy processes on this machine (docs/scenarios.md, ``cpu_stress``).

        Healed (burners killed) by ``heal()``, at teardown, or after ``for_s`` seconds; each burner
        also stops by itself shortly after that, or after an hour without ``for_s``, or when this
        process dies. ``window.params["pids"]`` are the burners' process ids.
        """
        window = self.journal.begin("cpu_stress", "host", {"workers": workers, "for_s": for_s})
        burners = self._start(window, lambda: _burn(workers, for_s))
        window.params["pids"] = burners.pids
        timer = threading.Timer(for_s, lambda: fault.heal()) if for_s is not None else None

        def stop() -> None:
            if timer is not None:
                timer.cancel()
            burners.stop()

        fault = self._track(Fault(self, window, stop, order=0))
        fault.burners = burners  # type: ignore[attr-defined]
        if timer is not None:
            timer.daemon = True
            timer.start()
        return fault


def _burn(workers: int, for_s: float | None) -> Burners:
    check_cpu_params(workers, for_s)
    return Burners(workers, DEFAULT_CAP_S if for_s is None else for_s + CAP_GRACE_S, name="cpu-stress").start()


def _skew(clock: SkewedClock, offset_s: float, drift_ppm: float) -> float:
    """Set the skew after checking it; returns the previous offset (what healing restores)."""
    for key, value in (("offset_s", offset_s), ("drift_ppm", drift_ppm)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise FaultParameterError(f"clock_skew: {key}={value!r}, expected a finite number")
    previous = clock.offset
    clock.set_skew(offset_s, drift_ppm)
    return previous
