"""`StreamConfig`: every knob validated before side effects, with a located error."""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any, Mapping


class StreamConfigError(ValueError):
    """A bad knob: names the key, the value, what was expected and where it came from."""

    def __init__(self, key: str, value: Any, expected: str, source: str = "StreamConfig") -> None:
        super().__init__(f"{source}: {key}={value!r}: expected {expected}")
        self.key, self.value, self.expected, self.source = key, value, expected, source


@dataclass(frozen=True)
class StreamConfig:
    heartbeat_s: float = 5.0
    silence_timeout_s: float = 15.0
    lease_ttl_s: float = 15.0
    lease_renew_s: float = 5.0
    reaper_interval_s: float = 2.0
    write_deadline_s: float = 10.0
    terminal_deadline_s: float = 30.0
    shutdown_grace_s: float = 5.0
    bootstrap_timeout_s: float = 30.0
    cancel_poll_ms: int = 250
    reconnect_budget_s: float = 60.0
    block_ms: int | None = None  # default heartbeat_s * 1000
    flush_interval_ms: int = 50
    max_batch: int = 64
    max_batch_bytes: int = 1 << 20
    max_event_bytes: int = 256 << 10
    max_buffer_events: int = 10000
    retention_s: int = 604800
    outage_close_s: float = 30.0
    max_consumers: int = 256
    slow_client_s: float = 30.0
    max_unsent_bytes: int = 1 << 20
    follow_idle_s: float = 10.0
    deliver_bound_s: float = 12.0
    page_size: int = 500
    prefix: str = "cbchaos:stream:"
    source: str = field(default="StreamConfig", compare=False)

    def __post_init__(self) -> None:
        if self.block_ms is None:
            object.__setattr__(self, "block_ms", int(self.heartbeat_s * 1000))
        self.validate()

    @classmethod
    def ci(cls, **overrides: Any) -> "StreamConfig":
        """The CI profile of docs/stream-design.md#configuration (short timers), with overrides."""
        base = dict(heartbeat_s=0.5, silence_timeout_s=1.5, lease_ttl_s=2.0, lease_renew_s=0.5,
                    reaper_interval_s=0.25, write_deadline_s=3.0, terminal_deadline_s=4.0,
                    shutdown_grace_s=1.0, bootstrap_timeout_s=3.0, cancel_poll_ms=50,
                    reconnect_budget_s=10.0, flush_interval_ms=20, max_buffer_events=1000,
                    retention_s=300, outage_close_s=3.0, max_consumers=64, slow_client_s=3.0,
                    max_unsent_bytes=256 << 10, follow_idle_s=1.0, deliver_bound_s=3.0, page_size=100)
        base.update(overrides)
        return cls(**base)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], source: str = "mapping") -> "StreamConfig":
        known = {f.name for f in fields(cls)} - {"source"}
        for key in data:
            if key not in known:
                raise StreamConfigError(str(key), data[key], f"one of {sorted(known)}", source)
        return cls(**dict(data), source=source)

    def to_mapping(self) -> dict[str, Any]:
        """Every knob, as :meth:`from_mapping` takes it (e.g. to hand the config to a child process)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "source"}

    def replace(self, **changes: Any) -> "StreamConfig":
        if "heartbeat_s" in changes and "block_ms" not in changes:
            changes["block_ms"] = None
        return replace(self, **changes)

    def validate(self) -> None:
        src = self.source
        for f in fields(self):
            if f.name in ("prefix", "source"):
                continue
            v = getattr(self, f.name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0:
                raise StreamConfigError(f.name, v, "a positive number", src)
        if not isinstance(self.prefix, str) or not self.prefix or "{" in self.prefix or "}" in self.prefix:
            raise StreamConfigError("prefix", self.prefix, "a non-empty string without '{' or '}'", src)
        checks = [
            ("lease_renew_s", self.lease_renew_s <= self.lease_ttl_s / 3, f"<= lease_ttl_s / 3 ({self.lease_ttl_s / 3:g})"),
            ("reaper_interval_s", self.reaper_interval_s <= self.lease_ttl_s / 2, f"<= lease_ttl_s / 2 ({self.lease_ttl_s / 2:g})"),
            ("block_ms", self.block_ms <= self.heartbeat_s * 1000, f"<= heartbeat_s * 1000 ({self.heartbeat_s * 1000:g})"),
            ("silence_timeout_s", self.silence_timeout_s >= 3 * self.heartbeat_s, f">= 3 * heartbeat_s ({3 * self.heartbeat_s:g})"),
            ("deliver_bound_s", self.deliver_bound_s >= 2 + 2 * self.heartbeat_s, f">= 2 + 2 * heartbeat_s ({2 + 2 * self.heartbeat_s:g})"),
            ("max_batch", isinstance(self.max_batch, int), "an integer"),
            ("page_size", isinstance(self.page_size, int), "an integer"),
        ]
        for key, ok, expected in checks:
            if not ok:
                raise StreamConfigError(key, getattr(self, key), expected, src)
