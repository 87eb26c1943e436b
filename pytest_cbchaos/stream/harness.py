"""The stream harness (docs/stream-design.md#harness): the relay and the HTTP app as child processes
behind three proxies.

::

    test process ── admin link (direct) ───────────────────────────────┐
         │                                                              ▼
         ├─ control ──► relay child ── redis-producer proxy ──► redis-server (cbchaos_stream_redis)
         │                                                              ▲
         └─ stream-http proxy ──► app child ── redis-consumer proxy ────┘
                                      └─ reaper ── direct link ─────────┘

The relay is its own process so SIGKILL/SIGSTOP/SIGTERM apply to it alone: consumers (served by
the app child) and the reaper outlive it, which is what INV-15 (no orphans) and INV-16 (fencing)
need. ``arm(script, kinds)`` holds the relay's next matching store call (the store's
``before_call`` hook) until released, so a fault can be put exactly before, say, the terminal call.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from pytest_cbchaos.servers.ports import allocate_port
from pytest_cbchaos.servers.process import ManagedProcess

from .config import StreamConfig
from .scripted import TurnScript

PROXIES = ("redis-producer", "redis-consumer", "stream-http")


class HarnessError(RuntimeError):
    """The harness could not do what was asked (a child answered an error, or did not answer)."""


@dataclass
class Child:
    """One child role: its process, port and an HTTP client for its routes."""

    role: str
    process: ManagedProcess
    port: int
    lease: Any
    token: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def http(self, timeout: float = 10.0) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=timeout, trust_env=False,
                            headers={"Authorization": f"Bearer {self.token}"})


class ArmedCall:
    """A relay store call held before it runs; :meth:`wait_hit` then :meth:`release`."""

    def __init__(self, harness: "StreamHarness", arm_id: str) -> None:
        self.harness, self.id = harness, arm_id
        self.hit: dict[str, Any] | None = None

    def wait_hit(self, timeout: float = 10.0) -> dict[str, Any]:
        from pytest_cbchaos.waiting import WaitTimeout, wait_until

        try:
            self.hit = wait_until(lambda: self.harness._relay_get(f"/_cbchaos/arm/{self.id}").get("hit"), timeout,
                                  f"armed call {self.id}", interval=0.1, first_interval=0.005)
        except WaitTimeout:
            raise HarnessError(f"armed call {self.id} was not reached within {timeout}s; relay log tail:\n"
                               f"{self.harness.relay.process.log_tail() if self.harness.relay else ''}") from None
        return self.hit

    def release(self) -> None:
        self.harness._relay_post(f"/_cbchaos/arm/{self.id}/release", {})


class StreamHarness:
    """Relay child + app child behind ``redis-producer``, ``redis-consumer`` and ``stream-http``.

    ``redis`` is a :class:`~pytest_cbchaos.servers.redis.RedisServer`, ``toxiproxy`` the kit's
    proxy server, ``faults`` an optional :class:`~pytest_cbchaos.faults.controller.FaultController`
    (the journal then records relay kills and pauses)."""

    def __init__(self, redis: Any, toxiproxy: Any, workdir: Path, *, config: StreamConfig | None = None,
                 faults: Any = None, socket_timeout: float = 1.0, name: str = "stream",
                 store_class: str | None = None, reaper_class: str | None = None,
                 run_class: str | None = None, liveness: str | None = None) -> None:
        self.redis, self.toxiproxy, self.faults = redis, toxiproxy, faults
        self.workdir = Path(workdir)
        self.config = config or StreamConfig.ci()
        self.socket_timeout = socket_timeout
        self.name = name
        # ``module:Name`` of a StreamStore subclass / a run class for the relay; a Reaper and a liveness
        # factory (relay -> async (conv) -> bool, the status route's producer_live) for the app (mutants)
        self.classes = {"store_class": store_class, "reaper_class": reaper_class, "run_class": run_class,
                        "liveness": liveness}
        self.token = secrets.token_hex(16)
        self.proxies: dict[str, Any] = {}
        self.relay: Child | None = None
        self.app: Child | None = None
        self._http: dict[str, httpx.Client] = {}
        self._windows: dict[str, Any] = {}  # open fault-journal windows (a pause until its resume)

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> "StreamHarness":

        if self.relay is not None:
            return self  # started already (the factory fixture starts harnesses it hands out)
        upstream = f"{self.redis.host}:{self.redis.port}"
        try:
            self.proxies["redis-producer"] = self.toxiproxy.create_proxy(f"{self.name}-redis-producer", upstream)
            self.proxies["redis-consumer"] = self.toxiproxy.create_proxy(f"{self.name}-redis-consumer", upstream)
            self.app = self._child("app", self._link("redis-consumer"))
            self.relay = self._child("relay", self._link("redis-producer"))
            self.proxies["stream-http"] = self.toxiproxy.create_proxy(f"{self.name}-stream-http",
                                                                      f"127.0.0.1:{self.app.port}")
            self._start_all([self.app, self.relay])
        except BaseException:
            self.close()
            raise
        return self

    def _link(self, proxy: str) -> dict[str, Any]:
        px = self.proxies[proxy]
        return {"host": px.listen_host, "port": px.listen_port, "password": self.redis.password}

    @staticmethod
    def _start_all(children: list[Child]) -> None:
        """Start the children side by side (each start waits for its own readiness)."""
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(len(children), thread_name_prefix="cbchaos-stream-start") as pool:
            for f in [pool.submit(c.process.start) for c in children]:
                f.result()

    def _child(self, role: str, link: dict[str, Any]) -> Child:
        lease = allocate_port()
        spec = {"role": role, "token": self.token, "port": lease.port, "config": self.config.to_mapping(),
                "redis": link, "socket_timeout": self.socket_timeout,
                "admin": {"host": self.redis.host, "port": self.redis.port, "password": self.redis.password},
                **self.classes}
        self.workdir.mkdir(parents=True, exist_ok=True)
        path = self.workdir / f"{role}.spec.json"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(spec, fh)
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "PYTHONPATH", "SYSTEMROOT")}
        env["PYTHONUNBUFFERED"] = "1"
        child = Child(role, None, lease.port, lease, self.token)  # type: ignore[arg-type]

        def ready(_: ManagedProcess) -> bool:
            try:
                r = httpx.get(f"{child.url}/_cbchaos/health", timeout=0.5, trust_env=False,
                              headers={"Authorization": f"Bearer {self.token}"})
                return r.status_code == 200
            except httpx.HTTPError:
                return False

        proc = ManagedProcess(f"{self.name}-{role}", [sys.executable, "-m", "pytest_cbchaos.stream.child", str(path)],
                              log_dir=self.workdir, env=env, cwd=os.getcwd(), ready=ready, startup_timeout=20.0,
                              graceful_stop=lambda p: p._popen.terminate(),  # type: ignore[union-attr]
                              stop_timeout=self.config.shutdown_grace_s + 2)
        child.process = proc
        return child

    def close(self) -> None:
        for c in self._http.values():
            c.close()
        self._http.clear()
        for child in (self.relay, self.app):
            if child is not None:
                child.process.resume()
                child.process.kill()
                child.lease.release()
        self.relay = self.app = None
        for px in self.proxies.values():
            px.close()  # deletes and releases its port lease
        self.proxies.clear()

    def __enter__(self) -> "StreamHarness":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- addresses -----------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """The app as consumers see it: through ``stream-http``."""
        px = self.proxies["stream-http"]
        return f"http://{px.listen_host}:{px.listen_port}"

    def admin(self, **kw: Any) -> Any:
        """A sync admin client on the direct link (never faulted)."""
        return self.redis.client(**kw)

    # -- relay control -------------------------------------------------------------------------
    def _client(self, role: str) -> httpx.Client:
        child = self.relay if role == "relay" else self.app
        if child is None:
            raise HarnessError("the harness is not started")
        c = self._http.get(role)
        if c is None:
            c = self._http[role] = child.http()
        return c

    def _relay_get(self, path: str, **params: Any) -> Any:
        return self._call("relay", "GET", path, params=params)

    def _relay_post(self, path: str, body: Any) -> Any:
        return self._call("relay", "POST", path, json=body)

    def _call(self, role: str, method: str, path: str, **kw: Any) -> Any:
        try:
            r = self._client(role).request(method, path, **kw)
        except httpx.HTTPError as exc:
            raise HarnessError(f"{role} {method} {path}: {type(exc).__name__}: {exc}") from exc
        if r.status_code >= 400:
            raise HarnessError(f"{role} {method} {path}: {r.status_code} {r.text}")
        return r.json() if r.content else None

    def start_turn(self, conv: str, message_id: str, script: TurnScript | None = None, *,
                   model_id: str = "scripted") -> dict[str, Any]:
        """``POST /v1/conversations/{conv}/turns`` on the relay: returns once ``open_turn`` is durable."""
        body = {"message_id": message_id, "model_id": model_id, "script": (script or TurnScript()).to_json()}
        return self._relay_post(f"/v1/conversations/{conv}/turns", body)

    def release(self, message_id: str) -> None:
        self._relay_post(f"/_cbchaos/turns/{message_id}/release", {})

    def cancel(self, conv: str, message_id: str, *, via: str = "app") -> None:
        """A user cancel, through the app (works with no live producer) or the relay."""
        self._call(via, "POST", f"/v1/conversations/{conv}/messages/{message_id}/cancel")

    def outcome(self, message_id: str, timeout: float = 0.0) -> dict[str, Any] | None:
        """The relay's ``TurnOutcome`` for a turn, waiting up to ``timeout``; ``None`` while it runs."""
        # the server waits up to ``timeout``: the HTTP read must outlast it (the client's default is 10 s)
        r = self._call("relay", "GET", f"/_cbchaos/turns/{message_id}", params={"timeout": timeout},
                       timeout=timeout + 10.0)
        return r["outcome"] if r.get("done") else None

    def emissions(self) -> list[tuple[str, int, str, bytes]]:
        return [(sid, step, kind, base64.b64decode(p)) for sid, step, kind, p in self._relay_get("/_cbchaos/emissions")]

    def history(self) -> list[dict[str, Any]]:
        return self._relay_get("/_cbchaos/history")

    def arm(self, script: str | None = None, kinds: list[str] | tuple[str, ...] | None = None,
            hold_s: float = 30.0) -> ArmedCall:
        """Hold the relay's next store call of ``script`` (e.g. ``append``) carrying any of ``kinds``."""
        r = self._relay_post("/_cbchaos/arm", {"script": script, "kinds": list(kinds or ()), "hold_s": hold_s})
        return ArmedCall(self, r["id"])

    def consumer(self, conv: str, message_id: str | None = None, after_seq: int = 0,
                 client_id: str | None = None) -> "BackgroundConsumer":
        """A live SSE consumer through ``stream-http`` (see :class:`BackgroundConsumer`)."""
        return BackgroundConsumer(self.url, self.token, conv, message_id=message_id, after_seq=after_seq,
                                  client_id=client_id, config=self.config)

    def check(self, conv: str, consumers: list["BackgroundConsumer"] = (), *,  # type: ignore[assignment]
              require_finished: bool = True, emissions: bool = True) -> Any:
        """:func:`~pytest_cbchaos.stream.checker.check_stream` over the admin link's log and records,
        the consumers' deliveries and (if the relay is up) the producer's emissions."""
        import asyncio

        from .checker import check_stream
        from .store import StreamStore

        async def snapshot() -> tuple[Any, Any, Any]:
            import redis.asyncio as aioredis

            client = aioredis.Redis(host=self.redis.host, port=self.redis.port, password=self.redis.password,
                                    socket_timeout=5.0)
            try:
                st = StreamStore(client, self.config)
                return await st.meta(conv), await st.read_all(conv), await st.records(conv)
            finally:
                await client.aclose()

        meta, entries, records = asyncio.run(snapshot())
        if meta is None:
            raise HarnessError(f"conversation {conv!r} has no stream")
        return check_stream(entries, floor_seq=meta["floor_seq"], last_seq=meta["last_seq"], records=records,
                            deliveries=[c.delivery() for c in consumers],
                            emissions=self.emissions() if emissions else None, require_finished=require_finished)

    def status(self, conv: str) -> dict[str, Any]:
        return self._call("app", "GET", f"/v1/conversations/{conv}/status")

    # -- relay process faults ------------------------------------------------------------------
    def kill_relay(self) -> None:
        """SIGKILL the relay; it stays down until :meth:`restart_relay`."""
        assert self.relay is not None
        self._drop_http("relay")
        self._record("kill", self.relay.process.kill)

    def pause_relay(self) -> None:
        assert self.relay is not None
        self._record("pause", self.relay.process.pause, end=False)

    def resume_relay(self) -> None:
        assert self.relay is not None
        self.relay.process.resume()
        self._end("pause")

    def terminate_relay(self, timeout: float | None = None) -> int | None:
        """SIGTERM: the relay ends every run with ``cancelled{relay_shutdown}`` and exits."""
        assert self.relay is not None
        proc = self.relay.process
        self._record("terminate", lambda: proc._popen.terminate())  # type: ignore[union-attr]
        bound = timeout or self.config.shutdown_grace_s + self.config.terminal_deadline_s + 5
        code = proc.wait(bound)
        if code is None:
            raise HarnessError(f"relay did not exit {bound}s after SIGTERM; log tail:\n{proc.log_tail()}")
        return code

    def restart_relay(self) -> None:
        """A fresh relay process on the same port (the old one is killed if alive)."""
        assert self.relay is not None
        self._drop_http("relay")
        self.relay.process.resume()
        self.relay.process.restart()

    def restart_app(self) -> None:
        assert self.app is not None
        self._drop_http("app")
        self.app.process.restart()

    @property
    def relay_pid(self) -> int | None:
        return None if self.relay is None else self.relay.process.pid

    def _drop_http(self, role: str) -> None:
        old = self._http.pop(role, None)
        if old is not None:
            old.close()

    def _record(self, kind: str, act: Any, end: bool = True) -> None:
        if self.faults is None:
            act()
            return
        j = self.faults.journal
        w = j.begin(kind, f"{self.name}-relay")
        act()
        j.started(w)
        if end:
            j.end(w)
        else:
            self._windows[kind] = w

    def _end(self, kind: str) -> None:
        w = self._windows.get(kind)
        if w is not None and self.faults is not None:
            self.faults.journal.end(w)
            del self._windows[kind]


