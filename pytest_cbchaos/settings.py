"""Resolved and validated ``--cbchaos-*`` settings.

Precedence: factory argument > command line > ini > environment > default. Every bad value
raises ``pytest.UsageError`` naming the option (and where it came from: ini key or environment
variable), the value and what was expected, before any test runs: numbers must be finite and in
range, executables must exist, the port range must hold enough free ports, and the report and
artifact directories must exist or be creatable, and be writable (docs/cli.md, "Validate early").
"""

from __future__ import annotations

import math
import os
import random
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pytest_cbchaos.servers.ports import PortRangeError, candidate_ports

PROXY_BACKENDS = ("embedded", "binary", "url", "docker")
REDIS_BACKENDS = ("auto", "binary", "fakeredis", "docker", "url")
KEEP_CHOICES = ("failed", "all", "none")
ON_UNKNOWN = ("fail", "pass", "skip")
SHRINK = ("on", "off")
PORTS_PER_PROCESS = 16  # servers, proxy API and proxies one pytest process may hold at once
MAX_SECONDS = 86_400.0  # a timeout above a day is a typo, not a plan
MAX_BACKGROUND_LOAD = 64  # the cpu_stress bound (faults/cpu.py)

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
    "opencode_bin": ("string", None, "opencode executable (default: $CBCHAOS_OPENCODE_BIN, .cbchaos-node/, PATH)"),
    "port_range": ("string", "20000-32767", "ports for servers and proxies, LOW-HIGH"),
    "startup_timeout": ("float", 10.0, "seconds a server may take to become ready"),
    "seed": ("int", None, "seed for ports, toxicity rolls and workloads (default: random, reported)"),
    "artifacts": ("string", ".cbchaos", "directory for per-test artifacts"),
    "keep": ("string", "failed", f"which tests keep artifacts: {'|'.join(KEEP_CHOICES)}"),
    "check_timeout": ("float", 10.0, "linearizability check budget per history, seconds"),
    "max_cache": ("int", 2_000_000, "linearizability memo entries before UNKNOWN"),
    "on_unknown": ("string", "fail", f"what an UNKNOWN verdict does: {'|'.join(ON_UNKNOWN)}"),
    "shrink": ("string", "on", "shrink failing histories: on|off"),
    "shrink_retries": ("int", 1, "re-runs of a failing Hypothesis example while shrinking"),
    "survey": ("string", "off", "store checks record every bug class instead of stopping at the first: on|off"),
    "report": ("string", None, "write report.json, report.html and junit properties into DIR"),
    "background_load": ("string", 0, "busy processes kept running for the whole session, per machine (0-64)"),
}
ENV = {"toxiproxy_url": "TOXIPROXY_URL", "redis_url": "REDIS_URL", "seed": "CBCHAOS_SEED",
       "redis_backend": "CBCHAOS_REDIS_BACKEND", "proxy_backend": "CBCHAOS_PROXY_BACKEND",
       "opencode_bin": "CBCHAOS_OPENCODE_BIN"}


def parse_port_range(text: str) -> tuple[int, int]:
    """Parse ``"LOW-HIGH"``; raises PortRangeError naming the value and the expected form."""
    try:
        low_s, high_s = text.split("-", 1)
        low, high = int(low_s), int(high_s)
    except ValueError:
        raise PortRangeError(f"port range {text!r}: expected LOW-HIGH, e.g. 20000-32767") from None
    if not (1024 <= low <= high <= 65535):
        raise PortRangeError(f"port range {text!r}: expected 1024 <= LOW <= HIGH <= 65535")
    return low, high


def flag(name: str) -> str:
    return "--cbchaos-" + name.replace("_", "-")


def _raw(config: pytest.Config, name: str) -> tuple[Any, str]:
    """The value and where it came from ("" command line, " (ini cbchaos_x)", " (env X)", " (default)")."""
    value = config.getoption("cbchaos_" + name, default=None)
    if value is not None and value != "":
        return value, ""
    try:
        ini = config.getini("cbchaos_" + name)
    except ValueError:
        ini = None
    if ini not in (None, "", []):
        return ini, f" (ini cbchaos_{name})"
    if name in ENV and os.environ.get(ENV[name]):
        return os.environ[ENV[name]], f" (env {ENV[name]})"
    return OPTIONS[name][1], " (default)"


