"""A small real target for the scenario/report tests: workers INCR a Redis counter.

``CounterTarget`` uses INCR (atomic); ``LostUpdateCounter`` is the mutant: GET then SET, which
loses increments under concurrency, so the ``no-lost-increments`` invariant must catch it.
"""

from __future__ import annotations

import threading
import time

import redis

from pytest_cbchaos.scenario.targets import CheckResult, Observations, Target


class CounterTarget(Target):
    name = "counter"
    invariants = {"no-lost-increments": "final counter == acknowledged increments (+ indeterminate ones)",
                  "always-fails": "a check that is always violated (to test reporting)"}
    default_model = "counter"

    def processes(self, topology):
        return [*super().processes(topology), "redis"]

    def setup(self, ctx):
        server = ctx.env.redis("fakeredis")
        ctx.processes["redis"] = server
        ctx.admin = server.client()
        ctx.admin.delete("counter")
        ctx.state["server"] = server

    def teardown(self, ctx):
        if ctx.admin is not None:
            ctx.admin.close()

    def incr(self, client: redis.Redis) -> None:
        client.incr("counter")

    def run(self, ctx) -> Observations:
        obs = Observations()
        server = ctx.state["server"]
        counts = {"ok": 0, "info": 0}
        lock = threading.Lock()
        last_fault_end = {"t": None}

        def worker(wid: int) -> None:
            client = redis.Redis(host=server.host, port=server.port, password=server.password,
                                 socket_timeout=0.5, socket_connect_timeout=0.5)
            done = 0
            try:
                while ctx.ops_left(done):
                    t0 = time.monotonic_ns()
                    try:
                        self.incr(client)
                        ok = True
                    except redis.RedisError:
                        ok = False
                    t1 = time.monotonic_ns()
                    with lock:
                        counts["ok" if ok else "info"] += 1
                    obs.add("latencies", {"t_ms": ctx.t_ms(t0), "worker": f"w{wid}", "ms": (t1 - t0) / 1e6, "ok": ok})
                    done += 1
                    if not ctx.pace():
                        break
            finally:
                client.close()

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(ctx.scenario.topology.workers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=ctx.scenario.budgets.wall_s)
        obs.metrics.update(counts)
        # recovery: first successful op after the last fault window ended
        ends = [w["end_ns"] for w in ctx.journal.to_dicts() if w.get("end_ns")]
        if ends:
            end_ms = ctx.t_ms(max(ends))
            after = [p["t_ms"] + p["ms"] for p in obs.latencies if p["ok"] and p["t_ms"] >= end_ms - 1]
            obs.recoveries["first-ok-after-heal"] = (min(after) - end_ms) / 1000 if after else None
        obs.metrics["final"] = int(ctx.admin.get("counter") or 0) if ctx.admin else None
        return obs

    def check_no_lost_increments(self, obs, ctx) -> CheckResult:
        ok, info, final = obs.metrics["ok"], obs.metrics["info"], obs.metrics["final"]
        if ok <= final <= ok + info:
            return CheckResult("ok", f"final {final} within [{ok}, {ok + info}]")
        return CheckResult("violated", f"final counter {final} outside [{ok}, {ok + info}]",
                           counterexample={"acknowledged": ok, "indeterminate": info, "final": final,
                                           "lost": ok - final})

    def check_always_fails(self, obs, ctx) -> CheckResult:
        return CheckResult("violated", "always", counterexample={"marker": "ALWAYS-FAILS-COUNTEREXAMPLE"})


class LostUpdateCounter(CounterTarget):
    """Mutant: read-modify-write without atomicity."""

    def incr(self, client: redis.Redis) -> None:
        value = int(client.get("counter") or 0)
        self._force_overlap()
        client.set("counter", value + 1)

    def run(self, ctx) -> Observations:
        self._overlap = threading.Barrier(2, timeout=10)
        return super().run(ctx)

    def _force_overlap(self) -> None:
        """The first two increments (two workers: one blocks here until the other arrives) both read
        before either writes, so one increment is lost on every run, however the threads are scheduled."""
        if not self._overlap.broken:
            try:
                self._overlap.wait()
            except threading.BrokenBarrierError:
                pass
            self._overlap.abort()  # later increments race freely
