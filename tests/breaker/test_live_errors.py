"""docs/breaker-design.md#scripting-modes-and-error-classes / docs/breaker-design.md#error-classes against live
redis-servers: renamed scripting (WATCH fallback + a ``scripting_fallback`` event reaching the breaker's listeners,
docs/breaker-design.md#events-listeners-and-metrics), READONLY replica, NOPERM ACL user, BUSY server. Each check
returns its violations, so the same check is run against the REDIS_MUTANTS that must fail it."""

from __future__ import annotations

import asyncio
import threading
import uuid
from typing import Any, Iterator

import pytest
import redis
import redis.asyncio as aredis

from live_servers import extra_redis, spy_client, wait_until
from pytest_cbchaos.breaker import (AsyncCircuitBreaker, AsyncRedisStore, BreakerConfig, CircuitBreaker,
                                    CircuitBreakerOpenError, RedisStore, StoreConfigError, StoreUnavailableError)
from pytest_cbchaos.breaker.record import FIELDS, decode, encode
from pytest_cbchaos.breaker.redis_store import _SCRIPTS
from pytest_cbchaos.servers.redis import RedisServer
from pytest_cbchaos.testing.breaker_mutants import (FallbackOnAnyErrorRedisStore, FlatErrorsRedisStore,
                                                    SilentFallbackRedisStore)

pytestmark = pytest.mark.requires_real_redis
RENAMED = ["--rename-command", "EVAL", "", "--rename-command", "EVALSHA", "", "--rename-command", "SCRIPT", ""]


class Events:
    """A listener recording store events."""

    def __init__(self) -> None:
        self.store: list[Any] = []

    def on_store_event(self, ev: Any) -> None:
        self.store.append(ev)

    def kinds(self) -> list[str]:
        return [e.kind for e in self.store]


def _prefix() -> str:
    return f"le{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def renamed(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with extra_redis(pytestconfig, tmp_path_factory.mktemp("renamed"), RENAMED) as server:
        yield server