def _bad(name: str, value: Any, origin: str, expected: str) -> pytest.UsageError:
    return pytest.UsageError(f"{flag(name)}={value!r}{origin}: expected {expected}")


def _choice(name: str, value: Any, allowed: tuple[str, ...], origin: str = "") -> str:
    if value not in allowed:
        raise _bad(name, value, origin, f"one of {', '.join(allowed)}")
    return str(value)


def _number(name: str, value: Any, kind: type, minimum: float, origin: str = "", *,
            maximum: float | None = None) -> Any:
    """A finite number in [minimum, maximum]: NaN compares false with every bound, so it is rejected first."""
    what = "an integer" if kind is int else "a finite number"
    if isinstance(value, bool):
        raise _bad(name, value, origin, what)
    try:
        number = kind(value)
    except (TypeError, ValueError, OverflowError):
        raise _bad(name, value, origin, what) from None
    if kind is float and not math.isfinite(number):
        raise _bad(name, value, origin, what)
    if number < minimum or (maximum is not None and number > maximum):
        bound = f">= {minimum}" if maximum is None else f"between {minimum} and {maximum}"
        raise _bad(name, value, origin, f"{what} {bound}")
    return number


def _executable(name: str, value: Any, origin: str) -> str | None:
    if not value:
        return None
    text = str(value)
    path = Path(text)
    if path.is_file() and os.access(path, os.X_OK):
        return text
    if os.sep not in text and shutil.which(text):
        return text
    problem = "not executable" if path.is_file() else "no such executable"
    raise _bad(name, value, origin, f"an executable file ({problem})")


def _ports(value: Any, origin: str, workers: int) -> tuple[int, int]:
    """LOW-HIGH with enough ports outside the OS ephemeral range for every pytest process of the run."""
    try:
        port_range = parse_port_range(str(value))
        usable = len(candidate_ports(port_range))
    except PortRangeError as exc:
        raise pytest.UsageError(f"{flag('port_range')}={str(value)!r}{origin}: {exc}") from None
    need = PORTS_PER_PROCESS * workers
    if usable < need:
        per = f" ({PORTS_PER_PROCESS} per process x {workers} processes)" if workers > 1 else ""
        raise _bad("port_range", value, origin, f"a range with at least {need} ports outside the OS ephemeral "
                   f"range{per}; this one has {usable}")
    return port_range


def writable_dir_problem(path: Path) -> str | None:
    """Why ``path`` cannot serve as an output directory, or None; probes by creating (then removing) a file,
    since ``os.access`` says yes to root on read-only or virtual file systems."""
    if path.exists() and not path.is_dir():
        return "it exists and is not a directory"
    missing = path
    while not missing.parent.exists() and missing.parent != missing:
        missing = missing.parent
    if not missing.parent.is_dir():
        return f"{missing.parent} is not a directory"
    created = None if path.exists() else missing
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".cbchaos-probe-", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        return f"it is not writable ({exc.strerror or exc})"
    finally:
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)
    return None


def _out_dir(name: str, value: Any, origin: str, base: Path, check: bool) -> Path:
    path = Path(str(value))
    if check:
        full = path if path.is_absolute() else base / path
        problem = writable_dir_problem(full)
        if problem:
            raise _bad(name, str(value), origin, f"a directory that exists or can be created, and is writable: "
                       f"{full}: {problem}")
    return path


