"""Helpers for the stream tests: clients, and the faults of the kit's proxy the chaos tests use."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

from pytest_cbchaos.waiting import run_bounded  # noqa: F401 - re-exported: the stream tests import it from here


class ProxyFaults:
    """A kit proxy (``ToxiproxyServer.create_proxy``) with the stream tests' fault verbs.

    ``lose_next_reply`` arms a downstream ``reset_peer`` (the command is applied, its reply is lost, the
    connection reset) and removes it when the next command starts on a client made by :func:`client_for`,
    so exactly the armed command loses its reply, whatever the timing."""

    def __init__(self, proxy: Any) -> None:
        self.proxy = proxy
        self._armed: Any = None  # the reset_peer toxic, until the command after the losing one starts
        self._losing = False  # the armed command has started

    @property
    def listen_host(self) -> str:
        return self.proxy.listen_host

    @property
    def listen_port(self) -> int:
        return self.proxy.listen_port

    def reset_all(self) -> None:
        """Every open connection dies (disabling a proxy closes its links); new ones are accepted again."""
        self.proxy.disable()
        self.proxy.enable()

    def down(self) -> None:
        self.proxy.disable()

    def up(self) -> None:
        self.proxy.enable()

    def lose_next_reply(self) -> None:
        if self._armed is None:
            self._armed = self.proxy.add_toxic("reset_peer", stream="downstream", timeout=0)
        self._losing = False

    def before_command(self) -> None:
        """A command starts: the first one after arming loses its reply; the one after it heals first."""
        if self._armed is None:
            return
        if not self._losing:
            self._losing = True
            return
        self._armed, toxic, self._losing = None, self._armed, False
        self.proxy.remove_toxic(toxic.name)

    def close(self) -> None:
        self.proxy.close()


def client_for(proc: Any, proxy: ProxyFaults | None = None, **kw: Any) -> aioredis.Redis:
    host, port = (proxy.listen_host, proxy.listen_port) if proxy else (proc.host, proc.port)
    kw.setdefault("socket_timeout", 2.0)
    kw.setdefault("socket_connect_timeout", 1.0)
    client = aioredis.Redis(host=host, port=port, password=proc.password, **kw)
    if proxy is not None:
        execute = client.execute_command

        async def execute_command(*args: Any, **options: Any) -> Any:
            proxy.before_command()
            return await execute(*args, **options)

        client.execute_command = execute_command  # type: ignore[method-assign]
    return client
