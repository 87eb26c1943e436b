"""Busy / progress tracking of one turn from ``/event`` events and message syncs
(docs/recovery-design.md#busy-and-progress, docs/recovery-design.md#idle-and-completion)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from pytest_cbchaos.recovery.status import TERMINAL_OK_REASONS


# main-session events that show the model answered (or the turn ended) without an assistant part
ANSWER_EVENTS = frozenset({"session.error", "permission.asked"})


def event_owner(event: dict[str, Any]) -> str | None:
    props = event.get("properties") or {}
    if not isinstance(props, dict):
        return None
    for holder in (props, props.get("part"), props.get("info")):
        if isinstance(holder, dict) and isinstance(holder.get("sessionID"), str):
            return holder["sessionID"]
    return None


@dataclass
class TurnTracker:
    """What the stream and syncs told us about one prompt on one session."""

    session_id: str
    prompt: str = ""
    baseline_message_ids: set[str] = field(default_factory=set)
    children: set[str] = field(default_factory=set)
    prompt_sent_at: float | None = None
    prompt_accepted_at: float | None = None
    last_progress_at: float | None = None
    first_event_at: float | None = None  # first sign of the model's answer: the bootstrap ends here
    active: bool = False
    retry_until: float | None = None
    user_message_id: str | None = None
    assistants: dict[str, dict[str, Any]] = field(default_factory=dict)
    finish_reason: str | None = None
    tokens: dict[str, Any] | None = None
    text_parts: dict[str, str] = field(default_factory=dict)
    part_message: dict[str, str] = field(default_factory=dict)
    stream_part_ids: set[str] = field(default_factory=set)
    unseen_since: dict[str, float] = field(default_factory=dict)  # parts a sync showed first
    lost_grace: float = 1.0  # a part still missing from the stream this long after a sync is lost
    running_tools: set[str] = field(default_factory=set)
    session_errors: list[Any] = field(default_factory=list)
    idle_seen_at: float | None = None
    completed_at: float | None = None  # completion evidence seen
    permissions: list[dict[str, Any]] = field(default_factory=list)
    events_seen: int = 0
    ignored_events: int = 0

    def owns(self, owner: str | None) -> bool:
        return owner is not None and (owner == self.session_id or owner in self.children)

    def handle(self, event: dict[str, Any], now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        etype = str(event.get("type", ""))
        props = event.get("properties") or {}
        if not isinstance(props, dict) or etype.startswith("server."):
            return
        if etype == "session.updated":
            info = props.get("info") or {}
            if isinstance(info, dict) and info.get("parentID") in ({self.session_id} | self.children):
                self.children.add(str(info.get("id")))
        owner = event_owner(event)
        if not self.owns(owner):
            self.ignored_events += 1  # global noise never counts as progress
            return
        self.events_seen += 1
        if self.prompt_sent_at is None:
            return  # pre-prompt events of a resumed session are baseline, not progress
        self.last_progress_at = now
        main = owner == self.session_id
        if not main or etype in ANSWER_EVENTS:
            self._answered(now)  # a child session, an error, a permission request
        if etype == "session.status" and main:
            st = props.get("status") or {}
            kind = st.get("type") if isinstance(st, dict) else None
            if kind in ("busy", "retry"):
                self.active = True
                self.idle_seen_at = None
                if kind == "retry":
                    self._answered(now)
                    self.retry_until = retry_deadline(st.get("next"), now)
            elif kind == "idle":
                self._idle(now)
        elif etype == "session.idle" and main:
            self._idle(now)
        elif etype == "message.updated":
            self._message(props.get("info") or {}, now)
        elif etype == "message.part.updated":
            part = props.get("part") or {}
            if isinstance(part, dict) and self._answer_message(part.get("messageID")):
                self._answered(now)
            self._part(part)
        elif etype == "message.part.delta":
            pid = props.get("partID")
            if self._answer_message(props.get("messageID")):
                self._answered(now)
            if isinstance(pid, str):
                self.stream_part_ids.add(pid)
                if isinstance(props.get("messageID"), str):
                    self.part_message.setdefault(pid, props["messageID"])
                if props.get("field", "text") == "text" and isinstance(props.get("delta"), str):
                    self.text_parts[pid] = self.text_parts.get(pid, "") + props["delta"]
        elif etype == "session.error":
            self.session_errors.append(props.get("error"))
        elif etype == "permission.asked":
            self.permissions.append(props)

    def _answered(self, now: float) -> None:
        if self.first_event_at is None:
            self.first_event_at = now

    def _answer_message(self, mid: Any) -> bool:
        """A part of this turn's answer: not of the user's prompt message nor of an older message."""
        return isinstance(mid, str) and mid not in self.baseline_message_ids and (
            mid in self.assistants or (self.user_message_id is not None and mid != self.user_message_id))

    def _idle(self, now: float) -> None:
        # an idle before anything of this turn was seen may be a stale one; the status probe decides
        if self.active or self.user_message_id is not None or self.assistants:
            self.idle_seen_at = now
            self._answered(now)  # the turn ended: whatever it was, the bootstrap is over

    def _message(self, info: dict[str, Any], now: float) -> None:
        mid, role = info.get("id"), info.get("role")
        if not isinstance(mid, str) or mid in self.baseline_message_ids or info.get("sessionID") != self.session_id:
            return
        if role == "user":
            if self.user_message_id is None:
                self.user_message_id = mid
        elif role == "assistant":
            if self.user_message_id is not None and info.get("parentID") not in (None, self.user_message_id):
                return
            self.assistants[mid] = info
            self.active = True
            if info.get("error"):
                self.session_errors.append(info.get("error"))
            if info.get("error") or (info.get("time") or {}).get("completed"):
                self._answered(now)
            self._check_completion(now)

    def _part(self, part: dict[str, Any]) -> None:
        pid = part.get("id")
        if isinstance(pid, str):
            self.stream_part_ids.add(pid)
            if isinstance(part.get("messageID"), str):
                self.part_message.setdefault(pid, part["messageID"])
        ptype = part.get("type")
        if ptype == "step-finish" and part.get("sessionID") == self.session_id:
            self.finish_reason = part.get("reason") or self.finish_reason
            if part.get("tokens") is not None:
                self.tokens = part.get("tokens")
        elif ptype == "text" and isinstance(pid, str) and isinstance(part.get("text"), str):
            if len(part["text"]) >= len(self.text_parts.get(pid, "")):
                self.text_parts[pid] = part["text"]
        elif ptype == "tool" and isinstance(pid, str):
            state = part.get("state") or {}
            if isinstance(state, dict) and state.get("status") in ("pending", "running"):
                self.running_tools.add(pid)
            else:
                self.running_tools.discard(pid)

    def last_assistant(self) -> dict[str, Any] | None:
        if not self.assistants:
            return None
        return max(self.assistants.values(), key=lambda i: ((i.get("time") or {}).get("created") or 0))

    def _check_completion(self, now: float) -> None:
        info = self.last_assistant()
        if info and (info.get("time") or {}).get("completed") and info.get("finish") in TERMINAL_OK_REASONS:
            if self.completed_at is None:
                self.completed_at = now
        else:
            self.completed_at = None

    @property
    def text(self) -> str:
        return "".join(v for k, v in self.text_parts.items() if self.part_message.get(k) in self.assistants)

    def apply_sync(self, messages: list[dict[str, Any]], now: float) -> bool:
        """Merge a message-list sync; True when it showed parts the stream never delivered."""
        new_parts = False
        for entry in messages:
            info = entry.get("info") if isinstance(entry, dict) else None
            if not isinstance(info, dict) or info.get("id") in self.baseline_message_ids:
                continue
            if info.get("role") == "user" and self.user_message_id is None and _has_text(entry, self.prompt):
                self.user_message_id = info["id"]
            if info.get("role") == "assistant":
                if self.user_message_id is not None and info.get("parentID") != self.user_message_id:
                    continue
                self.assistants[info["id"]] = info
                self.active = True
                if entry.get("parts") or info.get("error") or (info.get("time") or {}).get("completed"):
                    self._answered(now)  # the answer began, whether or not the stream showed it
            elif info.get("role") != "user":
                continue
            for part in entry.get("parts") or []:
                if not isinstance(part, dict):
                    continue
                pid = part.get("id")
                if isinstance(pid, str) and pid not in self.stream_part_ids:
                    # the stream may simply not have delivered it yet: lost only if still missing later
                    first = self.unseen_since.setdefault(pid, now)
                    if now - first >= self.lost_grace:
                        new_parts = True
                        self.stream_part_ids.add(pid)
                if info.get("role") == "assistant":
                    self._part({"messageID": info["id"], **part, "sessionID": self.session_id})
        self._check_completion(now)
        return new_parts


def _has_text(entry: dict[str, Any], prompt: str) -> bool:
    return any(isinstance(p, dict) and p.get("type") == "text" and prompt and prompt in str(p.get("text", ""))
               for p in entry.get("parts") or [])


def retry_deadline(next_at: Any, now: float) -> float | None:
    """``next`` of a retry status is an epoch time in ms (or s); convert to the monotonic clock."""
    if not isinstance(next_at, (int, float)) or next_at <= 0:
        return None
    epoch_s = next_at / 1000.0 if next_at > 1e11 else float(next_at)
    ahead = epoch_s - time.time()
    return now + min(max(ahead, 0.0), 3600.0)
