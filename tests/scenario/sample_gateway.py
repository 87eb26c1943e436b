"""A deliberately broken provider breaker for the gateway target's tests: it never opens (counts nothing),
so the provider keeps being called after its 5xx answers."""

from __future__ import annotations

from typing import Any


class _Permit:
    def success(self) -> None:
        pass

    def failure(self, *reason: Any) -> None:
        pass

    def release(self) -> None:
        pass


class NeverOpens:
    def __init__(self, name: str, config: Any, store: Any) -> None:
        self.name = name

    async def acquire(self) -> _Permit:
        return _Permit()

    def _counted(self, exc: BaseException) -> bool:
        return True

    async def get_state(self) -> str:
        return "closed"


def never_opens(name: str, config: Any, store: Any) -> NeverOpens:
    return NeverOpens(name, config, store)
