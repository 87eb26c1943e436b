"""Gateway on real opencode through the recovery runner: opencode killed mid-turn (the runner restarts
it; recovery then complete), session creation failing on a dead server (bootstrap error), every
event in the durable stream."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from pytest_cbchaos.breaker import AsyncCircuitBreaker, AsyncRedisStore, BreakerConfig
from pytest_cbchaos.gateway import Gateway
from pytest_cbchaos.gateway.opencode_source import OpencodeSource
from pytest_cbchaos.recovery import RecoveryConfig
from pytest_cbchaos.stream import LogReader, StreamConfig, StreamStore, TurnRelay, check_stream, fold

pytestmark = [pytest.mark.slow, pytest.mark.opencode, pytest.mark.timeout(240)]


def _opencode_available() -> bool:
    try:
        from pytest_cbchaos.servers.opencode import find_opencode
        find_opencode()
        return True
    except Exception:
        return False


@pytest.mark.skipif(not _opencode_available(), reason="opencode not installed: run the README setup command")
def test_gateway_real_opencode_bootstrap_error_and_kill_mid_turn(tmp_path: Path, cbchaos_redis_proc):
    from pytest_cbchaos.servers.mockllm import MockLLM, stall_forever, text
    from pytest_cbchaos.servers.opencode import OpencodeServer

    mock = MockLLM().start()
    server = OpencodeServer(root=tmp_path / "oc", provider_url=mock.base_url, provider_key=mock.api_key)
    server.start()

    import time as _t
    T0 = _t.monotonic()

    def mark(what):
        print(f"[{_t.monotonic() - T0:6.1f}s] {what}")

    async def main():
        client = aioredis.Redis(host=cbchaos_redis_proc.host, port=cbchaos_redis_proc.port,
                                password=cbchaos_redis_proc.password, socket_timeout=2.0)
        cfg = StreamConfig.ci(bootstrap_timeout_s=30.0, lease_ttl_s=30.0, lease_renew_s=1.0)
        store = StreamStore(client, cfg)
        relay = TurnRelay(store, cfg)
        bcfg = BreakerConfig(failure_threshold=3, cooldown_s=30)
        provider = AsyncCircuitBreaker("provider", bcfg, store=AsyncRedisStore(client))
        opencode = AsyncCircuitBreaker("opencode", bcfg, store=AsyncRedisStore(client))
        rcfg = {"value": RecoveryConfig.for_tests(stall_timeout=30, start_timeout=30)}
        gw = Gateway(relay, lambda c, m, model, prompt: OpencodeSource(server, prompt, config=rcfg["value"]),
                     provider_breaker=provider, opencode_breaker=opencode)
        reader = LogReader(store)
        # 1. a warm turn: events relayed, complete
        mock.script("main", [text("first answer", chunks=2)])
        h = await gw.submit("oc1", "warm turn", model_id="mock", message_id="t1")
        out = await asyncio.wait_for(h.wait(), 90)
        view = fold(await reader.collect("oc1", message_id="t1", after_seq=0))
        assert out.status == "completed" and "first answer" in view.text, (out, view)
        mark('warm done')
        # 2. opencode killed mid-turn: the runner restarts it and retries; one terminal, recovery recorded
        rcfg["value"] = RecoveryConfig.for_tests(stall_timeout=15, probe_timeout=0.5, max_recoveries=1, start_timeout=30)
        mock.script("main", [text("dying", chunks=1), stall_forever()])
        mock.script("main", [text("second life", chunks=2)])
        n_main = len([r for r in mock.requests if r.kind == "main"])
        h = await gw.submit("oc1", "kill turn", model_id="mock", message_id="t3")
        live = asyncio.create_task(reader.collect("oc1", message_id="t3", after_seq=h.after_seq))
        await asyncio.to_thread(mock.wait_for, "main", count=n_main + 1, timeout=60)
        await asyncio.sleep(0.2)
        server.kill()
        mark('killed mid-turn')
        out = await asyncio.wait_for(h.wait(), 150)
        mark(f't3 done {out.status} {out.stop_reason}')
        envs = await asyncio.wait_for(live, 10)
        assert envs[-1].is_terminal and sum(e.is_terminal for e in envs) == 1
        kinds = [e.kind for e in envs]
        mark(f'kinds {kinds}')
        assert out.status == "completed" and "recovery" in kinds, (out, kinds)
        rec_ev = next(e for e in envs if e.kind == "recovery")
        assert rec_ev.payload == {"attempt": 2, "cause": "server_unreachable"}
        view = fold(envs)
        assert view.attempts == 2 and "second life" in view.text, view
        assert fold(await reader.collect("oc1", message_id="t3", after_seq=0)) == view  # live == replay
        # 3. session creation failing: opencode is dead (last: no restart needed) -> bootstrap.session error, recorded, visible on replay
        server.kill()
        h = await gw.submit("oc1", "dead server", model_id="mock", message_id="t2")
        out = await asyncio.wait_for(h.wait(), 60)
        rec = await store.record("oc1", "t2")
        assert out.status == "failed" and rec["error_code"] == "bootstrap.session", (out, rec)
        mark('t2 failed')
        rep = check_stream(await store.read_all("oc1"), records=await store.records("oc1"), emissions=relay.emissions)
        assert rep.ok, rep
        await relay.aclose()
        await client.aclose()

    try:
        asyncio.run(main())
    finally:
        mock.release_all()
        server.stop()
        mock.stop()
