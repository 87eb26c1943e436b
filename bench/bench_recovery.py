"""Detection latency of the recovery runner against real opencode (median of N runs each).

    .venv/bin/python bench/bench_recovery.py [--runs 5]

Prints, beside the prior art (CodeCome PR #66: ~225 s for a SIGKILL mid-turn, 180 s stall default):
* SIGKILL mid-turn → SERVER_UNREACHABLE: fault to verdict;
* model stall → SESSION_STALLED: last progress to verdict (stall_timeout 2 s), i.e. overshoot;
* silenced SSE (proxy timeout toxic) → reconnect: toxic to reconnect (sse_silence_timeout 2 s);
plus opencode cold start to healthy and a mock-provider turn end to end. Figures, never assertions.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pytest_cbchaos.proxy.client import Client  # noqa: E402
from pytest_cbchaos.recovery import RecoveryConfig, RecoveryRunner, RunStatus, ServerTarget  # noqa: E402
from pytest_cbchaos.servers.ports import allocate_port  # noqa: E402
from pytest_cbchaos.servers.toxiproxy import start_toxiproxy  # noqa: E402
from tests.recovery.harness import MiniLLM, OpencodeProc, Plan  # noqa: E402


def wait(cond: Callable[[], Any], timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.01)
    raise TimeoutError


def median(xs: list[float]) -> str:
    return f"{statistics.median(xs):7.3f} s  (n={len(xs)}, min {min(xs):.3f}, max {max(xs):.3f})"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-recovery-"))
    llm = MiniLLM().start()
    oc = OpencodeProc(tmp / "oc", llm.base_url)
    tox = start_toxiproxy("embedded", workdir=tmp / "tox")
    client = Client(tox.url)
    cold: list[float] = []
    try:
        t0 = time.monotonic()
        oc.start()
        cold.append(time.monotonic() - t0)
        events = client.create_proxy("bench-events", f"127.0.0.1:{oc.port}",
                                     listen=f"127.0.0.1:{allocate_port().port}")

        def retarget() -> None:
            events._update({"upstream": f"127.0.0.1:{oc.port}"})

        target = ServerTarget(handle=oc, events_url=lambda: f"http://127.0.0.1:{events.listen_port}")
        with RecoveryRunner(target, RecoveryConfig.for_tests(stall_timeout=30)) as r:
            r.run_turn("warm up")

        turn: list[float] = []
        with RecoveryRunner(target, RecoveryConfig.for_tests()) as r:
            for i in range(args.runs):
                t0 = time.monotonic()
                assert r.run_turn(f"turn {i}").status == RunStatus.OK
                turn.append(time.monotonic() - t0)

        stall: list[float] = []
        for i in range(args.runs):
            llm.script(Plan(text="ab", chunks=2, stall_after=1))
            with RecoveryRunner(target, RecoveryConfig.for_tests(stall_timeout=2, probe_timeout=0.5,
                                                                 max_recoveries=0)) as r:
                res = r.run_turn(f"stall {i}")
            llm.release_all()
            assert res.status == RunStatus.SESSION_STALLED
            stall.append(res.attempts[0].evidence["last_progress_age_s"])

        silence: list[float] = []
        for i in range(args.runs):
            llm.script(Plan(text="ab", chunks=2, stall_after=1))
            with RecoveryRunner(target, RecoveryConfig.for_tests(stall_timeout=10, heartbeat_interval=1,
                                                                 sse_silence_timeout=2)) as r:
                out: list[Any] = []
                th = threading.Thread(target=lambda: out.append(r.run_turn(f"silence {i}")))
                th.start()
                llm.wait_stalled(30)
                toxic = events.add_toxic("timeout", stream="downstream", timeout=0)
                t0 = time.monotonic()
                try:
                    hit = wait(lambda: [h for h in list(r.history) if h["type"] == "sse.reconnect"
                                        and h.get("cause") in ("silence", "sync_showed_lost_events")], 10)
                except TimeoutError:
                    for h in r.history:
                        print(h, file=sys.stderr)
                    raise
                silence.append(hit[0]["t"] - t0)
                events.remove_toxic(toxic.name)
                llm.release_all()
                th.join(30)
                assert out and out[0].status == RunStatus.OK, out

        kill: list[float] = []
        orig = oc.restart

        def restart() -> None:
            orig()
            retarget()

        oc.restart = restart  # type: ignore[method-assign]
        for i in range(args.runs):
            llm.script(Plan(text="ab", chunks=2, stall_after=1))
            with RecoveryRunner(target, RecoveryConfig.for_tests(stall_timeout=10, max_recoveries=0)) as r:
                out = []
                th = threading.Thread(target=lambda: out.append(r.run_turn(f"kill {i}")))
                th.start()
                llm.wait_stalled(30)
                r.mark_fault()
                oc.kill()
                th.join(30)
            res = out[0]
            assert res.attempts[0].verdict == RunStatus.SERVER_UNREACHABLE
            kill.append(res.attempts[0].fault_to_verdict_s)
            llm.release_all()
            t0 = time.monotonic()
            oc.restart()
            cold.append(time.monotonic() - t0)
            with RecoveryRunner(target, RecoveryConfig.for_tests(stall_timeout=30)) as r:
                r.run_turn("warm up")
    finally:
        llm.stop()
        oc.stop()
        tox.stop()

    print("pytest-cbchaos recovery benchmark (real opencode 1.18.33, mock provider, this machine)")
    print(f"  opencode cold start to healthy      {median(cold)}")
    print(f"  mock-provider turn end to end       {median(turn)}")
    print(f"  SIGKILL mid-turn -> UNREACHABLE     {median(kill)}   prior art ~225 s  "
          f"(ratio {225 / statistics.median(kill):.0f}x)")
    print(f"  model stall -> STALLED (st=2 s)     {median(stall)}   overshoot "
          f"{statistics.median(stall) - 2:.3f} s; prior art 180 s default + tick drops")
    print(f"  silenced SSE -> reconnect (2 s)     {median(silence)}   prior art: only after reconnect budget")


if __name__ == "__main__":
    main()
