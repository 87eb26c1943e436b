"""Port of Toxiproxy's black-box api_test.go assertions, run against every available backend.

Byte-exact only for /version, error bodies and the 404/405/403 bodies; everything else compares
parsed JSON and status codes (docs/fault-kit-design.md#conformance-suite).
"""

from __future__ import annotations

import json
import socket

import pytest

from pytest_cbchaos.proxy.testkit import raw

JSON_ERR = "text/plain; charset=utf-8"


def api(tp, method, path, body=None, **kw):
    if body is not None and not isinstance(body, (str, bytes)):
        body = json.dumps(body)
    return raw(tp.url, method, path, body, **kw)


def make(tp, name="mysql_master", upstream="localhost:3306", listen="127.0.0.1:0", **extra):
    r = api(tp, "POST", "/proxies", {"name": name, "listen": listen, "upstream": upstream, **extra})
    assert r.status_code == 201, r.text
    return r.json()


def err(r, status, message):
    assert r.status_code == status
    assert r.content == (json.dumps({"error": message, "status": status}, separators=(",", ":")) + "\n").encode()
    assert r.headers["content-type"] == JSON_ERR


def test_request_id_header(tp):
    r = api(tp, "POST", "/reset")
    assert r.status_code == 204
    assert r.headers.get("X-Toxiproxy-Request-Id")
    other = api(tp, "GET", "/proxies")
    assert other.headers["X-Toxiproxy-Request-Id"] != r.headers["X-Toxiproxy-Request-Id"]


def test_browser_gets_403(tp):
    r = api(tp, "GET", "/proxies", headers={"User-Agent": "Mozilla/5.0 (Linux x86_64)"})
    assert r.status_code == 403
    assert r.content == b"User agent not allowed\n"
    for ua in ("python-requests/2.31", "Go-http-client/1.1", "axios/1.6", "Ruby"):
        assert api(tp, "GET", "/proxies", headers={"User-Agent": ua}).status_code == 200


def test_unknown_path_and_wrong_method(tp):
    r = api(tp, "GET", "/nonexistent")
    assert r.status_code == 404 and r.content == b"404 page not found\n"
    assert r.headers["content-type"] == JSON_ERR
    assert "X-Toxiproxy-Request-Id" not in r.headers
    r = api(tp, "PUT", "/proxies")
    assert r.status_code == 405 and r.content == b""


def test_indexes_proxies(tp):
    make(tp)
    r = api(tp, "GET", "/proxies")
    assert r.status_code == 200
    proxies = r.json()
    assert list(proxies) == ["mysql_master"]
    p = proxies["mysql_master"]
    assert p["name"] == "mysql_master" and p["upstream"] == "localhost:3306" and p["enabled"] is True
    assert p["toxics"] == [] and p["Logger"] == {}


def test_empty_index(tp):
    r = api(tp, "GET", "/proxies")
    assert r.status_code == 200 and r.json() == {}


@pytest.mark.parametrize("body,field", [({"name": "", "upstream": "localhost:3306"}, "name"),
                                        ({"name": "x", "upstream": ""}, "upstream"),
                                        ({"upstream": "localhost:3306"}, "name")])
def test_create_blank_fields(tp, body, field):
    err(api(tp, "POST", "/proxies", body), 400, f"missing required field: {field}")


def test_populate_default_enabled_disabled_and_existing(tp):
    r = api(tp, "POST", "/populate", [
        {"name": "one", "listen": "127.0.0.1:0", "upstream": "localhost:7171"},
        {"name": "two", "listen": "127.0.0.1:0", "upstream": "localhost:7171", "enabled": False}])
    assert r.status_code == 201
    got = {p["name"]: p for p in r.json()["proxies"]}
    assert got["one"]["enabled"] is True and got["two"]["enabled"] is False
    # existing identical proxy is kept, including its toxics and enabled flag
    api(tp, "POST", "/proxies/one/toxics", {"type": "latency", "attributes": {"latency": 5}})
    listen = got["one"]["listen"]
    r = api(tp, "POST", "/populate", [{"name": "one", "listen": listen, "upstream": "localhost:7171",
                                       "enabled": False}])
    assert r.status_code == 201
    one = api(tp, "GET", "/proxies/one").json()
    assert one["enabled"] is True and len(one["toxics"]) == 1
    assert "two" in api(tp, "GET", "/proxies").json()  # absent from input: kept


