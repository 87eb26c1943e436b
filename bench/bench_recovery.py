"""Detection latency of the recovery runner against real opencode (median of N runs each).

    .venv/bin/python bench/bench_recovery.py [--runs 5] [--load 2]

Prints, beside the prior art (CodeCome PR #66: ~225 s for a SIGKILL mid-turn, 180 s stall default):
* SIGKILL mid-turn → SERVER_UNREACHABLE: fault to verdict;
* model stall → SESSION_STALLED: last progress to verdict (stall_timeout 2 s), i.e. overshoot;
* silenced SSE (proxy timeout toxic) → reconnect: toxic to reconnect (sse_silence_timeout 2 s);
* first-event deadline → SESSION_STALLED/first_event_timeout: acceptance to verdict (first_event_timeout 3 s);
plus opencode cold start to healthy and a mock-provider turn end to end. Each detection is measured
idle and again beside ``--load`` busy loops (0: idle only), with the runner's observed loop lag in
the same window beside it (docs/recovery.md, "Lag-aware deadlines"). Figures, never assertions.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

from pytest_cbchaos.env import Environment
from pytest_cbchaos.recovery import RecoveryConfig, RecoveryRunner, RunStatus
from pytest_cbchaos.servers import mockllm as m
from pytest_cbchaos.settings import Settings

ROOT = Path(__file__).resolve().parents[1]  # where the project-local opencode (.cbchaos-node) is found


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


def lag_of(r: RecoveryRunner, t0: float, t1: float) -> float:
    return r.core.lag.window(t0, t1).sum_s


def verdict_at(r: RecoveryRunner) -> float:
    return next(h["verdict_at"] for h in r.history if h["type"] == "verdict")


def detections(runs: int, rig: Any, cold: list[float]) -> dict[str, list[tuple[float, float]]]:
    """(latency, observed lag in that window) per run, for each detection, on the opencode rig."""
    llm, target, events = rig.mock, rig.handle, rig.events
    out: dict[str, list[tuple[float, float]]] = {"kill": [], "stall": [], "silence": [], "first_event": []}
    for i in range(runs):
        llm.script("main", m.stall_midway("ab"))
        with RecoveryRunner(target, RecoveryConfig.for_tests(stall_timeout=2, probe_timeout=0.5,
                                                             max_recoveries=0)) as r:
            res = r.run_turn(f"stall {i}")
            age = res.attempts[0].evidence["last_progress_age_s"]
            at = verdict_at(r)
            out["stall"].append((age, lag_of(r, at - age, at)))
        llm.release_all()
        assert res.status == RunStatus.SESSION_STALLED

    for i in range(runs):
        llm.script("main", [m.ttfb(300), m.text("x")])  # no response headers
        with RecoveryRunner(target, RecoveryConfig.for_tests(stall_timeout=2, first_event_timeout=3,
                                                             probe_timeout=0.5, max_recoveries=0)) as r:
            res = r.run_turn(f"mute {i}")
            assert res.attempts[0].reason == "first_event_timeout", res
            wait_s = res.attempts[0].evidence["first_event_wait_s"]
            at = verdict_at(r)
            out["first_event"].append((wait_s, lag_of(r, at - wait_s, at)))
        rig.prepare()  # aborts the session whose model request still waits for its headers

    for i in range(runs):
        llm.script("main", m.stall_midway("ab"))
        with RecoveryRunner(target, RecoveryConfig.for_tests(stall_timeout=10, heartbeat_interval=1,
                                                             sse_silence_timeout=2)) as r:
            done: list[Any] = []
            th = threading.Thread(target=lambda: done.append(r.run_turn(f"silence {i}")))
            th.start()
            llm.wait_stalled("main", 30)
            toxic = events.add_toxic("timeout", stream="downstream", timeout=0)
            t0 = time.monotonic()
            try:
                hit = wait(lambda: [h for h in list(r.history) if h["type"] == "sse.reconnect"
                                    and h.get("cause") in ("silence", "sync_showed_lost_events")], 10)
            except TimeoutError:
                for h in r.history:
                    print(h, file=sys.stderr)
                raise
            out["silence"].append((hit[0]["t"] - t0, lag_of(r, t0, hit[0]["t"])))
            events.remove_toxic(toxic.name)
            llm.release_all()
            th.join(30)
            assert done and done[0].status == RunStatus.OK, done

    for i in range(runs):
        llm.script("main", m.stall_midway("ab"))
        with RecoveryRunner(target, RecoveryConfig.for_tests(stall_timeout=10, max_recoveries=0)) as r:
            done = []
            th = threading.Thread(target=lambda: done.append(r.run_turn(f"kill {i}")))
            th.start()
            llm.wait_stalled("main", 30)
            r.mark_fault()
            rig.server.kill()
            th.join(30)
        res = done[0]
        assert res.attempts[0].verdict == RunStatus.SERVER_UNREACHABLE
        out["kill"].append((res.attempts[0].fault_to_verdict_s, res.attempts[0].lag_s or 0.0))
        llm.release_all()
        t0 = time.monotonic()
        target.restart()
        cold.append(time.monotonic() - t0)
        with RecoveryRunner(target, RecoveryConfig.for_tests(stall_timeout=30)) as r:
            r.run_turn("warm up")
    return out


def with_lag(xs: list[tuple[float, float]]) -> str:
    lat, lag = [x for x, _ in xs], [g for _, g in xs]
    return f"{median(lat)}   lag median {statistics.median(lag):.3f} s (max {max(lag):.3f})"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--load", type=int, default=2, help="busy loops for the loaded pass (0: idle only)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-recovery-"))
    env = Environment.from_settings(Settings.defaults(), tmp, rootdir=ROOT, worker="bench")
    cold: list[float] = []
    results: dict[int, dict[str, list[tuple[float, float]]]] = {}
    try:
        t0 = time.monotonic()
        rig = env.opencode()  # the mock provider, opencode serve and its control/events proxies
        cold.append(time.monotonic() - t0)
        target = rig.handle
        with RecoveryRunner(target, RecoveryConfig.for_tests(stall_timeout=30)) as r:
            r.run_turn("warm up")

        turn: list[float] = []
        with RecoveryRunner(target, RecoveryConfig.for_tests()) as r:
            for i in range(args.runs):
                t0 = time.monotonic()
                assert r.run_turn(f"turn {i}").status == RunStatus.OK
                turn.append(time.monotonic() - t0)

        for load in sorted({0, args.load}):
            loops = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(load)]
            try:
                results[load] = detections(args.runs, rig, cold)
            finally:
                for p in loops:
                    p.kill()
                    p.wait(10)
    finally:
        env.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    print("pytest-cbchaos recovery benchmark (real opencode 1.18.33, mock provider, this machine)")
    print(f"  opencode cold start to healthy      {median(cold)}")
    print(f"  mock-provider turn end to end       {median(turn)}")
    for load, res in results.items():
        print(f"  -- {'idle' if not load else f'beside {load} busy loops'} (median of {args.runs}; "
              "lag = the runner's observed loop lag in the same window)")
        print(f"  SIGKILL mid-turn -> UNREACHABLE     {with_lag(res['kill'])}   prior art ~225 s")
        print(f"  model stall -> STALLED (st=2 s)     {with_lag(res['stall'])}   prior art 180 s default")
        print(f"  silenced SSE -> reconnect (2 s)     {with_lag(res['silence'])}")
        print(f"  first-event deadline (3 s)          {with_lag(res['first_event'])}")

if __name__ == "__main__":
    main()
