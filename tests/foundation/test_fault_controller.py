"""FaultController logic: journaling, heal order, idempotent heal (proxy faults on real servers are in test_fixtures)."""

import sys
import threading
from collections.abc import Callable

import pytest

from pytest_cbchaos.faults.clock import SkewedClock
from pytest_cbchaos.faults.controller import Fault, FaultController
from pytest_cbchaos.servers.process import ManagedProcess


class RecordingProxy:
    name = "redis"

    def __init__(self):
        self.calls = []

    def add_toxic(self, type, *, stream, toxicity, name=None, **attributes):
        self.calls.append(("add", type, stream, name, attributes))
        return _Toxic(name or f"{type}_{stream}")

    def remove_toxic(self, name):
        self.calls.append(("remove", name))

    def disable(self):
        self.calls.append(("disable",))

    def enable(self):
        self.calls.append(("enable",))


class _Toxic:
    def __init__(self, name):
        self.name = name


def test_toxic_faults_are_journaled_and_healed_once():
    proxy, faults = RecordingProxy(), FaultController()
    with faults.latency(proxy, ms=200, jitter=10) as fault:
        assert fault.window.active
        assert proxy.calls == [("add", "latency", "downstream", None, {"latency": 200, "jitter": 10})]
    fault.heal()  # idempotent
    assert proxy.calls[1:] == [("remove", "latency_downstream")]
    [w] = faults.journal.to_dicts()
    assert w["kind"] == "toxic:latency" and w["target"] == "redis" and w["start_ns"] <= w["end_ns"]
    assert w["params"]["attributes"] == {"latency": 200, "jitter": 10}


def test_heal_all_heals_process_faults_first(tmp_path):
    proxy, faults = RecordingProxy(), FaultController()
    proc = ManagedProcess("sleeper", [sys.executable, "-c", "import time; time.sleep(60)"], log_dir=tmp_path)
    proc.start()
    try:
        faults.down(proxy)
        faults.process(proc).pause()
        assert proc.paused
        faults.heal_all()
        assert not proc.paused and proxy.calls[-1] == ("enable",)
        kinds = [w["kind"] for w in faults.journal.to_dicts()]
        assert kinds == ["down", "pause"]
        assert all(w["end_ns"] is not None for w in faults.journal.to_dicts())
        window = faults.process(proc).kill()
        assert window.end_ns is not None and not proc.alive
    finally:
        proc.stop()


def test_partition_uses_a_portable_timeout_toxic():
    proxy, faults = RecordingProxy(), FaultController()
    faults.partition(proxy, "upstream").heal()
    assert proxy.calls[0] == ("add", "timeout", "upstream", "cbchaos_partition_upstream", {"timeout": 0})
    assert proxy.calls[1] == ("remove", "cbchaos_partition_upstream")


def test_clock_skew_is_restored():
    clock, faults = SkewedClock(), FaultController()
    with faults.skew_clock(clock, 30.0, worker="w1"):
        assert clock.offset == pytest.approx(30.0, abs=0.01)
    assert clock.offset == pytest.approx(0.0, abs=0.01)
    assert faults.journal.to_dicts()[0]["params"] == {"offset_s": 30.0, "drift_ppm": 0.0}


# -- failed faults are failures, never windows (docs/report-schema.md "Verdict and audit") -----------------------

class RejectingProxy(RecordingProxy):
    def add_toxic(self, type, *, stream, toxicity, name=None, **attributes):
        raise RuntimeError("400 bad toxic")


@pytest.mark.parametrize("toxicity", [2.0, -0.5, float("nan"), float("inf"), "1"])
def test_toxicity_outside_0_1_is_rejected_with_the_value_and_never_applied(toxicity):
    proxy, faults = RecordingProxy(), FaultController()
    with pytest.raises(ValueError, match=r"toxic 'latency' on 'redis': toxicity=.*expected a number in \[0, 1\]"):
        faults.latency(proxy, ms=10, toxicity=toxicity)
    assert proxy.calls == [] and faults.journal.to_dicts() == [] and faults.active == []
    assert faults.journal.counts() == {"requested": 1, "applied": 0, "failed": 1}


def test_negative_latency_is_rejected_naming_the_attribute():
    proxy, faults = RecordingProxy(), FaultController()
    with pytest.raises(ValueError, match=r"latency=-150, expected a finite number >= 0"):
        faults.latency(proxy, ms=-150)
    assert proxy.calls == [] and faults.journal.to_dicts() == []


