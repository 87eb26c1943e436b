"""``RecoveryRunner``: the sync facade owning one event-loop thread, joined on ``close()``."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from pytest_cbchaos.recovery.config import RecoveryConfig
from pytest_cbchaos.recovery.status import TurnResult
from pytest_cbchaos.recovery.supervisor import AsyncRecoveryRunner


class RecoveryRunner:
    """Blocking ``run_turn``; implements the ``TurnRunner`` protocol of ``stateful/``."""

    async_class: type[AsyncRecoveryRunner] = AsyncRecoveryRunner

    def __init__(self, server: Any, config: RecoveryConfig | None = None, **kwargs: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="cbchaos-recovery", daemon=True)
        self._thread.start()
        self.core = self.async_class(server, config, **kwargs)
        self._closed = False

    @property
    def config(self) -> RecoveryConfig:
        return self.core.config

    @property
    def history(self) -> list[dict[str, Any]]:
        return self.core.history

    def mark_fault(self, at: float | None = None) -> None:
        self.core.mark_fault(at)

    def run_turn(self, prompt: str, *, session_id: str | None = None) -> TurnResult:
        if self._closed:
            raise RuntimeError("RecoveryRunner is closed")
        fut = asyncio.run_coroutine_threadsafe(self.core.run_turn(prompt, session_id=session_id), self._loop)
        try:
            return fut.result()
        except KeyboardInterrupt:
            self._loop.call_soon_threadsafe(self.core.interrupt)
            return fut.result(timeout=self.config.consumer_stop_timeout + 5)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        asyncio.run_coroutine_threadsafe(self.core.aclose(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def __enter__(self) -> "RecoveryRunner":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
