"""The mock model provider against real HTTP clients (httpx sync, aiohttp async)."""

from __future__ import annotations

import asyncio
import json
import socket
import time

import aiohttp
import httpx
import pytest

from pytest_cbchaos.servers import mockllm as m
from pytest_cbchaos.servers.mockllm import MockLLM, MockLLMError

TOOLS = [{"type": "function", "function": {"name": "bash", "parameters": {"type": "object"}}}]


def body(kind: str = "main", text: str = "hello there", stream: bool = True) -> dict:
    b = {"model": "mock", "stream": stream, "stream_options": {"include_usage": True},
         "messages": [{"role": "system", "content": "sys"}, {"role": "user", "content": text}]}
    if kind == "main":
        b["tools"] = TOOLS
        b["tool_choice"] = "auto"
    return b


def post(mock: MockLLM, payload: dict, **kw) -> httpx.Response:
    return httpx.post(mock.base_url + "/chat/completions", json=payload,
                      headers={"Authorization": f"Bearer {mock.api_key}"}, timeout=10, **kw)


def frames(raw: str) -> list:
    out = []
    for block in raw.split("\n\n"):
        if block.startswith("data: "):
            data = block[6:]
            out.append(data if data == "[DONE]" else json.loads(data))
    return out


def content(fs: list) -> str:
    return "".join(f["choices"][0]["delta"].get("content") or "" for f in fs if isinstance(f, dict))


@pytest.fixture
def mock(cbchaos_mock_llm: MockLLM) -> MockLLM:
    return cbchaos_mock_llm


def test_text_stream_wire_format_and_record(mock: MockLLM) -> None:
    assert mock.base_url.startswith("http://127.0.0.1:") and mock.base_url.endswith("/v1")
    mock.script("main", [m.text("hello world", chunks=3)])
    r = post(mock, body("main"))
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    fs = frames(r.text)
    assert fs[-1] == "[DONE]"
    chunks = fs[:-1]
    assert all(c["object"] == "chat.completion.chunk" and c["id"] and c["created"] and c["model"] == "mock"
               for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert content(chunks) == "hello world" and len(chunks) == 4
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks[:-1])
    last = chunks[-1]
    assert last["choices"][0]["finish_reason"] == "stop"
    assert set(last["usage"]) == {"prompt_tokens", "completion_tokens", "total_tokens"}
    [rec] = mock.wait_for("main", 1, timeout=5)
    rec = mock.wait_outcome(rec.seq)  # the client can read [DONE] before the handler returns
    assert rec.kind == "main" and rec.outcome == "completed" and rec.http_status == 200
    assert rec.chunks_sent == 4 and rec.finished_at is not None and rec.client_closed_at is None
    assert rec.headers["Authorization"] == "Bearer <redacted>" and mock.api_key not in json.dumps(rec.headers)
    assert mock.last_user_text("main") == "hello there"


def test_title_vs_main_classification_and_default(mock: MockLLM) -> None:
    mock.script("main", [m.text("main reply")])
    r1 = post(mock, body("title"))
    r2 = post(mock, body("main"))
    assert content(frames(r1.text)) == "ok"  # unmatched title gets the default
    assert content(frames(r2.text)) == "main reply"
    assert [r.kind for r in mock.requests] == ["title", "main"]


def test_fifo_times_and_body_matcher(mock: MockLLM) -> None:
    mock.script("main", [m.text("first")])
    mock.script("main", [m.text("second")], times=2)
    mock.script(lambda b: "magic" in json.dumps(b), [m.text("matched")])
    outs = [content(frames(post(mock, body("main")).text)) for _ in range(3)]
    assert outs == ["first", "second", "second"]
    assert content(frames(post(mock, body("title", text="magic word")).text)) == "matched"
    assert mock.pending() == 0


def test_tokens_pacing(mock: MockLLM) -> None:
    mock.script("main", [m.tokens(["a", "b", "c"], delay=0.1)])
    arrivals = []
    t0 = time.monotonic()
    with httpx.stream("POST", mock.base_url + "/chat/completions", json=body(),
                      headers={"Authorization": f"Bearer {mock.api_key}"}, timeout=10) as r:
        for line in r.iter_lines():
            if line.startswith("data: {") and '"content"' in line:
                arrivals.append(time.monotonic())
    assert len(arrivals) == 3
    # pacing is a lower bound from the request's start (a late read of one token can shorten the gap to the
    # next as the client sees it, never the time since the request); never a speed claim
    since_start = [a - t0 for a in arrivals]
    assert since_start[1] >= 0.095 and since_start[2] >= 0.19, since_start


def test_ttfb_delays_headers(mock: MockLLM) -> None:
    mock.script("main", [m.ttfb(0.3), m.text("x")])
    t0 = time.monotonic()
    with httpx.stream("POST", mock.base_url + "/chat/completions", json=body(),
                      headers={"Authorization": f"Bearer {mock.api_key}"}, timeout=10) as r:
        headers_at = time.monotonic()
        r.read()
    assert headers_at - t0 >= 0.28


