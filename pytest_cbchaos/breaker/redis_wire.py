"""The Redis hot ops' wire (docs/breaker-design.md#redis-hot-ops): an EVALSHA packed once per backend but for its op
id's counter, written on a connection of the client's own pool and its reply read by the connection's own parser.

That is what ``Redis.execute_command`` does for it, without its per-call layers (argument encoding and packing,
the retry wrapper, response callbacks, timing hooks); connection handling and the error classes stay redis-py's:
the pool checks a connection out and in, the connection connects, times out, disconnects on an I/O error and
maps error replies (``NOSCRIPT``, ``READONLY``, ...) to their exception classes.
"""

from __future__ import annotations

from typing import Any

import redis

_MASK64 = 0xFFFFFFFFFFFFFFFF


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


def direct_pool(client: Any) -> Any:
    """The pool to send on for a plain ``redis.Redis`` whose ``execute_command`` of an EVALSHA is one pooled
    connection's write and read; None (send through ``execute_command``) for anything else: a subclass or wrapper
    (it may override it), a single-connection client, a client-side cache, a response callback for EVALSHA."""
    if type(client) is not redis.Redis or client.connection is not None or "execute_command" in vars(client):
        return None
    pool = client.connection_pool
    if getattr(pool, "cache", None) is not None or "EVALSHA" in client.response_callbacks:
        return None
    return pool


def send(pool: Any, data: bytes) -> Any:
    """Write ``data`` on a connection of ``pool`` and read its reply; the connection goes back to the pool
    whatever happens (an I/O error has disconnected it: the pool reconnects it on its next use)."""
    conn = pool.get_connection()
    try:
        conn.send_packed_command((data,))
        return conn.read_response()
    finally:
        pool.release(conn)
