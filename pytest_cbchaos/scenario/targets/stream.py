"""Target ``stream``: turns relayed into the durable Redis stream (docs/stream-design.md) while faults hit
the producer's and the consumers' Redis links separately; the stream checker judges the log,
every consumer's deliveries and the producer's emissions.

Turns run back to back until the workload duration ends (at most ``params.turns``).
Proxies: ``redis-producer`` and ``redis-consumer`` (both in front of one Redis). Invariant ids
``DS-n`` map to the checker's rule ``INV-n``.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from pytest_cbchaos.params import Param, defaults
from pytest_cbchaos.scenario.target import CheckResult, Observations, Target, TargetUnavailable

CHECKED = {1: "no gap", 2: "no duplicate", 3: "exactly one terminal per message", 4: "live terminal within T_live",
           5: "error visible on replay", 6: "resume reaches the terminal", 9: "payload immutability",
           10: "dense, atomic seq", 11: "contiguous messages, single producer", 12: "record consistency",
           14: "indeterminate writes neither duplicate nor lose"}


class StreamTarget(Target):
    name = "stream"
    description = "durable seq-numbered turn-event stream in Redis"
    requires = ("pytest_cbchaos.stream.relay", "pytest_cbchaos.stream.checker", "pytest_cbchaos.stream.reader",
                "pytest_cbchaos.servers.toxiproxy")
    default_proxies = ("redis-producer", "redis-consumer")
    default_model = "stream"
    params = {
        "turns": Param(int, 50, "turns run back to back (at most)", minimum=1),
        "events": Param(int, 20, "events per turn", minimum=1),
        "delay_s": Param(float, 0.01, "pause between events, seconds", minimum=0),
        "consumers": Param(int, None, "live readers per turn (default: topology.workers.count)", minimum=0,
                           nullable=True),
    }
    invariants = {**{f"DS-{n}": text for n, text in CHECKED.items()},
                  "all-turns-end": "every turn ended with a terminal within the run"}

    def processes(self, topology: Any) -> list[str]:
        return [*super().processes(topology), "redis"]

    def setup(self, ctx: Any) -> None:
        if ctx.env is None:
            raise TargetUnavailable("stream needs servers (no environment)")
        server = ctx.env.redis((ctx.scenario.topology.redis or {}).get("backend"))
        ctx.processes["redis"] = server
        ctx.admin = server.client()
        ctx.admin.flushall()
        for name in ("redis-producer", "redis-consumer"):
            ctx.proxies[name] = ctx.env.proxy(name, f"{server.host}:{server.port}")
        ctx.state["server"] = server

    def teardown(self, ctx: Any) -> None:
        if ctx.admin is not None:
            ctx.admin.close()

    def run(self, ctx: Any) -> Observations:
        obs = Observations()
        asyncio.run(self._run(ctx, obs))
        return obs

    async def _run(self, ctx: Any, obs: Observations) -> None:
        import redis.asyncio as aioredis

        from pytest_cbchaos.stream.checker import Delivery, check_stream
        from pytest_cbchaos.stream.config import StreamConfig
        from pytest_cbchaos.stream.reader import LogReader
        from pytest_cbchaos.stream.relay import TurnRelay
        from pytest_cbchaos.stream.sources import ScriptedSource
        from pytest_cbchaos.stream.store import StreamStore

        server = ctx.state["server"]
        p = {**defaults(self.params), **ctx.scenario.workload.params}
        if p["consumers"] is None:
            p["consumers"] = ctx.scenario.topology.workers
        config = StreamConfig.ci()

        def client(proxy_name: str | None) -> Any:
            host, port = server.host, server.port
            if proxy_name:
                proxy = ctx.proxies[proxy_name]
                host, port = proxy.listen_host, proxy.listen_port
            return aioredis.Redis(host=host, port=port, password=server.password, socket_timeout=1.0,
                                  socket_connect_timeout=1.0)

        prod, cons, admin = client("redis-producer"), client("redis-consumer"), client(None)
        history: list[dict[str, Any]] = []
        relay = TurnRelay(StreamStore(prod, config), config, history=history)
        reader = LogReader(StreamStore(cons, config))
        conv = f"scn-{ctx.scenario.name}"[:100]
        deliveries: list[Any] = []
        outcomes: list[Any] = []
        started = time.monotonic()

        async def consume(name: str, mid: str, after: int) -> None:
            d = Delivery(cursor0=after, name=name, target=mid)
            deliveries.append(d)
            deadline = ctx.deadline - time.monotonic()
            try:
                async with asyncio.timeout(max(0.1, deadline)):
                    async for env in reader.follow(conv, message_id=mid, after_seq=after):
                        d.add(env, time.monotonic())
            except Exception as exc:  # transport trouble is observed, the checker judges the outcome
                obs.errors.append(f"{name}: {type(exc).__name__}: {exc}")

        try:
            for turn in range(int(p["turns"])):
                if ctx.stop.is_set() or time.monotonic() > ctx.deadline:
                    break
                events = [("text_delta", {"part_id": "p1", "text": f"t{turn}-{i} "}) for i in range(int(p["events"]))]
                t0 = time.monotonic_ns()
                try:
                    handle = await relay.start(conv, ScriptedSource(events, delay_s=float(p["delay_s"])), model_id="m")
                except Exception as exc:
                    obs.errors.append(f"start turn {turn}: {type(exc).__name__}: {exc}")
                    continue
                consumers = [asyncio.create_task(consume(f"c{turn}.{i}", handle.message_id, handle.after_seq))
                             for i in range(int(p["consumers"]))]
                try:
                    async with asyncio.timeout(max(0.1, ctx.deadline - time.monotonic())):
                        outcome = await handle.wait()
                except Exception as exc:
                    outcome = None
                    obs.errors.append(f"turn {turn}: {type(exc).__name__}: {exc}")
                t1 = time.monotonic_ns()
                outcomes.append(outcome)
                obs.add("latencies", {"t_ms": ctx.t_ms(t0), "worker": "producer", "ms": (t1 - t0) / 1e6,
                                      "ok": outcome is not None and outcome.status == "completed"})
                await asyncio.gather(*consumers, return_exceptions=True)
            entries = await LogReader(StreamStore(admin, config)).collect(conv)
            meta = await StreamStore(admin, config).meta(conv)
            report = check_stream(entries, floor_seq=int((meta or {}).get("floor_seq", 0) or 0),
                                  deliveries=deliveries, emissions=relay.emissions,
                                  live_bound_s=None, require_finished=True)
            obs.metrics.update(violations=list(report.violations), entries=report.entries,
                               turns=len(outcomes), ended=sum(1 for o in outcomes if o is not None),
                               elapsed_s=time.monotonic() - started)
            obs.history = history
        finally:
            await relay.aclose()
            for c in (prod, cons, admin):
                await c.aclose()

    def check(self, spec: Any, obs: Observations, ctx: Any) -> CheckResult:
        if spec.kind == "invariant" and spec.name.startswith("DS-"):
            if not obs.metrics.get("entries"):
                return CheckResult("violated", f"{spec.name}: the stream is empty (nothing was checked)",
                                   counterexample={"errors": obs.errors[:10]})
            rule = "INV-" + spec.name[3:] + " "
            bad = [v for v in obs.metrics.get("violations", []) if v.startswith(rule)]
            if bad:  # the transport errors the workload saw name the cause (a consumer that raised stops early)
                return CheckResult("violated", bad[0],
                                   counterexample={"violations": bad[:10], "errors": obs.errors[:10]})
            return CheckResult("ok", f"{CHECKED[int(spec.name[3:])]}: held over {obs.metrics.get('entries', 0)} entries")
        return super().check(spec, obs, ctx)

    def check_all_turns_end(self, obs: Observations, ctx: Any) -> CheckResult:
        if obs.metrics.get("turns", 0) and obs.metrics.get("ended") == obs.metrics.get("turns"):
            return CheckResult("ok", f"{obs.metrics['turns']} turns ended")
        return CheckResult("violated", f"{obs.metrics.get('ended', 0)}/{obs.metrics.get('turns', 0)} turns ended",
                           counterexample={"errors": obs.errors[:10]})