def test_tool_call_defaults_finish_to_tool_calls(mock: MockLLM) -> None:
    mock.script("main", [m.tool_call("bash", {"command": "ls"})])
    chunks = frames(post(mock, body()).text)[:-1]
    call = chunks[0]["choices"][0]["delta"]["tool_calls"][0]
    assert call["function"] == {"name": "bash", "arguments": '{"command": "ls"}'} and call["index"] == 0
    assert call["id"].startswith("call_") and call["type"] == "function"
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_explicit_finish_reason_and_usage(mock: MockLLM) -> None:
    usage = {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}
    mock.script("main", [m.text("abc"), m.finish("length", usage)])
    last = frames(post(mock, body()).text)[-2]
    assert last["choices"][0]["finish_reason"] == "length" and last["usage"] == usage


def test_stall_then_client_close_is_recorded(mock: MockLLM) -> None:
    mock.script("main", [m.text("a"), m.stall(30)])
    with httpx.stream("POST", mock.base_url + "/chat/completions", json=body(),
                      headers={"Authorization": f"Bearer {mock.api_key}"}, timeout=10) as r:
        next(r.iter_bytes())
        [rec] = mock.wait_for("main", 1)
    closed_at = time.monotonic()
    rec = mock.wait_client_closed(rec.seq, timeout=5)
    assert rec.outcome == "client_closed" and rec.client_closed_at is not None
    assert rec.client_closed_at - closed_at < 2.0
    mock.wait_idle(5)


def test_stall_forever_released_by_gate(mock: MockLLM) -> None:
    step = m.stall_forever()
    mock.script("main", [m.text("before "), step, m.text("after")])
    result: dict = {}

    def reader() -> None:
        result["r"] = post(mock, body())

    import threading
    t = threading.Thread(target=reader)
    t.start()
    [rec] = mock.wait_for("main", 1)
    assert mock.wait_stalled("main", timeout=10) is rec  # the stall is waited for, not given a fixed 0.3 s
    assert not t.join(0.3) and t.is_alive()  # still stalled (bounded join): nothing releases it but the gate
    assert rec.outcome == "stalled"
    step.gate.release()
    t.join(10)
    assert not t.is_alive()
    assert content(frames(result["r"].text)) == "before after"
    assert mock.wait_outcome(rec.seq).outcome == "released"


def test_stall_midway_and_wait_stalled(mock: MockLLM) -> None:
    """A stall is waited for until released; a released stall is no longer one (no stale match)."""
    mock.script("main", m.stall_midway("half and half"))
    result: dict = {}

    import threading
    t = threading.Thread(target=lambda: result.update(r=post(mock, body())))
    t.start()
    rec = mock.wait_stalled("main", timeout=10)
    assert rec.chunks_sent == 1 and t.is_alive()
    mock.release_all()
    with pytest.raises(TimeoutError, match="no main request in a stall"):
        mock.wait_stalled("main", timeout=0.2)
    t.join(10)
    assert content(frames(result["r"].text)) == "half and half"


def test_stall_forever_client_close_and_release_all(mock: MockLLM) -> None:
    mock.script("main", [m.stall_forever()])
    with httpx.stream("POST", mock.base_url + "/chat/completions", json=body(),
                      headers={"Authorization": f"Bearer {mock.api_key}"}, timeout=10) as r:
        assert r.status_code == 200
        [rec] = mock.wait_for("main", 1)
    assert mock.wait_client_closed(rec.seq, 5).outcome == "client_closed"
    # release_all frees a stall nobody else holds
    mock.script("main", [m.stall_forever(), m.text("freed")])
    import threading
    out: dict = {}
    t = threading.Thread(target=lambda: out.setdefault("r", post(mock, body())))
    t.start()
    mock.wait_for("main", 2)
    mock.release_all()
    t.join(10)
    assert content(frames(out["r"].text)) == "freed"


@pytest.mark.parametrize("mode", ["fin", "rst"])
def test_disconnect_mid_stream(mock: MockLLM, mode: str) -> None:
    mock.script("main", [m.disconnect(after_chunks=2, mode=mode), m.text("abcdef", chunks=6)])
    got: list[bytes] = []
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        with httpx.stream("POST", mock.base_url + "/chat/completions", json=body(),
                          headers={"Authorization": f"Bearer {mock.api_key}"}, timeout=10) as r:
            for chunk in r.iter_bytes():
                got.append(chunk)
    [rec] = mock.wait_for("main", 1)
    rec = mock.wait_outcome(rec.seq)
    assert rec.outcome == "disconnected" and rec.chunks_sent == 2
    assert b"[DONE]" not in b"".join(got)


