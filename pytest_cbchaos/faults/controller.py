"""``cbchaos_faults``: add and heal faults, each recorded as a window in the fault journal.

Every method applies its fault at once and returns a :class:`Fault` that heals on ``.heal()``
or at the end of a ``with`` block, so both styles work::

    with cbchaos_faults.latency(cbchaos_redis_proxy, ms=200):
        ...
    f = cbchaos_faults.down(cbchaos_redis_proxy); ...; f.heal()

Everything still active is healed at teardown (process faults first: SIGCONT before anything,
so teardown never hangs on a stopped server).
"""

from __future__ import annotations

import threading
from typing import Any, Callable

from pytest_cbchaos.faults.clock import SkewedClock
from pytest_cbchaos.faults.journal import FaultJournal, FaultWindow


class Fault:
    """One active fault; ``heal()`` is idempotent."""

    def __init__(self, controller: "FaultController", window: FaultWindow, heal: Callable[[], None],
                 order: int = 1) -> None:
        self._controller = controller
        self.window = window
        self._heal = heal
        self.order = order  # process faults (0) heal before proxy faults (1)
        self.healed = False

    @property
    def kind(self) -> str:
        return self.window.kind

    def heal(self) -> None:
        if self.healed:
            return
        self.healed = True
        try:
            self._heal()
        finally:
            self._controller.journal.end(self.window)
            self._controller._forget(self)

    def __enter__(self) -> "Fault":
        return self

    def __exit__(self, *exc: object) -> None:
        self.heal()


def _target_name(target: Any) -> str:
    return str(getattr(target, "name", None) or target)


class ProcessFaults:
    """Process faults on a managed server (anything with ``.process`` or a ManagedProcess)."""

    def __init__(self, controller: "FaultController", target: Any) -> None:
        self._c = controller
        self._proc = getattr(target, "process", None) or target
        self._target = target
        self.name = _target_name(getattr(self._proc, "name", target))

    def pause(self) -> Fault:
        """SIGSTOP; requests hang, queued commands execute after resume (indeterminate ops)."""
        window = self._c.journal.begin("pause", self.name)
        self._proc.pause()
        self._c.journal.started(window)
        return self._c._track(Fault(self._c, window, self._proc.resume, order=0))

    def kill(self) -> FaultWindow:
        """SIGKILL the process group; the server stays down until :meth:`restart`."""
        window = self._c.journal.begin("kill", self.name)
        self._proc.kill()
        self._c.journal.started(window)
        self._c.journal.end(window)
        return window

    def restart(self, *, graceful: bool = False) -> FaultWindow:
        """Kill (or SHUTDOWN) and relaunch on the same port; readiness re-checked before returning."""
        window = self._c.journal.begin("restart", self.name, {"graceful": graceful})
        self._proc.restart(graceful=graceful)
        self._c.journal.started(window)
        self._c.journal.end(window)
        return window


class FaultController:
    def __init__(self, journal: FaultJournal | None = None) -> None:
        self.journal = journal or FaultJournal()
        self._active: list[Fault] = []
        self._lock = threading.Lock()

    # -- bookkeeping ----------------------------------------------------------------------
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

    # -- proxy faults ----------------------------------------------------------------------
    def toxic(self, proxy: Any, type: str, *, stream: str = "downstream", toxicity: float = 1.0,
              name: str | None = None, **attributes: Any) -> Fault:
        """Any toxic by type (including extension toxics on the embedded backend)."""
        params = {"type": type, "stream": stream, "toxicity": toxicity, "attributes": attributes}
        window = self.journal.begin(f"toxic:{type}", _target_name(proxy), params)
        toxic = proxy.add_toxic(type, stream=stream, toxicity=toxicity, name=name, **attributes)
        self.journal.started(window)
        toxic_name = getattr(toxic, "name", None) or name or f"{type}_{stream}"
        return self._track(Fault(self, window, lambda: proxy.remove_toxic(toxic_name)))

    def latency(self, proxy: Any, *, ms: int, jitter: int = 0, stream: str = "downstream",
                toxicity: float = 1.0) -> Fault:
        return self.toxic(proxy, "latency", stream=stream, toxicity=toxicity, latency=ms, jitter=jitter)

    def bandwidth(self, proxy: Any, *, rate: int, stream: str = "downstream", toxicity: float = 1.0) -> Fault:
        return self.toxic(proxy, "bandwidth", stream=stream, toxicity=toxicity, rate=rate)

    def slow_close(self, proxy: Any, *, delay: int, stream: str = "downstream", toxicity: float = 1.0) -> Fault:
        return self.toxic(proxy, "slow_close", stream=stream, toxicity=toxicity, delay=delay)

    def timeout(self, proxy: Any, *, ms: int, stream: str = "downstream", toxicity: float = 1.0) -> Fault:
        return self.toxic(proxy, "timeout", stream=stream, toxicity=toxicity, timeout=ms)

    def reset_peer(self, proxy: Any, *, timeout: int = 0, stream: str = "downstream",
                   toxicity: float = 1.0) -> Fault:
        return self.toxic(proxy, "reset_peer", stream=stream, toxicity=toxicity, timeout=timeout)

    def slicer(self, proxy: Any, *, average_size: int, size_variation: int = 0, delay: int = 0,
               stream: str = "downstream", toxicity: float = 1.0) -> Fault:
        return self.toxic(proxy, "slicer", stream=stream, toxicity=toxicity, average_size=average_size,
                          size_variation=size_variation, delay=delay)

    def limit_data(self, proxy: Any, *, bytes: int, stream: str = "downstream", toxicity: float = 1.0) -> Fault:
        return self.toxic(proxy, "limit_data", stream=stream, toxicity=toxicity, bytes=bytes)

    def partition(self, proxy: Any, stream: str = "downstream") -> Fault:
        """Half-open partition: one direction blackholed (portable: timeout toxic with timeout 0)."""
        window = self.journal.begin(f"partition:{stream}", _target_name(proxy), {"stream": stream})
        name = f"cbchaos_partition_{stream}"
        proxy.add_toxic("timeout", stream=stream, toxicity=1.0, name=name, timeout=0)
        self.journal.started(window)
        return self._track(Fault(self, window, lambda: proxy.remove_toxic(name)))

    def down(self, proxy: Any) -> Fault:
        """Disable the proxy: new connects are refused, live connections closed."""
        window = self.journal.begin("down", _target_name(proxy))
        proxy.disable()
        self.journal.started(window)
        return self._track(Fault(self, window, proxy.enable))

    # -- process and clock faults -----------------------------------------------------------
    def process(self, target: Any) -> ProcessFaults:
        return ProcessFaults(self, target)

    def skew_clock(self, clock: SkewedClock, offset_s: float, drift_ppm: float = 0.0,
                   worker: str = "worker") -> Fault:
        """Shift a kit-aware clock's wall time; healing restores the previous skew."""
        previous = clock.offset
        window = self.journal.begin("clock_skew", worker, {"offset_s": offset_s, "drift_ppm": drift_ppm})
        clock.set_skew(offset_s, drift_ppm)
        self.journal.started(window)
        return self._track(Fault(self, window, lambda: clock.set_skew(previous), order=0))