def test_a_fault_whose_control_call_raises_is_a_failure_not_a_window():
    faults = FaultController()
    with pytest.raises(RuntimeError, match="400 bad toxic"):
        faults.latency(RejectingProxy(), ms=10)
    assert faults.journal.to_dicts() == [] and faults.active == []
    [failure] = faults.journal.failures()
    assert failure.kind == "toxic:latency" and failure.error == "RuntimeError: 400 bad toxic"
    assert faults.journal.active_ids() == []


def test_process_fault_on_a_server_without_a_process_is_a_clear_error_and_no_window():
    class UrlRedis:  # what the 'url' backend hands out: no process to signal
        name = "redis"
        process = None

    faults = FaultController()
    for call in (lambda p: p.pause(), lambda p: p.kill(), lambda p: p.restart()):
        with pytest.raises(TypeError, match="not a process the kit started .*'url' backend"):
            call(faults.process(UrlRedis()))
    assert faults.journal.to_dicts() == [] and faults.active == []
    assert faults.journal.counts() == {"requested": 3, "applied": 0, "failed": 3}


def test_redis_action_window_that_raises_becomes_a_failure():
    faults = FaultController()
    with pytest.raises(ConnectionError):
        with faults.journal.window("flushall", "redis"):
            raise ConnectionError("refused")
    assert faults.journal.to_dicts() == []
    assert faults.journal.counts() == {"requested": 1, "applied": 0, "failed": 1}


def test_clock_skew_rejects_nan():
    faults, clock = FaultController(), SkewedClock()
    with pytest.raises(ValueError, match="offset_s=nan"):
        faults.skew_clock(clock, float("nan"))
    assert clock.offset == 0.0 and faults.journal.to_dicts() == []


def test_rejected_requests_count_as_failed_and_windows_as_applied():
    faults = FaultController()
    faults.down(RecordingProxy()).heal()
    faults.journal.reject("flushall", "redis", {}, RuntimeError("no admin client"))
    assert faults.journal.counts() == {"requested": 2, "applied": 1, "failed": 1}
    assert [f.error for f in faults.journal.failures()] == ["RuntimeError: no admin client"]
    assert [w["kind"] for w in faults.journal.to_dicts()] == ["down"]


def test_process_faults_on_a_real_url_redis_are_clear_errors_and_never_windows(tmp_path):
    from pytest_cbchaos.servers.redis import start_redis

    server = start_redis("binary", workdir=tmp_path / "owned")
    try:
        attached = start_redis("url", workdir=tmp_path / "url", url=server.url)
        faults = FaultController()
        with pytest.raises(TypeError, match=r"pause on 'RedisServer\(url\)': not a process the kit started \(RedisServer"):
            faults.process(attached).pause()
        with pytest.raises(Exception, match="not managed by the kit"):
            faults.process(attached).restart()
        assert faults.journal.to_dicts() == [] and faults.active == []
        assert faults.journal.counts() == {"requested": 2, "applied": 0, "failed": 2}
        assert attached.ping()
        assert not any(server.password in f.error + f.target for f in faults.journal.failures())
    finally:
        server.stop()


