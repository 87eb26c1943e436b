"""How the runner sees a server: URLs, auth, liveness and restart (docs/recovery-design.md#liveness,
docs/opencode-design.md#handle).

The runner accepts any object with ``base_url`` and optionally ``events_url``, ``auth``, ``headers``,
``generation``, ``liveness()``, ``restart()``. :class:`ServerTarget` wraps such a launcher handle
and lets the REST (control) and ``/event`` (events) planes go through different fault-proxy
listeners while liveness and restart still come from the handle.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass, field
from typing import Any, Callable

from pytest_cbchaos.recovery.status import Liveness

UrlSource = str | Callable[[], str] | None


def _resolve(src: UrlSource, default: str) -> str:
    if src is None:
        return default
    return src() if callable(src) else src


def normalize_liveness(value: Any) -> Liveness:
    """Accept our enum or any launcher's liveness value (enum, object with .state/.name, string)."""
    if isinstance(value, Liveness):
        return value
    for attr in ("state", "kind", "name", "value"):
        inner = getattr(value, attr, None)
        if isinstance(inner, str):
            value = inner
            break
        if inner is not None and not isinstance(value, str):
            return normalize_liveness(inner)
    text = str(value).lower()
    for state in (Liveness.DEAD, Liveness.STOPPED, Liveness.ALIVE):
        if state.value in text:
            return state
    return Liveness.UNKNOWN


def pid_liveness(pid: int | None) -> Liveness:
    """Fallback for handles without ``liveness()``: /proc state (zombie counts as dead)."""
    if not pid:
        return Liveness.UNKNOWN
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read().decode(errors="replace")
    except OSError:
        return Liveness.DEAD
    state = stat.rsplit(")", 1)[-1].split()[0]
    if state in ("Z", "X"):
        return Liveness.DEAD
    if state in ("T", "t"):
        return Liveness.STOPPED
    return Liveness.ALIVE


@dataclass
class ServerTarget:
    """A server as the runner sees it."""

    handle: Any = None
    base_url: UrlSource = None
    events_url: UrlSource = None
    password: str | None = None
    username: str = "opencode"
    directory: str | None = None
    extra_headers: dict[str, str] = field(default_factory=dict)

    def control(self) -> str:
        return _resolve(self.base_url, getattr(self.handle, "base_url", "")).rstrip("/")

    def events(self) -> str:
        """The ``/event`` plane: ``events_url``, else the handle's own ``events_url`` (a handle behind two
        fault proxies, ``env.OpencodeProxied``), else the control plane."""
        own = getattr(self.handle, "events_url", None)
        return _resolve(self.events_url, own if isinstance(own, str) and own else self.control()).rstrip("/")

    @property
    def has_process(self) -> bool:
        return self.handle is not None and (hasattr(self.handle, "liveness") or hasattr(self.handle, "pid"))

    @property
    def can_restart(self) -> bool:
        return self.handle is not None and callable(getattr(self.handle, "restart", None))

    @property
    def generation(self) -> int | None:
        return getattr(self.handle, "generation", None)

    @property
    def identity(self) -> str:
        return f"{id(self.handle) if self.handle is not None else self.control()}"

    def credentials(self) -> tuple[str, str] | None:
        auth = getattr(self.handle, "auth", None)
        if isinstance(auth, tuple) and len(auth) == 2:
            return str(auth[0]), str(auth[1])
        if auth is not None and hasattr(auth, "login") and hasattr(auth, "password"):
            return str(auth.login), str(auth.password)
        password = self.password or getattr(self.handle, "password", None) or os.environ.get(
            "CBCHAOS_OPENCODE_PASSWORD")
        return (self.username, password) if password else None

    def headers(self) -> dict[str, str]:
        """Directory routing plus HTTP Basic auth (every request, health included)."""
        out: dict[str, str] = {}
        creds = self.credentials()
        if creds is not None:
            out["Authorization"] = "Basic " + base64.b64encode(f"{creds[0]}:{creds[1]}".encode()).decode()
        hdrs = getattr(self.handle, "headers", None)
        if isinstance(hdrs, dict):
            out.update({k: v for k, v in hdrs.items() if k.lower() != "authorization"})
        directory = self.directory or getattr(self.handle, "project_dir", None)
        if directory and not any(k.lower() == "x-opencode-directory" for k in out):
            out["x-opencode-directory"] = str(directory)
        out.update(self.extra_headers)
        return out

    def liveness(self) -> Liveness:
        if self.handle is None:
            return Liveness.UNKNOWN
        probe = getattr(self.handle, "liveness", None)
        if callable(probe):
            try:
                return normalize_liveness(probe())
            except Exception:
                return Liveness.UNKNOWN
        return pid_liveness(getattr(self.handle, "pid", None))

    def restart(self) -> None:
        self.handle.restart()