def test_populate_empty_array(tp):
    r = api(tp, "POST", "/populate", [])
    assert r.status_code == 201 and r.json() == {"proxies": None}


def test_populate_bad_name_creates_nothing(tp):
    r = api(tp, "POST", "/populate", [{"name": "ok", "listen": "127.0.0.1:0", "upstream": "localhost:1"},
                                      {"name": "", "listen": "127.0.0.1:0", "upstream": "localhost:1"}])
    assert r.status_code == 400
    assert r.headers["content-type"].startswith("application/json")
    assert r.json()["error"] == "missing required field: name at proxy 2" and r.json()["status"] == 400
    assert api(tp, "GET", "/proxies").json() == {}


def test_populate_bad_data_stops_midway(tp):
    blocker = socket.socket()  # the kernel picks a port that is free now, and we hold it
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    free_port = blocker.getsockname()[1]
    try:
        r = api(tp, "POST", "/populate", [
            {"name": "first", "listen": "127.0.0.1:0", "upstream": "localhost:1"},
            {"name": "clash", "listen": f"127.0.0.1:{free_port}", "upstream": "localhost:1"},
            {"name": "third", "listen": "127.0.0.1:0", "upstream": "localhost:1"}])
    finally:
        blocker.close()
    assert r.status_code == 500
    body = r.json()
    assert "address already in use" in body["error"] and body["status"] == 500
    assert [p["name"] for p in body["proxies"]] == ["first"]
    assert sorted(api(tp, "GET", "/proxies").json()) == ["first"]


def test_populate_bad_body(tp):
    r = api(tp, "POST", "/populate", "{not json")
    assert r.status_code == 400 and r.json()["error"].startswith("bad request body: ")


def test_create_get_and_list(tp):
    created = make(tp, listen="localhost:0")
    assert created["listen"].startswith("127.0.0.1:") and not created["listen"].endswith(":0")
    assert created["upstream"] == "localhost:3306"
    r = api(tp, "GET", "/proxies/mysql_master")
    assert r.status_code == 200 and r.json()["listen"] == created["listen"]
    assert r.headers["content-type"].startswith("application/json")


def test_create_disabled_then_enable_rebinds_same_port(tp, free_port):
    p = make(tp, listen=f"127.0.0.1:{free_port}", enabled=False)
    assert p["enabled"] is False
    r = api(tp, "POST", "/proxies/mysql_master", {"enabled": True})
    assert r.status_code == 200 and r.json()["enabled"] is True
    assert r.json()["listen"] == f"127.0.0.1:{free_port}"
    r = api(tp, "PATCH", "/proxies/mysql_master", {"enabled": False})
    assert r.json()["enabled"] is False
    r = api(tp, "PATCH", "/proxies/mysql_master", {"enabled": True})
    assert r.json()["listen"] == f"127.0.0.1:{free_port}"


def test_save_ignores_name_and_toxics(tp):
    p = make(tp)
    p.update({"name": "renamed", "toxics": [{"type": "latency"}], "upstream": "localhost:3307"})
    r = api(tp, "POST", "/proxies/mysql_master", p)
    assert r.status_code == 200
    assert r.json()["name"] == "mysql_master" and r.json()["upstream"] == "localhost:3307"
    assert api(tp, "GET", "/proxies/renamed").status_code == 404


