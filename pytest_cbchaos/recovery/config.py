"""``RecoveryConfig``: every knob of the runner, validated with located errors (docs/recovery-design.md#configuration).

Precedence: keyword > env ``CBCHAOS_RECOVERY_<KEY>`` > ini ``cbchaos_recovery_<key>`` > default.
Numbers are plain decimals; units, ``nan``, ``inf`` and empty strings are rejected. A violation
raises :class:`RecoveryConfigError` naming the source, key, value and expectation.
"""

from __future__ import annotations

import difflib
import math
import os
import re
from dataclasses import dataclass, fields
from typing import Any, Mapping

ENV_PREFIX = "CBCHAOS_RECOVERY_"
INI_PREFIX = "cbchaos_recovery_"
_DECIMAL = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)$")
_INT_KEYS = {"sse_max_reconnects", "control_attempts", "max_recoveries", "unreachable_refusals"}
_STR_KEYS = {"permission_policy", "resume_preamble"}


class RecoveryConfigError(ValueError):
    """An invalid knob; the message names source, key, value and expectation."""

    def __init__(self, key: str, value: Any, expected: str, source: str = "keyword") -> None:
        self.key, self.value, self.expected, self.source = key, value, expected, source
        super().__init__(f"invalid recovery setting {key}={value!r} (from {source}): expected {expected}")


@dataclass(frozen=True)
class RecoveryConfig:
    stall_timeout: float = 180.0
    first_event_timeout: float = 60.0  # bootstrap: prompt accepted -> first event of the answer (docs/recovery.md)
    tool_stall_timeout: float | None = None  # None = stall_timeout
    tick: float = 0.25
    probe_timeout: float = 2.0
    heartbeat_interval: float = 10.0
    sse_silence_timeout: float = 25.0
    sse_connect_timeout: float = 5.0
    subscribe_timeout: float = 10.0
    sse_max_reconnects: int = 10
    request_timeout: float = 10.0
    control_attempts: int = 3
    idle_poll_interval: float = 15.0
    idle_grace: float = 5.0
    start_timeout: float = 30.0
    abort_grace: float = 5.0
    max_recoveries: int = 2
    consumer_stop_timeout: float = 5.0
    max_turn_seconds: float = 0.0
    permission_policy: str = "reject"
    unreachable_refusals: int = 2
    resume_preamble: str = ""

    def __post_init__(self) -> None:
        if self.tool_stall_timeout is None:
            object.__setattr__(self, "tool_stall_timeout", self.stall_timeout)
        _validate(self, {}, {})

    @property
    def bootstrap_timeout(self) -> float:
        """Time from prompt acceptance to the first event of the answer; never shorter than a stall."""
        return max(self.first_event_timeout, self.stall_timeout)

    @property
    def effective_tool_stall_timeout(self) -> float:
        return float(self.tool_stall_timeout if self.tool_stall_timeout is not None else self.stall_timeout)

    @classmethod
    def for_tests(cls, **overrides: Any) -> "RecoveryConfig":
        """Small timeouts suitable for tests (stall 3 s, silence 5 s, heartbeat 10 s unchanged)."""
        base: dict[str, Any] = dict(stall_timeout=3.0, probe_timeout=1.0, sse_silence_timeout=15.0,
                                    request_timeout=3.0, idle_poll_interval=1.0, idle_grace=1.0,
                                    start_timeout=10.0, abort_grace=2.0, consumer_stop_timeout=3.0,
                                    sse_connect_timeout=3.0, subscribe_timeout=5.0)
        base.update(overrides)
        if "stall_timeout" in overrides and "tool_stall_timeout" not in overrides:
            base["tool_stall_timeout"] = None
        return cls(**base)

    @classmethod
    def load(cls, overrides: Mapping[str, Any] | None = None, *, env: Mapping[str, str] | None = None,
             ini: Mapping[str, Any] | None = None, ini_source: str = "ini") -> "RecoveryConfig":
        """Merge keyword > env > ini > default, validating each raw value against its source.

        ``ini`` maps ``cbchaos_recovery_<key>`` (or bare ``<key>``) to a string, or to a
        ``(value, "file:line")`` tuple so errors can point at the line.
        """
        env = os.environ if env is None else env
        names = {f.name for f in fields(cls)}
        values: dict[str, Any] = {}
        sources: dict[str, str] = {}
        raws: dict[str, Any] = {}
        for raw_key, raw in (ini or {}).items():
            key = raw_key[len(INI_PREFIX):] if raw_key.startswith(INI_PREFIX) else raw_key
            where = ini_source
            if isinstance(raw, tuple):
                raw, where = raw
            src = f"ini {where} key {INI_PREFIX}{key}"
            if key not in names:
                raise RecoveryConfigError(INI_PREFIX + key, raw, _suggest(key, names), src)
            values[key], sources[key], raws[key] = _parse(key, raw, src), src, raw
        for var, raw in env.items():
            if not var.startswith(ENV_PREFIX):
                continue
            key = var[len(ENV_PREFIX):].lower()
            src = f"env {var}"
            if key not in names:
                raise RecoveryConfigError(var, raw, _suggest(key, names, env=True), src)
            values[key], sources[key], raws[key] = _parse(key, raw, src), src, raw
        for key, raw in (overrides or {}).items():
            src = f"keyword {key}="
            if key not in names:
                raise RecoveryConfigError(key, raw, _suggest(key, names), src)
            values[key], sources[key], raws[key] = _parse(key, raw, src), src, raw
        obj = cls.__new__(cls)
        for f in fields(cls):
            object.__setattr__(obj, f.name, values.get(f.name, f.default))
        if obj.tool_stall_timeout is None:
            object.__setattr__(obj, "tool_stall_timeout", obj.stall_timeout)
        _validate(obj, sources, raws)
        return obj


