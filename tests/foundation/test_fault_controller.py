"""FaultController logic: journaling, heal order, idempotent heal (proxy faults on real servers are in test_fixtures)."""

import sys

import pytest

from pytest_cbchaos.faults.clock import SkewedClock
from pytest_cbchaos.faults.controller import FaultController
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