def test_delete(tp):
    make(tp)
    assert api(tp, "DELETE", "/proxies/mysql_master").status_code == 204
    err(api(tp, "DELETE", "/proxies/mysql_master"), 404, "proxy not found")
    err(api(tp, "GET", "/proxies/mysql_master"), 404, "proxy not found")


def test_port_conflict(tp, free_port):
    make(tp, name="a", listen=f"127.0.0.1:{free_port}")
    r = api(tp, "POST", "/proxies", {"name": "b", "listen": f"127.0.0.1:{free_port}", "upstream": "localhost:1"})
    err(r, 500, f"listen tcp 127.0.0.1:{free_port}: bind: address already in use")
    assert sorted(api(tp, "GET", "/proxies").json()) == ["a"]


def test_name_conflict(tp):
    make(tp)
    err(api(tp, "POST", "/proxies", {"name": "mysql_master", "upstream": "localhost:1", "listen": "127.0.0.1:0"}),
        409, "proxy already exists")


def test_reset_enables_and_removes_toxics(tp):
    make(tp)
    api(tp, "POST", "/proxies/mysql_master/toxics", {"type": "latency", "attributes": {"latency": 10}})
    api(tp, "POST", "/proxies/mysql_master", {"enabled": False})
    r = api(tp, "POST", "/reset", b"")
    assert r.status_code == 204 and r.content == b""
    p = api(tp, "GET", "/proxies/mysql_master").json()
    assert p["enabled"] is True and p["toxics"] == []


def test_toxics_list_add_defaults_and_multistream(tp):
    make(tp)
    r = api(tp, "GET", "/proxies/mysql_master/toxics")
    assert r.status_code == 200 and r.json() == []
    r = api(tp, "POST", "/proxies/mysql_master/toxics", {"type": "latency"})
    assert r.status_code == 200
    assert r.json() == {"attributes": {"latency": 0, "jitter": 0}, "name": "latency_downstream",
                        "type": "latency", "stream": "downstream", "toxicity": 1}
    r = api(tp, "POST", "/proxies/mysql_master/toxics",
            {"type": "latency", "stream": "upstream", "attributes": {"latency": 100, "jitter": 10}})
    assert r.json()["name"] == "latency_upstream" and r.json()["attributes"] == {"latency": 100, "jitter": 10}
    toxics = api(tp, "GET", "/proxies/mysql_master/toxics").json()
    assert [t["name"] for t in toxics] == ["latency_upstream", "latency_downstream"]  # upstream first
    assert [t["name"] for t in api(tp, "GET", "/proxies/mysql_master").json()["toxics"]] == \
        ["latency_upstream", "latency_downstream"]


def test_multiple_toxics_of_one_type_and_conflicts(tp):
    make(tp)
    for name in ("lat1", "lat2"):
        assert api(tp, "POST", "/proxies/mysql_master/toxics",
                   {"name": name, "type": "latency", "attributes": {"latency": 1}}).status_code == 200
    err(api(tp, "POST", "/proxies/mysql_master/toxics", {"name": "lat1", "type": "latency", "stream": "upstream"}),
        409, "toxic already exists")
    err(api(tp, "POST", "/proxies/nope/toxics", {"type": "latency"}), 404, "proxy not found")


def test_toxicity_stored_as_sent(tp):
    make(tp)
    for i, value in enumerate((0.1, 2.5, -1, 0)):
        r = api(tp, "POST", "/proxies/mysql_master/toxics", {"name": f"t{i}", "type": "latency", "toxicity": value})
        assert r.status_code == 200 and r.json()["toxicity"] == value
    assert b'"toxicity":0.1' in api(tp, "GET", "/proxies/mysql_master/toxics/t0").content


def test_noop_toxic(tp):
    make(tp)
    r = api(tp, "POST", "/proxies/mysql_master/toxics", {"type": "noop"})
    assert r.status_code == 200 and r.json()["attributes"] == {} and r.json()["name"] == "noop_downstream"


