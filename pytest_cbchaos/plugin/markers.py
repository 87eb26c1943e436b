"""The backend markers ``requires_real_redis`` and ``cbchaos_backends(*names)`` (docs: README "Markers").

Both compare against the backends this run *uses*: the proxy backend as configured, and the Redis
backend as resolved (``auto`` becomes ``binary`` or, without redis-server, ``fakeredis``). A mismatch
skips the test with the reason. One exception: under ``CI`` a ``requires_real_redis`` test fails
instead of skipping when ``auto`` fell back to fakeredis, since that means CI lacks redis-server;
a backend chosen explicitly is a deliberate selection and skips everywhere.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import pytest

from pytest_cbchaos.settings import PROXY_BACKENDS, REDIS_BACKENDS, Settings, get_settings

REDIS_NAMES = tuple(b for b in REDIS_BACKENDS if b != "auto")  # "auto" is never the backend in use
KINDS = {"redis": REDIS_NAMES, "proxy": PROXY_BACKENDS}


@dataclass(frozen=True)
class BackendsInUse:
    redis: str
    proxy: str
    redis_reason: str | None  # why ``auto`` chose ``redis`` (None when it was chosen explicitly)

    @property
    def fell_back(self) -> bool:
        return self.redis_reason is not None and self.redis == "fakeredis"


_IN_USE = pytest.StashKey[BackendsInUse]()
_REQUIRED = pytest.StashKey[str]()  # a mismatch that fails the test (under CI) instead of skipping it


def backends_in_use(config: pytest.Config) -> BackendsInUse:
    """Resolved once per process, without starting anything."""
    if _IN_USE in config.stash:
        return config.stash[_IN_USE]
    from pytest_cbchaos.servers.redis_backend import BackendUnavailable, auto_backend

    s: Settings = get_settings(config)
    redis, reason = s.redis_backend, None
    if redis == "auto":
        try:
            redis, reason = auto_backend(s.redis_exec)
        except BackendUnavailable as exc:
            redis, reason = "none", str(exc)
    config.stash[_IN_USE] = BackendsInUse(redis, s.proxy_backend, reason)
    return config.stash[_IN_USE]


def parse_backend_names(names: tuple[object, ...]) -> dict[str, set[str]]:
    """``cbchaos_backends`` arguments grouped by kind; ``ValueError`` names a bad or ambiguous one."""
    wanted: dict[str, set[str]] = {}
    if not names:
        raise ValueError("expected at least one backend name")
    for raw in names:
        name = str(raw)
        kind, sep, bare = name.partition(":")
        if sep:
            if kind not in KINDS or bare not in KINDS[kind]:
                raise ValueError(f"{name!r}: expected redis:{'|'.join(REDIS_NAMES)} or proxy:{'|'.join(PROXY_BACKENDS)}")
            wanted.setdefault(kind, set()).add(bare)
            continue
        kinds = [k for k, allowed in KINDS.items() if name in allowed]
        if not kinds:
            raise ValueError(f"{name!r}: expected one of {', '.join(sorted({*REDIS_NAMES, *PROXY_BACKENDS}))} "
                             "(or redis:NAME / proxy:NAME)")
        if len(kinds) > 1:
            raise ValueError(f"{name!r} names both a Redis and a proxy backend; expected redis:{name} or proxy:{name}")
        wanted.setdefault(kinds[0], set()).add(name)
    return wanted


def skip_reason(item: pytest.Item, used: BackendsInUse) -> tuple[str, bool] | None:
    """(reason, fail instead of skip) when the item's markers exclude the backends in use."""
    if item.get_closest_marker("requires_real_redis") is not None and used.redis in ("fakeredis", "none"):
        why = f" (auto: {used.redis_reason})" if used.redis_reason else " (chosen with --cbchaos-redis-backend)"
        reason = f"requires_real_redis: the Redis backend in use is {used.redis}{why}"
        return reason, used.redis_reason is not None and bool(os.environ.get("CI"))
    for mark in item.iter_markers("cbchaos_backends"):
        try:
            wanted = parse_backend_names(mark.args)
        except ValueError as exc:
            raise pytest.UsageError(f"{item.nodeid}: @pytest.mark.cbchaos_backends: {exc}") from None
        in_use = {"redis": used.redis, "proxy": used.proxy}
        for kind, names in wanted.items():
            if in_use[kind] not in names:
                return (f"cbchaos_backends({', '.join(map(repr, mark.args))}): the {kind} backend in use is "
                        f"{in_use[kind]}"), False
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark mismatches at collection (so -rs shows them and bad marker arguments stop the run early)."""
    used = backends_in_use(config)
    for item in items:
        verdict = skip_reason(item, used)
        if verdict is None:
            continue
        reason, fail = verdict
        if fail:
            item.stash[_REQUIRED] = reason
        else:
            item.add_marker(pytest.mark.skip(reason=reason))


def pytest_runtest_setup(item: pytest.Item) -> None:
    reason = item.stash.get(_REQUIRED, None)
    if reason is not None:
        pytest.fail(f"{reason} (required: CI is set)", pytrace=False)
