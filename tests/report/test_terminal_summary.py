"""The terminal summary's header is one logical line: a reader (or a grep in CI logs) never sees
"verdict" split from its count."""

from pytest_cbchaos.report.terminal import render_summary


def test_header_is_not_broken_at_the_console_width() -> None:
    summary = {"tests": 123, "scenarios": 45, "faults_requested": 678, "faults_injected": 678,
               "faults_failed": 0, "checks_run": 9012, "violations": 0, "unknown": 0,
               "verdict_errors": 0}
    report = {"summary": summary, "seed": 1849147932, "tests": [],
              "background_load": {"workers": 2, "cpu_s": 12.5}}
    lines = render_summary(report, [], width=80).splitlines()
    assert lines[0].startswith("cbchaos: 123 tests") and lines[0].endswith("seed 1849147932"), lines
    assert lines[1] == "cbchaos: background load 2 busy processes, 12.5 CPU s burned", lines