def test_http_errors(mock: MockLLM) -> None:
    mock.script("main", [m.http_error(429, retry_after=2)])
    mock.script("main", [m.http_error(500, "boom")])
    mock.script("main", [m.http_error(503)])
    r = post(mock, body())
    assert r.status_code == 429 and r.headers["Retry-After"] == "2" and r.json()["error"]["code"] == 429
    r = post(mock, body())
    assert r.status_code == 500 and r.text == "boom"
    assert post(mock, body()).status_code == 503
    assert [x.outcome for x in mock.requests] == ["http_error"] * 3
    assert [x.http_status for x in mock.requests] == [429, 500, 503]


def test_malformed_chunk(mock: MockLLM) -> None:
    mock.script("main", [m.text("a"), m.malformed(b"data: {broken\n\n"), m.text("b")])
    raw = post(mock, body()).text
    assert "data: {broken\n\n" in raw and raw.endswith("data: [DONE]\n\n")


def test_non_streaming(mock: MockLLM) -> None:
    mock.script("main", [m.text("whole reply", chunks=3)])
    r = post(mock, body(stream=False))
    data = r.json()
    assert data["object"] == "chat.completion"
    assert data["choices"][0]["message"]["content"] == "whole reply"
    assert data["choices"][0]["finish_reason"] == "stop"


def test_auth_routes_and_models(mock: MockLLM) -> None:
    r = httpx.post(mock.base_url + "/chat/completions", json=body(), timeout=5)
    assert r.status_code == 401 and r.json()["error"]["type"] == "invalid_api_key"
    r = httpx.post(mock.base_url + "/chat/completions", json=body(), timeout=5,
                   headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401
    r = httpx.get(mock.url + "/nope", timeout=5)
    assert r.status_code == 404 and "error" in r.json()
    r = httpx.get(mock.base_url + "/models", headers={"Authorization": f"Bearer {mock.api_key}"}, timeout=5)
    assert r.json()["data"][0]["id"] == "mock"


def test_strict_mode_records_unexpected() -> None:
    with MockLLM(strict=True) as mock:
        mock.script("main", [m.text("fine")])
        assert post(mock, body()).status_code == 200
        r = post(mock, body("title"))
        assert r.status_code == 500 and "unexpected" in r.text
        assert [u.kind for u in mock.unexpected] == ["title"]


def test_bad_steps_are_clear_errors(mock: MockLLM) -> None:
    with pytest.raises(MockLLMError, match="chunks=0"):
        m.text("x", chunks=0)
    with pytest.raises(MockLLMError, match="mode='x'"):
        m.disconnect(1, mode="x")
    with pytest.raises(MockLLMError, match="status=200"):
        m.http_error(200)
    with pytest.raises(MockLLMError, match="stall seconds=-1"):
        m.stall(-1)
    with pytest.raises(MockLLMError, match="match='mian'"):
        mock.script("mian", [m.text("x")])
    with pytest.raises(MockLLMError, match="expected a step"):
        mock.script("main", ["text"])  # type: ignore[list-item]


def test_reset_releases_and_clears(mock: MockLLM) -> None:
    mock.script("main", [m.stall_forever()])
    mock.script("main", [m.text("never used")])
    import threading
    t = threading.Thread(target=lambda: post(mock, body()))
    t.start()
    mock.wait_for("main", 1)
    mock.reset(timeout=5)
    t.join(10)
    assert not t.is_alive()
    assert mock.requests == [] and mock.pending() == 0


def test_stop_closes_stalled_streams_and_frees_port() -> None:
    mock = MockLLM().start()
    port = mock.port
    mock.script("main", [m.text("a"), m.stall_forever()])
    with httpx.stream("POST", mock.base_url + "/chat/completions", json=body(),
                      headers={"Authorization": f"Bearer {mock.api_key}"}, timeout=10) as r:
        next(r.iter_bytes())
        mock.stop(timeout=5)  # releases the gate; the handler finishes; no leak error
    assert not mock.running
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0


def test_usable_from_asyncio(mock: MockLLM) -> None:
    mock.script("main", [m.tokens(["x", "y"])])

    async def main() -> str:
        async with aiohttp.ClientSession() as session:
            async with session.post(mock.base_url + "/chat/completions", json=body(),
                                    headers={"Authorization": f"Bearer {mock.api_key}"}) as resp:
                raw = (await resp.read()).decode()
        recs = await mock.await_for("main", 1, timeout=5)
        assert recs[0].outcome == "completed"
        return raw

    assert content(frames(asyncio.run(main()))) == "xy"


def test_api_key_registry_for_launchers() -> None:
    mock = MockLLM().start()
    try:
        assert m.api_key_for(mock.base_url) == mock.api_key
        assert m.api_key_for(mock.base_url + "/") == mock.api_key
    finally:
        url = mock.base_url
        mock.stop()
    assert m.api_key_for(url) is None