def _workers(config: pytest.Config) -> int:
    """pytest processes sharing the port range: the xdist workers (or this one process)."""
    n = getattr(config.option, "numprocesses", None)
    if n in ("auto", "logical"):
        return os.cpu_count() or 1
    try:
        return max(1, int(n or 1))
    except (TypeError, ValueError):
        return 1


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
    check_timeout: float
    max_cache: int
    on_unknown: str
    shrink: bool
    shrink_retries: int
    report: Path | None
    background_load: int = 0
    survey: bool = False
    sources: dict[str, str] = field(default_factory=dict, compare=False)  # option -> where its value came from

    def source(self, name: str) -> str:
        """How the user set ``name``: the flag, ``ini cbchaos_x`` or the environment variable."""
        origin = self.sources.get(name, "")
        if origin.startswith(" (ini "):
            return origin[2:-1]
        if origin.startswith(" (env "):
            return origin[6:-1]
        return flag(name)

    @classmethod
    def defaults(cls, **overrides: Any) -> "Settings":
        """The documented defaults (no validation, no pytest config): for ``cbchaos`` commands and tests."""
        values: dict[str, Any] = {name: default for name, (_, default, _) in OPTIONS.items()}
        values.update(port_range=parse_port_range(values["port_range"]), seed=0, artifacts=Path(values["artifacts"]),
                      shrink=values["shrink"] == "on", background_load=int(values["background_load"]),
                      survey=values["survey"] == "on")
        values.update(overrides)
        return cls(**values)

    @classmethod
    def from_config(cls, config: pytest.Config) -> "Settings":
        raw = {name: _raw(config, name) for name in OPTIONS}
        r = {name: value for name, (value, _) in raw.items()}
        o = {name: origin for name, (_, origin) in raw.items()}
        seed = r["seed"]
        seed = (random.SystemRandom().randrange(2**31) if seed is None
                else _number("seed", seed, int, 0, o["seed"], maximum=2**64 - 1))
        # output directories are probed once, by the process that writes them (not by every xdist worker),
        # and the artifact directory only when it was set (a default nobody asked for must not fail a run)
        controller = not hasattr(config, "workerinput")
        return cls(
            proxy_backend=_choice("proxy_backend", r["proxy_backend"], PROXY_BACKENDS, o["proxy_backend"]),
            toxiproxy_bin=_executable("toxiproxy_bin", r["toxiproxy_bin"], o["toxiproxy_bin"]),
            toxiproxy_url=r["toxiproxy_url"], toxiproxy_image=str(r["toxiproxy_image"]),
            redis_backend=_choice("redis_backend", r["redis_backend"], REDIS_BACKENDS, o["redis_backend"]),
            redis_exec=_executable("redis_exec", r["redis_exec"], o["redis_exec"]),
            redis_url=r["redis_url"], redis_image=str(r["redis_image"]),
            opencode_bin=_executable("opencode_bin", r["opencode_bin"], o["opencode_bin"]),
            port_range=_ports(r["port_range"], o["port_range"], _workers(config)),
            startup_timeout=_number("startup_timeout", r["startup_timeout"], float, 0.1, o["startup_timeout"],
                                    maximum=MAX_SECONDS),
            seed=seed,
            artifacts=_out_dir("artifacts", r["artifacts"], o["artifacts"], Path(config.rootpath),
                               controller and o["artifacts"] != " (default)"),
            keep=_choice("keep", r["keep"], KEEP_CHOICES, o["keep"]),
            check_timeout=_number("check_timeout", r["check_timeout"], float, 0.001, o["check_timeout"],
                                  maximum=MAX_SECONDS),
            max_cache=_number("max_cache", r["max_cache"], int, 1, o["max_cache"]),
            on_unknown=_choice("on_unknown", r["on_unknown"], ON_UNKNOWN, o["on_unknown"]),
            shrink=_choice("shrink", r["shrink"], SHRINK, o["shrink"]) == "on",
            shrink_retries=_number("shrink_retries", r["shrink_retries"], int, 0, o["shrink_retries"], maximum=100),
            report=(_out_dir("report", r["report"], o["report"], Path(config.invocation_params.dir), controller)
                    if r["report"] else None),
            background_load=_number("background_load", r["background_load"], int, 0, o["background_load"],
                                    maximum=MAX_BACKGROUND_LOAD),
            survey=_choice("survey", r["survey"], SHRINK, o["survey"]) == "on",
            sources=o,
        )


SETTINGS_KEY = pytest.StashKey[Settings]()


def get_settings(config: pytest.Config) -> Settings:
    try:
        return config.stash[SETTINGS_KEY]
    except KeyError:
        settings = config.stash[SETTINGS_KEY] = Settings.from_config(config)
        return settings
