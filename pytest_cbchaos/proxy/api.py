"""Toxiproxy 2.12.0 HTTP API on aiohttp: exact routes, status codes, JSON and error bodies.

Routing is done by hand (one catch-all aiohttp route) so unknown paths, wrong methods and the
matched-route-only middleware (request id, browser 403) behave like gorilla/mux in Toxiproxy.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import uuid
from typing import Any, Awaitable, Callable

from aiohttp import web

from pytest_cbchaos.proxy import VERSION
from pytest_cbchaos.proxy.gojson import (DecodeError, Float32, decode_fields, decode_struct, encode, go_kind,
                                          parse_first)
from pytest_cbchaos.proxy.server import STREAMS, ApiError, ProxyCollection, ProxyRuntime, ToxicSpec
from pytest_cbchaos.proxy.toxics import EXTENSION_TYPES, REGISTRY

HANDLER_TIMEOUT = 25.0
TIMEOUT_BODY = b"<html><head><title>Timeout</title></head><body><h1>Timeout</h1></body></html>"
TEXT = "text/plain; charset=utf-8"

PROXY_FIELDS = {"name": "string", "listen": "string", "upstream": "string", "enabled": "bool"}
# The Go types Toxiproxy decodes into, as its messages name them: a proxy is created and updated
# as a ``Proxy``; populate decodes a slice of an anonymous struct embedding it; a toxic is created
# as a ``ToxicWrapper`` (attributes first land on a NoopToxic, then on the type's struct) and
# updated through an anonymous struct holding the live toxic's attributes.
PROXY_STRUCT, PROXY_TYPE = "Proxy", "toxiproxy.Proxy"
POPULATE_ITEM = r'struct { toxiproxy.Proxy; Enabled *bool "json:\"enabled\"" }'
UPDATE_TYPE = r'struct { Attributes interface {} "json:\"attributes\""; Toxicity float32 "json:\"toxicity\"" }'
TOXIC_FIELDS = {"name": "string", "type": "string", "stream": "string", "toxicity": "float32",
                "attributes": "struct:toxics.NoopToxic"}

Handler = Callable[[web.Request, ProxyCollection, dict[str, str], bytes], Awaitable[web.StreamResponse]]


def json_response(obj: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=encode(obj).encode(), headers={"Content-Type": "application/json"})


def error_response(message: str, status: int) -> web.Response:
    body = encode({"error": message, "status": status}) + "\n"
    return web.Response(status=status, body=body.encode(),
                        headers={"Content-Type": TEXT, "X-Content-Type-Options": "nosniff"})


def _bad_body(exc: DecodeError) -> ApiError:
    return ApiError(f"bad request body: {exc}", 400)


def _decode(raw: bytes, fields: dict[str, str], struct_name: str, go_type: str) -> dict[str, Any]:
    try:
        return decode_struct(parse_first(raw), fields, struct_name, go_type)
    except DecodeError as exc:
        raise _bad_body(exc) from None


# -- proxy handlers -------------------------------------------------------------------------------
async def reset(req, app: ProxyCollection, m, raw) -> web.Response:
    for proxy in list(app.proxies.values()):
        if proxy.server is None:
            await proxy.start()
        await proxy.remove_all_toxics()
    return web.Response(status=204)


async def list_proxies(req, app, m, raw) -> web.Response:
    return json_response({name: app.proxies[name].to_json() for name in sorted(app.proxies)})


def _proxy_input(raw: bytes) -> dict[str, Any]:
    data = {"name": "", "listen": "", "upstream": "", "enabled": True}
    data.update(_decode(raw, PROXY_FIELDS, PROXY_STRUCT, PROXY_TYPE))
    return data


def decode_proxy_list(raw: bytes) -> list[dict[str, Any]]:
    """A /populate body (or ``-config`` file): proxy inputs with defaults, or a DecodeError."""
    value = parse_first(raw)
    if value is None:  # Go decodes null into a nil slice: nothing to populate
        value = []
    if not isinstance(value, list):
        raise DecodeError(f"json: cannot unmarshal {go_kind(value)} into Go value of type []{POPULATE_ITEM}")
    entries = []
    for item in value:
        data = {"name": "", "listen": "", "upstream": "", "enabled": True}
        data.update(decode_struct(item, PROXY_FIELDS, "", POPULATE_ITEM))
        entries.append(data)
    return entries


def _check_required(data: dict[str, Any], suffix: str = "") -> None:
    if not data["name"]:
        raise ApiError(f"missing required field: name{suffix}", 400)
    if not data["upstream"]:
        raise ApiError(f"missing required field: upstream{suffix}", 400)


async def _add_proxy(app: ProxyCollection, data: dict[str, Any]) -> ProxyRuntime:
    if data["name"] in app.proxies:
        raise ApiError("proxy already exists", 409)
    proxy = ProxyRuntime(app, data["name"], data["listen"], data["upstream"])
    if data["enabled"]:
        await proxy.start()
    app.proxies[proxy.name] = proxy
    return proxy


async def create_proxy(req, app, m, raw) -> web.Response:
    data = _proxy_input(raw)
    _check_required(data)
    proxy = await _add_proxy(app, data)
    return json_response(proxy.to_json(), 201)


def _differs(app: ProxyCollection, proxy: ProxyRuntime, listen: str, upstream: str) -> bool:
    if upstream != proxy.upstream:
        return True
    if listen == proxy.listen:
        return False
    bound = proxy.bound_address()
    from pytest_cbchaos.proxy.server import resolve_listen
    resolved = resolve_listen(listen, app.loopback_only)
    if bound is None:
        return True
    return resolved != bound


async def _update_proxy(app: ProxyCollection, proxy: ProxyRuntime, listen: str, upstream: str, enabled: bool) -> None:
    if _differs(app, proxy, listen, upstream):
        proxy.stop()
        proxy.listen = listen
        proxy.upstream = upstream
    if enabled != proxy.enabled:
        if enabled:
            await proxy.start()
        else:
            proxy.stop()


async def populate(req, app: ProxyCollection, m, raw) -> web.Response:
    done: list[ProxyRuntime] = []

    def reply(status: int, error: str | None = None) -> web.Response:
        data: dict[str, Any] = {}
        if error is not None:  # Go's embedded *ApiError: its fields first, omitted when nil
            data["error"] = error
            data["status"] = status
        data["proxies"] = [p.to_json() for p in done] if done else None
        return web.Response(status=status, body=encode(data).encode(), headers={"Content-Type": "application/json"})

    try:
        entries = decode_proxy_list(raw)
    except DecodeError as exc:
        return reply(400, f"bad request body: {exc}")
    for i, data in enumerate(entries, 1):
        try:
            _check_required(data, f" at proxy {i}")
        except ApiError as exc:
            return reply(exc.status, exc.message)
    for data in entries:
        try:
            existing = app.proxies.get(data["name"])
            if existing is not None:
                if not _differs(app, existing, data["listen"], data["upstream"]):
                    done.append(existing)
                    continue
                existing.stop()
                del app.proxies[data["name"]]
            done.append(await _add_proxy(app, data))
        except ApiError as exc:
            return reply(exc.status, exc.message)
    return reply(201)


async def show_proxy(req, app, m, raw) -> web.Response:
    return json_response(app.get(m["proxy"]).to_json())


async def update_proxy(req, app, m, raw) -> web.Response:
    proxy = app.get(m["proxy"])
    data = {"listen": proxy.listen, "upstream": proxy.upstream, "enabled": proxy.enabled}
    data.update(_decode(raw, PROXY_FIELDS, PROXY_STRUCT, PROXY_TYPE))
    await _update_proxy(app, proxy, data["listen"], data["upstream"], data["enabled"])
    return json_response(proxy.to_json())


async def delete_proxy(req, app, m, raw) -> web.Response:
    proxy = app.get(m["proxy"])
    proxy.stop()
    app.proxies.pop(proxy.name, None)
    return web.Response(status=204)


# -- toxic handlers -------------------------------------------------------------------------------
def _decode_attributes(toxic_type: str, raw_attrs: Any, base: dict[str, Any]) -> tuple[dict[str, Any], DecodeError | None]:
    """The attributes over ``base`` with every field that decoded, and the first type error."""
    cls = REGISTRY[toxic_type]
    decoded, error = decode_fields(raw_attrs, cls.ATTRS, cls.go_struct(), "toxics." + cls.go_struct(),
                                   path="attributes.")
    return {**base, **decoded}, error


def _validated(toxic_type: str, attrs: dict[str, Any]) -> dict[str, Any]:
    problem = REGISTRY[toxic_type].validate(attrs)
    if problem is not None:
        raise ApiError(f"bad request body: {problem}", 400)
    return attrs


async def list_toxics(req, app, m, raw) -> web.Response:
    proxy = app.get(m["proxy"])
    return json_response([t.to_json() for s in STREAMS for t in proxy.toxics[s]])


async def create_toxic(req, app, m, raw) -> web.Response:
    proxy = app.get(m["proxy"])
    data: dict[str, Any] = {"name": "", "type": "", "stream": "", "toxicity": Float32(1.0), "attributes": None}
    data.update(_decode(raw, TOXIC_FIELDS, "ToxicWrapper", "toxics.ToxicWrapper"))
    stream_sent = data["stream"] or "downstream"
    stream = stream_sent.lower()
    if stream not in STREAMS:
        raise ApiError("stream was invalid, can be either upstream or downstream", 400)
    name = data["name"] or f"{data['type']}_{stream_sent}"
    if data["type"] not in REGISTRY:
        raise ApiError("invalid toxic type", 400)
    if proxy.find_toxic(name) is not None:
        raise ApiError("toxic already exists", 409)
    attrs, error = _decode_attributes(data["type"], data["attributes"], REGISTRY[data["type"]].defaults())
    if error is not None:
        raise _bad_body(error)
    _validated(data["type"], attrs)
    spec = ToxicSpec(name, data["type"], stream, data["toxicity"], attrs, stream_sent)
    proxy.add_toxic(spec)
    return json_response(spec.to_json())


def _toxic(app: ProxyCollection, m: dict[str, str]) -> tuple[ProxyRuntime, ToxicSpec]:
    proxy = app.get(m["proxy"])
    spec = proxy.find_toxic(m["toxic"])
    if spec is None:
        raise ApiError("toxic not found", 404)
    return proxy, spec


async def show_toxic(req, app, m, raw) -> web.Response:
    return json_response(_toxic(app, m)[1].to_json())


async def update_toxic(req, app, m, raw) -> web.Response:
    """Toxiproxy decodes the body straight into the live toxic's attributes: on a type error the
    attribute fields that decoded are applied, the toxicity is not, and the error is answered."""
    proxy, spec = _toxic(app, m)
    cls = REGISTRY[spec.type]
    try:
        body = parse_first(raw)
    except DecodeError as exc:
        raise _bad_body(exc) from None
    data, error = decode_fields(body, {"attributes": "struct:toxics." + cls.go_struct(), "toxicity": "float32"},
                                "", UPDATE_TYPE)
    attrs, attrs_error = _decode_attributes(spec.type, data.get("attributes"), spec.attributes)
    if attrs_error is not None and (error is None or _key_before(body, "attributes", "toxicity")):
        error = attrs_error  # Go reports the first type error in document order
    if error is not None:
        if attrs != spec.attributes and cls.validate(attrs) is None:
            await proxy.update_toxic(spec, ToxicSpec(spec.name, spec.type, spec.stream, spec.toxicity, attrs,
                                                     spec.stream_sent))
        raise _bad_body(error)
    new = ToxicSpec(spec.name, spec.type, spec.stream, data.get("toxicity", spec.toxicity),
                    _validated(spec.type, attrs), spec.stream_sent)
    await proxy.update_toxic(spec, new)
    return json_response(new.to_json())


def _key_before(body: dict[str, Any], first: str, second: str) -> bool:
    """Whether (case-insensitive) key ``first`` comes before ``second`` in the object."""
    order = [k.lower() for k in body]
    return second not in order or (first in order and order.index(first) < order.index(second))


async def delete_toxic(req, app, m, raw) -> web.Response:
    proxy, spec = _toxic(app, m)
    await proxy.remove_toxic(spec)
    return web.Response(status=204)


# -- misc -----------------------------------------------------------------------------------------
async def version(req, app, m, raw) -> web.Response:
    return web.Response(body=f'{{"version": "{VERSION}"}}\n'.encode(),
                        headers={"Content-Type": "application/json;charset=utf-8"})


async def metrics(req, app: ProxyCollection, m, raw) -> web.Response:
    return web.Response(body=app.metrics_text().encode(),
                        headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})


async def capabilities(req, app, m, raw) -> web.Response:
    return json_response({"toxics": sorted(EXTENSION_TYPES), "seed": True, "loopback_only": app.loopback_only})


ALL = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
SEG = r"([^/]+)"
ROUTES: list[tuple[re.Pattern[str], tuple[str, ...], dict[str, Handler]]] = []


def route(pattern: str, names: tuple[str, ...], handlers: dict[str, Handler]) -> None:
    ROUTES.append((re.compile("^" + pattern + "$"), names, handlers))


route("/reset", (), {"POST": reset})
route("/proxies", (), {"GET": list_proxies, "POST": create_proxy})
route("/populate", (), {"POST": populate})
route(f"/proxies/{SEG}", ("proxy",), {"GET": show_proxy, "POST": update_proxy, "PATCH": update_proxy,
                                      "DELETE": delete_proxy})
route(f"/proxies/{SEG}/toxics", ("proxy",), {"GET": list_toxics, "POST": create_toxic})
route(f"/proxies/{SEG}/toxics/{SEG}", ("proxy", "toxic"),
      {"GET": show_toxic, "POST": update_toxic, "PATCH": update_toxic, "DELETE": delete_toxic})
route("/version", (), {"GET": version})
route("/cbchaos/capabilities", (), {"GET": capabilities})

_request_ids = itertools.count(1)
_RUN = uuid.uuid4().hex[:8]


def clean_path(path: str) -> str:
    """gorilla/mux's ``cleanPath``: Go's ``path.Clean`` (one slash, no ``.`` or ``..``) keeping a
    trailing slash."""
    if not path.startswith("/"):
        path = "/" + path
    parts: list[str] = []
    for part in path.split("/"):
        if part == "..":
            if parts:
                parts.pop()
        elif part and part != ".":
            parts.append(part)
    clean = "/" + "/".join(parts)
    if path.endswith("/") and clean != "/":
        clean += "/"
    return clean


def make_app(collection: ProxyCollection) -> web.Application:
    from urllib.parse import quote, unquote

    async def dispatch(request: web.Request) -> web.StreamResponse:
        path = request.raw_path.split("?", 1)[0]
        clean = clean_path(request.path)
        if clean != request.path:  # gorilla/mux redirects to the canonical path, before any route
            location = quote(clean, safe="$&+,/:;=@-_.~") + (f"?{request.query_string}" if request.query_string else "")
            return web.Response(status=301, headers={"Location": location})
        handler: Handler | None = None
        params: dict[str, str] = {}
        path_matched = False
        if path == "/metrics" and (collection.proxy_metrics or collection.runtime_metrics):
            handler = metrics
            path_matched = True
        for pattern, names, handlers in ROUTES if handler is None else ():
            match = pattern.match(path)
            if match:
                path_matched = True
                handler = handlers.get(request.method)
                params = {n: unquote(v) for n, v in zip(names, match.groups())}
                break
        if handler is None:
            if path_matched:
                return web.Response(status=405)
            return web.Response(status=404, body=b"404 page not found\n",
                                headers={"Content-Type": TEXT, "X-Content-Type-Options": "nosniff"})
        request_id = f"{_RUN}-{next(_request_ids)}"
        if request.headers.get("User-Agent", "").startswith("Mozilla/"):
            response: web.StreamResponse = web.Response(status=403, body=b"User agent not allowed\n",
                                                        headers={"Content-Type": TEXT,
                                                                 "X-Content-Type-Options": "nosniff"})
        else:
            raw = await request.read()
            try:
                response = await asyncio.wait_for(handler(request, collection, params, raw), HANDLER_TIMEOUT)
            except ApiError as exc:
                response = error_response(exc.message, exc.status)
            except asyncio.TimeoutError:
                response = web.Response(status=503, body=TIMEOUT_BODY, headers={"Content-Type": "text/html; charset=utf-8"})
            except Exception as exc:  # an unexpected failure still answers in Toxiproxy's error shape
                collection.log(f"internal error: {exc!r}")
                response = error_response(str(exc) or type(exc).__name__, 500)
        response.headers["X-Toxiproxy-Request-Id"] = request_id
        return response

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_route("*", r"/{tail:[\s\S]*}", dispatch)  # every path, a decoded newline included
    return app
