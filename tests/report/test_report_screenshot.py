"""report.html explains itself, checked in headless Chromium: each failed entry opens with one
sentence saying what went wrong, the timeline has a legend and labelled axes with units, the
counterexample is in words, a plain test gets no one-bar timeline, and a screenshot is taken."""

from __future__ import annotations

import re
import struct
from html import unescape
from pathlib import Path

import pytest

from pytest_cbchaos.report.html import write_html
from pytest_cbchaos.report.model import build_report, make_entry
from tests.report.test_report_html import CHROMIUM, _chromium

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="chromium not installed (apt-get install chromium)")

COUNTEREXAMPLE = {
    "partition": "b1", "longest_prefix": [{"op": 0, "index": 0, "describe": "record_failure() -> ok",
                                           "state_after": "open"}],
    "first_unplaceable": {"op": 1, "index": 3, "describe": "gate() -> admitted", "call": 10, "ret": 12,
                          "process": 2, "state": "open until 5000"},
    "attempts": [{"op": 1, "index": 3, "describe": "gate() -> admitted", "state": "open",
                  "explain": "a gate was admitted while the breaker was open"}],
    "minimal_window": {"cut_ns": 54_192_951, "ops": [0, 1, 2, 3]}}


def _report() -> dict:
    scenario = {"kind": "scenario", "name": "breaker-partition", "target": "breaker-store",
                "faults": [{"id": 1, "kind": "latency", "target": "redis-proxy", "params": {"ms": 200},
                            "start_ns": 0, "end_ns": 400_000_000, "start_ms": 100.0, "end_ms": 500.0}],
                "checks": [{"name": "CB-4 one probe", "kind": "invariant", "verdict": "violated",
                            "detail": "two callers were admitted as the HALF_OPEN probe",
                            "counterexample": COUNTEREXAMPLE}],
                "latencies": [{"t_ms": 20.0 * i, "worker": str(i % 2), "ms": 1.0 + (i % 7) * 30, "ok": i % 9 != 0}
                              for i in range(40)],
                "transitions": [{"t_ms": 0.0, "worker": "0", "from": "closed", "to": "closed"},
                                {"t_ms": 150.0, "worker": "0", "from": "closed", "to": "open"},
                                {"t_ms": 450.0, "worker": "0", "from": "open", "to": "half_open"},
                                {"t_ms": 600.0, "worker": "0", "from": "half_open", "to": "closed"}],
                "recoveries": {"open-after-fault": 0.152}, "probes": [],
                "audit": {"faults_requested": 1, "faults_applied": 1, "faults_failed": 0, "ops_observed": 40,
                          "faults_declared": 1, "fault_errors": []}}
    plain = {"kind": "test", "name": "test_plain", "target": None, "faults": [], "checks": [], "latencies": [],
             "transitions": [{"t_ms": 0.0, "worker": "0", "from": "closed", "to": "closed"}],
             "recoveries": {}, "probes": []}
    entries = [make_entry("scenarios/breaker-partition.yaml::breaker-partition", "failed", 1.2, scenario),
               make_entry("tests/test_x.py::test_plain", "failed", 0.1, plain,
                          longrepr="def test_plain():\n>       assert 1 == 2\nE       assert 1 == 2\n")]
    return build_report(entries, seed=7, command="cbchaos run scenarios/")


def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])


def test_report_explains_itself_in_chromium(tmp_path: Path) -> None:
    report = _report()
    html = write_html(report, tmp_path / "rep")
    dom = _chromium(tmp_path, "--dump-dom", html.resolve().as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    text = unescape(dom.stdout)

    headlines = re.findall(r'<p class="headline">(.*?)</p>', text)
    assert headlines[0] == "CB-4 one probe was violated: two callers were admitted as the HALF_OPEN probe."
    assert headlines[1] == "The test's assertion failed: assert 1 == 2."
    for label in ("fault window", "state open", "state half-open", "call latency", "failed call"):
        assert label in text, label  # the legend
    assert "time since the first recorded event (ms)" in text and "latency (ms)" in text  # axes and units
    assert "First operation that no order can place: <b>gate() -&gt; admitted</b>" in dom.stdout
    assert "illegal up to 54.193 ms" in text  # nanoseconds shown as ms, converted
    assert text.count('class="timeline"') == 1  # the plain test's single state gives no one-bar chart
    assert "no timeline: no fault windows, latencies or state changes were recorded" in text
    assert "open-after-fault" in text and "0.152 s" in text

    shot = tmp_path / "report.png"
    res = _chromium(tmp_path, f"--screenshot={shot}", "--window-size=1280,1400", html.resolve().as_uri())
    assert res.returncode == 0 and shot.stat().st_size > 10_000, res.stderr[-2000:]
    assert _png_size(shot) == (1280, 1400)
