"""Helpers for the stream tests (unique module name: other test dirs have their own conftest)."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

from stream_netfault import FaultProxy

from pytest_cbchaos.waiting import run_bounded  # noqa: F401 - re-exported: the stream tests import it from here


def client_for(proc: Any, proxy: FaultProxy | None = None, **kw: Any) -> aioredis.Redis:
    host, port = (proxy.listen_host, proxy.listen_port) if proxy else (proc.host, proc.port)
    kw.setdefault("socket_timeout", 2.0)
    kw.setdefault("socket_connect_timeout", 1.0)
    return aioredis.Redis(host=host, port=port, password=proc.password, **kw)
