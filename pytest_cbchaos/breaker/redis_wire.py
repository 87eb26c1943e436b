"""The Redis hot ops' wire (docs/breaker-design.md#redis-hot-ops): an EVALSHA packed once per backend but for its op
id's counter, written on a connection of the client's own pool and its reply read by the connection's own parser.

That is what ``Redis.execute_command`` does for it, without its per-call layers (argument encoding and packing,
the retry wrapper, response callbacks, timing hooks); connection handling and the error classes stay redis-py's:
the pool hands the connection out and takes it back, the connection connects, times out, disconnects on an I/O
error and maps error replies (``NOSCRIPT``, ``READONLY``, ...) to their exception classes. On a plain
``ConnectionPool`` of at least redis-py's default size (``HELD_MIN_POOL``) each thread keeps the connection it
took (:class:`HeldWire`), else one is taken and given back per op (:class:`PooledWire`).
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import Any, Callable

import redis

_MASK64 = 0xFFFFFFFFFFFFFFFF
HELD_MIN_POOL = 100  # redis-py's default max_connections: a smaller pool was bounded on purpose, take per op


def _bulk(arg: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(arg), arg)


class Packet:
    """One op's EVALSHA for one backend: ``pre`` (EVALSHA sha numkeys key), the settings ``head`` (None: read per
    op, on client time), the op id ``prefix`` + a 16-hex counter, then ``rest`` (the op's own byte arguments).
    ``args`` are the op's arguments as the general path takes them."""

    __slots__ = ("pre", "head", "prefix", "rest", "args", "_lead", "_fixed", "_id", "_tail")

    def __init__(self, pre: tuple[bytes, ...], head: bytes | None, prefix: str, rest: tuple[bytes, ...],
                 args: list[Any]) -> None:
        self.pre, self.head, self.prefix, self.rest, self.args = pre, head, prefix, rest, args
        pid = prefix.encode()
        self._lead = b"*%d\r\n" % (len(pre) + 2 + len(rest)) + b"".join(map(_bulk, pre))
        self._id = b"$%d\r\n%s" % (len(pid) + 16, pid)
        self._fixed = self._lead + (b"" if head is None else _bulk(head)) + self._id
        self._tail = b"\r\n" + b"".join(map(_bulk, rest))

    def bytes(self, n: int, head: bytes | None = None) -> bytes:
        """The packed command of op id counter ``n`` (with this op's settings ``head`` on client time)."""
        if head is None:
            return b"%s%016x%s" % (self._fixed, n & _MASK64, self._tail)
        return b"%s%s%s%016x%s" % (self._lead, _bulk(head), self._id, n & _MASK64, self._tail)

    def command(self, n: int, head: bytes | None = None) -> tuple[Any, ...]:
        """The same command as ``execute_command`` arguments."""
        return (*self.pre, self.head if head is None else head, b"%s%016x" % (self.prefix.encode(), n & _MASK64),
                *self.rest)


class PooledWire:
    """Sends each op on a connection taken from ``pool`` and given back after its reply (or its error: an I/O
    error has disconnected it, the pool reconnects it on its next use)."""

    def __init__(self, pool: Any) -> None:
        self.pool = pool

    def send(self, data: bytes) -> Any:
        pool = self.pool
        conn = pool.get_connection()
        try:
            conn.send_packed_command((data,))
            return conn.read_response()
        finally:
            pool.release(conn)


class Held:
    """A connection taken from ``pool`` for one thread; given back when the thread's local storage lets go of it
    (the thread ended, or its wire was dropped)."""

    __slots__ = ("pool", "conn")

    def __init__(self, pool: Any) -> None:
        self.pool, self.conn = pool, pool.get_connection()

    def __del__(self) -> None:
        try:
            self.pool.release(self.conn)
        except Exception:  # interpreter shutdown, a pool already gone
            pass


class HeldWire(PooledWire):
    """Sends on the calling thread's own connection of the pool: no checkout, no readiness poll per op. A
    connection the server closed fails its op, which the general path resends on a pooled connection; an I/O error
    disconnects it and its next op reconnects it. A forked child forgets its parent's connections."""

    def __init__(self, pool: Any) -> None:
        super().__init__(pool)
        self.local = threading.local()
        _HELD_WIRES.add(self)

    def send(self, data: bytes) -> Any:
        try:
            conn = self.local.held.conn
        except AttributeError:
            conn = self._take()
        conn.send_packed_command((data,))
        return conn.read_response()

    def _take(self) -> Any:
        held = self.local.held = Held(self.pool)
        return held.conn


_HELD_WIRES: "weakref.WeakSet[HeldWire]" = weakref.WeakSet()


def _forget_held() -> None:
    for w in list(_HELD_WIRES):
        w.local = threading.local()


os.register_at_fork(after_in_child=_forget_held)


def wire(client: Any) -> Callable[[bytes], Any] | None:
    """The sender for a plain ``redis.Redis`` whose ``execute_command`` of an EVALSHA is one pooled connection's
    write and read; None (send through ``execute_command``) for anything else: a subclass or wrapper (it may
    override it), a single-connection client, a client-side cache, a response callback for EVALSHA."""
    if type(client) is not redis.Redis or client.connection is not None or "execute_command" in vars(client):
        return None
    pool = client.connection_pool
    if getattr(pool, "cache", None) is not None or "EVALSHA" in client.response_callbacks:
        return None
    hold = type(pool) is redis.ConnectionPool and pool.max_connections >= HELD_MIN_POOL
    return (HeldWire if hold else PooledWire)(pool).send
