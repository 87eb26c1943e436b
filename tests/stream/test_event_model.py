"""The event model and the fold, in-process (docs/stream-design.md#event-model): validation, redaction,
canonical bytes, splitting at code points, envelope round trips, the record projection and ``fold``."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, strategies as st

from pytest_cbchaos.stream.envelope import (CANCEL_REASONS, ERROR_STAGES, KINDS, MAX_ERROR_MESSAGE, SCHEMA_VERSION,
                                            Envelope, canonical, check_id, encode_payload, kind_class,
                                            record_from_entries, redact, split_text, truncate_utf8)
from pytest_cbchaos.stream.fold import TurnView, fold

PAYLOADS: dict[str, dict[str, Any]] = {
    "turn_started": {"model_id": "m", "source": "s", "previous_message_id": None},
    "text_delta": {"part_id": "p", "text": "t"},
    "reasoning_delta": {"part_id": "p", "text": "r"},
    "tool_started": {"tool_id": "t1", "name": "bash", "status": "running", "input": {"cmd": "ls"}},
    "tool_updated": {"tool_id": "t1", "name": "bash", "status": "running"},
    "tool_completed": {"tool_id": "t1", "name": "bash", "status": "completed", "output": "ok"},
    "tool_failed": {"tool_id": "t1", "name": "bash", "status": "error", "error": "boom"},
    "permission_request": {"request_id": "r", "permission": "bash", "decision": "allow"},
    "usage": {"input_tokens": 1, "output_tokens": 2, "cost": 0.5},
    "source_status": {"status": "retry", "attempt": 1, "next_ms": 10},
    "recovery": {"attempt": 2, "cause": "stall"},
    "complete": {"finish_reason": "stop", "usage": {}},
    "error": {"code": "E", "stage": "stream", "message": "m", "retriable": False, "partial": True},
    "cancelled": {"reason": "user"},
}


def env(seq: int, kind: str, payload: dict[str, Any] | None = None, mid: str = "m1", **kw: Any) -> Envelope:
    body = PAYLOADS[kind] if payload is None else payload
    return Envelope(conversation_id=kw.get("conv", "c1"), message_id=mid, stream_id=kw.get("stream_id", "s1"),
                    epoch="0123456789abcdef", seq=seq, step=kw.get("step", seq), kind=kind, cls=kind_class(kind),
                    ts_ms=kw.get("ts_ms", 1000 + seq), payload_bytes=canonical(body))


# -- kinds, validation, redaction --------------------------------------------------------------

def test_every_kind_has_its_documented_class_and_unknown_kinds_are_refused() -> None:
    classes = {k: kind_class(k) for k in KINDS}
    assert {k for k, c in classes.items() if c == "terminal"} == {"complete", "error", "cancelled"}
    assert {k for k, c in classes.items() if c == "control"} == {"turn_started", "source_status", "recovery"}
    with pytest.raises(ValueError, match=r"unknown event kind 'nope'; expected one of \['cancelled'"):
        kind_class("nope")
    with pytest.raises(ValueError, match="unknown event kind"):
        encode_payload("nope", {})


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_each_required_key_is_required(kind: str) -> None:
    assert json.loads(encode_payload(kind, PAYLOADS[kind])) == redact(PAYLOADS[kind])
    for key in KINDS[kind][1]:
        short = {k: v for k, v in PAYLOADS[kind].items() if k != key}
        with pytest.raises(ValueError, match=rf"^{kind}: payload is missing required key\(s\) \['{key}'\]$"):
            encode_payload(kind, short)


def test_payload_must_be_an_object_and_serialisable() -> None:
    with pytest.raises(ValueError, match="^text_delta: payload must be an object, got list$"):
        encode_payload("text_delta", ["x"])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="^text_delta: payload is not serialisable"):
        encode_payload("text_delta", {"part_id": "p", "text": float("nan")})
    with pytest.raises(ValueError, match="^text_delta: payload is not serialisable"):
        encode_payload("text_delta", {"part_id": "p", "text": object()})


def test_error_stage_and_cancel_reason_are_checked() -> None:
    for stage in ERROR_STAGES:
        assert json.loads(encode_payload("error", dict(PAYLOADS["error"], stage=stage)))["stage"] == stage
    with pytest.raises(ValueError, match=r"^error: stage 'disk' not in \('open'"):
        encode_payload("error", dict(PAYLOADS["error"], stage="disk"))
    for reason in CANCEL_REASONS:
        assert json.loads(encode_payload("cancelled", {"reason": reason})) == {"reason": reason}
    with pytest.raises(ValueError, match=r"^cancelled: reason 'bored' not in \('user'"):
        encode_payload("cancelled", {"reason": "bored"})


def test_error_message_is_cut_to_its_byte_limit_at_a_code_point() -> None:
    long = "é" * MAX_ERROR_MESSAGE  # 2 bytes each
    msg = json.loads(encode_payload("error", dict(PAYLOADS["error"], message=long)))["message"]
    assert msg == "é" * (MAX_ERROR_MESSAGE // 2)
    odd = "x" + "é" * MAX_ERROR_MESSAGE  # the limit falls inside a code point
    msg = json.loads(encode_payload("error", dict(PAYLOADS["error"], message=odd)))["message"]
    assert msg == "x" + "é" * (MAX_ERROR_MESSAGE // 2 - 1)
    assert json.loads(encode_payload("error", dict(PAYLOADS["error"], message=12)))["message"] == "12"
    # other kinds keep long text (it is split into deltas upstream, not cut)
    assert json.loads(encode_payload("text_delta", {"part_id": "p", "text": long}))["text"] == long


def test_secrets_are_redacted_at_any_depth_case_insensitively() -> None:
    value = {"Authorization": "Bearer x", "nested": {"API_KEY": "k", "ok": [{"db_password": "p", "n": 1}, ("a",)]},
             "x_Token_y": {"deep": 1}, "Cookie": "c", "my-secret": "s", 3: "three", "plain": "keep"}
    assert redact(value) == {"Authorization": "[redacted]", "nested": {"API_KEY": "[redacted]",
                                                                        "ok": [{"db_password": "[redacted]", "n": 1},
                                                                               ["a"]]},
                             "x_Token_y": "[redacted]", "Cookie": "[redacted]", "my-secret": "[redacted]",
                             3: "three", "plain": "keep"}
    assert redact("token") == "token" and redact(5) == 5
    body = dict(PAYLOADS["tool_started"], input={"token": "t", "path": "/x"})
    assert json.loads(encode_payload("tool_started", body))["input"] == {"token": "[redacted]", "path": "/x"}
    err = dict(PAYLOADS["error"], message={"password": "p"})  # str() of the message, then redaction of keys
    assert "p'" in json.loads(encode_payload("error", err))["message"]


def test_canonical_bytes_are_sorted_compact_utf8_and_refuse_nan() -> None:
    assert canonical({"b": 1, "a": ["é", None, True]}) == '{"a":["é",null,true],"b":1}'.encode("utf-8")
    with pytest.raises(ValueError):
        canonical({"x": float("inf")})


# -- splitting and truncation ------------------------------------------------------------------

@given(st.text(max_size=60), st.integers(min_value=1, max_value=12))
def test_split_text_pieces_fit_rejoin_and_are_as_long_as_allowed(text: str, max_bytes: int) -> None:
    pieces = split_text(text, max_bytes)
    assert "".join(pieces) == text
    assert pieces and all(p for p in pieces) or pieces == [""]
    for i, p in enumerate(pieces):
        n = len(p.encode("utf-8"))
        assert n <= max_bytes or len(p) == 1  # one code point wider than the limit stays whole
        if i + 1 < len(pieces):  # greedy: the next code point would not have fitted
            assert n + len(pieces[i + 1][0].encode("utf-8")) > max_bytes


def test_split_text_examples() -> None:
    assert split_text("", 4) == [""]
    assert split_text("abcd", 4) == ["abcd"]
    assert split_text("abcde", 4) == ["abcd", "e"]
    assert split_text("aé€", 3) == ["aé", "€"]
    assert split_text("€€", 2) == ["€", "€"]  # wider than the limit: one per piece, never split


@given(st.text(max_size=40), st.integers(min_value=0, max_value=50))
def test_truncate_utf8_keeps_the_longest_prefix_within_the_limit(text: str, limit: int) -> None:
    out = truncate_utf8(text, limit)
    assert text.startswith(out) and len(out.encode("utf-8")) <= limit
    if len(text.encode("utf-8")) <= limit:
        assert out == text
    else:
        assert len((text[:len(out) + 1]).encode("utf-8")) > limit


def test_ids_are_checked() -> None:
    for good in ("a", "A-z_0.9:x", "x" * 128):
        assert check_id("conversation_id", good) == good
    for bad in ("", "x" * 129, "a b", "a/b", "é", 7):
        with pytest.raises(ValueError, match=r"^conversation_id=.*: expected 1-128 chars of \[A-Za-z0-9._:-\]$"):
            check_id("conversation_id", bad)  # type: ignore[arg-type]


# -- envelopes ---------------------------------------------------------------------------------

def test_envelope_json_is_canonical_and_round_trips() -> None:
    e = env(7, "text_delta", {"text": "é\"x", "part_id": "p"}, step=3, stream_id="reaper:ab", ts_ms=5)
    text = e.to_json()
    d = json.loads(text)
    assert canonical(d).decode() == text  # the spliced payload leaves the whole object canonical
    assert d == {"v": SCHEMA_VERSION, "conversation_id": "c1", "message_id": "m1", "stream_id": "reaper:ab",
                 "epoch": "0123456789abcdef", "seq": 7, "step": 3, "kind": "text_delta", "class": "content",
                 "ts_ms": 5, "payload": {"part_id": "p", "text": "é\"x"}}
    assert Envelope.from_json(text) == e and Envelope.from_json(text.encode()) == e
    assert e.payload == {"part_id": "p", "text": "é\"x"} and not e.is_terminal
    assert env(8, "cancelled").is_terminal and not env(9, "recovery").is_terminal


def test_envelope_of_another_version_is_refused() -> None:
    d = json.loads(env(1, "usage").to_json())
    for v in (2, 0):
        with pytest.raises(ValueError, match=rf"^unknown envelope version {v}; this reader knows 1$"):
            Envelope.from_json(json.dumps(dict(d, v=v)))
    d.pop("v")
    with pytest.raises(ValueError, match="unknown envelope version None"):
        Envelope.from_json(json.dumps(d))


@pytest.mark.parametrize("as_bytes", [True, False])
def test_envelope_from_a_stream_entry(as_bytes: bool) -> None:
    e = env(12, "usage", step=4, stream_id="cancel:ff", ts_ms=77)
    fields = {"m": "m1", "s": "cancel:ff", "x": "0123456789abcdef", "n": "4", "k": "usage", "c": "content",
              "t": "77", "p": e.payload_bytes.decode()}
    b = (lambda v: v.encode()) if as_bytes else (lambda v: v)
    got = Envelope.from_entry("c1", b("12-0"), {b(k): b(v) for k, v in fields.items()})
    assert got == e


def test_record_is_the_projection_of_the_log() -> None:
    log = [env(3, "turn_started", mid="a"), env(4, "text_delta", mid="a", stream_id="s2"),
           env(5, "turn_started", mid="b"), env(6, "error", mid="a"), env(7, "cancelled", mid="a")]
    assert record_from_entries(log, "zz") is None
    assert record_from_entries(log, "b") == {"status": "in_progress", "first_seq": 5, "last_seq": 5,
                                             "stream_id": "s1"}
    assert record_from_entries(log, "a") == {"status": "failed", "first_seq": 3, "last_seq": 7, "stream_id": "s1",
                                             "terminal_seq": 6, "terminal_kind": "error", "error_code": "E",
                                             "error_message": "m"}
    done = [env(1, "turn_started"), env(2, "complete")]
    assert record_from_entries(done, "m1") == {"status": "completed", "first_seq": 1, "last_seq": 2,
                                               "stream_id": "s1", "terminal_seq": 2, "terminal_kind": "complete"}


# -- fold --------------------------------------------------------------------------------------

def test_fold_of_nothing_is_an_empty_view() -> None:
    assert fold([]) == TurnView()
    assert fold([], message_id="x") == TurnView(message_id="x")
    assert fold(iter([env(1, "text_delta")]), message_id="other") == TurnView(message_id="other")


def test_fold_builds_the_view_of_the_last_message_by_default() -> None:
    log = [env(1, "turn_started", mid="a"), env(2, "text_delta", {"part_id": "p", "text": "old"}, mid="a"),
           env(3, "complete", mid="a"),
           env(4, "turn_started", mid="b"), env(5, "text_delta", {"part_id": "p", "text": "he"}, mid="b"),
           env(6, "reasoning_delta", {"part_id": "q", "text": "r1"}, mid="b"),
           env(7, "text_delta", {"part_id": "p", "text": "llo"}, mid="b"),
           env(8, "reasoning_delta", {"part_id": "q", "text": "r2"}, mid="b"),
           env(9, "usage", {"input_tokens": 1, "output_tokens": 2, "cost": 0}, mid="b"),
           env(10, "usage", {"input_tokens": 3, "output_tokens": 4, "cost": 1}, mid="b"),
           env(11, "source_status", mid="b")]
    v = iter(log)
    view = fold(v)
    assert view == TurnView(message_id="b", status="in_progress", text="hello", reasoning="r1r2",
                            usage={"input_tokens": 3, "output_tokens": 4, "cost": 1}, last_seq=11)
    a = fold(log, message_id="a")
    assert (a.text, a.status, a.terminal_kind, a.last_seq) == ("old", "completed", "complete", 3)


def test_fold_merges_tool_calls_by_id() -> None:
    log = [env(1, "tool_started"), env(2, "tool_started", dict(PAYLOADS["tool_started"], tool_id="t2", name="read")),
           env(3, "tool_updated", dict(PAYLOADS["tool_updated"], title="listing")), env(4, "tool_completed"),
           env(5, "tool_failed", dict(PAYLOADS["tool_failed"], tool_id="t2", name="read"))]
    assert fold(log).tool_calls == {
        "t1": {"name": "bash", "status": "completed", "input": {"cmd": "ls"}, "title": "listing", "output": "ok"},
        "t2": {"name": "read", "status": "error", "input": {"cmd": "ls"}, "error": "boom"}}


def test_fold_recovery_restarts_the_content_and_counts_the_attempt() -> None:
    log = [env(1, "turn_started"), env(2, "text_delta"), env(3, "reasoning_delta"), env(4, "tool_started"),
           env(5, "usage"), env(6, "recovery"), env(7, "text_delta", {"part_id": "p", "text": "new"}),
           env(8, "recovery")]
    view = fold(log)
    assert (view.attempts, view.text, view.reasoning, view.tool_calls) == (3, "", "", {})
    assert view.usage == PAYLOADS["usage"] and view.last_seq == 8  # usage is not content of an attempt
    assert fold(log[:7]).text == "new"


@pytest.mark.parametrize(("kind", "status"), [("complete", "completed"), ("error", "failed"),
                                              ("cancelled", "interrupted")])
def test_fold_terminal_sets_status_and_kind(kind: str, status: str) -> None:
    view = fold([env(1, "turn_started"), env(2, "text_delta"), env(3, kind)])
    assert (view.status, view.terminal_kind, view.last_seq, view.text) == (status, kind, 3, "t")
    assert view.error == ({"code": "E", "stage": "stream", "message": "m", "retriable": False, "partial": True}
                          if kind == "error" else None)


def test_fold_merges_the_usage_of_complete_into_the_streamed_usage() -> None:
    base = [env(1, "usage", {"input_tokens": 1, "output_tokens": 2, "cost": 0})]
    merged = fold(base + [env(2, "complete", {"finish_reason": "stop", "usage": {"output_tokens": 9, "x": 1}})])
    assert merged.usage == {"input_tokens": 1, "output_tokens": 9, "cost": 0, "x": 1}
    for usage in ({}, None, "n/a"):
        view = fold(base + [env(2, "complete", {"finish_reason": "stop", "usage": usage})])
        assert view.usage == {"input_tokens": 1, "output_tokens": 2, "cost": 0}
    assert fold([env(1, "complete", {"finish_reason": "stop", "usage": {"a": 1}})]).usage == {"a": 1}


def test_only_complete_carries_the_final_usage() -> None:
    streamed = env(1, "usage", {"input_tokens": 1, "output_tokens": 2, "cost": 0})
    view = fold([streamed, env(2, "cancelled", {"reason": "user", "usage": {"cost": 9}})])
    assert view.usage == {"input_tokens": 1, "output_tokens": 2, "cost": 0} and view.status == "interrupted"


def test_fold_of_an_unknown_terminal_kind_fails_the_turn() -> None:
    odd = Envelope("c1", "m1", "s1", "0123456789abcdef", 1, 1, "vanished", "terminal", 0, b"{}")
    view = fold([odd])
    assert (view.status, view.terminal_kind, view.error) == ("failed", "vanished", None)
