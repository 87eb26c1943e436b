"""A small real target for the scenario/report tests: workers INCR a Redis counter.

``CounterTarget`` uses INCR (atomic); ``LostUpdateCounter`` is the mutant: GET then SET, which
loses increments under concurrency, so the ``no-lost-increments`` invariant must catch it.
"""

from __future__ import annotations

import threading
import time

import redis

from pytest_cbchaos.scenario.targets import CheckResult, Observations, Target
from pytest_cbchaos.servers.redis import no_retry


class CounterTarget(Target):
    name = "counter"
    invariants = {"no-lost-increments": "final counter == acknowledged increments (+ indeterminate ones)",
                  "always-fails": "a check that is always violated (to test reporting)"}
    default_model = "counter"
    op_timeout_s: float = 0.5
    """How long an op may wait for Redis. Short because the fault decides it: the workers must not hang on a paused
    or killed server, and an op that gives up counts as indeterminate, which the check allows for. Never resent
    (``no_retry``): an INCR that timed out may have been applied, and a resend would apply it twice while being
    counted once, a false violation on a correct counter."""

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

        def worker(wid: int) -> None:
            client = redis.Redis(host=server.host, port=server.port, password=server.password, retry=no_retry(),
                                 socket_timeout=self.op_timeout_s, socket_connect_timeout=self.op_timeout_s)
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

    op_timeout_s = 30.0
    """Patient on purpose. The catch is one forced lost increment; an op that gives up after Redis applied it
    counts as indeterminate and widens the accepted range by one, which would hide that loss whenever the box
    stalls longer than the client waits. No fault
    runs against the mutant, so nothing here needs a short bound, and 30 s still bounds a hung server."""

    def incr(self, client: redis.Redis) -> None:
        value = int(client.get("counter") or 0)
        self._force_overlap()
        client.set("counter", value + 1)

    def run(self, ctx) -> Observations:
        self._overlap = threading.Barrier(2, timeout=10, action=lambda: self._on_overlap(ctx))
        return super().run(ctx)

    def _on_overlap(self, ctx) -> None:
        """Runs once both overlapping increments have read, before either writes (a hook for the twin below)."""

    def _force_overlap(self) -> None:
        """The first two increments (two workers: one blocks here until the other arrives) both read
        before either writes, so one increment is lost on every run, however the threads are scheduled."""
        if not self._overlap.broken:
            try:
                self._overlap.wait()
            except threading.BrokenBarrierError:
                pass
            self._overlap.abort()  # later increments race freely


class StalledOverlapCounter(LostUpdateCounter):
    """The mutant on a box made slow on purpose: Redis is paused (SIGSTOP) as the two overlapping increments
    leave the barrier and resumed ``stall_s`` later, longer than ``CounterTarget.op_timeout_s``; both SETs reach
    Redis inside the stall and are applied after it. A client that gave up at the short bound would count them
    indeterminate and the loss would go unseen; the mutant's patient client must still have it caught."""

    stall_s = 1.5

    def run(self, ctx) -> Observations:
        self._resume: threading.Timer | None = None
        try:
            return super().run(ctx)
        finally:
            if self._resume is not None:
                self._resume.cancel()
                ctx.state["server"].process.resume()  # idempotent: the server is running whatever the timer did

    def _on_overlap(self, ctx) -> None:
        process = ctx.state["server"].process
        process.pause()
        self._resume = threading.Timer(self.stall_s, process.resume)
        self._resume.start()