@pytest.fixture(scope="module")
def primary(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A dedicated server (busy-reply-threshold lowered) that also serves as the replica's primary."""
    with extra_redis(pytestconfig, tmp_path_factory.mktemp("primary"), ["--busy-reply-threshold", "200"]) as server:
        yield server


@pytest.fixture(scope="module")
def replica(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory,
            primary: RedisServer) -> Iterator[RedisServer]:
    args = ["--replicaof", primary.host, str(primary.port), "--masterauth", primary.password or ""]
    with extra_redis(pytestconfig, tmp_path_factory.mktemp("replica"), args) as server:
        with server.client() as c:
            wait_until(lambda: c.info("replication").get("master_link_status") == "up", 30, "replica link up")
        yield server


# ---- renamed EVAL/EVALSHA/SCRIPT ----------------------------------------------------------------------------

def renamed_scripting_violations(store_cls: type, server: RedisServer) -> list[str]:
    """A breaker on a store whose server has no scripting: WATCH fallback, correct record, one
    ``scripting_fallback`` event delivered to ``on_store_event``, every pipeline reset (CB-7)."""
    v: list[str] = []
    client = server.client()
    try:
        store = store_cls(client, key_prefix=_prefix())
        ev = Events()
        cb = CircuitBreaker("b", BreakerConfig(failure_threshold=2, cooldown_s=60), store=store, listeners=[ev])
        for _ in range(2):
            cb.acquire().failure("http_503")
        if cb.state.value != "open":
            v.append(f"two failures with threshold 2 left the circuit {cb.state.value}")
        if not store.using_fallback:
            v.append("the store did not switch to the WATCH fallback")
        if ev.kinds().count("scripting_fallback") != 1:
            v.append(f"listener got store events {ev.kinds()}, expected exactly one scripting_fallback")
        if store.stats["pipelines_created"] != store.stats["pipelines_reset"]:
            v.append(f"pipelines created {store.stats['pipelines_created']} != reset {store.stats['pipelines_reset']}")
        raw = client.hgetall(store.key("b"))
        rec, corrupt = decode(raw)
        canonical = {k.encode(): val.encode() for k, val in encode(rec).items()}
        if corrupt or {k: raw.get(k) for k in canonical} != canonical or set(FIELDS) - {k.decode() for k in raw}:
            v.append(f"fallback wrote a non-canonical record: {raw}")
        if client.ttl(store.key("b")) < 60:
            v.append("fallback wrote an OPEN record without its TTL")
    finally:
        client.close()
    return v


def test_renamed_scripting_falls_back_and_listeners_hear_it(renamed: RedisServer) -> None:
    with renamed.client() as c, pytest.raises(redis.ResponseError, match="unknown command"):
        c.execute_command("EVALSHA", "0" * 40, 0)  # the server really has no scripting
    assert renamed_scripting_violations(RedisStore, renamed) == []


def test_renamed_scripting_async_breaker_hears_it(renamed: RedisServer) -> None:
    async def main() -> list[str]:
        client = aredis.Redis(host=renamed.host, port=renamed.port, password=renamed.password, socket_timeout=5)
        try:
            store = AsyncRedisStore(client, key_prefix=_prefix())
            ev = Events()
            cb = AsyncCircuitBreaker("b", BreakerConfig(failure_threshold=1, cooldown_s=60), store=store,
                                     listeners=[ev])
            await (await cb.acquire()).failure("http_503")
            state = (await cb.get_state()).value
            return [state, *ev.kinds(), str(store.stats["pipelines_created"] == store.stats["pipelines_reset"])]
        finally:
            await client.aclose()
    assert asyncio.run(main()) == ["open", "scripting_fallback", "True"]


def test_renamed_scripting_required_is_config_error(renamed: RedisServer) -> None:
    with renamed.client() as c:
        store = RedisStore(c, key_prefix=_prefix(), scripting="required")
        with pytest.raises(StoreConfigError, match="scripting required"):
            store.atomic_record_failure("b", 1, 60)
        assert not store.using_fallback and store.stats["pipelines_created"] == 0


def test_renamed_scripting_mutant_is_caught(renamed: RedisServer) -> None:
    v = renamed_scripting_violations(SilentFallbackRedisStore, renamed)
    assert any("scripting_fallback" in x for x in v), v


# ---- READONLY / NOPERM / BUSY: one command, no fallback, the right class -----------------------------------

def error_class_violations(store_cls: type, client: redis.Redis, sent: list[str], expected: type) -> list[str]:
    """One ``atomic_record_failure``: raises ``expected``, never falls back, one EVALSHA on the wire (CB-23)."""
    v: list[str] = []
    store = store_cls(client, key_prefix=_prefix())
    sent.clear()
    try:
        store.atomic_record_failure("b", 1, 60)
        v.append("no error raised")
    except expected:
        pass
    except Exception as exc:  # recorded, not asserted: the caller asserts on the list
        v.append(f"raised {type(exc).__name__} ({exc}), expected {expected.__name__}")
    if store.using_fallback or store.stats["pipelines_created"]:
        v.append("switched to the WATCH fallback")
    if sent != ["EVALSHA"]:
        v.append(f"commands on the wire {sent}, expected one EVALSHA")
    return v


def test_readonly_replica_is_unavailable_without_fallback(replica: RedisServer, primary: RedisServer) -> None:
    with replica.client() as admin:
        admin.script_load(_SCRIPTS["record_failure"][0])
        admin.script_load(_SCRIPTS["gate"][0])
    client, sent = spy_client(replica)
    try:
        client.ping()
        assert error_class_violations(RedisStore, client, sent, StoreUnavailableError) == []
        for mutant in (FallbackOnAnyErrorRedisStore, FlatErrorsRedisStore):
            assert error_class_violations(mutant, client, sent, StoreUnavailableError), mutant.__name__
        # breaker level: a gate that must write (OPEN, cooldown over) on the replica applies on_store_error
        prefix = _prefix()
        with primary.client() as pc:
            RedisStore(pc, key_prefix=prefix).force_open("b", 0)
        with replica.client() as rc:
            wait_until(lambda: rc.exists(f"{prefix}:b"), 10, "the OPEN record replicated")
        store = RedisStore(client, key_prefix=prefix)
        assert CircuitBreaker("b", BreakerConfig(on_store_error="allow"), store=store).acquire().admitted
        with pytest.raises(CircuitBreakerOpenError):
            CircuitBreaker("b", BreakerConfig(on_store_error="deny"), store=store).acquire()
        with pytest.raises(StoreUnavailableError, match="read-only"):
            CircuitBreaker("b", BreakerConfig(on_store_error="raise"), store=store).acquire()
    finally:
        client.close()


def test_noperm_acl_user_is_config_error_without_fallback(primary: RedisServer) -> None:
    user, pw = f"cbu{uuid.uuid4().hex[:6]}", uuid.uuid4().hex
    with primary.client() as admin:
        admin.acl_setuser(user, enabled=True, passwords=[f"+{pw}"], keys=["*"], commands=["+@all", "-evalsha"])
    client, sent = spy_client(primary, username=user, password=pw)
    try:
        client.ping()
        assert error_class_violations(RedisStore, client, sent, StoreConfigError) == []
        for mutant in (FallbackOnAnyErrorRedisStore, FlatErrorsRedisStore):
            assert error_class_violations(mutant, client, sent, StoreConfigError), mutant.__name__
        with pytest.raises(StoreConfigError, match="ACL"):  # never fail-open, whatever on_store_error says
            CircuitBreaker("b", BreakerConfig(on_store_error="allow"), store=RedisStore(client)).acquire()
    finally:
        client.close()
        with primary.client() as admin:
            admin.acl_deluser(user)


BUSY_SCRIPT = ("local t0 = tonumber(redis.call('TIME')[1]) "
               "while tonumber(redis.call('TIME')[1]) < t0 + 20 do end return 1")


def test_busy_server_is_unavailable(primary: RedisServer) -> None:
    """An admin script runs past busy-reply-threshold (200 ms): ops fail fast with StoreUnavailableError."""
    with primary.client() as admin:
        admin.script_load(_SCRIPTS["record_failure"][0])
    client, sent = spy_client(primary)
    client.ping()
    runner = primary.client(socket_timeout=30)
    done: list[Any] = []
    t = threading.Thread(target=lambda: done.append(_swallow(lambda: runner.eval(BUSY_SCRIPT, 0))), daemon=True)
    t.start()

    def busy() -> bool:
        with primary.client(socket_timeout=5) as c:
            try:
                c.ping()
            except redis.ResponseError as exc:
                return str(exc).upper().startswith("BUSY")
        return False
    try:
        wait_until(busy, 15, "the server to answer BUSY")
        assert error_class_violations(RedisStore, client, sent, StoreUnavailableError) == []
        assert error_class_violations(FlatErrorsRedisStore, client, sent, StoreUnavailableError)
        assert error_class_violations(FallbackOnAnyErrorRedisStore, client, sent, StoreUnavailableError)
    finally:
        with primary.client(socket_timeout=5) as c:
            _swallow(c.script_kill)
        t.join(30)
        runner.close()
    assert not t.is_alive()
    assert RedisStore(client, key_prefix=_prefix()).atomic_record_failure("b", 1, 60)["state"] == "open"
    client.close()


def _swallow(fn: Any) -> Any:
    try:
        return fn()
    except redis.RedisError as exc:
        return exc
