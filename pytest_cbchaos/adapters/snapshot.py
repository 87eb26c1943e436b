"""Race-free "did this op write?" for a store whose replies do not say (docs/adapters.md#did-it-write).

:class:`SnapshotClient` wraps a redis-py client: every ``EVAL``/``EVALSHA`` runs as
``MULTI; HGETALL key; EVAL …; HGETALL key; EXEC``, so the two snapshots bracket exactly that script
(no other client can write in between) and ``last()`` tells whether the hash changed. Everything
else is passed through to the wrapped client. Hand the wrapper to the store instead of the client.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any


def _text(v: Any) -> str:
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)


def decode_hash(raw: dict[Any, Any] | None) -> dict[str, str]:
    return {_text(k): _text(v) for k, v in (raw or {}).items()}


@dataclass(frozen=True)
class WriteObservation:
    """The hash at ``key`` right before and right after one script, in one transaction."""

    key: str
    before: dict[str, str]
    after: dict[str, str]

    @property
    def wrote(self) -> bool:
        return self.before != self.after


class SnapshotClient:
    """A redis-py client wrapper that brackets each script with snapshots of its first key."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self._local = threading.local()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def _bracket(self, cmd: str, script: Any, numkeys: int, *keys_and_args: Any) -> Any:
        if int(numkeys) < 1:
            return getattr(self._client, cmd)(script, numkeys, *keys_and_args)
        key = keys_and_args[0]
        pipe = self._client.pipeline(transaction=True)
        try:
            pipe.hgetall(key)
            getattr(pipe, cmd)(script, numkeys, *keys_and_args)
            pipe.hgetall(key)
            before, result, after = pipe.execute()
        finally:
            pipe.reset()
        self._observe(WriteObservation(_text(key), decode_hash(before), decode_hash(after)))
        return result

    def eval(self, script: Any, numkeys: int, *keys_and_args: Any) -> Any:
        return self._bracket("eval", script, numkeys, *keys_and_args)

    def evalsha(self, sha: Any, numkeys: int, *keys_and_args: Any) -> Any:
        return self._bracket("evalsha", sha, numkeys, *keys_and_args)

    def _observe(self, obs: WriteObservation) -> None:
        self._local.seen = [*getattr(self._local, "seen", []), obs]

    def take(self) -> list[WriteObservation]:
        """This thread's observations since the last ``take`` (oldest first), and forget them."""
        seen = getattr(self._local, "seen", [])
        self._local.seen = []
        return seen

    def wrote_since_take(self) -> bool:
        """True iff any script on this thread changed its hash since the last ``take``."""
        return any(o.wrote for o in self.take())
