"""Which Redis backend ``auto`` means on this machine, decided without importing redis-py or starting
anything (the pytest header and the backend markers ask on every run; docs/redis-backends.md)."""

from __future__ import annotations

import importlib.util
import shutil

INSTALL_HINT = (
    "install redis-server (Debian/Ubuntu: `apt-get install redis-server`; `cbchaos doctor` lists the options), "
    "or `pip install 'fakeredis[lua]'` for the embedded backend"
)


class BackendUnavailable(ValueError):
    """A backend was requested that this machine cannot provide."""


def fakeredis_available() -> bool:
    """fakeredis and its Lua runtime are importable (found, not imported)."""
    return all(importlib.util.find_spec(name) is not None for name in ("fakeredis", "lupa"))


def auto_backend(executable: str | None) -> tuple[str, str]:
    """The backend ``auto`` picks and why: the binary when found, else fakeredis (the header shows both)."""
    if executable:
        return "binary", f"--cbchaos-redis-exec {executable}"
    found = shutil.which("redis-server")
    if found:
        return "binary", f"redis-server at {found}"
    if fakeredis_available():
        return "fakeredis", "fell back, no redis-server on PATH"
    raise BackendUnavailable(f"no Redis backend available: {INSTALL_HINT}")
