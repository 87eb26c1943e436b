"""First-party Toxiproxy client: per-instance URL, timeouts on every call, typed errors for every
non-2xx status, PATCH updates against servers >= 2.6.0, Ruby-style context managers, capability
checks for cbchaos extension toxics, and every mutation written to a fault journal when set.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterator
from urllib.parse import quote

from pytest_cbchaos.proxy.http import HttpClient, Response, TransportError, TransportTimeout

if TYPE_CHECKING:
    from pytest_cbchaos.faults.journal import FaultJournal, FaultWindow

EXTENSION_TYPES = frozenset({"cbchaos_blackhole", "cbchaos_http_fault"})


class ToxiproxyError(Exception):
    """A non-2xx answer: ``status`` and the server's ``error`` message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message


class BadRequest(ToxiproxyError):
    pass


class NotFound(ToxiproxyError):
    pass


class Conflict(ToxiproxyError):
    pass


class ServerError(ToxiproxyError):
    pass


class BackendCapabilityError(ToxiproxyError):
    """An extension toxic was requested from a backend that lacks it."""

    def __init__(self, message: str) -> None:
        super().__init__(0, message)


_ERRORS = {400: BadRequest, 404: NotFound, 409: Conflict}


def _version_tuple(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.lstrip("v").split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


@dataclass
class ToxicHandle:
    """A toxic as the proxy's API reports it; its behaviour on the link is a
    :class:`pytest_cbchaos.proxy.toxics.base.Toxic`."""

    name: str
    type: str
    stream: str
    toxicity: float
    attributes: dict[str, Any] = field(default_factory=dict)
    proxy: "Proxy | None" = field(default=None, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: dict[str, Any], proxy: "Proxy | None" = None) -> "ToxicHandle":
        return cls(data["name"], data["type"], data["stream"], data.get("toxicity", 1.0),
                   dict(data.get("attributes") or {}), proxy)

    def remove(self) -> None:
        assert self.proxy is not None
        self.proxy.remove_toxic(self.name)


class Proxy:
    def __init__(self, client: "Client", data: dict[str, Any]) -> None:
        self._client = client
        self._load(data)

    def _load(self, data: dict[str, Any]) -> None:
        self.name: str = data["name"]
        self.listen: str = data["listen"]
        self.upstream: str = data["upstream"]
        self.enabled: bool = data["enabled"]
        self._toxics_json = data.get("toxics") or []

    def __repr__(self) -> str:
        return f"Proxy(name={self.name!r}, listen={self.listen!r}, upstream={self.upstream!r}, enabled={self.enabled})"

    @property
    def listen_host(self) -> str:
        host = self.listen.rsplit(":", 1)[0]
        return host.strip("[]") or "127.0.0.1"

    @property
    def listen_port(self) -> int:
        return int(self.listen.rsplit(":", 1)[1])

    @property
    def _path(self) -> str:
        return f"/proxies/{quote(self.name, safe='')}"

    # -- proxy ---------------------------------------------------------------------------------
    def refresh(self) -> "Proxy":
        self._load(self._client._request("GET", self._path))
        return self

    def _update(self, body: dict[str, Any]) -> None:
        self._load(self._client._request(self._client._update_method(), self._path, body))

    def enable(self) -> None:
        self._update({"enabled": True})
        self._client._end_window(("down", self.name))

    def disable(self) -> None:
        window = self._client._begin("down", self.name, {})
        try:
            self._update({"enabled": False})
        except BaseException as exc:
            self._client._drop_window(window, exc)
            raise
        self._client._started(("down", self.name), window)

    def delete(self) -> None:
        self._client._request("DELETE", self._path)
        self._client._end_prefix(self.name)

    # -- toxics --------------------------------------------------------------------------------
    def toxics(self) -> list[ToxicHandle]:
        return [ToxicHandle.from_json(t, self) for t in self._client._request("GET", self._path + "/toxics")]

    def add_toxic(self, type: str, *, stream: str = "downstream", toxicity: float = 1.0,
                  name: str | None = None, **attributes: Any) -> ToxicHandle:
        return self._add_toxic(type, stream, toxicity, name, attributes, kind=f"toxic:{type}")

    def _add_toxic(self, type: str, stream: str, toxicity: float, name: str | None,
                   attributes: dict[str, Any], *, kind: str) -> ToxicHandle:
        if type in EXTENSION_TYPES and type not in self._client.capabilities():
            raise BackendCapabilityError(
                f"toxic type {type!r} is a pytest-cbchaos extension and the server at {self._client.url} "
                "does not provide it (use the embedded backend, or mark the test cbchaos_backends('embedded'))")
        body: dict[str, Any] = {"type": type, "stream": stream, "toxicity": toxicity, "attributes": attributes}
        if name is not None:
            body["name"] = name
        params = {"stream": stream, "toxicity": toxicity, "attributes": dict(attributes)}
        window = self._client._begin(kind, self.name, params)
        try:
            toxic = ToxicHandle.from_json(self._client._request("POST", self._path + "/toxics", body), self)
        except BaseException as exc:
            self._client._drop_window(window, exc)
            raise
        self._client._started(("toxic", self.name, toxic.name), window)
        return toxic

    def update_toxic(self, name: str, *, toxicity: float | None = None, **attributes: Any) -> ToxicHandle:
        body: dict[str, Any] = {"attributes": attributes}
        if toxicity is not None:
            body["toxicity"] = toxicity
        path = f"{self._path}/toxics/{quote(name, safe='')}"
        toxic = ToxicHandle.from_json(self._client._request(self._client._update_method(), path, body), self)
        if self._client.journal is not None:
            self._client.journal.instant(f"toxic_update:{toxic.type}", self.name,
                                         {"name": name, "toxicity": toxicity, "attributes": dict(attributes)})
        return toxic

    def remove_toxic(self, name: str) -> None:
        self._client._request("DELETE", f"{self._path}/toxics/{quote(name, safe='')}")
        self._client._end_window(("toxic", self.name, name))

    # -- context managers (Ruby client style) -------------------------------------------------
    @contextmanager
    def toxic(self, type: str, *, stream: str = "downstream", toxicity: float = 1.0,
              name: str | None = None, **attributes: Any) -> Iterator[ToxicHandle]:
        toxic = self.add_toxic(type, stream=stream, toxicity=toxicity, name=name, **attributes)
        try:
            yield toxic
        finally:
            try:
                self.remove_toxic(toxic.name)
            except NotFound:
                pass

    @contextmanager
    def down(self) -> Iterator["Proxy"]:
        self.disable()
        try:
            yield self
        finally:
            self.enable()

    @contextmanager
    def partition(self, stream: str = "downstream") -> Iterator[ToxicHandle]:
        """Half-open partition: ``stream`` blackholed (portable: timeout toxic with timeout 0)."""
        toxic = self._add_toxic("timeout", stream, 1.0, f"cbchaos_partition_{stream}", {"timeout": 0},
                                kind=f"partition:{stream}")
        try:
            yield toxic
        finally:
            try:
                self.remove_toxic(toxic.name)
            except NotFound:
                pass


class LeasedProxy(Proxy):
    """A proxy that holds its listen port's lease (anything with ``release()``) for its life."""

    def __init__(self, client: "Client", data: dict[str, Any], lease: Any) -> None:
        super().__init__(client, data)
        self.lease: Any = lease

    def delete(self) -> None:
        try:
            super().delete()
        finally:
            self.release()

    def release(self) -> None:
        """Give the port back (idempotent); ``delete`` does it, a proxy deleted elsewhere needs it."""
        if self.lease is not None:
            self.lease.release()
            self.lease = None

    def close(self) -> None:
        """Delete, tolerating a server that is already gone; the lease is released either way."""
        try:
            self.delete()
        except Exception:
            self.release()

    def reset(self) -> None:
        """Remove this proxy's toxics and re-enable it (never a global /reset: backends may be shared).

        A proxy that something deleted (a test calling ``destroy()``/``destroy_all()`` on the shared
        server) is created again on its leased port, so the next test gets the proxy it expects."""
        try:
            toxics = self.toxics()
        except NotFound:
            body = {"name": self.name, "upstream": self.upstream, "listen": self.listen, "enabled": True}
            self._load(self._client._request("POST", "/proxies", body))
            return
        for toxic in toxics:
            self.remove_toxic(toxic.name)
        self.refresh()
        if not self.enabled:
            self.enable()


class Client:
    def __init__(self, url: str, *, timeout: float = 5.0, journal: "FaultJournal | None" = None) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.journal = journal
        self._http = HttpClient(self.url, timeout=timeout, headers={"User-Agent": "pytest-cbchaos"})
        self._patch: bool | None = None
        self._caps: set[str] | None = None
        self._windows: dict[tuple[str, ...], "FaultWindow"] = {}

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transport -------------------------------------------------------------------------------
    def _raw(self, method: str, path: str, body: Any = None) -> Response:
        content = None if body is None else json.dumps(body).encode()
        try:
            return self._http.request(method, path, content=content,
                                      headers={"Content-Type": "application/json"} if content else None)
        except TransportTimeout as exc:
            raise ServerError(0, f"{method} {self.url}{path}: no answer within {self.timeout}s") from exc
        except TransportError as exc:
            raise ServerError(0, f"{method} {self.url}{path}: {exc}") from exc

    def _request(self, method: str, path: str, body: Any = None) -> Any:
        response = self._raw(method, path, body)
        if response.status_code >= 300:
            try:
                message = response.json()["error"]
            except Exception:
                message = response.text.strip() or response.reason_phrase
            status = response.status_code
            cls = _ERRORS.get(status, ServerError if status >= 500 else ToxiproxyError)
            raise cls(status, message)
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    def _update_method(self) -> str:
        if self._patch is None:
            try:
                self._patch = _version_tuple(self.version()) >= (2, 6, 0)
            except ToxiproxyError:
                self._patch = False
        return "PATCH" if self._patch else "POST"

    # -- journal -----------------------------------------------------------------------------------
    def _begin(self, kind: str, target: str, params: dict[str, Any]) -> "FaultWindow | None":
        return self.journal.begin(kind, target, params) if self.journal is not None else None

    def _started(self, key: tuple[str, ...], window: "FaultWindow | None") -> None:
        if window is not None and self.journal is not None:
            self.journal.started(window)
            self._windows[key] = window

    def _drop_window(self, window: "FaultWindow | None", error: BaseException) -> None:
        """The control call failed: the fault was never applied, so it is a journal failure, not a window."""
        if window is not None and self.journal is not None:
            self.journal.fail(window, error)

    def _end_window(self, key: tuple[str, ...]) -> None:
        window = self._windows.pop(key, None)
        if window is not None and self.journal is not None:
            self.journal.end(window)

    def _end_prefix(self, proxy: str) -> None:
        for key in [k for k in self._windows if k[1] == proxy]:
            self._end_window(key)

    # -- API -----------------------------------------------------------------------------------------
    def version(self) -> str:
        response = self._raw("GET", "/version")
        if response.status_code != 200:
            raise ServerError(response.status_code, response.text)
        try:
            return str(response.json()["version"])
        except Exception:
            return response.text.strip()

    def capabilities(self) -> set[str]:
        """Extension toxic types the server provides (404 on real Toxiproxy means none)."""
        if self._caps is None:
            response = self._raw("GET", "/cbchaos/capabilities")
            self._caps = set(response.json().get("toxics", [])) if response.status_code == 200 else set()
        return set(self._caps)

    def proxies(self) -> dict[str, Proxy]:
        return {name: Proxy(self, data) for name, data in self._request("GET", "/proxies").items()}

    def create_proxy(self, name: str, upstream: str, listen: str = "127.0.0.1:0", enabled: bool = True) -> Proxy:
        body = {"name": name, "upstream": upstream, "listen": listen, "enabled": enabled}
        return Proxy(self, self._request("POST", "/proxies", body))

    def get_proxy(self, name: str) -> Proxy:
        return Proxy(self, self._request("GET", f"/proxies/{quote(name, safe='')}"))

    def populate(self, proxies: list[dict[str, Any]]) -> list[Proxy]:
        data = self._request("POST", "/populate", proxies)
        return [Proxy(self, p) for p in (data.get("proxies") or [])]

    def reset(self) -> None:
        """Enable every proxy and remove every toxic (never call this on a shared server)."""
        self._request("POST", "/reset")
        for key in list(self._windows):
            self._end_window(key)


Toxic = ToxicHandle  # deprecated name of ToxicHandle
