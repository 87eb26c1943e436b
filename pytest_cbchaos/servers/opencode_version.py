"""``opencode --version`` probe with a per-machine disk cache (docs/opencode.md, "Install").

A cold opencode binary can take seconds to print its version on a busy machine. The answer is
cached on disk keyed by the binary's (path, size, mtime), so one slow probe is paid once per
machine, not once per pytest worker or pytester session. Concurrent probes of one binary are
serialised by a file lock: the others wait and read the cached answer. A failed or timed-out
probe is remembered only for the probe window itself (workers that were waiting for it), so a
transient slowness is never cached as "missing".
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CACHE_FILE = "opencode-version.json"


@dataclass(frozen=True)
class VersionProbe:
    """What ``<path> --version`` said: a version, or why not (timed out, failed, no such file)."""

    path: Path
    exists: bool
    version: str | None
    elapsed_s: float
    timeout_s: float
    timed_out: bool = False
    cached: bool = False
    error: str | None = None

    def describe(self) -> str:
        """A reason for a user, naming the path; "found at" whenever the file exists."""
        if self.version is not None:
            return f"opencode {self.version} at {self.path}"
        if self.timed_out:
            return (f"opencode found at {self.path}, `--version` took {self.elapsed_s:.1f} s (limit "
                    f"{self.timeout_s:g} s; a busy machine? once it answers, the version is cached per binary "
                    f"in {cache_dir()})")
        if not self.exists:
            return f"no opencode at {self.path}"
        return f"opencode found at {self.path}, `--version` failed: {self.error}"


def cache_dir() -> Path:
    """``CBCHAOS_CACHE_DIR``, else ``$XDG_CACHE_HOME/pytest-cbchaos``, else ``~/.cache/pytest-cbchaos``."""
    explicit = os.environ.get("CBCHAOS_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "pytest-cbchaos"


_memory: dict[tuple[str, int, int], VersionProbe] = {}


def probe_version(path: Path, timeout: float) -> VersionProbe:
    """The cached version of ``path`` if its (path, size, mtime) is known, else one probe run."""
    try:
        st = path.stat()
    except OSError:
        return VersionProbe(path, False, None, 0.0, timeout, error="no such file")
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    hit = _memory.get(key)
    if hit is not None:
        return hit
    try:
        directory = cache_dir()
        directory.mkdir(parents=True, exist_ok=True)
        lock = open(directory / (CACHE_FILE + ".lock"), "a")
    except OSError:
        return _remember(key, _run(path, timeout))  # no writable cache: probe in this process only
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # held for at most one probe (timeout) by another process
        entries = _read(directory / CACHE_FILE)
        entry = entries.get(key[0])
        if isinstance(entry, dict) and (entry.get("size"), entry.get("mtime_ns")) == key[1:]:
            if entry.get("version"):
                return _remember(key, VersionProbe(path, True, str(entry["version"]), float(entry.get("probe_s", 0.0)),
                                                   timeout, cached=True))
            if time.time() - float(entry.get("checked_at", 0.0)) < timeout:  # we waited for that very probe
                return VersionProbe(path, True, None, float(entry.get("probe_s", 0.0)), timeout,
                                    timed_out=bool(entry.get("timed_out")), cached=True, error=entry.get("error"))
        probe = _run(path, timeout)
        entries[key[0]] = {"size": key[1], "mtime_ns": key[2], "version": probe.version,
                           "probe_s": round(probe.elapsed_s, 3), "timed_out": probe.timed_out,
                           "error": probe.error, "checked_at": time.time()}
        _write(directory / CACHE_FILE, entries)
    return _remember(key, probe) if probe.version else probe


def _remember(key: tuple[str, int, int], probe: VersionProbe) -> VersionProbe:
    if probe.version:
        _memory[key] = probe
    return probe


def _run(path: Path, timeout: float) -> VersionProbe:
    t0 = time.monotonic()
    try:
        out = subprocess.run([str(path), "--version"], capture_output=True, text=True, timeout=timeout,
                             stdin=subprocess.DEVNULL, env={"PATH": os.environ.get("PATH", ""),
                                                            "HOME": os.environ.get("HOME", "/tmp")})
    except subprocess.TimeoutExpired:
        return VersionProbe(path, True, None, time.monotonic() - t0, timeout, timed_out=True)
    except OSError as exc:
        return VersionProbe(path, True, None, time.monotonic() - t0, timeout, error=str(exc))
    elapsed = time.monotonic() - t0
    if out.returncode == 0 and out.stdout.strip():
        return VersionProbe(path, True, out.stdout.strip().splitlines()[-1].strip(), elapsed, timeout)
    detail = (out.stderr or out.stdout).strip().splitlines()[-1:] or [""]
    error = f"exit status {out.returncode} {detail[0][:200]}".strip()
    return VersionProbe(path, True, None, elapsed, timeout, error=error)


def _read(file: Path) -> dict[str, Any]:
    try:
        data = json.loads(file.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write(file: Path, entries: dict[str, Any]) -> None:
    tmp = file.with_name(f"{file.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(entries, indent=1, sort_keys=True))
        os.replace(tmp, file)  # atomic: a reader never sees half a file
    except OSError:
        pass  # a read-only cache only costs another probe later
