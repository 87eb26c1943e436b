"""The event model: kinds, classes, canonical serialisation, redaction, envelopes
(docs/stream-design.md#event-model)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Mapping

SCHEMA_VERSION = 1
ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

# kind -> (class, required payload keys)
KINDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "turn_started": ("control", ("model_id", "source", "previous_message_id")),
    "text_delta": ("content", ("part_id", "text")),
    "reasoning_delta": ("content", ("part_id", "text")),
    "tool_started": ("content", ("tool_id", "name", "status", "input")),
    "tool_updated": ("content", ("tool_id", "name", "status")),
    "tool_completed": ("content", ("tool_id", "name", "status", "output")),
    "tool_failed": ("content", ("tool_id", "name", "status", "error")),
    "permission_request": ("content", ("request_id", "permission", "decision")),
    "usage": ("content", ("input_tokens", "output_tokens", "cost")),
    "source_status": ("control", ("status", "attempt", "next_ms")),
    "recovery": ("control", ("attempt", "cause")),
    "complete": ("terminal", ("finish_reason", "usage")),
    "error": ("terminal", ("code", "stage", "message", "retriable", "partial")),
    "cancelled": ("terminal", ("reason",)),
}
TERMINAL_STATUS = {"complete": "completed", "error": "failed", "cancelled": "interrupted"}
ERROR_STAGES = ("open", "model_config", "session", "transport", "stream", "relay", "store")
CANCEL_REASONS = ("user", "superseded", "relay_shutdown", "producer_lost")
_SECRET_WORDS = ("token", "api_key", "secret", "password", "authorization", "cookie")
MAX_ERROR_MESSAGE = 2048


def kind_class(kind: str) -> str:
    try:
        return KINDS[kind][0]
    except KeyError:
        raise ValueError(f"unknown event kind {kind!r}; expected one of {sorted(KINDS)}") from None


def redact(value: Any) -> Any:
    """Replace values under secret-looking keys (case-insensitive) with ``"[redacted]"``."""
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if any(w in str(k).lower() for w in _SECRET_WORDS):
                out[k] = "[redacted]"
            else:
                out[k] = redact(v)
        return out
    if isinstance(value, (list, tuple)):
        return [redact(v) for v in value]
    return value


def canonical(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, sort_keys=True, separators=(",", ":"),
                      allow_nan=False).encode("utf-8")


def encode_payload(kind: str, payload: Mapping[str, Any]) -> bytes:
    """Validate, redact and serialise a payload once, at emission (ValueError before any write)."""
    cls = kind_class(kind)
    if not isinstance(payload, Mapping):
        raise ValueError(f"{kind}: payload must be an object, got {type(payload).__name__}")
    missing = [k for k in KINDS[kind][1] if k not in payload]
    if missing:
        raise ValueError(f"{kind}: payload is missing required key(s) {missing}")
    if cls == "terminal" and kind == "error":
        if payload["stage"] not in ERROR_STAGES:
            raise ValueError(f"error: stage {payload['stage']!r} not in {ERROR_STAGES}")
        payload = dict(payload, message=truncate_utf8(str(payload["message"]), MAX_ERROR_MESSAGE))
    if kind == "cancelled" and payload["reason"] not in CANCEL_REASONS:
        raise ValueError(f"cancelled: reason {payload['reason']!r} not in {CANCEL_REASONS}")
    try:
        return canonical(redact(payload))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{kind}: payload is not serialisable: {exc}") from exc


def truncate_utf8(text: str, limit: int) -> str:
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    return data[:limit].decode("utf-8", errors="ignore")


def split_text(text: str, max_bytes: int) -> list[str]:
    """Split at code-point boundaries so each piece encodes to at most ``max_bytes``."""
    pieces, cur, size = [], [], 0
    for ch in text:
        n = len(ch.encode("utf-8"))
        if size + n > max_bytes and cur:
            pieces.append("".join(cur))
            cur, size = [], 0
        cur.append(ch)
        size += n
    if cur or not pieces:
        pieces.append("".join(cur))
    return pieces


def check_id(name: str, value: str) -> str:
    if not isinstance(value, str) or not ID_RE.match(value):
        raise ValueError(f"{name}={value!r}: expected 1-128 chars of [A-Za-z0-9._:-]")
    return value


@dataclass(frozen=True)
class Envelope:
    """One log entry as every reader sees it; ``payload_bytes`` are the stored bytes."""

    conversation_id: str
    message_id: str
    stream_id: str
    epoch: str
    seq: int
    step: int
    kind: str
    cls: str
    ts_ms: int
    payload_bytes: bytes
    v: int = SCHEMA_VERSION

    @property
    def payload(self) -> dict[str, Any]:
        return json.loads(self.payload_bytes)

    @property
    def is_terminal(self) -> bool:
        return self.cls == "terminal"

    def to_json(self) -> str:
        """Canonical JSON with the payload spliced in byte for byte (keys sorted)."""
        head = canonical({"class": self.cls, "conversation_id": self.conversation_id, "epoch": self.epoch,
                          "kind": self.kind, "message_id": self.message_id}).decode()
        tail = canonical({"seq": self.seq, "step": self.step, "stream_id": self.stream_id,
                          "ts_ms": self.ts_ms, "v": self.v}).decode()
        return head[:-1] + ',"payload":' + self.payload_bytes.decode("utf-8") + "," + tail[1:]

    @classmethod
    def from_entry(cls, conversation_id: str, entry_id: bytes | str, fields: Mapping[bytes, bytes]) -> "Envelope":
        eid = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
        f = {(k.decode() if isinstance(k, bytes) else k): v for k, v in fields.items()}

        def s(key: str) -> str:
            v = f[key]
            return v.decode() if isinstance(v, bytes) else str(v)

        p = f["p"]
        return cls(conversation_id=conversation_id, message_id=s("m"), stream_id=s("s"), epoch=s("x"),
                   seq=int(eid.split("-")[0]), step=int(s("n")), kind=s("k"), cls=s("c"), ts_ms=int(s("t")),
                   payload_bytes=p if isinstance(p, bytes) else p.encode())

    @classmethod
    def from_json(cls, text: str | bytes) -> "Envelope":
        d = json.loads(text)
        if int(d.get("v", 0)) != SCHEMA_VERSION:
            raise ValueError(f"unknown envelope version {d.get('v')!r}; this reader knows {SCHEMA_VERSION}")
        return cls(conversation_id=d["conversation_id"], message_id=d["message_id"], stream_id=d["stream_id"],
                   epoch=d["epoch"], seq=int(d["seq"]), step=int(d["step"]), kind=d["kind"], cls=d["class"],
                   ts_ms=int(d["ts_ms"]), payload_bytes=canonical(d["payload"]))


def record_from_entries(entries: list["Envelope"], mid: str) -> dict[str, Any] | None:
    """The message record of ``mid`` recomputed from log entries (the record is a projection of the log)."""
    es = [e for e in entries if e.message_id == mid]
    if not es:
        return None
    rec: dict[str, Any] = {"status": "in_progress", "first_seq": es[0].seq, "last_seq": es[-1].seq,
                           "stream_id": es[0].stream_id}
    term = [e for e in es if e.is_terminal]
    if term:
        t = term[0]
        rec.update(status=TERMINAL_STATUS[t.kind], terminal_seq=t.seq, terminal_kind=t.kind)
        if t.kind == "error":
            rec.update(error_code=t.payload["code"], error_message=t.payload["message"])
    return rec
