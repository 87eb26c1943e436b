"""Slow is not missing: a slow ``--version`` names the binary, and the version is cached per binary on disk."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Iterator

import pytest

import pytest_cbchaos.servers.opencode as oc
import pytest_cbchaos.servers.opencode_version as ov
from pytest_cbchaos.servers.opencode import OpencodeNotFound, find_opencode
from pytest_cbchaos.servers.opencode_version import probe_version

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    cache = tmp_path / "cache"
    monkeypatch.setenv("CBCHAOS_CACHE_DIR", str(cache))
    monkeypatch.delenv("CBCHAOS_OPENCODE_BIN", raising=False)
    monkeypatch.setattr(ov, "_memory", {})
    yield cache


def _binary(tmp_path: Path, body: str, name: str = "opencode") -> Path:
    path = tmp_path / name
    path.write_text(f"#!{sys.executable}\n" + textwrap.dedent(body))
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def _hung(tmp_path: Path) -> Path:
    # never answers within any limit: blocks on a pipe nobody writes (no timing involved)
    return _binary(tmp_path, """
        import os
        r, w = os.pipe()
        os.read(r, 1)
    """)


def _counting(tmp_path: Path) -> tuple[Path, Path]:
    calls = tmp_path / "calls"
    return _binary(tmp_path, f"""
        with open({str(calls)!r}, "a") as fh:
            fh.write("x")
        print("1.18.33")
    """), calls


def test_slow_candidate_is_reported_found_with_its_probe_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    slow = _hung(tmp_path)
    monkeypatch.setattr(oc, "VERSION_TIMEOUT_S", 0.5)
    monkeypatch.setattr(oc, "candidate_places", lambda *a, **k: [("nowhere", None), ("PATH", slow)])
    with pytest.raises(OpencodeNotFound) as info:
        find_opencode(None, tmp_path)
    msg = str(info.value)
    assert f"opencode found at {slow}, `--version` took 0.5 s" in msg and "limit 0.5 s" in msg, msg
    assert "not found" not in msg and "npm install" in msg


def test_slow_explicit_binary_is_reported_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    slow = _hung(tmp_path)
    monkeypatch.setattr(oc, "VERSION_TIMEOUT_S", 0.5)
    with pytest.raises(OpencodeNotFound, match=r"--cbchaos-opencode-bin=.*opencode found at .*`--version` took 0\.5 s"):
        find_opencode(slow, tmp_path)


def test_broken_candidate_names_its_exit_status(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    broken = _binary(tmp_path, "import sys\nprint('boom', file=sys.stderr)\nsys.exit(3)\n")
    monkeypatch.setattr(oc, "candidate_places", lambda *a, **k: [("PATH", broken)])
    with pytest.raises(OpencodeNotFound, match=r"found at .*`--version` failed: exit status 3 boom"):
        find_opencode(None, tmp_path)


def test_no_candidate_at_all_is_none(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(oc, "candidate_places", lambda *a, **k: [("nowhere", None), ("PATH", tmp_path / "absent")])
    assert find_opencode(None, tmp_path) is None


def test_version_cached_on_disk_across_processes(tmp_path: Path, private_cache: Path) -> None:
    binary, calls = _counting(tmp_path)
    code = ("import sys; from pathlib import Path; from pytest_cbchaos.servers.opencode import find_opencode; "
            "print(find_opencode(sys.argv[1]).version)")
    env = {**os.environ, "PYTHONPATH": str(REPO), "CBCHAOS_CACHE_DIR": str(private_cache)}
    for _ in range(2):  # two sessions (say, two pytester subprocesses or two workers)
        out = subprocess.run([sys.executable, "-c", code, str(binary)], env=env, capture_output=True, text=True,
                             timeout=60)
        assert out.returncode == 0 and out.stdout.strip() == "1.18.33", out.stderr
    assert calls.read_text() == "x"  # probed once per machine
    st = binary.stat()
    os.utime(binary, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # a new binary: probe again
    ov._memory.clear()
    assert probe_version(binary, 5.0).version == "1.18.33" and calls.read_text() == "xx"
    again = probe_version(binary, 5.0)
    assert again.version == "1.18.33" and calls.read_text() == "xx"


def test_timed_out_probe_is_not_cached_as_missing(tmp_path: Path) -> None:
    slow = _hung(tmp_path)
    first = probe_version(slow, 0.3)
    assert first.timed_out and first.version is None and not first.cached
    ov._memory.clear()
    time.sleep(0.35)  # past the probe window: the failure is no longer reused
    second = probe_version(slow, 0.3)
    assert second.timed_out and not second.cached  # probed again, not answered from the cache


def test_unwritable_cache_still_probes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("CBCHAOS_CACHE_DIR", str(blocker / "sub"))  # cannot mkdir below a file
    binary, calls = _counting(tmp_path)
    assert probe_version(binary, 5.0).version == "1.18.33" and calls.read_text() == "x"


def test_session_with_a_slow_binary_skips_naming_it(pytester: pytest.Pytester, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A pytest session whose only opencode is slow says "found at PATH, took N s", never "not found"."""
    slow = _hung(tmp_path)
    monkeypatch.setattr(oc, "VERSION_TIMEOUT_S", 0.5)
    monkeypatch.setenv("CBCHAOS_OPENCODE_BIN", str(slow))
    monkeypatch.delenv("CI", raising=False)
    pytester.makepyfile("def test_needs_opencode(cbchaos_opencode):\n    pass\n")
    r = pytester.runpytest_inprocess("-rs", "-p", "no:cacheprovider")
    r.assert_outcomes(skipped=1)
    out = r.stdout.str()
    assert re.search(rf"opencode found at {re.escape(str(slow))}, `--version` took \d+\.\d s \(limit 0\.5 s", out), out
    assert "not found" not in out, out
