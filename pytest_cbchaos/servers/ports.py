"""Loopback port allocation that holds across pytest-xdist workers and concurrent runs.

A port is taken by an exclusive ``flock`` on ``<runtime-dir>/pytest-cbchaos/ports/<port>.lock``
followed by a test bind of ``127.0.0.1:<port>``. The lock lives as long as the owning
process (the kernel drops it even on SIGKILL), so a server keeps its port across restarts and
proxy disable/enable, and no other worker can be handed the same port meanwhile.
"""

from __future__ import annotations

import errno
import fcntl
import os
import random
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_RANGE = (20000, 32767)


class PortRangeError(ValueError):
    """The configured port range is malformed or exhausted."""


def runtime_dir() -> Path:
    """Per-user runtime directory for locks and the orphan registry."""
    base = os.environ.get("XDG_RUNTIME_DIR")
    if not base or not os.access(base, os.W_OK):
        base = f"/tmp/pytest-cbchaos-{os.getuid()}"
    path = Path(base) / "pytest-cbchaos"
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return (32768, 60999)


def candidate_ports(port_range: tuple[int, int]) -> list[int]:
    """Ports of the range that are outside the OS ephemeral range."""
    eph_low, eph_high = _ephemeral_range()
    ports = [p for p in range(port_range[0], port_range[1] + 1) if not eph_low <= p <= eph_high]
    if not ports:
        raise PortRangeError(
            f"port range {port_range[0]}-{port_range[1]} lies entirely inside the OS ephemeral "
            f"range {eph_low}-{eph_high}; choose ports outside it"
        )
    return ports


@dataclass
class PortLease:
    """An allocated port; the lock is held until :meth:`release` or process exit."""

    port: int
    _fd: int | None = field(default=None, repr=False)

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            _held.discard(self.port)
            os.close(fd)

    @property
    def held(self) -> bool:
        return self._fd is not None


_held: set[int] = set()
_lock = threading.Lock()
_rng = random.Random()


def seed_allocator(seed: int | None) -> None:
    """Make the candidate order reproducible (from --cbchaos-seed and the worker id)."""
    _rng.seed(seed)


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def allocate_port(port_range: tuple[int, int] = DEFAULT_RANGE, *, attempts: int = 200) -> PortLease:
    """Lock and return a free loopback port from ``port_range``."""
    lock_dir = runtime_dir() / "ports"
    lock_dir.mkdir(parents=True, exist_ok=True)
    candidates = candidate_ports(port_range)
    with _lock:
        for _ in range(min(attempts, len(candidates) * 2)):
            port = _rng.choice(candidates)
            if port in _held:
                continue
            fd = os.open(lock_dir / f"{port}.lock", os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno in (errno.EWOULDBLOCK, errno.EACCES):
                    continue
                raise
            if not _bindable(port):
                os.close(fd)
                continue
            _held.add(port)
            return PortLease(port, fd)
    raise PortRangeError(
        f"no free port in {port_range[0]}-{port_range[1]} after {attempts} attempts; "
        "widen --cbchaos-port-range"
    )
