import os
import socket
import sys
import time

import pytest

from pytest_cbchaos.servers.ports import allocate_port
from pytest_cbchaos.servers.process import ManagedProcess, ServerStartError

SERVER = """
import socket, sys, time
print("listening", flush=True)
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen()
while True:
    c, _ = s.accept(); c.sendall(b"hi"); c.close()
"""


HEALTHY_S = 10.0  # a fault-free answer is waited for, not timed: recv returns as soon as it is in


def _probe(port, timeout=0.5):
    """The echo server's greeting within ``timeout``: short as a readiness poll (a timeout only means "poll
    again"), long (``HEALTHY_S``) where a test asserts that the server answers."""
    def ready(_):
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as c:
            return c.recv(2) == b"hi"
    return ready


def _lines(text):
    return [line.strip() for line in text.splitlines()]


def _after_logging(line, probe, within_s=HEALTHY_S):
    """A readiness probe that first waits (bounded) for the child to log the line ``line``, then answers as
    ``probe``: the child's start is waited for, not timed, so a deadline test still sees its log line on a box
    that takes longer than the deadline to start an interpreter."""
    def ready(proc):
        deadline = time.monotonic() + within_s
        while line not in _lines(proc.log_path.read_text(errors="replace")) and time.monotonic() < deadline:
            time.sleep(0.01)  # polling the child's log, bounded
        return probe(proc)
    return ready


def _open_fds_pointing_to(path):
    out = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}") == str(path):
                out.append(fd)
        except OSError:
            pass
    return out


def test_start_pause_restart_stop(tmp_path):
    lease = allocate_port()
    proc = ManagedProcess("echo", [sys.executable, "-c", SERVER, str(lease.port)], log_dir=tmp_path,
                          ready=_probe(lease.port), startup_timeout=10)
    proc.start()
    try:
        assert proc.alive and os.getpgid(proc.pid) == proc.pid  # its own process group
        assert not _open_fds_pointing_to(proc.log_path)  # the parent holds no log handle
        proc.pause()
        with pytest.raises(OSError):
            with socket.create_connection(("127.0.0.1", lease.port), timeout=0.3) as c:
                c.settimeout(0.3)
                c.recv(2)
        proc.resume()
        old = proc.pid
        proc.restart()
        assert proc.pid != old and _probe(lease.port, HEALTHY_S)(proc)
    finally:
        proc.stop()
        lease.release()
    assert not proc.alive
    assert "listening" in proc.log_path.read_text()


def test_early_exit_quotes_the_log_tail(tmp_path):
    proc = ManagedProcess("broken", [sys.executable, "-c", "print('config error: bad port 99999'); raise SystemExit(3)"],
                          log_dir=tmp_path, ready=lambda p: False, startup_timeout=5)
    with pytest.raises(ServerStartError) as info:
        proc.start()
    assert "exited with code 3" in str(info.value)
    assert "config error: bad port 99999" in str(info.value)


def test_readiness_deadline(tmp_path):
    proc = ManagedProcess("slow", [sys.executable, "-c", "import time; print('booting', flush=True); time.sleep(60)"],
                          log_dir=tmp_path, ready=_after_logging("booting", lambda p: False), startup_timeout=0.3)
    with pytest.raises(ServerStartError, match="not ready after 0.3s") as info:
        proc.start()
    assert "booting" in _lines(str(info.value))  # the child's own line (the quoted argv also holds the word)
    assert not proc.alive


def test_missing_executable(tmp_path):
    with pytest.raises(ServerStartError, match="cannot execute"):
        ManagedProcess("nope", ["/nonexistent/redis-server"], log_dir=tmp_path).start()


READY_CHILD = """
import os, sys, time
if sys.argv[1] == "ready":
    os.write(int(os.environ["CBCHAOS_READY_FD"]), b"ready\\n")
    time.sleep(60)
elif sys.argv[1] == "garbage":
    os.write(int(os.environ["CBCHAOS_READY_FD"]), b"nope\\n")
    time.sleep(60)
elif sys.argv[1] == "die":
    print("bad config line 3", flush=True)
    sys.exit(3)
else:
    time.sleep(60)
"""


def _ready_child(tmp_path, mode, timeout=10.0):
    return ManagedProcess(f"rp-{mode}", [sys.executable, "-c", READY_CHILD, mode], log_dir=tmp_path,
                          ready_pipe=True, startup_timeout=timeout)


def test_ready_pipe_handshake_and_restart_leave_no_fd(tmp_path):
    before = set(os.listdir("/proc/self/fd"))
    proc = _ready_child(tmp_path, "ready")
    proc.start()
    try:
        assert proc.alive
        old = proc.pid
        proc.restart()  # a fresh pipe per start
        assert proc.alive and proc.pid != old
    finally:
        proc.stop()
    assert set(os.listdir("/proc/self/fd")) <= before  # both pipe ends closed in the parent


def test_ready_pipe_child_death_is_reported_at_once_with_the_log(tmp_path):
    proc = _ready_child(tmp_path, "die", timeout=60.0)
    with pytest.raises(ServerStartError, match="(?s)exited with code 3 before it was ready.*bad config line 3"):
        proc.start()
    assert not proc.alive


# silent: the child never writes, so the 0.3 s deadline is what fires however fast the box; garbage: the child's
# wrong line is waited for (it comes after the interpreter starts, which a busy box can delay past 0.3 s)
@pytest.mark.parametrize("mode, timeout, message", [("silent", 0.3, "did not report ready within 0.3s"),
                                                    ("garbage", 60.0, "wrote b'nope\\\\n' on its ready pipe")])
def test_ready_pipe_deadline_and_wrong_line(tmp_path, mode, timeout, message):
    proc = _ready_child(tmp_path, mode, timeout=timeout)
    with pytest.raises(ServerStartError, match=message):
        proc.start()
    assert not proc.alive  # killed, not orphaned
