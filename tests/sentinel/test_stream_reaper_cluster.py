"""The stream reaper's start-up scan on a real Redis Cluster (docs/stream.md#redis-cluster): in-progress
conversations missing from ``active`` are found on every primary (a ``RedisCluster`` client's ``SCAN`` runs on
each primary), not only on the node the client happens to talk to."""

from __future__ import annotations

import dataclasses
import secrets
from typing import Any

from stream_split import CFG
from tests.stream.inv_kit import run_bounded
from pytest_cbchaos.stream import StreamStore
from pytest_cbchaos.stream.reaper import Reaper


class OneNode:
    """A cluster client whose ``scan_iter`` covers one primary only (the mutant the test must catch)."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def scan_iter(self, **kw: Any) -> Any:
        return self._client.scan_iter(target_nodes=self._client.get_default_node(), **kw)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


async def _missing_found(topo: Any, one_node: bool) -> tuple[int, int]:
    """One in-progress conversation per shard, none in ``active``; returns (shards, conversations the scan added)."""
    client = topo.async_cluster_client(socket_timeout=2.0)
    store = StreamStore(client, dataclasses.replace(CFG, prefix=f"reap{secrets.token_hex(4)}:"))
    try:
        on: dict[str, str] = {}
        for i in range(200):
            conv = f"c{i}"
            on.setdefault(topo.owner(store.keys(conv)[0]).name, conv)
            if len(on) == topo.shards:
                break
        for conv in on.values():
            await store.open_turn(conv, "m1", "s1", payload=b"p", superseded_payload=b"x", ts_ms=0)
            await store.active_remove(conv)
        if one_node:
            store.redis = OneNode(client)
        added = await Reaper(store).scan_missing()
        return len(on), added
    finally:
        await client.aclose()


def test_the_reaper_finds_missing_conversations_on_every_primary(cbchaos_redis_cluster) -> None:
    shards, added = run_bounded(_missing_found(cbchaos_redis_cluster, one_node=False), 30)
    assert shards == cbchaos_redis_cluster.shards == added


def test_a_scan_of_one_primary_misses_the_others(cbchaos_redis_cluster) -> None:
    shards, added = run_bounded(_missing_found(cbchaos_redis_cluster, one_node=True), 30)
    assert added == 1 < shards
