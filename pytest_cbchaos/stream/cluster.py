"""The stream on a Redis Cluster (docs/stream.md#redis-cluster): what differs from one server.

A conversation's keys share one hash slot (``prefix{conv}:meta``, ``:log``, ...), so every script call and
every read of a conversation goes to one node, and a ``redis.asyncio.cluster.RedisCluster`` client routes
them as is. Only the blocking read needs its own connection: pinned to the node serving the log's slot, and
dropped (the loop reconnects through the cluster client, which follows the redirection) when that node
answers that it no longer serves the slot.
"""

from __future__ import annotations

from typing import Any

import redis.exceptions as rexc
from redis.asyncio.cluster import RedisCluster

# replies of a node that no longer serves the slot (a failover or a slot migration); UNBLOCKED: a blocked read
# released because the node turned replica
NOT_SERVING = ("MOVED", "ASK", "TRYAGAIN", "CLUSTERDOWN", "UNBLOCKED")


def is_cluster(client: Any) -> bool:
    return isinstance(client, RedisCluster)


def node_link(client: Any, key: str) -> dict[str, Any]:
    """Connection keywords for a dedicated connection to the server holding ``key``: the client's own
    server, or (cluster) the node its slot map names for ``key``'s slot."""
    if is_cluster(client):
        node = client.get_node_from_key(key)
        src = client.connection_kwargs
        kw = {k: src[k] for k in ("password", "username", "socket_connect_timeout") if src.get(k) is not None}
        return {"host": node.host, "port": node.port, **kw}
    src = client.connection_pool.connection_kwargs
    kw = {k: src[k] for k in ("host", "port", "path", "password", "username", "db", "socket_connect_timeout")
          if src.get(k) is not None}
    if "path" in kw:
        kw["unix_socket_path"] = kw.pop("path")
    return kw


def not_serving(exc: BaseException) -> bool:
    """True for a reply saying the node no longer serves the key's slot (reconnect, not an outage)."""
    return isinstance(exc, rexc.ResponseError) and str(exc).split(" ", 1)[0].upper() in NOT_SERVING
