"""Per-key event rate limiting for the breaker's noisy signals (docs/breaker-design.md#codec-and-corrupt-fields
``corrupt_field``, docs/breaker-design.md#events-listeners-and-metrics listener-exception logging).

``admit(key)`` lets the first event of a key through, then at most one per ``interval`` seconds of
the injected clock's monotonic time; events in between are suppressed and counted, and the count
rides on the next admitted event (so nothing is lost from totals, only from the stream). Keys are
bounded (oldest forgotten first): a forgotten key simply starts again with an admitted event.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from typing import Any, Hashable


class EventRateLimiter:
    """At most one admitted event per key per ``interval`` seconds on ``clock.monotonic()``."""

    def __init__(self, interval: float, clock: Any, *, max_keys: int = 256) -> None:
        if isinstance(interval, bool) or not isinstance(interval, (int, float)) or not math.isfinite(interval) \
                or interval < 0:
            raise ValueError(f"interval must be a finite number >= 0 (seconds), got {interval!r}")
        if isinstance(max_keys, bool) or not isinstance(max_keys, int) or max_keys < 1:
            raise ValueError(f"max_keys must be an int >= 1, got {max_keys!r}")
        self.interval = float(interval)
        self.clock = clock
        self.max_keys = max_keys
        self._lock = threading.Lock()
        self._keys: OrderedDict[Hashable, list[float | int]] = OrderedDict()  # key -> [last admitted, suppressed]

    def admit(self, key: Hashable) -> int | None:
        """None: suppress this event (counted). Otherwise emit it, carrying the returned number of
        events of the same key suppressed since the previous admitted one."""
        now = self.clock.monotonic()
        with self._lock:
            ent = self._keys.get(key)
            if ent is not None and now - ent[0] < self.interval:
                ent[1] += 1
                return None
            suppressed = int(ent[1]) if ent is not None else 0
            self._keys[key] = [now, 0]
            self._keys.move_to_end(key)
            while len(self._keys) > self.max_keys:
                self._keys.popitem(last=False)
            return suppressed

    def pending(self, key: Hashable) -> int:
        """Events of ``key`` suppressed since its last admitted one (not yet reported)."""
        with self._lock:
            ent = self._keys.get(key)
            return int(ent[1]) if ent is not None else 0