class BackgroundConsumer:
    """A :class:`~pytest_cbchaos.stream.client.StreamClient` following one message through
    ``stream-http`` on a thread of its own, recording ``(envelope, arrival monotonic time)`` so a
    test can act on the relay meanwhile. :meth:`join` returns how it ended."""

    def __init__(self, url: str, token: str, conv: str, *, message_id: str | None = None, after_seq: int = 0,
                 client_id: str | None = None, config: StreamConfig | None = None) -> None:
        import threading

        from .client import StreamClient

        self.conv, self.message_id, self.after_seq = conv, message_id, after_seq
        self.client = StreamClient(url, token, client_id or f"bg-{secrets.token_hex(4)}", config)
        self.items: list[tuple[Any, float]] = []
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name=f"cbchaos-consumer:{conv}", daemon=True)
        self._thread.start()

    def _main(self) -> None:
        import asyncio

        async def run() -> None:
            async for env in self.client.follow(self.conv, self.message_id, self.after_seq):
                self.items.append((env, time.monotonic()))

        try:
            asyncio.run(run())
        except BaseException as exc:  # reported by join()
            self.error = exc

    @property
    def done(self) -> bool:
        return not self._thread.is_alive()

    def join(self, timeout: float) -> list[tuple[Any, float]]:
        """Wait for the consumer to end; :class:`HarnessError` if it is still open after ``timeout``."""
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise HarnessError(f"consumer of {self.conv}/{self.message_id} still open after {timeout}s "
                               f"({len(self.items)} delivered, cursor {self.client.cursor})")
        return self.items

    def terminal(self) -> tuple[Any, float] | None:
        for env, at in self.items:
            if env.is_terminal and env.message_id == (self.message_id or self.client.target):
                return env, at
        return None

    def delivery(self) -> Any:
        from .checker import Delivery

        return Delivery(self.after_seq, list(self.items), self.client.client_id, self.message_id)
