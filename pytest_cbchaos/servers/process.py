"""Managed child processes: own process group, log file, readiness probe, orphan protection.

Every server the kit starts (redis-server, fakeredis TCP, the embedded proxy, opencode, the
mock LLM when it runs out of process) is a :class:`ManagedProcess`:

* spawned with ``start_new_session=True`` (own process group, so Ctrl-C on the terminal does
  not reach it before pytest's teardown does) and an env tag ``CBCHAOS_OWNER=<pid>:<uuid>``;
* stdout/stderr go to a log file whose handle the parent closes right after spawning;
* registered with the reaper (:mod:`pytest_cbchaos.servers.reaper`) and the on-disk registry,
  so it dies within a moment even when pytest itself is SIGKILLed;
* ``start()`` polls ``ready`` with backoff (1 ms to 50 ms) until the deadline and raises
  :class:`ServerStartError` quoting the log tail if the process exits or the deadline passes;
  with ``ready_pipe=True`` it blocks instead on a pipe whose write end the child inherits (its fd
  number in ``CBCHAOS_READY_FD``): the child writes ``ready`` once it serves, or dies (EOF).
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import threading
import time
import uuid
from collections import deque
from pathlib import Path
from typing import Callable, Mapping, Sequence

import psutil

from pytest_cbchaos.servers.ports import runtime_dir
from pytest_cbchaos.servers.reaper import REAPER

OWNER_ENV = "CBCHAOS_OWNER"
READY_FD_ENV = "CBCHAOS_READY_FD"
OWNER_TAG = f"{os.getpid()}:{uuid.uuid4().hex}"


class ServerStartError(RuntimeError):
    """A server did not become ready; the message quotes the tail of its log."""


_live: dict[int, "ManagedProcess"] = {}
_live_lock = threading.Lock()


def _registry_path() -> Path:
    path = runtime_dir() / "registry"
    path.mkdir(parents=True, exist_ok=True)
    return path / f"{os.getpid()}.json"


def _write_registry() -> None:
    with _live_lock:
        entries = [{"pid": p.pid, "name": p.name} for p in _live.values() if p.pid]
    path = _registry_path()
    if entries:
        me = psutil.Process()
        path.write_text(json.dumps({"owner": os.getpid(), "owner_start": me.create_time(),
                                    "tag": OWNER_TAG, "children": entries}))
    else:
        path.unlink(missing_ok=True)


def sweep_orphans() -> list[int]:
    """Kill leftovers of earlier runs whose owner is dead; returns the pids killed.

    A child is killed only if its environment still carries the dead owner's tag, which guards
    against PID reuse.
    """
    killed: list[int] = []
    for path in (runtime_dir() / "registry").glob("*.json"):
        try:
            data = json.loads(path.read_text())
            owner = int(data["owner"])
        except (OSError, ValueError, KeyError):
            path.unlink(missing_ok=True)
            continue
        if owner == os.getpid():
            continue
        try:
            alive = psutil.Process(owner).create_time() == data.get("owner_start")
        except psutil.Error:
            alive = False
        if alive:
            continue
        for child in data.get("children", []):
            try:
                proc = psutil.Process(int(child["pid"]))
                if proc.environ().get(OWNER_ENV) == data.get("tag"):
                    os.killpg(proc.pid, signal.SIGKILL)
                    killed.append(proc.pid)
            except (psutil.Error, ProcessLookupError, PermissionError, KeyError, ValueError):
                pass
        path.unlink(missing_ok=True)
    return killed


def kill_all_live() -> None:
    """Kill every live managed process now (used by the SIGTERM/SIGHUP handler)."""
    with _live_lock:
        procs = list(_live.values())
    for proc in procs:
        proc.kill()


class ManagedProcess:
    """One child server process. Not thread-safe for concurrent start/stop of the same object."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        log_dir: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | str | None = None,
        ready: Callable[["ManagedProcess"], bool] | None = None,
        startup_timeout: float = 10.0,
        graceful_stop: Callable[["ManagedProcess"], None] | None = None,
        stop_timeout: float = 1.0,
        ready_pipe: bool = False,
    ) -> None:
        self.name = name
        self.argv = [str(a) for a in argv]
        self.log_dir = Path(log_dir)
        self.env = dict(os.environ if env is None else env)
        self.cwd = str(cwd) if cwd is not None else None
        self.ready = ready
        self.startup_timeout = startup_timeout
        self.graceful_stop = graceful_stop
        self.stop_timeout = stop_timeout
        self.ready_pipe = ready_pipe
        self.log_path = self.log_dir / f"{name}.log"
        self._popen: subprocess.Popen[bytes] | None = None
        self._paused = False
        self.starts = 0

    # -- state ---------------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        return self._popen.pid if self._popen is not None else None

    @property
    def returncode(self) -> int | None:
        return self._popen.poll() if self._popen is not None else None

    @property
    def alive(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    @property
    def paused(self) -> bool:
        return self._paused

    def log_tail(self, n: int = 20) -> str:
        try:
            with open(self.log_path, "r", encoding="utf-8", errors="replace") as fh:
                return "".join(deque(fh, maxlen=n))
        except OSError:
            return "<no log>"

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> "ManagedProcess":
        if self.alive:
            return self
        arm()
        self.log_dir.mkdir(parents=True, exist_ok=True)
        env = dict(self.env)
        env[OWNER_ENV] = OWNER_TAG
        read_fd, write_fd = os.pipe() if self.ready_pipe else (-1, -1)
        if self.ready_pipe:
            env[READY_FD_ENV] = str(write_fd)
        try:
            with open(self.log_path, "ab") as log:
                log.write(f"--- cbchaos start #{self.starts + 1}: {' '.join(self.argv)}\n".encode())
                log.flush()
                try:
                    self._popen = subprocess.Popen(
                        self.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                        env=env, cwd=self.cwd, start_new_session=True, close_fds=True,
                        pass_fds=(write_fd,) if self.ready_pipe else (),
                    )
                except OSError as exc:
                    if self.ready_pipe:
                        os.close(read_fd)
                    raise ServerStartError(f"{self.name}: cannot execute {self.argv[0]!r}: {exc}") from exc
        finally:
            if self.ready_pipe:
                os.close(write_fd)  # the child holds the only write end: its death is EOF here
        self.starts += 1
        self._paused = False
        REAPER.register(self._popen.pid)
        with _live_lock:
            _live[id(self)] = self
        _write_registry()
        try:
            if self.ready_pipe:
                self._wait_ready_pipe(read_fd)
            else:
                self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready_pipe(self, fd: int) -> None:
        """Block on the child's ``ready`` line; EOF (the child died) or the deadline raise."""
        deadline = time.monotonic() + self.startup_timeout
        got = b""
        try:
            while b"\n" not in got:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                    raise ServerStartError(
                        f"{self.name} did not report ready within {self.startup_timeout:.1f}s "
                        f"(argv: {' '.join(self.argv)}).\nLast lines of {self.log_path}:\n{self.log_tail()}")
                chunk = os.read(fd, 64)
                if not chunk:
                    self.wait(1.0)
                    raise ServerStartError(
                        f"{self.name} exited with code {self.returncode} before it was ready "
                        f"(argv: {' '.join(self.argv)}).\nLast lines of {self.log_path}:\n{self.log_tail()}")
                got += chunk
        finally:
            os.close(fd)
        if got.strip() != b"ready":
            raise ServerStartError(f"{self.name} wrote {got!r} on its ready pipe, expected b'ready'")

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        delay = 0.001
        last_error: BaseException | None = None
        while True:
            if not self.alive:
                raise ServerStartError(
                    f"{self.name} exited with code {self.returncode} before it was ready "
                    f"(argv: {' '.join(self.argv)}).\nLast lines of {self.log_path}:\n{self.log_tail()}"
                )
            if self.ready is None:
                return
            try:
                if self.ready(self):
                    return
            except Exception as exc:  # readiness probes fail with anything until the server is up
                last_error = exc
            if time.monotonic() >= deadline:
                raise ServerStartError(
                    f"{self.name} not ready after {self.startup_timeout:.1f}s "
                    f"(last probe error: {last_error!r}).\nLast lines of {self.log_path}:\n{self.log_tail()}"
                )
            time.sleep(delay)  # polling interval of the readiness probe, not synchronisation
            delay = min(delay * 2, 0.05)

    def wait(self, timeout: float) -> int | None:
        if self._popen is None:
            return None
        try:
            return self._popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self) -> None:
        """Graceful hook (if any, bounded by ``stop_timeout``), then SIGKILL the group and reap."""
        if self._popen is None:
            return
        if self._paused:
            self.resume()
        if self.alive and self.graceful_stop is not None:
            try:
                self.graceful_stop(self)
            except Exception:
                pass
            self.wait(self.stop_timeout)
        self._kill_group()

    def kill(self) -> None:
        """SIGKILL the process group (a fault, or final teardown)."""
        if self._popen is not None:
            self._kill_group()

    def _kill_group(self) -> None:
        assert self._popen is not None
        pid = self._popen.pid
        for sig in (signal.SIGCONT, signal.SIGKILL):
            try:
                os.killpg(pid, sig)
            except (ProcessLookupError, PermissionError):
                break
        try:
            self._popen.wait(5)
        except subprocess.TimeoutExpired:
            pass
        self._paused = False
        REAPER.unregister(pid)
        with _live_lock:
            _live.pop(id(self), None)
        _write_registry()

    def pause(self) -> None:
        """SIGSTOP the group: connections stay open, requests hang until :meth:`resume`."""
        if self.alive:
            os.killpg(self._popen.pid, signal.SIGSTOP)  # type: ignore[union-attr]
            self._paused = True

    def resume(self) -> None:
        if self._popen is not None and self._paused:
            try:
                os.killpg(self._popen.pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
            self._paused = False

    def restart(self, *, graceful: bool = False) -> "ManagedProcess":
        """Kill (or stop gracefully) and relaunch the same argv; the caller's port lease is kept."""
        if graceful:
            self.stop()
        else:
            self.kill()
        return self.start()

    def __enter__(self) -> "ManagedProcess":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


_armed = False


def arm() -> None:
    """Before this process's first child: sweep earlier runs' orphans, install the signal handlers.

    Done here, not at pytest start, so a session that starts no server pays nothing for it
    (docs/architecture.md, "Zero cost until used")."""
    global _armed
    install_signal_handlers()  # a no-op off the main thread; tried again at the next start
    if not _armed:
        _armed = True
        sweep_orphans()


def install_signal_handlers() -> None:
    """On SIGTERM/SIGHUP kill every managed process synchronously, then die as the signal says."""

    def handler(signum: int, frame: object) -> None:
        kill_all_live()
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)

    if threading.current_thread() is not threading.main_thread():
        return
    for sig in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) in (signal.SIG_DFL, None):
            signal.signal(sig, handler)
