"""Target ``gateway``: the agent gateway (``pytest_cbchaos.gateway``): each turn's provider call runs
under the circuit breaker whose state is in Redis, and every event lands in the durable stream.

Built from the public API only: ``Gateway``, ``ProviderSource`` (gateway), ``AsyncCircuitBreaker``,
``AsyncRedisStore``, ``BreakerConfig`` (breaker), ``StreamStore``/``TurnRelay``/``LogReader``/
``check_stream`` (stream) and the mock provider (``servers/mockllm.py``). Links behind fault proxies:
``redis-producer`` (gateway -> Redis: stream appends and breaker state), ``redis-consumer`` (live
readers), ``provider`` (gateway -> model provider).

Workload (``workload.params``): ``turns`` (8) run back to back; turns ``fail_from`` (1) ..
``fail_from + fail_turns - 1`` (``fail_turns`` 2) get an HTTP ``fail_status`` (500) from the
provider; ``failure_threshold`` (= ``fail_turns``) failures open the breaker for ``cooldown_s`` (30 s). Every
later turn must end with a recorded ``error`` terminal whose cause is ``circuit_open``, quickly,
without calling the provider. ``consumers`` (1) live readers follow each turn. ``breaker_factory``
(``"pkg.mod:factory"``, called as ``factory(name, BreakerConfig, AsyncRedisStore)``) replaces the breaker.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from pytest_cbchaos.params import Param, defaults
from pytest_cbchaos.scenario.target import CheckResult, Observations, TargetUnavailable, import_object
from pytest_cbchaos.scenario.targets.stream import StreamTarget

REFUSAL_BOUND_S = 5.0  # a refused turn must end (with its terminal) this fast: an open circuit never hangs


class GatewayTarget(StreamTarget):
    name = "gateway"
    description = "agent gateway: provider calls under a Redis-backed circuit breaker, events in the durable stream"
    requires = (*StreamTarget.requires, "pytest_cbchaos.gateway", "pytest_cbchaos.breaker",
                "pytest_cbchaos.servers.mockllm")
    default_proxies = ("redis-producer", "redis-consumer", "provider")
    params = {
        "turns": Param(int, 8, "turns run back to back", minimum=1),
        "fail_from": Param(int, 1, "first turn whose provider call fails", minimum=0),
        "fail_turns": Param(int, 2, "turns that fail", minimum=0),
        "fail_status": Param(int, 500, "the failing HTTP status", minimum=100, maximum=599),
        "failure_threshold": Param(int, None, "failures that open the breaker (default: fail_turns)", minimum=1,
                           nullable=True),
        "cooldown_s": Param(float, 30.0, "cooldown: seconds the breaker stays open", minimum=0),
        "consumers": Param(int, 1, "live readers per turn", minimum=0),
        "chunks": Param(int, 3, "chunks of each model reply", minimum=1),
        "breaker_factory": Param(str, None, "'pkg.mod:factory' building your own breaker", nullable=True),
    }
    invariants = {**StreamTarget.invariants,
                  "failures-recorded": "every provider 5xx turn ends failed with a bootstrap.transport error",
                  "circuit-opens": "after failure_threshold provider failures, turns end with a 'circuit open' error terminal",
                  "provider-shielded": "while the circuit is open the provider receives no request",
                  "state-shared": "a second breaker instance on the same Redis sees the circuit open"}

    def processes(self, topology: Any) -> list[str]:
        return [*super().processes(topology)]

    def setup(self, ctx: Any) -> None:
        super().setup(ctx)
        from pytest_cbchaos.servers.mockllm import MockLLM

        mock = MockLLM().start()
        ctx.state["mock"] = mock
        try:
            ctx.proxies["provider"] = ctx.env.proxy("provider", f"{mock.host}:{mock.port}")
        except Exception:
            mock.stop()
            raise

    def teardown(self, ctx: Any) -> None:
        mock = ctx.state.pop("mock", None)
        if mock is not None:
            mock.release_all()
            mock.stop()
        super().teardown(ctx)

    def _params(self, ctx: Any) -> dict[str, Any]:
        p: dict[str, Any] = defaults(self.params)
        p.update(ctx.scenario.workload.params)
        if p["failure_threshold"] is None:
            p["failure_threshold"] = p["fail_turns"]
        return p

    def run(self, ctx: Any) -> Observations:
        obs = Observations()
        asyncio.run(self._gateway(ctx, obs))
        return obs

    async def _gateway(self, ctx: Any, obs: Observations) -> None:  # noqa: C901 - one linear workload
        import redis.asyncio as aioredis

        from pytest_cbchaos.breaker import AsyncCircuitBreaker, AsyncRedisStore, BreakerConfig
        from pytest_cbchaos.gateway import Gateway, ProviderSource
        from pytest_cbchaos.servers.mockllm import http_error, text
        from pytest_cbchaos.stream import LogReader, StreamConfig, StreamStore, TurnRelay, check_stream
        from pytest_cbchaos.stream.checker import Delivery

        p = self._params(ctx)
        server, mock = ctx.state["server"], ctx.state["mock"]
        prov = ctx.proxies["provider"]
        provider_url = f"http://{prov.listen_host}:{prov.listen_port}/v1"

        def client(proxy: str | None) -> Any:
            host, port = server.host, server.port
            if proxy:
                host, port = ctx.proxies[proxy].listen_host, ctx.proxies[proxy].listen_port
            return aioredis.Redis(host=host, port=port, password=server.password, socket_timeout=2.0,
                                  socket_connect_timeout=1.0)

        prod, cons, admin = client("redis-producer"), client("redis-consumer"), client(None)
        config = StreamConfig.ci()
        store = StreamStore(prod, config)
        relay = TurnRelay(store, config)
        breaker_name = f"provider-{ctx.scenario.name}"[:80]
        bcfg = BreakerConfig(failure_threshold=int(p["failure_threshold"]), cooldown_s=float(p["cooldown_s"]))
        if p.get("breaker_factory"):  # point the scenario at your own breaker: factory(name, config, store)
            make = import_object(p["breaker_factory"], ctx.scenario.path.parent, "workload.params.breaker_factory")
            breaker = make(breaker_name, bcfg, AsyncRedisStore(prod))
        else:
            breaker = AsyncCircuitBreaker(breaker_name, bcfg, store=AsyncRedisStore(prod))
        gateway = Gateway(relay, lambda c, m, model, prompt: ProviderSource(provider_url, mock.api_key, model, prompt),
                          provider_breaker=breaker)
        reader = LogReader(StreamStore(cons, config))
        mock.set_default([text("hello durable world", chunks=int(p["chunks"]))])
        conv = f"gw-{ctx.scenario.name}"[:100]
        deliveries: list[Any] = []
        turns: list[dict[str, Any]] = []

        async def consume(name: str, mid: str, after: int) -> None:
            d = Delivery(cursor0=after, name=name, target=mid)
            deliveries.append(d)
            try:
                async with asyncio.timeout(max(0.1, ctx.deadline - time.monotonic())):
                    async for env in reader.follow(conv, message_id=mid, after_seq=after):
                        d.add(env, time.monotonic())
            except Exception as exc:
                obs.errors.append(f"{name}: {type(exc).__name__}: {exc}")

        fail_range = range(int(p["fail_from"]), int(p["fail_from"]) + int(p["fail_turns"]))
        try:
            for n in range(int(p["turns"])):
                if time.monotonic() > ctx.deadline or (ctx.stop.is_set() and n > fail_range.stop):
                    break
                failing = n in fail_range
                if failing:
                    mock.script(lambda body: True, [http_error(int(p["fail_status"]), body="upstream exploded")])
                before = len(mock.requests)
                mid = f"m{n}"
                t0 = time.monotonic_ns()
                try:
                    handle = await gateway.submit(conv, f"turn {n}", model_id="mock-model", message_id=mid)
                except Exception as exc:
                    obs.errors.append(f"submit turn {n}: {type(exc).__name__}: {exc}")
                    turns.append({"n": n, "failing": failing, "status": "submit-error", "error": str(exc)})
                    continue
                readers = [asyncio.create_task(consume(f"c{n}.{i}", mid, handle.after_seq))
                           for i in range(int(p["consumers"]))]
                status = "timeout"
                try:
                    async with asyncio.timeout(max(0.1, ctx.deadline - time.monotonic())):
                        status = (await handle.wait()).status
                except Exception as exc:
                    obs.errors.append(f"turn {n}: {type(exc).__name__}: {exc}")
                t1 = time.monotonic_ns()
                await asyncio.gather(*readers, return_exceptions=True)
                rec = await StreamStore(admin, config).record(conv, mid) or {}
                envs = await LogReader(StreamStore(admin, config)).collect(conv, message_id=mid,
                                                                           after_seq=handle.after_seq)
                last = envs[-1] if envs else None
                turns.append({"n": n, "failing": failing, "status": status, "seconds": (t1 - t0) / 1e9,
                              "provider_calls": len(mock.requests) - before,
                              "error_code": rec.get("error_code"), "error_message": str(rec.get("error_message", ""))[:200],
                              "terminal": getattr(last, "kind", None),
                              "cause": (getattr(last, "payload", None) or {}).get("cause")})
                obs.add("latencies", {"t_ms": ctx.t_ms(t0), "worker": "gateway", "ms": (t1 - t0) / 1e6,
                                      "ok": status == "completed"})
                state = await breaker.get_state()
                obs.add("transitions", {"t_ms": ctx.t_ms(t1), "worker": "breaker", "from": "",
                                        "to": str(getattr(state, "value", state)).lower()})
            other = AsyncCircuitBreaker(breaker_name, bcfg, store=AsyncRedisStore(admin))
            shared = await other.get_state()
            entries = await LogReader(StreamStore(admin, config)).collect(conv)
            meta = await StreamStore(admin, config).meta(conv)
            report = check_stream(entries, floor_seq=int((meta or {}).get("floor_seq", 0) or 0),
                                  records=await StreamStore(admin, config).records(conv),
                                  deliveries=deliveries, emissions=relay.emissions, live_bound_s=None,
                                  require_finished=True)
            obs.metrics.update(violations=list(report.violations), entries=report.entries, turns=len(turns),
                               ended=sum(1 for t in turns if t["status"] in ("completed", "failed")),
                               turn_log=turns, params=p, shared_state=str(getattr(shared, "value", shared)).lower())
        finally:
            await relay.aclose()
            for c in (prod, cons, admin):
                await c.aclose()
        refused = [t for t in turns if t["cause"] == "circuit_open"]
        if refused:
            failed_at = [t for t in turns if t["failing"]]
            obs.recoveries["circuit-open-refusal"] = refused[0]["seconds"]
            obs.metrics["first_refused_turn"] = refused[0]["n"]
            obs.metrics["last_failing_turn"] = failed_at[-1]["n"] if failed_at else None

    # -- invariants -------------------------------------------------------------------------
    def _turns(self, obs: Observations) -> list[dict[str, Any]]:
        return list(obs.metrics.get("turn_log") or [])

    def check_failures_recorded(self, obs: Observations, ctx: Any) -> CheckResult:
        failing = [t for t in self._turns(obs) if t["failing"]]
        if not failing:
            return CheckResult("violated", "no turn hit the provider failure phase")
        bad = [t for t in failing if t["status"] != "failed" or t["error_code"] != "bootstrap.transport"]
        if bad:
            return CheckResult("violated", f"{len(bad)} provider-5xx turns not recorded as bootstrap.transport failures",
                               counterexample={"turns": bad[:5]})
        return CheckResult("ok", f"{len(failing)} provider-5xx turns failed with bootstrap.transport")

    def _after_failures(self, obs: Observations) -> list[dict[str, Any]]:
        turns = self._turns(obs)
        failing = [t["n"] for t in turns if t["failing"]]
        return [t for t in turns if failing and t["n"] > max(failing)]

    def check_circuit_opens(self, obs: Observations, ctx: Any) -> CheckResult:
        after = self._after_failures(obs)
        if not after:
            return CheckResult("violated", "no turn ran after the provider failures")
        bad = [t for t in after if t["status"] != "failed" or t["terminal"] != "error" or t["cause"] != "circuit_open"
               or "circuit open" not in t["error_message"] or t["seconds"] > REFUSAL_BOUND_S]
        if bad:
            return CheckResult("violated", f"{len(bad)} of {len(after)} turns after {len(after) and 'the failures'} "
                               "did not end with a prompt 'circuit open' error terminal",
                               counterexample={"turns": bad[:5]})
        return CheckResult("ok", f"{len(after)} turns refused with a 'circuit open' terminal "
                           f"(max {max(t['seconds'] for t in after):.3f} s)")

    def check_provider_shielded(self, obs: Observations, ctx: Any) -> CheckResult:
        after = self._after_failures(obs)
        called = [t for t in after if t["provider_calls"]]
        if not after:
            return CheckResult("violated", "no turn ran after the provider failures")
        if called:
            return CheckResult("violated", f"the provider was called {sum(t['provider_calls'] for t in called)} "
                               "times while the circuit was open", counterexample={"turns": called[:5]})
        return CheckResult("ok", f"no provider request during {len(after)} refused turns")

    def check_state_shared(self, obs: Observations, ctx: Any) -> CheckResult:
        state = obs.metrics.get("shared_state", "")
        if "open" not in state or "half" in state:
            return CheckResult("violated", f"a second breaker instance sees {state!r}, expected open")
        return CheckResult("ok", f"a second breaker instance on the same Redis sees {state!r}")


__all__ = ["GatewayTarget", "TargetUnavailable"]
