"""Launcher for the real ``opencode serve`` (docs/opencode-design.md#launcher).

API summary (stable)::

    found = find_opencode(explicit=None, rootdir=None)   # -> OpencodeBinary(path, version) | None
    discover_opencode(explicit, rootdir, source=...)     # -> OpencodeDiscovery(binary, tried): the one search
                                                         # (explicit, env, .cbchaos-node, PATH) and what it tried;
                                                         # a slow or broken candidate is named, not 'missing'
    require_opencode(explicit=None, rootdir=None)        # -> OpencodeBinary or raises OpencodeNotFound (install hint)
    server = OpencodeServer(root=tmp_dir, provider_url=mock.base_url, provider_key=None,  # None: key of the
                            # MockLLM serving provider_url in this process, else "x"; pass it behind a proxy
                            binary=None, config_extra=None, startup_timeout=30.0, stop_grace=3.0,
                            log_level="INFO", port_range=(20000, 32767), journal=None, warm=True, offline=True)
                            # warm: after health, one directory-scoped request loads the project instance
                            # offline: proxies/npm registry -> closed loopback port (no network but loopback)
    server.start(); server.stop(); server.restart(same_port=False, fresh_state=False, provider_url=None)
    with OpencodeServer(...) as server: ...
    start_opencode(provider_url=..., workdir=..., **kw) -> started OpencodeServer
    server.base_url  server.port  server.auth (username, password)  server.username  server.password
    server.headers   ({"Authorization": "Basic ...", "x-opencode-directory": project_dir})
    server.project_dir  server.log_path  server.log_paths  server.pid  server.pgid  server.generation
    server.version   server.health(timeout=1.0) -> dict   server.liveness() -> Liveness
    server.signal(sig)  server.pause()  server.resume()  server.kill()     # whole process group
    server.client(timeout=10.0) -> httpx.Client (auth + directory header, base_url set)
    server.request(method, path, json=None, timeout=10.0) -> httpx.Response   (read and closed)
    server.busy_sessions() -> dict ; server.abort_all(timeout) -> list[str]  (test hygiene)

Fault calls (``signal``/``pause``/``resume``/``kill``/``restart``) record ``(kind, target, monotonic time)``
into ``server.faults`` and, when given, into a :class:`~pytest_cbchaos.faults.journal.FaultJournal`.

Each server has a private root with ``home/ config/ data/ cache/ state/ project/ logs/ tmp/``; the child's
environment is built from an allow-list (:mod:`pytest_cbchaos.servers.opencode_config`), so a developer's own
opencode setup cannot change a test. Every generation logs to ``logs/opencode.g<N>.log``; the parent never
holds the handle, and after the child is reaped one exit record line is appended.
"""

from __future__ import annotations

import atexit
import base64
import json
import os
import secrets
import shutil
import signal as _signal
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import httpx
import psutil

from pytest_cbchaos.recovery.status import Liveness  # the one liveness vocabulary: the runner reads it
from pytest_cbchaos.servers.mockllm import api_key_for
from pytest_cbchaos.servers.opencode_config import PRIVATE_DIRS, build_config, build_env
from pytest_cbchaos.servers.opencode_version import probe_version
from pytest_cbchaos.servers.ports import DEFAULT_RANGE, PortLease, allocate_port
from pytest_cbchaos.servers.process import ManagedProcess, ServerStartError

OPENCODE_PIN = "1.18.33"
FIRST_HEALTH_TIMEOUT_S = 0.1  # first readiness probe's timeout, and its growth after each timeout ...
HEALTH_TIMEOUT_S = 1.0  # ... up to this (docs/opencode-design.md#start-and-readiness)
INSTALL_COMMAND = ("install the pinned opencode in your project with "
                   f"`npm install --prefix .cbchaos-node opencode-ai@{OPENCODE_PIN}` (Node 20+)")
INSTALL_HINT = f"{INSTALL_COMMAND}, or pass --cbchaos-opencode-bin / set CBCHAOS_OPENCODE_BIN"
ENV_VAR = "CBCHAOS_OPENCODE_BIN"
LOCAL_NODE_DIRS = (".cbchaos-node/node_modules", "node_modules")
MAX_SPAWNS = 3


class OpencodeNotFound(RuntimeError):
    """No usable opencode binary; the message says how to install one."""


