"""Random bodies to every body-reading route of the embedded proxy API: never a 500 of our own.

The only 500s Toxiproxy gives for a body are its bind/resolve errors (``listen tcp ...``); anything
else must be a 2xx or Toxiproxy's ``{"error","status"}`` 4xx body.
"""

from __future__ import annotations

import json
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from pytest_cbchaos.proxy.toxics import REGISTRY

class RawNumber(str):
    """A number literal written verbatim (beyond what ``json.dumps`` can produce)."""


MISSING = object()
LEAF = (st.none() | st.booleans() | st.integers(min_value=-(2 ** 70), max_value=2 ** 70)
        | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12)
        | st.sampled_from(["1e39", "1e400", "-0", "1" * 500]).map(RawNumber))
ANY = st.recursive(LEAF, lambda inner: (st.lists(inner, max_size=3)
                                        | st.dictionaries(st.text(max_size=6), inner, max_size=3)), max_leaves=10)
LISTEN = (st.sampled_from([MISSING, "", None, "127.0.0.1:0", "localhost:0", "127.0.0.1:99999", "127.0.0.1:x", ":0"])
          | st.text(st.characters(blacklist_characters=":"), max_size=8) | ANY)


def _dump(value) -> str:
    if isinstance(value, RawNumber):
        return str(value)
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(k)}:{_dump(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_dump(v) for v in value) + "]"
    return json.dumps(value)


def _fields(**choices) -> st.SearchStrategy[dict]:
    """Objects holding any subset of the fields (keys in random case), plus unknown keys."""
    def build(draw):
        out = {}
        for key, strategy in choices.items():
            value = draw(strategy)
            if value is not MISSING:
                out[draw(st.sampled_from([key, key.upper(), key.capitalize()]))] = value
        out.update(draw(st.dictionaries(st.text(max_size=4), ANY, max_size=2)))
        return out
    return st.composite(lambda draw: build(draw))()


def _attributes(draw) -> dict:
    toxic_type = draw(st.sampled_from(sorted(REGISTRY)))
    names = list(REGISTRY[toxic_type].ATTRS)
    attrs = {name: draw(ANY | st.integers(-5, 10_000)) for name in draw(st.lists(st.sampled_from(names or ["x"])))}
    return {"type": toxic_type, "attributes": attrs}


def _optional(strategy):
    return st.just(MISSING) | strategy


PROXY = _fields(name=_optional(st.sampled_from(["fz", "new"]) | ANY), listen=LISTEN,
                upstream=_optional(st.sampled_from(["127.0.0.1:1", ""]) | ANY),
                enabled=_optional(st.booleans() | ANY))
TOXIC_BASE = _fields(name=_optional(st.sampled_from(["t", "u"]) | ANY),
                     stream=_optional(st.sampled_from(["upstream", "DOWNSTREAM", "", "sideways"]) | ANY),
                     toxicity=_optional(st.sampled_from([0, 1, 2.0, -0.5, 0.1]) | LEAF))
TOXIC = st.builds(lambda base, typed: {**base, **typed}, TOXIC_BASE, st.composite(lambda draw: _attributes(draw))())
STRUCTURED = {
    "/proxies": PROXY,
    "/populate": st.lists(PROXY, max_size=3) | PROXY,
    "/proxies/{p}": PROXY,
    "/proxies/{p}/toxics": TOXIC,
    "/proxies/{p}/toxics/{t}": TOXIC,
    "/reset": ANY,
}
ROUTES = [("POST", "/proxies"), ("POST", "/populate"), ("POST", "/proxies/{p}"), ("PATCH", "/proxies/{p}"),
          ("POST", "/proxies/{p}/toxics"), ("POST", "/proxies/{p}/toxics/{t}"), ("PATCH", "/proxies/{p}/toxics/{t}"),
          ("POST", "/reset"),
          # routes that read no body: a body must not matter to them either
          ("GET", "/proxies"), ("GET", "/proxies/{p}"), ("DELETE", "/proxies/{p}"), ("GET", "/proxies/{p}/toxics"),
          ("GET", "/proxies/{p}/toxics/{t}"), ("DELETE", "/proxies/{p}/toxics/{t}"), ("GET", "/version")]
NAME_SEGMENT = st.text(min_size=1, max_size=6).map(lambda t: quote(t, safe=""))


def _body(draw, path: str) -> bytes:
    kind = draw(st.sampled_from(["structured", "any", "bytes", "deep"]))
    if kind == "structured":
        return _dump(draw(STRUCTURED[path])).encode()
    if kind == "any":
        return _dump(draw(ANY)).encode()
    if kind == "bytes":
        return draw(st.binary(max_size=40))
    depth = draw(st.sampled_from([1500, 9999, 10000, 10001, 20000]))
    return ('{"attributes":' * depth + "{" + "}" * (depth + 1)).encode()


@st.composite
def requests(draw):
    method, path = draw(st.sampled_from(ROUTES))
    body = _body(draw, path) if path in STRUCTURED else _dump(draw(ANY)).encode()
    names = {"p": "fz", "t": "t"}
    if draw(st.booleans()):  # unknown (percent-encoded) proxy / toxic names
        names = {"p": draw(NAME_SEGMENT), "t": draw(NAME_SEGMENT)}
    return method, path.format(**names), body


@pytest.fixture
def http(embedded_tp):
    with httpx.Client(base_url=embedded_tp.url, timeout=30.0) as client:
        yield client


def _fresh(http: httpx.Client) -> None:
    listing = http.get("/proxies")
    assert listing.status_code == 200, listing.text
    for name in listing.json():
        http.delete(f"/proxies/{name}")
    created = http.post("/proxies", json={"name": "fz", "upstream": "127.0.0.1:1", "listen": "127.0.0.1:0"})
    assert created.status_code == 201, created.text
    assert http.post("/proxies/fz/toxics", json={"name": "t", "type": "latency"}).status_code == 200


def _check(method: str, path: str, body: bytes, r: httpx.Response) -> None:
    shown = f"{method} {path} {body[:200]!r} -> {r.status_code} {r.text[:300]}"
    # gorilla/mux's own answers (the client may normalise a "." name away): no JSON body
    if (r.status_code, r.content) in ((404, b"404 page not found\n"), (405, b"")):
        return
    if r.status_code >= 400:
        error = r.json()
        assert error["status"] == r.status_code and isinstance(error["error"], str), shown
    if r.status_code >= 500:
        assert r.status_code == 500 and error["error"].startswith("listen tcp"), shown


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow, HealthCheck.data_too_large])
@given(req=requests())
@example(req=("POST", "/proxies/0/toxics/%0A", b"null"))  # a decoded newline in a name: still routed
def test_no_500_for_any_body(http, req):
    method, path, body = req
    _fresh(http)
    r = http.request(method, path, content=body)
    _check(method, path, body, r)
    assert http.get("/proxies").status_code == 200



@pytest.mark.parametrize("headers", ['{"X":' * 3000 + '"v"' + "}" * 3000, '{"X":[1]}', '{"X":{"a":1}}', '[1]'])
def test_http_fault_headers_must_map_names_to_values(http, headers):
    _fresh(http)
    body = '{"type":"cbchaos_http_fault","attributes":{"headers":%s}}' % headers
    r = http.post("/proxies/fz/toxics", content=body.encode())
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "bad request body: headers must be an object of header name to string or number"