def test_update_partial_attributes_and_toxicity(tp):
    make(tp)
    api(tp, "POST", "/proxies/mysql_master/toxics", {"type": "latency", "toxicity": 0.5,
                                                      "attributes": {"latency": 100, "jitter": 5}})
    r = api(tp, "PATCH", "/proxies/mysql_master/toxics/latency_downstream", {"attributes": {"jitter": 7}})
    assert r.status_code == 200
    assert r.json()["attributes"] == {"latency": 100, "jitter": 7} and r.json()["toxicity"] == 0.5
    r = api(tp, "POST", "/proxies/mysql_master/toxics/latency_downstream",
            {"toxicity": 1, "name": "ignored", "type": "timeout", "stream": "upstream"})
    assert r.json()["toxicity"] == 1 and r.json()["name"] == "latency_downstream"
    assert r.json()["type"] == "latency" and r.json()["stream"] == "downstream"
    err(api(tp, "PATCH", "/proxies/mysql_master/toxics/nope", {"toxicity": 1}), 404, "toxic not found")


def test_remove_toxic(tp):
    make(tp)
    api(tp, "POST", "/proxies/mysql_master/toxics", {"type": "latency"})
    r = api(tp, "DELETE", "/proxies/mysql_master/toxics/latency_downstream")
    assert r.status_code == 204 and r.content == b""
    assert api(tp, "GET", "/proxies/mysql_master/toxics").json() == []
    err(api(tp, "DELETE", "/proxies/mysql_master/toxics/latency_downstream"), 404, "toxic not found")
    err(api(tp, "GET", "/proxies/mysql_master/toxics/latency_downstream"), 404, "toxic not found")


def test_version(tp):
    r = api(tp, "GET", "/version")
    assert r.status_code == 200
    assert r.content == b'{"version": "2.12.0"}\n'
    assert r.headers["content-type"] == "application/json;charset=utf-8"


def test_invalid_stream_and_type(tp):
    make(tp)
    err(api(tp, "POST", "/proxies/mysql_master/toxics", {"type": "latency", "stream": "sideways"}),
        400, "stream was invalid, can be either upstream or downstream")
    err(api(tp, "POST", "/proxies/mysql_master/toxics", {"type": "nonexistent"}), 400, "invalid toxic type")
    err(api(tp, "POST", "/proxies/mysql_master/toxics", {"type": "down"}), 400, "invalid toxic type")


def test_stream_case_insensitive_name_as_sent(tp):
    make(tp)
    r = api(tp, "POST", "/proxies/mysql_master/toxics", {"type": "latency", "stream": "UPSTREAM"})
    assert r.status_code == 200 and r.json()["name"] == "latency_UPSTREAM"


@pytest.mark.parametrize("attrs", [{"latency": "100"}, {"latency": 100.5}])
def test_attribute_type_errors(tp, attrs):
    make(tp)
    r = api(tp, "POST", "/proxies/mysql_master/toxics", {"type": "latency", "attributes": attrs})
    assert r.status_code == 400 and r.json()["error"].startswith("bad request body: ")


def test_body_decoding_is_go_like(tp):
    # case-insensitive keys, unknown keys ignored, trailing bytes ignored
    r = api(tp, "POST", "/proxies", '{"NAME":"ci","Upstream":"localhost:1","listen":"127.0.0.1:0","x":1} trailing')
    assert r.status_code == 201 and r.json()["name"] == "ci"
    r = api(tp, "POST", "/proxies", "")
    assert r.status_code == 400 and r.json()["error"].startswith("bad request body: ")


def test_html_escaping(tp):
    r = api(tp, "POST", "/proxies", {"name": "a<b>&c", "upstream": "localhost:1", "listen": "127.0.0.1:0"})
    assert r.status_code == 201
    assert b"a\\u003cb\\u003e\\u0026c" in r.content


