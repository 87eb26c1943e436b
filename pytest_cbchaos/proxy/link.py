"""One proxied client connection: two links (``upstream`` client->server, ``downstream``
server->client), each ``reader -> toxic stages -> writer``.

Fast path: a link without toxics writes each received chunk straight to the destination
transport from ``data_received`` (no task, no queue). Adding a toxic to a live link makes the
reader feed the first stage's queue instead; removing the last one switches back after the
stages' buffered data has been flushed onward, so byte order is always kept.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from typing import TYPE_CHECKING, Any, Callable

from pytest_cbchaos.proxy.toxics.base import Chunk, ChunkQueue, passthrough

if TYPE_CHECKING:
    from pytest_cbchaos.proxy.server import ProxyRuntime, ToxicSpec

HIGH_WATER = 256  # chunks queued at the head stage before the source is paused
LOW_WATER = 32


def set_linger_zero(transport: asyncio.BaseTransport) -> None:
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass


def set_nodelay(transport: asyncio.BaseTransport) -> None:
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass


class Stage:
    """One toxic running on one link; the ``stub`` handed to ``Toxic.pipe``."""

    def __init__(self, link: "Link", spec: "ToxicSpec") -> None:
        self.link = link
        self.spec = spec
        self.queue = ChunkQueue()
        self.next: Stage | None = None
        self.task: asyncio.Task[None] | None = None
        self.removing = False
        self.applies = False
        self.toxic: Any = None

    @property
    def rng(self):
        return self.link.rng

    @property
    def state(self) -> dict[str, Any]:
        return self.link.states.setdefault(self.spec.name, {})

    def start(self) -> None:
        """(Re)start the toxic on this link, rolling toxicity (per link, never per chunk)."""
        self.toxic = self.spec.make()
        tox = float(self.spec.toxicity)
        self.applies = tox > 0 and self.rng.random() < tox
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        try:
            if self.applies:
                await self.toxic.pipe(self)
            else:
                await passthrough(self)
        except asyncio.CancelledError:
            pass

    async def interrupt(self) -> None:
        task = self.task
        if task is not None and not task.done():
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass

    # -- stub API used by toxics ------------------------------------------------------------
    async def get(self) -> Chunk | None:
        item = await self.queue.get()
        if self.link.stages and self.link.stages[0] is self:
            self.link.maybe_resume(len(self.queue))
        return item

    def unget(self, item: Chunk | None) -> None:
        self.queue.unget(item)

    def emit(self, chunk: Chunk) -> None:
        if self.next is not None:
            self.next.queue.put(chunk)
        else:
            self.link.write(chunk.data)

    def close(self) -> None:
        """End of stream onward (Go's ``stub.Close()``)."""
        if self.next is not None:
            self.next.queue.put(None)
        else:
            self.link.close_dest()

    def close_link(self) -> None:
        self.link.close_dest()


class Link:
    """One direction of one connection."""

    def __init__(self, conn: "Connection", direction: str, source: asyncio.Transport,
                 dest: asyncio.Transport, rng: Any) -> None:
        self.conn = conn
        self.direction = direction
        self.source = source
        self.dest = dest
        self.rng = rng
        self.stages: list[Stage] = []
        self.states: dict[str, dict[str, Any]] = {}
        self.closed = False
        self.eof = False
        self.received = 0
        self.sent = 0
        self._pause_reasons: set[str] = set()
        self.tap: Callable[[bytes], bytes] | None = None  # response filter (cbchaos_http_fault)

    def start(self, specs: list["ToxicSpec"]) -> None:
        if any(spec.cls.SETS_LINGER for spec in specs):
            # both sockets, as Toxiproxy's link does: the closed one (dest) is what sends the RST
            set_linger_zero(self.source)
            set_linger_zero(self.dest)
        for spec in specs:
            self.add(spec)

    # -- data ---------------------------------------------------------------------------------
    def feed(self, data: bytes) -> None:
        self.received += len(data)
        if self.closed:
            return
        if self.stages:
            head = self.stages[0].queue
            head.put(Chunk(data))
            if len(head) > HIGH_WATER:
                self.pause("queue")
        else:
            if self.tap is not None:
                data = self.tap(data)
            self.dest.write(data)
            self.sent += len(data)

    def feed_eof(self) -> None:
        if self.eof:
            return
        self.eof = True
        if self.closed:
            return
        if self.stages:
            self.stages[0].queue.put(None)
        else:
            self.close_dest()

    def write(self, data: bytes) -> None:
        if not self.closed and data:
            if self.tap is not None:
                data = self.tap(data)
            self.dest.write(data)
            self.sent += len(data)

    def close_dest(self) -> None:
        """The writer's end: fully close the destination socket (half-close is not preserved)."""
        if self.closed:
            return
        self.closed = True
        self.dest.close()
        for stage in self.stages:
            if stage.task is not None and stage.task is not asyncio.current_task():
                stage.task.cancel()
        self.conn.link_closed(self)

    # -- flow control ------------------------------------------------------------------------
    def pause(self, reason: str) -> None:
        if not self._pause_reasons:
            try:
                self.source.pause_reading()
            except (RuntimeError, AttributeError):
                pass
        self._pause_reasons.add(reason)

    def resume(self, reason: str) -> None:
        if reason in self._pause_reasons:
            self._pause_reasons.discard(reason)
            if not self._pause_reasons:
                try:
                    self.source.resume_reading()
                except (RuntimeError, AttributeError):
                    pass

    def maybe_resume(self, queued: int) -> None:
        if "queue" in self._pause_reasons and queued < LOW_WATER:
            self.resume("queue")

    # -- toxic chain changes -----------------------------------------------------------------
    def find(self, name: str) -> Stage | None:
        for stage in self.stages:
            if stage.spec.name == name:
                return stage
        return None

    def add(self, spec: "ToxicSpec") -> None:
        if self.closed:
            return
        stage = Stage(self, spec)
        prev = self.stages[-1] if self.stages else None
        self.stages.append(stage)
        stage.start()
        if prev is not None:
            prev.next = stage

    async def update(self, spec: "ToxicSpec") -> None:
        stage = self.find(spec.name)
        if stage is None or self.closed:
            return
        await stage.interrupt()
        stage.spec = spec
        stage.start()

    async def remove(self, name: str) -> None:
        stage = self.find(name)
        if stage is None:
            return
        stage.removing = True
        await stage.interrupt()
        await stage.toxic.on_remove(stage)
        if stage not in self.stages:
            return
        idx = self.stages.index(stage)
        prev = self.stages[idx - 1] if idx > 0 else None
        leftover = stage.queue.drain()
        self.stages.remove(stage)
        if prev is not None:
            prev.next = stage.next
        for item in leftover:
            if item is None:
                stage.close()
            else:
                stage.emit(item)
        self.states.pop(name, None)
        if not self.stages:
            self.resume("queue")

    def stop(self) -> None:
        for stage in self.stages:
            if stage.task is not None:
                stage.task.cancel()


class _Side(asyncio.Protocol):
    def __init__(self, on_made: Callable[["_Side"], None] | None = None) -> None:
        self.conn: Connection | None = None
        self.name = "client"
        self.transport: asyncio.Transport | None = None
        self._on_made = on_made

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if self._on_made is not None:
            self._on_made(self)

    def data_received(self, data: bytes) -> None:
        if self.conn is not None:
            self.conn.on_data(self.name, data)

    def eof_received(self) -> bool:
        if self.conn is not None:
            self.conn.on_eof(self.name)
        return True

    def connection_lost(self, exc: BaseException | None) -> None:
        if self.conn is not None:
            self.conn.on_lost(self.name)

    def pause_writing(self) -> None:
        if self.conn is not None:
            self.conn.on_dest_pause(self.name, True)

    def resume_writing(self) -> None:
        if self.conn is not None:
            self.conn.on_dest_pause(self.name, False)


class Connection:
    """A client connection accepted by a proxy, and its upstream connection."""

    def __init__(self, proxy: "ProxyRuntime", client: _Side) -> None:
        self.proxy = proxy
        self.client = client
        client.conn = self
        self.upstream: _Side | None = None
        self.up_link: Link | None = None
        self.down_link: Link | None = None
        self._pending: list[bytes | None] = []
        self._lost: set[str] = set()
        self.closed = False
        assert client.transport is not None
        set_nodelay(client.transport)
        client.transport.pause_reading()
        proxy.conns.add(self)
        self._dial_task = asyncio.get_running_loop().create_task(self._dial())

    async def _dial(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            host, port = split_host_port(self.proxy.upstream)
            side = _Side()
            side.name = "upstream"
            transport, _ = await loop.create_connection(lambda: side, host, int(port))
        except (OSError, ValueError):
            self.proxy.log(f"unable to open connection to upstream {self.proxy.upstream}")
            self.close()
            return
        if self.closed:
            transport.close()
            return
        side.conn = self
        self.upstream = side
        set_nodelay(transport)
        client_t = self.client.transport
        assert client_t is not None
        rng = self.proxy.rng
        self.up_link = Link(self, "upstream", client_t, transport, rng)
        self.down_link = Link(self, "downstream", transport, client_t, rng)
        self.up_link.start(list(self.proxy.toxics["upstream"]))
        self.down_link.start(list(self.proxy.toxics["downstream"]))
        for item in self._pending:
            if item is None:
                self.up_link.feed_eof()
            else:
                self.up_link.feed(item)
        self._pending.clear()
        if "client" in self._lost:
            self.up_link.feed_eof()
        else:
            client_t.resume_reading()

    def links(self) -> list[Link]:
        return [link for link in (self.up_link, self.down_link) if link is not None]

    def link(self, direction: str) -> Link | None:
        return self.up_link if direction == "upstream" else self.down_link

    # -- protocol callbacks ------------------------------------------------------------------
    def on_data(self, side: str, data: bytes) -> None:
        link = self.up_link if side == "client" else self.down_link
        if link is None:
            self._pending.append(data)
        else:
            link.feed(data)

    def on_eof(self, side: str) -> None:
        link = self.up_link if side == "client" else self.down_link
        if link is None:
            self._pending.append(None)
        else:
            link.feed_eof()

    def on_lost(self, side: str) -> None:
        self._lost.add(side)
        self.on_eof(side)
        if len(self._lost) == 2 or (side == "client" and self.upstream is None and self.closed):
            self._finish()

    def on_dest_pause(self, side: str, paused: bool) -> None:
        # the transport of ``side`` is the destination of the link reading from the other side
        link = self.down_link if side == "client" else self.up_link
        if link is not None:
            (link.pause if paused else link.resume)("dest")

    def link_closed(self, link: Link) -> None:
        self.proxy.count_bytes(link)

    # -- lifecycle -----------------------------------------------------------------------------
    def close(self) -> None:
        """Drop the connection: close both sockets (proxy disabled/deleted, dial failed)."""
        if self.closed:
            return
        self.closed = True
        for link in self.links():
            link.stop()
            link.closed = True
        if self.client.transport is not None:
            self.client.transport.close()
        if self.upstream is not None and self.upstream.transport is not None:
            self.upstream.transport.close()
        if not self._dial_task.done():
            self._dial_task.cancel()
        self._finish()

    def _finish(self) -> None:
        for link in self.links():
            link.stop()
        self.proxy.conns.discard(self)


def split_host_port(address: str) -> tuple[str, str]:
    """Go's ``net.SplitHostPort`` (enough of it): ``host:port``, ``[v6]:port``."""
    if address.startswith("["):
        end = address.find("]")
        if end < 0 or not address[end + 1:].startswith(":"):
            raise ValueError(f"address {address}: missing port in address")
        return address[1:end], address[end + 2:]
    if ":" not in address:
        raise ValueError(f"address {address}: missing port in address")
    host, port = address.rsplit(":", 1)
    if ":" in host:
        raise ValueError(f"address {address}: too many colons in address")
    return host, port
