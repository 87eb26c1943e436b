"""The Redis hot ops' wire (docs/breaker-design.md#redis-hot-ops), on a real redis-server: the pre-packed EVALSHA is
byte for byte redis-py's packing of the same command; each sender gives its connection back (per op, or when its
thread ends) and a forked child never writes on its parent's connection; a connection the server closed costs one
resend, not the decision; the breakers of one store share a thread's connection. Each weakened sender is caught.
"""

from __future__ import annotations

import gc
import os
import threading
from typing import Any

import pytest
import redis

from pytest_cbchaos.breaker import CircuitBreaker, RedisStore
from pytest_cbchaos.breaker import redis_wire
from pytest_cbchaos.breaker.redis_hot import RedisHotOps
from pytest_cbchaos.breaker.redis_wire import Held, HeldWire, Packet, PooledWire, wire
from pytest_cbchaos.servers.redis import no_retry

from test_redis_hot_ops import FaultConnection

pytestmark = pytest.mark.requires_real_redis

PRE = (b"EVALSHA", b"a" * 40, b"1", b"cbchaos:cb:b")
REST = (b"30.0", b"", b"1")


def _packed(*args: bytes) -> bytes:
    return b"".join(redis.Connection()._command_packer.pack(*args))


class Unmasked(Packet):
    """Writes the counter unmasked (op ids past 2^64 grow a digit: the general path's ids wrap)."""

    def bytes(self, n: int, head: bytes | None = None) -> bytes:
        if head is None:
            return b"%s%016x%s" % (self._fixed, n, self._tail)
        return b"%s%s%s%016x%s" % (self._lead, redis_wire._bulk(head), self._id, n, self._tail)


@pytest.mark.parametrize("cls,equal", [(Packet, True), (Unmasked, False)])
def test_packet_is_redis_py_packing_of_the_same_command(cls: type[Packet], equal: bool) -> None:
    same = []
    for head in (b"server 0 3600 3600", None):
        p = cls(PRE, head, "0123456789abcdef", REST, [])
        for n, now in ((1, b"client 1.5 3600 3600"), ((1 << 64) + 7, b"client 2.25 10 20")):
            args = (*PRE, head or now, b"0123456789abcdef%016x" % (n & (2 ** 64 - 1)), *REST)
            same.append(p.bytes(n, None if head else now) == _packed(*args))
            same.append(p.command(n, None if head else now) == args)
    assert all(same) is equal, same


def test_wire_per_client(cbchaos_redis_proc: Any) -> None:
    kw = {"host": cbchaos_redis_proc.host, "port": cbchaos_redis_proc.port, "password": cbchaos_redis_proc.password}
    plain = redis.Redis(**kw)
    bounded = redis.Redis(connection_pool=redis.ConnectionPool(max_connections=99, **kw))
    blocking = redis.Redis(connection_pool=redis.BlockingConnectionPool(**kw))
    single = redis.Redis(single_connection_client=True, **kw)
    sub = type("Sub", (redis.Redis,), {})(**kw)
    try:
        assert isinstance(wire(plain).__self__, HeldWire)  # type: ignore[union-attr]
        for per_op in (bounded, blocking):
            assert type(wire(per_op).__self__) is PooledWire  # type: ignore[union-attr]
        assert wire(single) is None and wire(sub) is None
    finally:
        for c in (plain, bounded, blocking, single, sub):
            c.close()


def _fault_pool(server: Any, **kw: Any) -> tuple[redis.ConnectionPool, type[FaultConnection]]:
    conn = type("Conn", (FaultConnection,), {"arm": []})
    pool = redis.ConnectionPool(connection_class=conn, host=server.host, port=server.port, password=server.password,
                                socket_timeout=5.0, retry=no_retry(), **kw)
    return pool, conn


class Unreturned(PooledWire):
    """Gives its connection back only after a reply (a failed op keeps it checked out)."""

    def send(self, data: bytes) -> Any:
        conn = self.pool.get_connection()
        conn.send_packed_command((data,))
        r = conn.read_response()
        self.pool.release(conn)
        return r


