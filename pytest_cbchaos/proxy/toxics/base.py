"""Toxic plumbing shared by every toxic: chunks, the per-stage queue, the stub API, the registry.

A link (one direction of one connection) is ``reader -> stage1 -> stage2 -> ... -> writer``.
Each stage runs one toxic as an asyncio task reading :class:`Chunk` items (``None`` = EOF) from
its queue and emitting to the next stage (or the writer). An *interrupt* (toxic updated or
removed, link stopped) is a task cancellation: toxics catch it where they hold a chunk in flight
and forward that chunk first, so no data is dropped on the floor (Toxiproxy's rule).
"""

from __future__ import annotations

import asyncio
import collections
import random
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from pytest_cbchaos.proxy.link import Stage


@dataclass
class Chunk:
    data: bytes
    ts: float = field(default_factory=time.monotonic)  # read time, advanced by latency


class ChunkQueue:
    """Unbounded FIFO with ``unget`` (push back to the front) for one stage's input."""

    def __init__(self) -> None:
        self._items: collections.deque[Chunk | None] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: Chunk | None) -> None:
        self._items.append(item)
        self._wake()

    def unget(self, item: Chunk | None) -> None:
        self._items.appendleft(item)
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def drain(self) -> list[Chunk | None]:
        items = list(self._items)
        self._items.clear()
        return items

    async def get(self) -> Chunk | None:
        while not self._items:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._items.popleft()


class Toxic:
    """Base class: subclasses set ``TYPE``, ``ATTRS`` (name -> Go kind, in output order) and ``pipe``."""

    TYPE: ClassVar[str] = ""
    ATTRS: ClassVar[dict[str, str]] = {}
    #: the Go struct Toxiproxy decodes the attributes into (its 400 messages name it); default:
    #: the class name
    GO_STRUCT: ClassVar[str] = ""
    EXTENSION: ClassVar[bool] = False  # cbchaos-only type (not in real Toxiproxy)
    SETS_LINGER: ClassVar[bool] = False  # reset_peer: linger 0 on both sockets of the link

    @classmethod
    def go_struct(cls) -> str:
        return cls.GO_STRUCT or cls.__name__

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {name: ("" if kind == "string" else {} if kind == "object" else 0) for name, kind in cls.ATTRS.items()}

    @classmethod
    def validate(cls, attributes: dict[str, Any]) -> str | None:
        """Extra validation beyond Go types; returns an error message or None."""
        return None

    async def pipe(self, stub: "Stage") -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    async def on_remove(self, stub: "Stage") -> None:
        """Hook when the toxic is removed from a live link (after its task was interrupted)."""


async def passthrough(stub: "Stage") -> None:
    """Forward everything unchanged (noop, and any toxic whose toxicity roll said no)."""
    while True:
        chunk = await stub.get()
        if chunk is None:
            stub.close()
            return
        stub.emit(chunk)


def non_negative(attributes: dict[str, Any], *names: str) -> str | None:
    for name in names:
        value = attributes.get(name, 0)
        if isinstance(value, int) and value < 0:
            return f"{name} must be >= 0, got {value}"
    return None


REGISTRY: dict[str, type[Toxic]] = {}


def register(cls: type[Toxic]) -> type[Toxic]:
    REGISTRY[cls.TYPE] = cls
    return cls


def new_rng(seed: int | None) -> random.Random:
    return random.Random(seed)