def test_update_listen_and_upstream_restarts(tp, free_port):
    make(tp)
    r = api(tp, "PATCH", "/proxies/mysql_master", {"listen": f"127.0.0.1:{free_port}"})
    assert r.status_code == 200
    assert r.json()["listen"] == f"127.0.0.1:{free_port}" and r.json()["enabled"] is True
    r = api(tp, "PATCH", "/proxies/mysql_master", {"upstream": "localhost:3307"})
    assert r.json()["upstream"] == "localhost:3307" and r.json()["listen"] == f"127.0.0.1:{free_port}"


def test_populate_replaces_differing_proxy(tp):
    make(tp, name="one")
    api(tp, "POST", "/proxies/one/toxics", {"type": "latency"})
    r = api(tp, "POST", "/populate", [{"name": "one", "listen": "127.0.0.1:0", "upstream": "localhost:9999"}])
    assert r.status_code == 201
    one = api(tp, "GET", "/proxies/one").json()
    assert one["upstream"] == "localhost:9999" and one["toxics"] == []


@pytest.mark.parametrize("listen", ["missing", "", None], ids=["missing", "empty", "null"])
def test_create_without_listen_binds_a_free_port(tp, echo, listen):
    """Toxiproxy passes "" to net.Listen: 201 and an ephemeral port (ours binds 127.0.0.1 only)."""
    body = {"name": "nolisten", "upstream": echo.address}
    if listen != "missing":
        body["listen"] = listen
    r = api(tp, "POST", "/proxies", body)
    assert r.status_code == 201, r.text
    host, _, port = r.json()["listen"].rpartition(":")
    assert int(port) > 0 and r.json()["enabled"] is True
    if tp.backend == "embedded":
        assert host == "127.0.0.1"
    with socket.create_connection(("127.0.0.1", int(port)), timeout=5.0) as s:
        s.sendall(b"ping")
        s.settimeout(5.0)
        assert s.recv(4) == b"ping"
    assert api(tp, "GET", "/proxies/nolisten").json()["listen"] == r.json()["listen"]


def test_populate_without_listen_binds_a_free_port(tp):
    r = api(tp, "POST", "/populate", [{"name": "p1", "upstream": "localhost:1"},
                                      {"name": "p2", "upstream": "localhost:1", "listen": None}])
    assert r.status_code == 201, r.text
    ports = [int(p["listen"].rpartition(":")[2]) for p in r.json()["proxies"]]
    assert all(ports) and ports[0] != ports[1]


def _nested(depth):
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("path", ["/proxies", "/populate", "/proxies/mysql_master/toxics"])
def test_deep_nesting_read_like_go(tp, path):
    """Go's decoder takes 10000 levels and refuses the 10001st with a 400; never a 500."""
    make(tp)
    body = {"/proxies": '{"name":"deep","upstream":"localhost:1","junk":%s}',
            "/populate": '[{"name":"deep","upstream":"localhost:1","junk":%s}]',
            "/proxies/mysql_master/toxics": '{"type":"noop","junk":%s}'}[path]
    outer = 2 if path == "/populate" else 1  # levels around "junk"
    r = api(tp, "POST", path, body % _nested(10000 - outer))
    assert r.status_code in (200, 201), r.text
    r = api(tp, "POST", path, body % _nested(10001 - outer))
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "bad request body: invalid character '[' exceeded max depth"


@pytest.mark.parametrize("number", ["1e39", "1e400", "1" + "0" * 400])
def test_toxicity_beyond_float32_is_400(tp, number):
    make(tp)
    r = api(tp, "POST", "/proxies/mysql_master/toxics", '{"type":"latency","toxicity":%s}' % number)
    assert r.status_code == 400, r.text
    assert r.json()["error"].startswith("bad request body: json: cannot unmarshal number ")
    r = api(tp, "POST", "/proxies/mysql_master/toxics", '{"type":"latency","toxicity":2}')
    r = api(tp, "PATCH", "/proxies/mysql_master/toxics/latency_downstream", '{"toxicity":%s}' % number)
    assert r.status_code == 400, r.text