def _suggest(key: str, names: set[str], env: bool = False) -> str:
    close = difflib.get_close_matches(key, sorted(names), n=3)
    shown = [(ENV_PREFIX + c.upper()) if env else c for c in close]
    return "a known key" + (f" (did you mean {', '.join(shown)}?)" if shown else "")


def _parse(key: str, raw: Any, src: str) -> Any:
    if key in _STR_KEYS:
        if not isinstance(raw, str):
            raise RecoveryConfigError(key, raw, "a string", src)
        return raw
    if isinstance(raw, bool):
        raise RecoveryConfigError(key, raw, "a number", src)
    if key == "tool_stall_timeout" and raw is None:
        return None
    if isinstance(raw, (int, float)):
        value: float = raw
    elif isinstance(raw, str) and _DECIMAL.match(raw.strip()):
        value = float(raw.strip())
    else:
        raise RecoveryConfigError(key, raw, "a plain decimal number such as 180 or 0.25 "
                                             "(no units, nan, inf or empty string)", src)
    if math.isnan(value) or math.isinf(value):
        raise RecoveryConfigError(key, raw, "a finite number", src)
    if key in _INT_KEYS:
        if value != int(value):
            raise RecoveryConfigError(key, raw, "an integer", src)
        return int(value)
    return float(value)


def _validate(c: RecoveryConfig, sources: Mapping[str, str], raws: Mapping[str, Any]) -> None:
    def fail(key: str, expected: str) -> None:
        raise RecoveryConfigError(key, raws.get(key, getattr(c, key)), expected, sources.get(key, "keyword"))

    for key in (f.name for f in fields(c)):
        value = getattr(c, key)
        if key in _STR_KEYS:
            if not isinstance(value, str):
                fail(key, "a string")
            continue
        if value is None and key == "tool_stall_timeout":
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            fail(key, "a finite number")
        if key in _INT_KEYS and value != int(value):
            fail(key, "an integer")
    if not 0.05 <= c.tick <= 1.0:
        fail("tick", "0.05 <= tick <= 1.0")
    if not 0.1 <= c.probe_timeout <= 30:
        fail("probe_timeout", "0.1 <= probe_timeout <= 30")
    if c.stall_timeout < 0 or (c.stall_timeout != 0 and c.stall_timeout <= c.probe_timeout + 2 * c.tick):
        fail("stall_timeout", f"0 (disabled) or > probe_timeout + 2*tick = {c.probe_timeout + 2 * c.tick:g}")
    if c.first_event_timeout <= c.probe_timeout + 2 * c.tick:
        fail("first_event_timeout", f"> probe_timeout + 2*tick = {c.probe_timeout + 2 * c.tick:g}")
    assert c.tool_stall_timeout is not None
    if c.stall_timeout and c.tool_stall_timeout < c.stall_timeout:
        fail("tool_stall_timeout", f">= stall_timeout ({c.stall_timeout:g})")
    if c.heartbeat_interval <= 0:
        fail("heartbeat_interval", "> 0")
    if c.sse_silence_timeout < 1.5 * c.heartbeat_interval:
        fail("sse_silence_timeout", f">= 1.5 * heartbeat_interval = {1.5 * c.heartbeat_interval:g}")
    for key in ("sse_connect_timeout", "subscribe_timeout", "request_timeout", "idle_grace",
                "start_timeout", "abort_grace", "consumer_stop_timeout"):
        if getattr(c, key) <= 0:
            fail(key, "> 0")
    for key in ("sse_max_reconnects", "control_attempts", "unreachable_refusals"):
        if getattr(c, key) < 1:
            fail(key, "an integer >= 1 (it counts attempts)")
    if c.idle_poll_interval < 0:
        fail("idle_poll_interval", ">= 0")
    if c.max_turn_seconds < 0:
        fail("max_turn_seconds", ">= 0 (0 = off)")
    if not 0 <= c.max_recoveries <= 100:
        fail("max_recoveries", "an integer 0..100")
    if c.permission_policy not in ("reject", "once", "always"):
        fail("permission_policy", "one of reject, once, always")
