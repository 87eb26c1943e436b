"""The launcher's health probe (docs/opencode-design.md#start-and-readiness): opencode accepts connections
before it serves them and never answers what it accepted then, so the probe starts with a short timeout and
grows it after each timeout; a server that serves slowly still gets through. A loopback stand-in plays both."""

from __future__ import annotations

import json
import socket
import threading
import time
from types import SimpleNamespace

import pytest

from pytest_cbchaos.servers import opencode
from pytest_cbchaos.servers.opencode import FIRST_HEALTH_TIMEOUT_S, OpencodeServer

BODY = json.dumps({"healthy": True, "version": "1.18.33"}).encode()
MAX_PROBES = 30  # bounds every probe loop below


class StandIn:
    """Accepts every connection; leaves the first ``hang`` unanswered, then answers each after ``delay_s``."""

    def __init__(self, hang: int, delay_s: float = 0.0) -> None:
        self.hang, self.delay_s, self.accepted = hang, delay_s, 0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            if self.accepted <= self.hang:
                self.held.append(conn)  # accepted, never answered
                continue
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            conn.recv(65536)
            time.sleep(self.delay_s)  # a server that serves, slowly
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
                         b"Content-Length: %d\r\n\r\n%s" % (len(BODY), BODY))

    def close(self) -> None:
        self.sock.close()
        for c in self.held:
            c.close()


def launcher(port: int) -> OpencodeServer:
    """A handle with just what the probe reads (no binary, no process)."""
    server = OpencodeServer.__new__(OpencodeServer)
    server._lease = SimpleNamespace(port=port)
    server.username, server.password, server.version = "opencode", "secret", None
    server._unauthorized, server._probe_timeout = False, opencode.FIRST_HEALTH_TIMEOUT_S
    return server


def probe_until_ready(server: OpencodeServer, max_probes: int = MAX_PROBES) -> list[float]:
    """The probe's timeouts, probe after probe, until it reports ready (bounded)."""
    timeouts = []
    for _ in range(max_probes):
        timeouts.append(server._probe_timeout)
        if server._ready(None):  # type: ignore[arg-type]
            return timeouts
    pytest.fail(f"not ready after {max_probes} probes (timeouts {timeouts})")


@pytest.fixture
def stand_in():
    made: list[StandIn] = []
    yield lambda *a, **kw: made.append(StandIn(*a, **kw)) or made[-1]
    for s in made:
        s.close()


def test_unanswered_probes_grow_the_timeout_and_the_first_served_probe_is_ready(stand_in) -> None:
    server = launcher(stand_in(hang=3).port)
    timeouts = probe_until_ready(server)
    assert timeouts[:4] == pytest.approx([0.1, 0.2, 0.3, 0.4])  # three hung, the fourth served (at once when idle)
    assert server.version == "1.18.33"


def test_the_timeout_stops_growing_at_its_cap(stand_in, monkeypatch) -> None:
    monkeypatch.setattr(opencode, "FIRST_HEALTH_TIMEOUT_S", 0.02)  # scaled down: the test waits out each hang
    monkeypatch.setattr(opencode, "HEALTH_TIMEOUT_S", 0.1)
    server = launcher(stand_in(hang=8).port)
    timeouts = probe_until_ready(server)
    # eight hung probes, then the first served one: served at once when idle; a busy box may time it out too,
    # which only repeats it at the cap (a fixed 0.1 s for a healthy answer would be the flake, not the probe)
    assert timeouts[:9] == pytest.approx([0.02, 0.04, 0.06, 0.08, 0.1, 0.1, 0.1, 0.1, 0.1])
    assert timeouts[9:] == pytest.approx([0.1] * len(timeouts[9:])), timeouts


def test_a_slow_server_still_gets_through(stand_in) -> None:
    """Answers take 0.35 s: the probe's timeout grows past that (a fixed short timeout never would)."""
    server = launcher(stand_in(hang=0, delay_s=0.35).port)
    timeouts = probe_until_ready(server)
    assert timeouts[-1] > 0.35 and timeouts[0] == pytest.approx(FIRST_HEALTH_TIMEOUT_S)


def test_a_fixed_short_timeout_is_caught(stand_in, monkeypatch) -> None:
    """The weakened probe (timeout never grows) never reports the slow server ready: answers come after 0.35 s,
    later than its 0.1 s, whatever the load (the correct probe needs 4 probes)."""
    monkeypatch.setattr(opencode, "HEALTH_TIMEOUT_S", FIRST_HEALTH_TIMEOUT_S)
    server = launcher(stand_in(hang=0, delay_s=0.35).port)
    with pytest.raises(pytest.fail.Exception, match="not ready"):
        probe_until_ready(server, max_probes=8)
