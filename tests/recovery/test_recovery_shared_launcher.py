"""The runner against the launcher's server itself (servers/opencode.py, the worker's ``cbchaos_opencode``)
and the mock provider (servers/mockllm.py): their handle API plugs straight into the runner (liveness,
restart, auth), no proxy in between."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from pytest_cbchaos.recovery import RecoveryConfig, RecoveryRunner, RunStatus
from pytest_cbchaos.lag import judged_text, within

pytestmark = [pytest.mark.slow, pytest.mark.opencode, pytest.mark.timeout(150)]


def test_turn_stall_and_kill_with_shared_launcher(cbchaos_opencode: Any, cbchaos_mock_llm: Any) -> None:
    from pytest_cbchaos.servers.mockllm import stall_forever, text

    server, mock = cbchaos_opencode, cbchaos_mock_llm
    try:
        # the first turn of a fresh instance bootstraps it for seconds without any event
        with RecoveryRunner(server, RecoveryConfig.for_tests(stall_timeout=30)) as warm:
            mock.script("main", [text("first answer", chunks=2)])
            res = warm.run_turn("warm turn")
            assert res.status == RunStatus.OK and "first answer" in res.text, res
        cfg = RecoveryConfig.for_tests(stall_timeout=2, probe_timeout=0.5, max_recoveries=1, start_timeout=30)
        with RecoveryRunner(server, cfg) as runner:

            mock.script("main", [text("part", chunks=1), stall_forever()])
            res = runner.run_turn("stall turn")
            assert res.status == RunStatus.OK and res.recoveries_used == 1, res
            assert res.attempts[0].verdict == RunStatus.SESSION_STALLED and res.attempts[0].aborted

        # budget 0: the death is reported, no restart (the restarted turn is covered with the harness)
        with RecoveryRunner(server, RecoveryConfig.for_tests(stall_timeout=15, max_recoveries=0)) as runner:
            mock.script("main", [text("dying", chunks=1), stall_forever()])
            out: list[Any] = []
            th = threading.Thread(target=lambda: out.append(runner.run_turn("kill turn")))
            th.start()
            mock.wait_for("main", count=len([r for r in mock.requests if r.kind == "main"]) + 1, timeout=30)
            gen = server.generation
            runner.mark_fault()
            server.kill()
            th.join(120)
            assert not th.is_alive()
            res = out[0]
            assert res.attempts[0].verdict == RunStatus.SERVER_UNREACHABLE, res
            assert res.attempts[0].fault_to_verdict_s is not None  # lag-aware: measured - observed lag <= 2 s
            assert within(res.attempts[0].fault_to_verdict_s, res.attempts[0].lag_s, 2.0), judged_text(res.attempts[0].fault_to_verdict_s, res.attempts[0].lag_s, 2.0)
            assert res.status == RunStatus.SERVER_UNREACHABLE and res.budget_exhausted, res
            assert server.generation == gen and res.recoveries_used == 0
    finally:
        mock.release_all()  # the per-test hygiene brings the killed server back
