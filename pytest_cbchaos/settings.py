"""Resolved and validated ``--cbchaos-*`` settings.

Precedence: factory argument > command line > ini > environment > default. Every bad value
raises ``pytest.UsageError`` naming the option, the value and what was expected.
"""

from __future__ import annotations

import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pytest_cbchaos.servers.ports import PortRangeError, parse_port_range

PROXY_BACKENDS = ("embedded", "binary", "url", "docker")
REDIS_BACKENDS = ("auto", "binary", "fakeredis", "docker", "url")
KEEP_CHOICES = ("failed", "all", "none")
ON_UNKNOWN = ("fail", "pass", "skip")
SHRINK = ("on", "off")

# option name -> (ini type, default, help); the env var, if any, is in ENV.
OPTIONS: dict[str, tuple[str, Any, str]] = {
    "proxy_backend": ("string", "embedded", f"fault proxy backend: {'|'.join(PROXY_BACKENDS)}"),
    "toxiproxy_bin": ("string", None, "toxiproxy-server binary for the binary backend (default: PATH)"),
    "toxiproxy_url": ("string", None, "Toxiproxy API URL for the url backend (default: $TOXIPROXY_URL)"),
    "toxiproxy_image": ("string", "ghcr.io/shopify/toxiproxy:2.12.0", "image for the docker proxy backend"),
    "redis_backend": ("string", "auto", f"Redis backend: {'|'.join(REDIS_BACKENDS)}"),
    "redis_exec": ("string", None, "redis-server executable (default: PATH)"),
    "redis_url": ("string", None, "Redis URL for the url backend (default: $REDIS_URL)"),
    "redis_image": ("string", "redis:7", "image for the docker Redis backend"),
    "opencode_bin": ("string", None, "opencode executable (default: PATH, then .cbchaos-node/)"),
    "port_range": ("string", "20000-32767", "ports for servers and proxies, LOW-HIGH"),
    "startup_timeout": ("float", 10.0, "seconds a server may take to become ready"),
    "seed": ("int", None, "seed for ports, toxicity rolls and workloads (default: random, reported)"),
    "artifacts": ("string", ".cbchaos", "directory for per-test artifacts"),
    "keep": ("string", "failed", f"which tests keep artifacts: {'|'.join(KEEP_CHOICES)}"),
    "conformance_backends": ("string", None, "comma-separated proxy backends for the conformance suite"),
    "check_timeout": ("float", 10.0, "linearizability check budget per history, seconds"),
    "max_cache": ("int", 2_000_000, "linearizability memo entries before UNKNOWN"),
    "on_unknown": ("string", "fail", f"what an UNKNOWN verdict does: {'|'.join(ON_UNKNOWN)}"),
    "shrink": ("string", "on", "shrink failing histories: on|off"),
    "shrink_retries": ("int", 1, "re-runs of a failing Hypothesis example while shrinking"),
    "report": ("string", None, "write report.json, report.html and junit properties into DIR"),
}
ENV = {"toxiproxy_url": "TOXIPROXY_URL", "redis_url": "REDIS_URL", "seed": "CBCHAOS_SEED",
       "redis_backend": "CBCHAOS_REDIS_BACKEND", "proxy_backend": "CBCHAOS_PROXY_BACKEND",
       "opencode_bin": "CBCHAOS_OPENCODE_BIN"}


def flag(name: str) -> str:
    return "--cbchaos-" + name.replace("_", "-")


def _raw(config: pytest.Config, name: str) -> Any:
    value = config.getoption("cbchaos_" + name, default=None)
    if value is None or value == "":
        try:
            ini = config.getini("cbchaos_" + name)
        except ValueError:
            ini = None
        if ini not in (None, "", []):
            value = ini
    if (value is None or value == "") and name in ENV:
        value = os.environ.get(ENV[name]) or None
    return OPTIONS[name][1] if value is None else value


def _choice(name: str, value: Any, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise pytest.UsageError(f"{flag(name)}={value!r}: expected one of {', '.join(allowed)}")
    return str(value)


def _number(name: str, value: Any, kind: type, minimum: float) -> Any:
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise pytest.UsageError(f"{flag(name)}={value!r}: expected {'an integer' if kind is int else 'a number'}") from None
    if number < minimum:
        raise pytest.UsageError(f"{flag(name)}={value!r}: expected a value >= {minimum}")
    return number


@dataclass(frozen=True)
class Settings:
    proxy_backend: str
    toxiproxy_bin: str | None
    toxiproxy_url: str | None
    toxiproxy_image: str
    redis_backend: str
    redis_exec: str | None
    redis_url: str | None
    redis_image: str
    opencode_bin: str | None
    port_range: tuple[int, int]
    startup_timeout: float
    seed: int
    artifacts: Path
    keep: str
    conformance_backends: tuple[str, ...] | None
    check_timeout: float
    max_cache: int
    on_unknown: str
    shrink: bool
    shrink_retries: int
    report: Path | None

    @classmethod
    def from_config(cls, config: pytest.Config) -> "Settings":
        r = {name: _raw(config, name) for name in OPTIONS}
        try:
            port_range = parse_port_range(str(r["port_range"]))
        except PortRangeError as exc:
            raise pytest.UsageError(f"{flag('port_range')}: {exc}") from None
        conf = r["conformance_backends"]
        conf_tuple = None
        if conf:
            conf_tuple = tuple(b.strip() for b in str(conf).split(",") if b.strip())
            for b in conf_tuple:
                _choice("conformance_backends", b, PROXY_BACKENDS)
        seed = r["seed"]
        seed = random.SystemRandom().randrange(2**31) if seed is None else _number("seed", seed, int, 0)
        for name in ("redis_exec", "toxiproxy_bin", "opencode_bin"):
            if r[name] and not (Path(r[name]).exists() or shutil.which(r[name])):
                raise pytest.UsageError(f"{flag(name)}={r[name]!r}: no such executable")
        return cls(
            proxy_backend=_choice("proxy_backend", r["proxy_backend"], PROXY_BACKENDS),
            toxiproxy_bin=r["toxiproxy_bin"], toxiproxy_url=r["toxiproxy_url"],
            toxiproxy_image=str(r["toxiproxy_image"]),
            redis_backend=_choice("redis_backend", r["redis_backend"], REDIS_BACKENDS),
            redis_exec=r["redis_exec"], redis_url=r["redis_url"], redis_image=str(r["redis_image"]),
            opencode_bin=r["opencode_bin"], port_range=port_range,
            startup_timeout=_number("startup_timeout", r["startup_timeout"], float, 0.1),
            seed=seed, artifacts=Path(str(r["artifacts"])),
            keep=_choice("keep", r["keep"], KEEP_CHOICES), conformance_backends=conf_tuple,
            check_timeout=_number("check_timeout", r["check_timeout"], float, 0.001),
            max_cache=_number("max_cache", r["max_cache"], int, 1),
            on_unknown=_choice("on_unknown", r["on_unknown"], ON_UNKNOWN),
            shrink=_choice("shrink", r["shrink"], SHRINK) == "on",
            shrink_retries=_number("shrink_retries", r["shrink_retries"], int, 0),
            report=Path(str(r["report"])) if r["report"] else None,
        )


SETTINGS_KEY = pytest.StashKey[Settings]()


def get_settings(config: pytest.Config) -> Settings:
    try:
        return config.stash[SETTINGS_KEY]
    except KeyError:
        settings = config.stash[SETTINGS_KEY] = Settings.from_config(config)
        return settings