@pytest.mark.parametrize("cls,returned", [(PooledWire, True), (Unreturned, False)])
def test_pooled_wire_gives_a_failed_ops_connection_back(cbchaos_redis_proc: Any, cls: type[PooledWire],
                                                        returned: bool) -> None:
    pool, conn = _fault_pool(cbchaos_redis_proc, max_connections=1)
    conn.arm[:] = ["before"]
    with pytest.raises(redis.ConnectionError, match="injected"):
        cls(pool).send(_packed(b"EVALSHA", b"0" * 40, b"0"))
    try:
        c = pool.get_connection()
        pool.release(c)
        assert returned
    except redis.ConnectionError as exc:  # MaxConnectionsError: the one connection never came back
        assert not returned, exc
    finally:
        pool.disconnect()


class KeptHeld(Held):
    """Never gives its connection back."""

    def __del__(self) -> None:
        pass


class Kept(HeldWire):
    """Keeps a thread's connection checked out after the thread ended."""

    def _take(self) -> Any:
        held = self.local.held = KeptHeld(self.pool)
        return held.conn


@pytest.mark.parametrize("cls,returned", [(HeldWire, True), (Kept, False)])
def test_held_wire_gives_an_ended_threads_connection_back(cbchaos_redis_proc: Any, cls: type[HeldWire],
                                                          returned: bool) -> None:
    pool, _ = _fault_pool(cbchaos_redis_proc)
    w = cls(pool)
    out: list[Any] = []
    t = threading.Thread(target=lambda: out.append(w.send(_packed(b"PING"))))
    t.start()
    t.join(timeout=10)
    gc.collect()
    try:
        assert out == [b"PONG"] and (not pool._in_use_connections) is returned
    finally:
        pool.disconnect()


class ForkBlind(HeldWire):
    """Not told about forks: a child writes on the connection it inherited from its parent."""

    def __init__(self, pool: Any) -> None:
        super().__init__(pool)
        redis_wire._HELD_WIRES.discard(self)


@pytest.mark.parametrize("cls,own", [(HeldWire, True), (ForkBlind, False)])
def test_forked_child_takes_its_own_connection(cbchaos_redis_proc: Any, cls: type[HeldWire], own: bool) -> None:
    pool, _ = _fault_pool(cbchaos_redis_proc)
    w = cls(pool)
    assert w.send(_packed(b"PING")) == b"PONG"
    parent = w.local.held.conn
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        code = 3
        try:
            w.send(_packed(b"PING"))
            code = 0 if w.local.held.conn is not parent else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    try:
        assert (os.waitstatus_to_exitcode(status) == 0) is own
        assert w.send(_packed(b"PING")) == b"PONG"  # the parent's connection is intact
    finally:
        pool.disconnect()


class OwnWire(RedisHotOps):
    """Takes a sender of its own (each breaker's hot ops hold a connection per thread)."""

    def _wire(self) -> Any:
        return wire(self.store.client)


@pytest.mark.parametrize("cls,shared", [(RedisHotOps, True), (OwnWire, False)])
def test_breakers_on_one_store_share_a_threads_connection(cbchaos_redis_proc: Any, cls: type[RedisHotOps],
                                                         shared: bool) -> None:
    pool, _ = _fault_pool(cbchaos_redis_proc)
    store = RedisStore(redis.Redis(connection_pool=pool), key_prefix="wire-share")
    cbs = [CircuitBreaker(f"b{i}", store=store) for i in range(3)]
    try:
        for cb in cbs:
            cb._hot = cls(store)
            assert cb.call(lambda: 1) == 1
        assert (len(pool._in_use_connections) == 1) is shared
    finally:
        pool.disconnect()


def test_connection_closed_by_the_server_costs_one_resend(cbchaos_redis_proc: Any,
                                                         cbchaos_redis_admin: redis.Redis) -> None:
    pool, _ = _fault_pool(cbchaos_redis_proc)
    client = redis.Redis(connection_pool=pool)
    store = RedisStore(client, key_prefix="wire-kill")
    cb = CircuitBreaker("b", store=store)
    try:
        assert cb.call(lambda: 1) == 1
        name = f"wire-{os.getpid()}"
        conn = cb._hot._send.__self__.local.held.conn  # type: ignore[union-attr]
        conn.send_packed_command((_packed(b"CLIENT", b"SETNAME", name.encode()),))
        assert conn.read_response() == b"OK"
        ids = [c["id"] for c in cbchaos_redis_admin.client_list() if c.get("name") == name]
        assert len(ids) == 1 and cbchaos_redis_admin.client_kill_filter(_id=ids[0]) == 1
        before = store.stats["evalsha"]
        assert cb.call(lambda: 2) == 2 and store.stats["evalsha"] == before + 3  # gate resent once, success
    finally:
        client.delete("wire-kill:b")
        client.close()