class OpencodeStartError(ServerStartError):
    """``opencode serve`` did not become healthy; the message has command, status, elapsed, log path and tail."""


class OpencodeStopError(RuntimeError):
    """Processes of a stopped generation survived SIGKILL (pids in the message)."""


@dataclass(frozen=True)
class OpencodeBinary:
    path: Path
    version: str

    @property
    def pinned(self) -> bool:
        return self.version == OPENCODE_PIN


# ---------------------------------------------------------------------------------------------
# Finding the binary (docs/opencode-design.md#finding-the-binary)
# ---------------------------------------------------------------------------------------------
def _is_elf(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(4) == b"\x7fELF"
    except OSError:
        return False


def _has_avx2() -> bool:
    try:
        return " avx2" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return True


def _native_in(node_modules: Path) -> Path | None:
    """The platform package's real binary (used when ``.bin/opencode`` is a wrapper script or missing)."""
    names = ["opencode-linux-x64", "opencode-linux-x64-baseline"]
    if not _has_avx2():
        names.reverse()
    for name in names:
        cand = node_modules / name / "bin" / "opencode"
        if _is_elf(cand) and os.access(cand, os.X_OK):
            return cand
    return None


def _local_candidates(rootdir: Path | None) -> list[tuple[str, Path | None]]:
    """(where looked, binary found there or None) for the project-local node_modules directories."""
    roots = [Path(rootdir)] if rootdir else []
    roots += [Path.cwd(), Path(__file__).resolve().parents[2]]
    out: list[tuple[str, Path | None]] = []
    for root in dict.fromkeys(r.resolve() for r in roots):
        for rel in LOCAL_NODE_DIRS:
            nm = root / rel
            link = nm / ".bin" / "opencode"
            if link.exists():
                real = link.resolve()
                out.append((str(link), real if _is_elf(real) else (_native_in(nm) or link)))
            else:
                out.append((str(nm), _native_in(nm)))
    return out


def candidate_places(rootdir: Path | None = None) -> list[tuple[str, Path | None]]:
    """(where looked, binary there or None) in search order, without an explicit choice: the
    project-local node_modules directories, then PATH."""
    on_path = shutil.which("opencode")
    return [*_local_candidates(rootdir), ("PATH", Path(on_path) if on_path else None)]


def candidate_paths(explicit: str | os.PathLike[str] | None = None, rootdir: Path | None = None) -> list[Path]:
    """Candidates in the documented order (docs/opencode-design.md#finding-the-binary): explicit/env, project-local
    node_modules, PATH."""
    out: list[Path] = []
    explicit = explicit or os.environ.get(ENV_VAR) or None
    if explicit:
        out.append(Path(explicit))
    out += [path for _, path in _local_candidates(rootdir) if path is not None]
    on_path = shutil.which("opencode")
    if on_path:
        out.append(Path(on_path))
    return list(dict.fromkeys(out))


VERSION_TIMEOUT_S = 10.0


def binary_version(path: Path, timeout: float = VERSION_TIMEOUT_S) -> str | None:
    """``<path> --version`` (cached on disk per binary), or None if it does not answer."""
    return probe_version(path, timeout).version


@dataclass(frozen=True)
class OpencodeDiscovery:
    """The outcome of :func:`discover_opencode`: the binary, or every place tried and why it did not do."""

    binary: OpencodeBinary | None
    tried: tuple[str, ...]
    source: str | None = None  # the explicit setting used (option/ini/env label), if any
    unusable: bool = False  # a candidate exists but is slow or broken: "found at", never "not found"

    def reason(self) -> str:
        if self.binary is not None:
            return f"opencode {self.binary.version} at {self.binary.path}"
        tried = "; ".join(self.tried)
        if self.source:  # never advise passing the option that was passed
            return f"opencode not usable: {tried}; fix or unset {self.source} (no fallback from an explicit choice), " \
                   f"or {INSTALL_COMMAND}"
        if self.unusable:
            return f"opencode not usable: {tried}; {INSTALL_HINT}"
        return f"opencode not found; tried {tried}; {INSTALL_HINT}"


def discover_opencode(explicit: str | os.PathLike[str] | None = None, rootdir: Path | None = None, *,
                      source: str = "--cbchaos-opencode-bin") -> OpencodeDiscovery:
    """The one opencode search (docs/opencode.md): ``explicit`` (option or ini, labelled ``source``), else
    env CBCHAOS_OPENCODE_BIN, exclusively; otherwise project-local .cbchaos-node/node_modules (under
    ``rootdir``, the cwd and the package's checkout), then PATH. A candidate must answer ``--version``."""
    if not explicit and os.environ.get(ENV_VAR):
        explicit, source = os.environ[ENV_VAR], ENV_VAR
    if explicit:
        path = Path(explicit)
        if not path.exists():
            return OpencodeDiscovery(None, (f"{source}={str(explicit)!r}: no such file",), source)
        probe = probe_version(path, VERSION_TIMEOUT_S)
        if not probe.version:
            return OpencodeDiscovery(None, (f"{source}={str(explicit)!r}: {probe.describe()}",), source,
                                     unusable=True)
        return OpencodeDiscovery(OpencodeBinary(path, probe.version), (), source)
    tried: list[str] = []
    unusable = False
    for where, path in candidate_places(rootdir):
        if path is None:
            tried.append(f"{where}: no opencode")
            continue
        probe = probe_version(path, VERSION_TIMEOUT_S)
        if probe.version:
            return OpencodeDiscovery(OpencodeBinary(path, probe.version), tuple(tried))
        tried.append(probe.describe())
        unusable = unusable or probe.exists
    return OpencodeDiscovery(None, tuple(tried), unusable=unusable)


def find_opencode(explicit: str | os.PathLike[str] | None = None, rootdir: Path | None = None, *,
                  source: str = "--cbchaos-opencode-bin") -> OpencodeBinary | None:
    """The binary :func:`discover_opencode` finds; raises OpencodeNotFound when an explicit one is unusable;
    warns on a version other than the pin."""
    found = discover_opencode(explicit, rootdir, source=source)
    if found.binary is None:
        if found.source or found.unusable:  # a slow or broken candidate is not a missing one
            raise OpencodeNotFound(found.reason())
        return None
    if found.binary.version != OPENCODE_PIN:
        warnings.warn(f"opencode at {found.binary.path} is version {found.binary.version}; pytest-cbchaos is "
                      f"pinned to {OPENCODE_PIN}", stacklevel=2)
    return found.binary


def require_opencode(explicit: str | os.PathLike[str] | None = None, rootdir: Path | None = None, *,
                     source: str = "--cbchaos-opencode-bin") -> OpencodeBinary:
    binary = find_opencode(explicit, rootdir, source=source)
    if binary is None:
        raise OpencodeNotFound(discover_opencode(explicit, rootdir, source=source).reason())
    return binary


# ---------------------------------------------------------------------------------------------
# Process tree helpers (docs/opencode-design.md#process-group-and-teardown)
# ---------------------------------------------------------------------------------------------
def _descendants(pid: int) -> list[int]:
    try:
        return [c.pid for c in psutil.Process(pid).children(recursive=True)]
    except psutil.Error:
        return []


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a group whose only members are zombies still answers; ignore zombies
    for proc in psutil.process_iter(["pid"]):
        try:
            if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                return True
        except (psutil.Error, ProcessLookupError, OSError):
            continue
    return False


TAG_ENV = "CBCHAOS_SERVER_TAG"


def tagged_processes(tag: str) -> list[int]:
    """Live processes whose environment carries ``CBCHAOS_SERVER_TAG=<tag>`` (inherited by every descendant,
    including tool-call subprocesses that left the server's group or were orphaned by a SIGKILL)."""
    found = []
    for proc in psutil.process_iter(["pid"]):
        try:
            if proc.pid == os.getpid() or proc.status() == psutil.STATUS_ZOMBIE:
                continue
            if proc.environ().get(TAG_ENV) == tag:
                found.append(proc.pid)
        except (psutil.Error, OSError):
            continue
    return found


def _pid_running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


@dataclass
class FaultRecord:
    kind: str
    target: str
    at: float  # time.monotonic()
    params: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# The server handle (docs/opencode-design.md#start-and-readiness)
# ---------------------------------------------------------------------------------------------
class OpencodeServer:
    """One logical opencode server: private dirs and password kept across generations."""

    def __init__(self, *, root: Path | str, provider_url: str, provider_key: str | None = None,
                 binary: str | os.PathLike[str] | OpencodeBinary | None = None,
                 config_extra: Mapping[str, Any] | None = None, startup_timeout: float = 30.0,
                 stop_grace: float = 3.0, log_level: str = "INFO", port_range: tuple[int, int] = DEFAULT_RANGE,
                 journal: Any = None, username: str = "opencode", password: str | None = None,
                 rootdir: Path | None = None, warm: bool = True, offline: bool = True) -> None:
        for key, value, ok in (("startup_timeout", startup_timeout, startup_timeout > 0),
                               ("stop_grace", stop_grace, stop_grace >= 0),
                               ("log_level", log_level, log_level in ("DEBUG", "INFO", "WARN", "ERROR"))):
            if not ok:
                raise ValueError(f"OpencodeServer {key}={value!r}: expected "
                                 f"{'DEBUG|INFO|WARN|ERROR' if key == 'log_level' else 'a positive number'}")
        if isinstance(binary, OpencodeBinary):
            self.binary = binary
        else:
            self.binary = require_opencode(binary, rootdir)
        self.root = Path(root)
        self.provider_url = provider_url
        # default: the key of a MockLLM serving provider_url in this process (pass it when a proxy sits between)
        self.provider_key = provider_key or api_key_for(provider_url) or "x"
        self.config_extra = dict(config_extra or {})
        self.startup_timeout = startup_timeout
        self.stop_grace = stop_grace
        self.log_level = log_level
        self.port_range = port_range
        self.journal = journal
        self.username = username
        self.password = password or secrets.token_hex(16)
        self.warm = warm
        self.offline = offline
        self.generation = 0
        self.version: str | None = None
        self.faults: list[FaultRecord] = []
        self.log_paths: list[Path] = []
        self._proc: ManagedProcess | None = None
        self._lease: PortLease | None = None
        self._pgid: int | None = None
        self._started_at = 0.0
        self._requested_stop = False
        self._unauthorized = False
        self._probe_timeout = FIRST_HEALTH_TIMEOUT_S
        self._pause_window: Any = None
        self._uid = secrets.token_hex(8)
        self._atexit = False
        for d in PRIVATE_DIRS:
            (self.root / d).mkdir(parents=True, exist_ok=True)

    # -- identity ----------------------------------------------------------------------------
    @property
    def project_dir(self) -> Path:
        return self.root / "project"

    @property
    def log_dir(self) -> Path:
        return self.root / "logs"

    @property
    def port(self) -> int:
        if self._lease is None:
            raise RuntimeError("opencode server not started")
        return self._lease.port

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def auth(self) -> tuple[str, str]:
        return (self.username, self.password)

    @property
    def headers(self) -> dict[str, str]:
        token = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        return {"Authorization": f"Basic {token}", "x-opencode-directory": str(self.project_dir)}

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"opencode.g{self.generation}.log"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def pgid(self) -> int | None:
        return self._pgid

    @property
    def process(self) -> ManagedProcess | None:
        return self._proc

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.alive

    @property
    def config_path(self) -> Path:
        return self.project_dir / "opencode.json"

    def __repr__(self) -> str:
        port = self._lease.port if self._lease else None
        return f"<OpencodeServer g{self.generation} port={port} pid={self.pid} {self.binary.version}>"

    # -- lifecycle ----------------------------------------------------------------------------
    def _argv(self, port: int) -> list[str]:
        return [str(self.binary.path), "serve", "--hostname", "127.0.0.1", "--port", str(port),
                "--print-logs", "--log-level", self.log_level]

    def _ready(self, proc: ManagedProcess) -> bool:
        """One health probe. opencode accepts connections before it serves them and never answers a request
        it accepted in that window, so the probe's timeout starts short and grows by as much after each timeout up
        to ``HEALTH_TIMEOUT_S`` (a slow but serving server still gets the full timeout)."""
        try:
            resp = httpx.get(f"http://127.0.0.1:{self._lease.port}/global/health",  # type: ignore[union-attr]
                             auth=self.auth, timeout=self._probe_timeout)
        except httpx.TimeoutException:
            self._probe_timeout = min(HEALTH_TIMEOUT_S, self._probe_timeout + FIRST_HEALTH_TIMEOUT_S)
            return False
        except httpx.HTTPError:
            return False
        if resp.status_code == 401:
            self._unauthorized = True
            return True  # stop polling; start() raises
        if resp.status_code != 200:
            return False
        try:
            data = resp.json()
        except ValueError:
            return False
        if data.get("healthy") is True and isinstance(data.get("version"), str):
            self.version = data["version"]
            return True
        return False

    def write_config(self) -> Path:
        cfg = build_config(self.provider_url, self.provider_key, self.config_extra)
        self.config_path.write_text(json.dumps(cfg, indent=2))
        return self.config_path

    def start(self) -> "OpencodeServer":
        """Spawn the next generation and wait for health; up to 3 spawns on early exit or port clash."""
        if self.alive:
            return self
        if not self._atexit:
            atexit.register(self._stop_quietly)
            self._atexit = True
        self.write_config()
        env = build_env(self.root, self.username, self.password, log_level=self.log_level, offline=self.offline)
        t0 = time.monotonic()
        last: ServerStartError | None = None
        for spawn in range(MAX_SPAWNS):
            if self._lease is None:
                self._lease = allocate_port(self.port_range)
            self.generation += 1
            tag = f"{self._uid}.g{self.generation}"
            proc = ManagedProcess(f"opencode.g{self.generation}", self._argv(self._lease.port), log_dir=self.log_dir,
                                  env={**env, TAG_ENV: tag}, cwd=self.project_dir, ready=self._ready,
                                  startup_timeout=self.startup_timeout, graceful_stop=self._graceful,
                                  stop_timeout=self.stop_grace)
            self._proc = proc
            self.log_paths.append(proc.log_path)
            self._unauthorized = False
            self._probe_timeout = FIRST_HEALTH_TIMEOUT_S
            self._requested_stop = False
            self._started_at = time.monotonic()
            try:
                proc.start()
            except ServerStartError as exc:
                last = exc
                self._pgid = None
                self._exit_record(proc, requested=False)
                tail = proc.log_tail(30)
                if "address already in use" in tail.lower() or "EADDRINUSE" in tail:
                    self._lease.release()
                    self._lease = None
                    continue
                if proc.returncode is not None and spawn + 1 < MAX_SPAWNS:
                    self._lease.release()
                    self._lease = None
                    continue
                break
            self._pgid = proc.pid
            if self.warm and not self._unauthorized:
                self._warm_up()
            if self._unauthorized:
                self._stop_proc(proc)
                raise OpencodeStartError(
                    f"opencode at {self.base_url} answered 401 to the launcher's password: "
                    f"OPENCODE_SERVER_PASSWORD did not reach the server (log: {proc.log_path})")
            return self
        assert last is not None
        proc = self._proc
        raise OpencodeStartError(
            f"opencode serve did not become healthy after {MAX_SPAWNS if last else 1} spawn(s), "
            f"{time.monotonic() - t0:.1f}s\ncommand: {' '.join(proc.argv) if proc else '?'}\n"
            f"exit status: {proc.returncode if proc else '?'}\nlog: {proc.log_path if proc else '?'}\n"
            f"last 30 log lines:\n{proc.log_tail(30) if proc else ''}\ncause: {last}") from last

    def _warm_up(self) -> None:
        """Load the project instance (first directory-scoped request costs ~2 s) so tests start warm."""
        try:
            self.request("GET", "/session/status", timeout=self.startup_timeout)
        except httpx.HTTPError:
            pass  # a cold instance only costs time; readiness already proved the server

    def _graceful(self, proc: ManagedProcess) -> None:
        """SIGTERM then SIGCONT to the group (a stopped process acts on SIGTERM only once continued)."""
        if proc.pid is None:
            return
        for sig in (_signal.SIGTERM, _signal.SIGCONT):
            try:
                os.killpg(proc.pid, sig)
            except (ProcessLookupError, PermissionError):
                return

    def _stop_proc(self, proc: ManagedProcess) -> None:
        pid = proc.pid
        if pid is None:
            return
        listed = _descendants(pid)
        requested = proc.alive
        proc.stop()  # graceful hook, wait stop_grace, SIGKILL group, reap
        tag = proc.env.get(TAG_ENV)
        strays = tagged_processes(tag) if tag else []
        listed = sorted(set(listed) | set(strays))
        for child in listed:
            try:
                os.kill(child, _signal.SIGCONT)
                os.kill(child, _signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        deadline = time.monotonic() + 5
        while True:
            survivors = [p for p in [*listed, pid] if _pid_running(p)]
            if not survivors and not _group_alive(pid):
                break
            if time.monotonic() > deadline:
                raise OpencodeStopError(f"opencode g{self.generation} (pgid {pid}): processes survived SIGKILL: "
                                        f"{survivors}")
            time.sleep(0.02)  # polling for the kernel to finish killing, bounded above
        self._exit_record(proc, requested=requested)

    def _exit_record(self, proc: ManagedProcess, *, requested: bool) -> None:
        if getattr(proc, "_cbchaos_recorded", False):
            return
        rc = proc.returncode
        if rc is None:
            status = "running"
        elif rc < 0:
            status = f"signal {_signal.Signals(-rc).name}"
        else:
            status = f"exit code {rc}"
        line = (f"--- cbchaos exit: generation={proc.name.rsplit('.g', 1)[-1]} pid={proc.pid} {status} "
                f"requested_stop={requested} lifetime={time.monotonic() - self._started_at:.2f}s\n")
        try:
            with open(proc.log_path, "a", encoding="utf-8") as fh:
                fh.write(line)
        except OSError:
            pass
        proc._cbchaos_recorded = True  # type: ignore[attr-defined]

    def _stop_quietly(self) -> None:
        try:
            self.stop()
        except Exception:
            pass

    def stop(self) -> None:
        """Stop the current generation (idempotent; safe on stopped or dead processes); release the port."""
        proc = self._proc
        if proc is not None:
            self._stop_proc(proc)
        self._end_pause_window()
        if self._lease is not None:
            self._lease.release()
            self._lease = None
        if self._atexit:
            atexit.unregister(self._stop_quietly)
            self._atexit = False

    def restart(self, same_port: bool = False, fresh_state: bool = False,
                provider_url: str | None = None) -> "OpencodeServer":
        """Stop, next generation, start. New port unless ``same_port`` (waits <= 5 s for it to be free)."""
        self._record("restart", {"same_port": same_port, "fresh_state": fresh_state})
        proc = self._proc
        if proc is not None:
            self._stop_proc(proc)
        self._end_pause_window()
        if not same_port and self._lease is not None:
            self._lease.release()
            self._lease = None
        if same_port and self._lease is not None:
            self._wait_port_free(self._lease.port, 5.0)
        if fresh_state:
            shutil.rmtree(self.root / "data", ignore_errors=True)
            (self.root / "data").mkdir()
        if provider_url is not None:
            self.provider_url = provider_url
        return self.start()

    @staticmethod
    def _wait_port_free(port: int, timeout: float) -> None:
        import socket

        deadline = time.monotonic() + timeout
        while True:
            with socket.socket() as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    s.bind(("127.0.0.1", port))
                    return
                except OSError:
                    pass
            if time.monotonic() > deadline:
                raise OpencodeStartError(f"port {port} still in use {timeout}s after stop (restart same_port=True)")
            time.sleep(0.05)  # polling the port, bounded by the deadline

    def __enter__(self) -> "OpencodeServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- probes -------------------------------------------------------------------------------
    def health(self, timeout: float = 1.0) -> dict[str, Any]:
        """GET /global/health with auth; raises httpx errors or RuntimeError on a non-200."""
        resp = httpx.get(self.base_url + "/global/health", auth=self.auth, timeout=timeout)
        if resp.status_code != 200:
            raise RuntimeError(f"GET /global/health -> {resp.status_code}: {resp.text[:200]}")
        return resp.json()

    def liveness(self) -> Liveness:
        """From the process handle (authoritative): ALIVE, STOPPED (state T), DEAD, or UNKNOWN if never started."""
        proc = self._proc
        if proc is None or proc.pid is None:
            return Liveness.UNKNOWN
        if proc.returncode is not None:
            return Liveness.DEAD
        try:
            with open(f"/proc/{proc.pid}/stat", "rb") as fh:
                state = fh.read().decode(errors="replace").rsplit(")", 1)[-1].split()[0]
        except OSError:
            return Liveness.DEAD
        if state in ("Z", "X"):
            proc.returncode  # reap
            return Liveness.DEAD
        if state in ("T", "t"):
            return Liveness.STOPPED
        return Liveness.ALIVE

    # -- faults (whole group) -----------------------------------------------------------------
    def _record(self, kind: str, params: dict[str, Any] | None = None) -> None:
        rec = FaultRecord(kind, f"opencode.g{self.generation}", time.monotonic(), dict(params or {}))
        self.faults.append(rec)
        if self.journal is not None:
            try:
                self.journal.instant(kind, rec.target, rec.params)
            except Exception:
                pass

    def signal(self, sig: int) -> None:
        if self._pgid is None:
            raise RuntimeError("opencode server not started")
        self._record("signal", {"signal": _signal.Signals(sig).name})
        try:
            os.killpg(self._pgid, sig)
        except ProcessLookupError:
            pass

    def _await_state(self, want: Liveness, timeout: float = 1.0) -> None:
        deadline = time.monotonic() + timeout
        while self.liveness() not in (want, Liveness.DEAD) and time.monotonic() < deadline:
            time.sleep(0.005)  # the kernel applies SIGSTOP/SIGCONT asynchronously; bounded poll

    def pause(self) -> None:
        """SIGSTOP the group; returns once the server shows state T (<= 1 s). Journaled as a window."""
        self.faults.append(FaultRecord("pause", f"opencode.g{self.generation}", time.monotonic()))
        if self.journal is not None and self._pause_window is None:
            try:
                self._pause_window = self.journal.begin("pause", f"opencode.g{self.generation}", {})
            except Exception:
                self._pause_window = None
        if self._proc is not None:
            self._proc.pause()
            if self._pause_window is not None:
                self.journal.started(self._pause_window)
            self._await_state(Liveness.STOPPED)

    def resume(self) -> None:
        self.faults.append(FaultRecord("resume", f"opencode.g{self.generation}", time.monotonic()))
        if self._proc is not None:
            self._proc.resume()
            self._await_state(Liveness.ALIVE)
        self._end_pause_window()

    def _end_pause_window(self) -> None:
        window, self._pause_window = self._pause_window, None
        if window is not None and self.journal is not None:
            try:
                self.journal.end(window)
            except Exception:
                pass

    def kill(self) -> None:
        self._record("kill")
        if self._proc is not None:
            self._proc.kill()

    # -- client helpers -----------------------------------------------------------------------
    def client(self, timeout: float = 10.0, base_url: str | None = None) -> httpx.Client:
        """An httpx client with auth and the directory header (close it, or use it as a context manager)."""
        return httpx.Client(base_url=base_url or self.base_url, auth=self.auth, timeout=timeout,
                            headers={"x-opencode-directory": str(self.project_dir)})

    def request(self, method: str, path: str, json: Any = None, timeout: float = 10.0) -> httpx.Response:
        with self.client(timeout) as c:
            resp = c.request(method, path, json=json)
            resp.read()
            return resp

    def busy_sessions(self) -> dict[str, Any]:
        return self.request("GET", "/session/status").json()

    def abort_all(self, timeout: float = 10.0) -> list[str]:
        """Abort every busy session and wait (bounded) until none is busy; returns the aborted ids."""
        busy = list(self.busy_sessions())
        for sid in busy:
            self.request("POST", f"/session/{sid}/abort")
        deadline = time.monotonic() + timeout
        while self.busy_sessions():
            if time.monotonic() > deadline:
                raise TimeoutError(f"opencode sessions still busy {timeout}s after abort: {self.busy_sessions()}")
            time.sleep(0.1)  # polling the status endpoint, bounded by the deadline
        return busy


def start_opencode(*, provider_url: str, workdir: Path | str, provider_key: str | None = None, **kw: Any) -> OpencodeServer:
    """Create and start a server rooted at ``workdir``."""
    return OpencodeServer(root=workdir, provider_url=provider_url, provider_key=provider_key, **kw).start()


__all__ = ["INSTALL_HINT", "OPENCODE_PIN", "Liveness", "OpencodeBinary", "OpencodeDiscovery", "OpencodeNotFound", "discover_opencode", "OpencodeServer",
           "OpencodeStartError", "OpencodeStopError", "binary_version", "candidate_paths", "find_opencode",
           "require_opencode", "start_opencode"]