@pytest.mark.parametrize("body, status, error", [
    ("null", 201, None),
    ('"x"', 400, "bad request body: json: cannot unmarshal string into Go value of type []"),
    ("7", 400, "bad request body: json: cannot unmarshal number into Go value of type []"),
    ("{}", 400, "bad request body: json: cannot unmarshal object into Go value of type []"),
])
def test_populate_non_array_bodies(tp, body, status, error):
    r = api(tp, "POST", "/populate", body)
    assert r.status_code == status, r.text
    if error is None:
        assert r.json() == {"proxies": None}
    else:
        assert r.json()["error"].startswith(error)


def test_empty_listen_on_update_and_on_a_disabled_proxy(tp):
    p = make(tp, name="el", listen="", enabled=False)
    assert p["listen"] == "" and p["enabled"] is False  # never bound: echoed as given
    r = api(tp, "PATCH", "/proxies/el", {"enabled": True})
    assert r.status_code == 200 and int(r.json()["listen"].rpartition(":")[2]) > 0
    r = api(tp, "PATCH", "/proxies/el", {"listen": ""})
    assert r.status_code == 200, r.text
    assert r.json()["enabled"] is True and int(r.json()["listen"].rpartition(":")[2]) > 0


@pytest.mark.parametrize("literal, message", [
    ("NaN", "invalid character 'N' looking for beginning of value"),
    ("Infinity", "invalid character 'I' looking for beginning of value"),
    ("-Infinity", "invalid character 'I' in numeric literal"),
])
def test_non_finite_toxicity_is_400(tp, literal, message):
    """JSON has no NaN/inf: Go's decoder stops at the literal (Python's json would accept it)."""
    make(tp)
    api(tp, "POST", "/proxies/mysql_master/toxics", {"name": "t", "type": "latency"})
    err(api(tp, "POST", "/proxies/mysql_master/toxics", '{"type":"latency","toxicity":%s}' % literal),
        400, f"bad request body: {message}")
    err(api(tp, "PATCH", "/proxies/mysql_master/toxics/t", '{"toxicity":%s}' % literal),
        400, f"bad request body: {message}")


# -- Go's decoder messages, byte for byte (the Go types Toxiproxy 2.12 decodes into) ----------------
POPULATE_ITEM = r'struct { toxiproxy.Proxy; Enabled *bool "json:\"enabled\"" }'
UPDATE_TYPE = r'struct { Attributes interface {} "json:\"attributes\""; Toxicity float32 "json:\"toxicity\"" }'


@pytest.mark.parametrize("method, path, body, message", [
    ("POST", "/proxies", '{"name":5}', "Go struct field Proxy.name of type string"),
    ("POST", "/proxies", "[1]", "Go value of type toxiproxy.Proxy"),
    ("PATCH", "/proxies/mysql_master", '{"enabled":"yes"}', "Go struct field Proxy.enabled of type bool"),
    ("POST", "/proxies/mysql_master/toxics", '{"type":"latency","name":"l2","attributes":{"latency":"x"}}',
     "Go struct field LatencyToxic.attributes.latency of type int64"),
    ("POST", "/proxies/mysql_master/toxics", '{"type":"reset_peer","attributes":{"timeout":true}}',
     "Go struct field ResetToxic.attributes.timeout of type int64"),
    ("POST", "/proxies/mysql_master/toxics", '{"type":"slicer","attributes":{"delay":1.5}}',
     "number 1.5 into Go struct field SlicerToxic.attributes.delay of type int"),
    ("POST", "/proxies/mysql_master/toxics", '{"type":"latency","attributes":5}',
     "Go struct field ToxicWrapper.attributes of type toxics.NoopToxic"),
    ("POST", "/proxies/mysql_master/toxics", '{"type":"latency","name":[]}',
     "Go struct field ToxicWrapper.name of type string"),
    ("PATCH", "/proxies/mysql_master/toxics/latency_downstream", '{"toxicity":"z"}',
     "Go struct field .toxicity of type float32"),
    ("PATCH", "/proxies/mysql_master/toxics/latency_downstream", '{"attributes":[]}',
     "Go struct field .attributes of type toxics.LatencyToxic"),
    ("PATCH", "/proxies/mysql_master/toxics/latency_downstream", "[1]", f"Go value of type {UPDATE_TYPE}"),
])
def test_type_errors_name_the_go_types(tp, method, path, body, message):
    make(tp)
    assert api(tp, "POST", "/proxies/mysql_master/toxics", {"type": "latency"}).status_code == 200
    r = api(tp, method, path, body)
    err(r, 400, f"bad request body: json: cannot unmarshal {_json_kind(body, message)} into {message}"
        if not message.startswith("number") else f"bad request body: json: cannot unmarshal {message}")


