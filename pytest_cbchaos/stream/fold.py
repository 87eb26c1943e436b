"""`fold(envelopes) -> TurnView`: pure; the same function serves live and replayed events."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

from pytest_cbchaos.stream.envelope import TERMINAL_STATUS, Envelope


@dataclass
class TurnView:
    message_id: str | None = None
    status: str = "in_progress"
    text: str = ""
    reasoning: str = ""
    tool_calls: dict[str, dict[str, Any]] = field(default_factory=dict)
    usage: dict[str, Any] = field(default_factory=dict)
    error: dict[str, Any] | None = None
    last_seq: int = 0
    attempts: int = 1
    terminal_kind: str | None = None


def fold(envelopes: Iterable[Envelope], message_id: str | None = None) -> TurnView:
    """Fold one message's entries (the last message seen when ``message_id`` is None)."""
    envs = list(envelopes)
    if message_id is None and envs:
        message_id = envs[-1].message_id
    view = TurnView(message_id=message_id)
    for e in envs:
        if e.message_id != message_id:
            continue
        p = e.payload
        view.last_seq = e.seq
        if e.kind == "recovery":
            view.attempts += 1
            view.text, view.reasoning, view.tool_calls = "", "", {}
        elif e.kind == "text_delta":
            view.text += p["text"]
        elif e.kind == "reasoning_delta":
            view.reasoning += p["text"]
        elif e.kind.startswith("tool_"):
            call = view.tool_calls.setdefault(p["tool_id"], {"name": p["name"]})
            call.update({k: v for k, v in p.items() if k != "tool_id"})
        elif e.kind == "usage":
            view.usage = dict(p)
        elif e.cls == "terminal":
            view.status = TERMINAL_STATUS.get(e.kind, "failed")
            view.terminal_kind = e.kind
            if e.kind == "error":
                view.error = {k: p.get(k) for k in ("code", "stage", "message", "retriable", "partial")}
            elif e.kind == "complete" and p.get("usage"):
                view.usage = dict(view.usage, **p["usage"]) if isinstance(p["usage"], dict) else view.usage
    return view