class _ContendedLock:
    """Stands in for ``Fault._lock`` and says when a caller has to wait for it: the test then knows the second
    heal is blocked behind the first, not merely not scheduled yet (a fixed sleep or short join cannot tell)."""

    def __init__(self, decided: threading.Event) -> None:
        self._inner = threading.RLock()
        self._decided = decided
        self.waited = False

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        if self._inner.acquire(blocking=False):
            return True
        if not blocking:
            return False
        self.waited = True  # set before the event, so whoever wakes on the event sees it
        self._decided.set()
        return self._inner.acquire(True, timeout)

    def release(self) -> None:
        self._inner.release()

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _second_heal_problem(heal: Callable[[Fault], None]) -> str | None:
    """Runs ``heal`` on one fault from two threads while the first is held inside its heal call; returns what
    went wrong (None: the second caller waited and returned only once the window was closed).

    The second caller is judged only once it has either returned or blocked on the fault's lock (``decided``),
    so a thread that simply has not run yet can neither pass nor fail the check; every wait is bounded (10 s)."""
    c = FaultController()
    inside, release, decided = threading.Event(), threading.Event(), threading.Event()

    def slow_heal() -> None:
        inside.set()
        assert release.wait(10)

    window = c.journal.begin("test", "host")
    fault = Fault(c, window, slow_heal)
    lock = _ContendedLock(decided)
    fault._lock = lock  # type: ignore[assignment]
    seen: dict[str, bool] = {}

    def second_heal() -> None:
        heal(fault)
        seen["healed"] = fault.healed  # what the second caller is told by returning
        decided.set()

    first = threading.Thread(target=heal, args=(fault,))
    first.start()
    try:
        if not inside.wait(10):
            return "the first heal never reached its heal call"
        if fault.healed or window.end_ns is not None:
            return "healed before the heal call returned"
        second = threading.Thread(target=second_heal)
        second.start()
        if not decided.wait(10):
            return "the second heal neither returned nor waited within 10 s"
        if "healed" in seen:
            return f"the second heal returned while the first was still healing (healed={seen['healed']})"
        if not lock.waited:
            return "the second heal is not waiting for the first"
    finally:
        release.set()
        first.join(10)
    second.join(10)
    if second.is_alive():
        return "the second heal did not return within 10 s of the first"
    if not (seen.get("healed") and fault.healed and window.end_ns is not None):
        return f"after both heals: healed={fault.healed}, window end={window.end_ns}, second saw {seen}"
    return None


def _heal_without_waiting(fault: Fault) -> None:
    """Mutant: a heal already under way counts as done, so a second caller returns before the window closes."""
    if fault._healing:
        return
    fault.heal()


def test_healed_means_the_window_is_closed_even_while_another_thread_heals() -> None:
    """A timer thread (cpu_stress ``for_s``) and teardown may heal one fault at once: ``healed`` turns True
    only after the heal ran and the window closed, and a second ``heal()`` returns only then."""
    assert _second_heal_problem(Fault.heal) is None


def test_a_second_heal_that_does_not_wait_is_caught() -> None:
    """The check above can fail: the early-return mutant is caught on every run, however threads are scheduled."""
    assert "returned while the first was still healing" in (_second_heal_problem(_heal_without_waiting) or "")


class RefusingProxy(RecordingProxy):
    """Answers like the proxy server: 409 for a taken toxic name, 400 for an unknown type."""

    def add_toxic(self, type, *, stream, toxicity, name=None, **attributes):
        from pytest_cbchaos.proxy.client import BadRequest, Conflict

        if type not in ("latency", "timeout"):
            raise BadRequest(400, "invalid toxic type")
        taken = {t[3] or f"{t[1]}_{t[2]}" for t in self.calls if t[0] == "add"}
        if (name or f"{type}_{stream}") in taken:
            raise Conflict(409, "toxic already exists")
        return super().add_toxic(type, stream=stream, toxicity=toxicity, name=name, **attributes)


def test_a_second_toxic_of_a_type_suggests_name_and_name_works():
    from pytest_cbchaos.proxy.client import Conflict

    proxy, faults = RefusingProxy(), FaultController()
    faults.latency(proxy, ms=10)
    with pytest.raises(Conflict, match=r"already has a toxic named 'latency_downstream'; pass name="):
        faults.latency(proxy, ms=20)
    faults.latency(proxy, ms=20, name="latency_2")
    assert [c[3] for c in proxy.calls if c[0] == "add"] == [None, "latency_2"]
    assert faults.journal.counts() == {"requested": 3, "applied": 2, "failed": 1}
    faults.heal_all()


def test_an_unknown_toxic_type_lists_the_valid_ones():
    from pytest_cbchaos.proxy.client import BadRequest

    with pytest.raises(BadRequest, match=r"invalid toxic type 'latencyy' on 'redis'; expected one of .*latency.*"
                                         r"slow_close.*\(embedded proxy also: cbchaos_blackhole"):
        FaultController().toxic(RefusingProxy(), "latencyy", latency=1)


@pytest.mark.parametrize("action", ["pause", "kill", "restart"])
def test_process_faults_on_a_proxy_say_what_to_pass(action):
    from pytest_cbchaos.faults.controller import FaultNotApplicable

    with pytest.raises(FaultNotApplicable, match=rf"{action} on 'redis': that is a fault proxy, not a process; "
                                                 rf"pass the server behind it \(e.g. process\(cbchaos_redis_proc\)"):
        getattr(FaultController().process(RecordingProxy()), action)()