def _json_kind(body: str, message: str) -> str:
    """The JSON kind Go names: the offending value is the last one in these one-field bodies."""
    value = json.loads(body)
    while isinstance(value, dict):
        value = list(value.values())[-1]
    if isinstance(value, list) and body.startswith("[") and "Go value" in message:
        return "array"
    return {str: "string", bool: "bool", int: "number", float: "number", list: "array",
            dict: "object"}[type(value)]


def test_populate_type_errors_and_body_key_order(tp):
    r = api(tp, "POST", "/populate", '[{"name":5}]')
    assert r.status_code == 400 and r.headers["content-type"] == "application/json"
    assert r.content == json.dumps({
        "error": "bad request body: json: cannot unmarshal number into Go struct field .name of type string",
        "status": 400, "proxies": None}, separators=(",", ":")).encode()
    r = api(tp, "POST", "/populate", "{}")
    assert r.json()["error"] == f"bad request body: json: cannot unmarshal object into Go value of type []{POPULATE_ITEM}"


def test_toxic_update_with_a_type_error_applies_the_fields_that_decoded(tp):
    """Toxiproxy decodes into the live toxic: valid attribute fields change, the toxicity does not."""
    make(tp)
    api(tp, "POST", "/proxies/mysql_master/toxics", {"type": "latency", "attributes": {"latency": 10}})
    r = api(tp, "PATCH", "/proxies/mysql_master/toxics/latency_downstream",
            '{"toxicity":0.5,"attributes":{"latency":30,"jitter":"x"}}')
    err(r, 400, "bad request body: json: cannot unmarshal string into Go struct field "
        "LatencyToxic.attributes.jitter of type int64")
    shown = api(tp, "GET", "/proxies/mysql_master/toxics/latency_downstream").json()
    assert shown["attributes"] == {"latency": 30, "jitter": 0} and shown["toxicity"] == 1


@pytest.mark.parametrize("path, location", [("//proxies", "/proxies"), ("/proxies/../version?x=1", "/version?x=1"),
                                            ("/proxies/./mysql_master/", "/proxies/mysql_master/")])
def test_unclean_paths_redirect(tp, path, location):
    """gorilla/mux answers a path that is not canonical with 301 to the cleaned one (HTTP clients
    normalise such paths, so the request is written by hand)."""
    host, port = tp.url.rsplit("/", 1)[-1].rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    head = reply.split(b"\r\n\r\n", 1)[0].decode().split("\r\n")
    assert head[0] == "HTTP/1.1 301 Moved Permanently", head
    assert f"Location: {location}" in head and "Content-Length: 0" in head
    assert not any(h.lower().startswith("x-toxiproxy-request-id") for h in head)


def test_browser_403_is_not_sniffed(tp):
    r = api(tp, "GET", "/proxies", headers={"User-Agent": "Mozilla/5.0 (Linux x86_64)"})
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["content-type"] == JSON_ERR
