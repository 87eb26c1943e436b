"""The ``recovery`` target against real opencode: the shipped scenario files pass with the real runner,
and the same files pointed at deliberately broken runners (``testing/runner_mutants.py``, through
``workload.params.runner_factory``) fail on the check that guards the broken behaviour."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PLUGINS = ["-p", "pytest_cbchaos.plugin.scenario", "-p", "pytest_cbchaos.plugin.report"]




def _with_runner(shipped: str, name: str, factory: str, add: dict[str, float] | None = None,
                 **opencode: int) -> str:
    """A shipped recovery scenario, renamed and pointed at ``factory``; ``opencode`` overrides values of
    its ``topology.opencode`` (each key must be there: a changed shipped file fails here, not silently),
    ``add`` puts keys there that the shipped file leaves at their defaults."""
    text = (ROOT / "scenarios" / shipped).read_text()
    for key, value in (add or {}).items():
        assert f"{key}: " not in text, f"{shipped}: topology.opencode.{key} is set, override it instead"
        text = text.replace("topology: {opencode: {", f"topology: {{opencode: {{{key}: {value}, ", 1)
    text = text.replace(f"name: {shipped[:-5]}", f"name: {name}", 1)
    for key, value in opencode.items():
        head, sep, tail = text.partition(f"{key}: ")
        assert sep and "topology: {opencode: {" in head.splitlines()[-1], f"{shipped}: no topology.opencode.{key}"
        text = head + sep + str(value) + tail[len(tail.split(",", 1)[0]):]
    return text.replace("params: {turns: 1", f'params: {{runner_factory: "{factory}", turns: 1', 1)


@pytest.mark.slow
@pytest.mark.opencode
@pytest.mark.timeout(240)
def test_recovery_checks_catch_mutant_runners(pytester: pytest.Pytester) -> None:
    from pytest_cbchaos.servers.opencode import find_opencode

    if find_opencode(os.environ.get("CBCHAOS_OPENCODE_BIN") or None) is None and not os.environ.get("CI"):
        pytest.skip("opencode not installed (./scripts/setup)")
    d = pytester.mkdir("scenarios")
    # Budget 0: each flaw shows on the first attempt, so a recovery (a cold restart and a cold turn
    # after the kill, a second stall) would only cost time; the kill runs last (files run in name
    # order), so no scenario after it pays for bringing the killed server back.
    # M1 reports OK after the recovery budget ran out
    (d / "1-stall-m1.yaml").write_text(_with_runner("recovery-model-stall.yaml", "stall-m1",
                                                    "pytest_cbchaos.testing.runner_mutants:M1SuccessAfterExhaustion",
                                                    max_recoveries=0))
    # M2 calls a dead server a stall: no SERVER_UNREACHABLE within 2 s of the SIGKILL (a stall
    # timeout of 3 s, still past that deadline, ends its wrong verdict sooner than the shipped 8 s).
    # A slow server killed before the answer's first event leaves M2 on the bootstrap deadline
    # instead (default 60 s: the run then ended at its 60 s wall budget); 5 s ends that case too.
    (d / "2-kill-m2.yaml").write_text(_with_runner("recovery-server-kill.yaml", "kill-m2",
                                                   "pytest_cbchaos.testing.runner_mutants:M2StallBeforeLiveness",
                                                   add={"first_event_timeout_s": 5},
                                                   stall_timeout_s=3, max_recoveries=0))
    r = pytester.runpytest(*PLUGINS, "scenarios", "--cbchaos-report", "rep", "-p", "no:cacheprovider")
    report = json.loads((pytester.path / "rep" / "report.json").read_text())
    by_name = {t["name"]: t for t in report["tests"]}
    verdicts = {n: {c["name"]: c["verdict"] for c in t["checks"]} for n, t in by_name.items()}
    assert by_name["kill-m2"]["outcome"] == "failed", verdicts
    assert verdicts["kill-m2"]["invariant:REC-4"] == "violated"
    assert verdicts["kill-m2"]["recovery:unreachable-detected"] == "violated"
    assert by_name["stall-m1"]["outcome"] == "failed", verdicts
    assert verdicts["stall-m1"]["invariant:REC-3"] == "violated"
    assert verdicts["stall-m1"]["invariant:expected-status"] == "violated"
    assert r.ret == pytest.ExitCode.TESTS_FAILED


@pytest.mark.slow
@pytest.mark.opencode
@pytest.mark.timeout(300)
def test_m16_caught_under_load(pytester: pytest.Pytester) -> None:
    """Lag-aware deadlines both ways under background load: the real runner's stall detection passes
    ``measured - lag <= deadline``; M16 (late by 2 x stall_timeout of lag-free time) is judged at least
    that late, whatever the load (docs/recovery.md, "Lag-aware deadlines")."""
    from pytest_cbchaos.servers.opencode import find_opencode

    if find_opencode(os.environ.get("CBCHAOS_OPENCODE_BIN") or None) is None and not os.environ.get("CI"):
        pytest.skip("opencode not installed (./scripts/setup)")
    d = pytester.mkdir("scenarios")
    # budget 0: the check judges the first stall verdict; a second stalled attempt (under the load) adds nothing
    (d / "stall-real.yaml").write_text(_with_runner("recovery-model-stall.yaml", "stall-real",
                                                    "pytest_cbchaos.recovery:RecoveryRunner", max_recoveries=0))
    (d / "stall-m16.yaml").write_text(_with_runner("recovery-model-stall.yaml", "stall-m16",
                                                   "pytest_cbchaos.testing.runner_mutants:M16LateDetection",
                                                   max_recoveries=0))
    pytester.runpytest(*PLUGINS, "scenarios", "--cbchaos-report", "rep", "-p", "no:cacheprovider",
                       "--cbchaos-background-load=2")
    report = json.loads((pytester.path / "rep" / "report.json").read_text())
    assert report["background_load"]["workers"] == 2, report.get("background_load")
    checks = {t["name"]: {c["name"]: c for c in t["checks"]} for t in report["tests"]}
    real, m16 = checks["stall-real"]["recovery:stall-detected"], checks["stall-m16"]["recovery:stall-detected"]
    assert real["verdict"] == "ok", real
    assert {"measured_s", "lag_s", "deadline_s", "judged_s"} <= set(real["measured"]), real
    assert m16["verdict"] == "violated", m16
    assert m16["measured"]["judged_s"] >= 2 * 2.0 - 1e-3, m16  # stall_timeout_s 2 in the scenario


def test_missing_opencode_skips_with_what_was_tried_or_fails_under_ci(monkeypatch: pytest.MonkeyPatch,
                                                                      tmp_path: Path) -> None:
    """No opencode binary: a reason listing every place searched and the install command; with env CI set,
    a required failure."""
    import pytest_cbchaos.servers.opencode as oc
    from pytest_cbchaos.env import Environment
    from pytest_cbchaos.scenario.targets import TargetUnavailable
    from pytest_cbchaos.settings import Settings
    from pytest_cbchaos.scenario.targets.recovery import RecoveryTarget

    monkeypatch.setattr(oc, "_local_candidates", lambda rootdir: [(f"{rootdir}/.cbchaos-node/node_modules", None)])
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("CBCHAOS_OPENCODE_BIN", raising=False)
    monkeypatch.delenv("CI", raising=False)
    env = Environment.from_settings(Settings.defaults(), tmp_path, rootdir=tmp_path)
    reason = RecoveryTarget().unavailable(env=env)
    assert reason == (f"opencode not found; tried {tmp_path}/.cbchaos-node/node_modules: no opencode; PATH: no "
                      f"opencode; {oc.INSTALL_HINT}")
    monkeypatch.setenv("CI", "1")
    with pytest.raises(TargetUnavailable) as exc:
        RecoveryTarget().unavailable(env=env)
    assert exc.value.required


def test_recovery_target_honours_the_opencode_option(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """--cbchaos-opencode-bin reaches the target (no fallback to another opencode), and the skip names the
    option as given instead of advising to pass it."""
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("CBCHAOS_OPENCODE_BIN", raising=False)
    fake = pytester.path / "fake-opencode"
    fake.write_text("#!/bin/sh\nexit 3\n")
    fake.chmod(0o755)
    d = pytester.mkdir("scenarios")
    (d / "stall.yaml").write_text((ROOT / "scenarios" / "recovery-model-stall.yaml").read_text())
    r = pytester.runpytest(*PLUGINS, "scenarios", "-rs", "-p", "no:cacheprovider", f"--cbchaos-opencode-bin={fake}")
    r.assert_outcomes(skipped=1)
    r.stdout.fnmatch_lines([f"*opencode not usable: --cbchaos-opencode-bin='{fake}': opencode found at {fake}, `--version` failed*; fix or "
                            "unset --cbchaos-opencode-bin*"])
    assert "or pass --cbchaos-opencode-bin" not in r.stdout.str()