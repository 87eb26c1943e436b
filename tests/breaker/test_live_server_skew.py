"""docs/breaker-design.md#clock-skew / CB-26 with a skewed *server* clock (time_source="server"): each worker's first
gate reply other than ``cooldown`` comes within one gate interval + round trip + ε of the cooldown's end, whatever the
server's and the workers' clocks say, and every reply carries the server's time (one op, one clock).

The server clock is shifted with libfaketime (``LD_PRELOAD``, ``FAKETIME``) when it works. Debian's
redis-server is linked with jemalloc, which libfaketime cannot initialise under (libfaketime issue #130:
the server never comes up), so the test then falls back to a 30-line LD_PRELOAD shim compiled here with
``cc`` that shifts only CLOCK_REALTIME/gettimeofday/time. Skipped, with the reasons, when neither works."""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest

from live_servers import extra_redis
from pytest_cbchaos.breaker import RedisStore
from pytest_cbchaos.faults.clock import SkewedClock
from pytest_cbchaos.servers.process import ServerStartError
from pytest_cbchaos.servers.redis import RedisServer
from pytest_cbchaos.testing.breaker_mutants import WorkerClockGateRedisStore

pytestmark = pytest.mark.requires_real_redis
FAKETIME_LIB = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")
COOLDOWN, INTERVAL, EPS = 1.0, 0.05, 0.75  # EPS is generous: a loaded 2-core machine
WORKER_SKEWS = (0.0, 5.0, -5.0)
_libfaketime_failure: list[str] = []  # remembered per process: one failed start is enough

SHIM_C = r"""
#define _GNU_SOURCE
#include <stdlib.h>
#include <time.h>
#include <sys/time.h>
#include <sys/syscall.h>
#include <unistd.h>
static long long off_ns;
__attribute__((constructor)) static void cbchaos_skew_init(void) {
  const char *s = getenv("CBCHAOS_SKEW_NS");
  off_ns = s ? atoll(s) : 0;
}
int clock_gettime(clockid_t c, struct timespec *ts) {
  int r = (int)syscall(SYS_clock_gettime, c, ts);  /* no dlsym, no malloc: safe under jemalloc */
  if (r == 0 && (c == CLOCK_REALTIME || c == CLOCK_REALTIME_COARSE)) {
    long long ns = (long long)ts->tv_sec * 1000000000LL + ts->tv_nsec + off_ns;
    ts->tv_sec = ns / 1000000000LL;
    ts->tv_nsec = ns % 1000000000LL;
  }
  return r;
}
int gettimeofday(struct timeval *restrict tv, void *restrict tz) {
  struct timespec ts;
  int r = clock_gettime(CLOCK_REALTIME, &ts);
  if (r == 0 && tv) { tv->tv_sec = ts.tv_sec; tv->tv_usec = ts.tv_nsec / 1000; }
  (void)tz;
  return r;
}
time_t time(time_t *t) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  if (t) *t = ts.tv_sec;
  return ts.tv_sec;
}
"""


def server_skew(server: RedisServer) -> float:
    with server.client() as c:
        t0 = time.time()
        s, us = c.time()
        return s + us / 1e6 - (t0 + time.time()) / 2


def _compile_shim(workdir: Path) -> Path | None:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        return None
    src, lib = workdir / "skew.c", workdir / "skew.so"
    src.write_text(SHIM_C)
    r = subprocess.run([cc, "-shared", "-fPIC", "-O2", "-o", str(lib), str(src)], capture_output=True, text=True,
                       timeout=60)
    return lib if r.returncode == 0 else None


@pytest.fixture(scope="module", params=[5.0, -5.0], ids=["server+5s", "server-5s"])
def skewed(request: pytest.FixtureRequest, pytestconfig: pytest.Config,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RedisServer, str]]:
    offset: float = request.param
    workdir = tmp_path_factory.mktemp("skew")
    reasons: list[str] = []
    if not FAKETIME_LIB.exists():
        reasons.append(f"libfaketime absent ({FAKETIME_LIB}; apt-get install faketime libfaketime)")
    elif _libfaketime_failure:
        reasons.append(_libfaketime_failure[0])
    else:
        env = {"LD_PRELOAD": str(FAKETIME_LIB), "FAKETIME": f"{offset:+g}s", "DONT_FAKE_MONOTONIC": "1"}
        try:
            with extra_redis(pytestconfig, workdir / "faketime", env=env, startup_timeout=3.0) as srv:
                if abs(server_skew(srv) - offset) < 1.0:
                    yield srv, "libfaketime"
                    return
                _libfaketime_failure.append("libfaketime loaded but the server clock was not shifted")
        except ServerStartError:
            _libfaketime_failure.append("redis-server does not start under libfaketime (jemalloc clash, "
                                        "libfaketime issue #130)")
        reasons.append(_libfaketime_failure[0])
    lib = _compile_shim(workdir)
    if lib is None:
        pytest.skip("no server clock skew available: " + "; ".join(reasons + ["no C compiler for the shim"]))
    env = {"LD_PRELOAD": str(lib), "CBCHAOS_SKEW_NS": str(int(offset * 1e9))}
    with extra_redis(pytestconfig, workdir / "shim", env=env) as srv:
        yield srv, "shim (" + "; ".join(reasons) + ")"


def skew_violations(store_cls: type, server: RedisServer, offset: float) -> list[str]:
    """Trip with R = 1 s in server time; three workers (skews 0, +5, -5 s) gate every 50 ms."""
    v: list[str] = []
    prefix = f"sk{uuid.uuid4().hex[:8]}"
    client = server.client()
    try:
        trip = RedisStore(client, key_prefix=prefix, ttl=1).atomic_record_failure("b", 1, COOLDOWN)
        t_trip = time.monotonic()
        if abs(trip["_now"] - (time.time() + offset)) > 1.0:
            v.append(f"trip used {trip['_now']}, not the server's clock")
        ttl = client.ttl(f"{prefix}:b")
        if not 60 <= ttl <= 62:  # ceil(open_until - now) + 60 computed from one clock
            v.append(f"OPEN key TTL {ttl}, expected 61 (one clock for the op and its TTL)")
        workers = {sk: store_cls(client, key_prefix=prefix, clock=SkewedClock(sk)) for sk in WORKER_SKEWS}
        first: dict[float, tuple[float, dict]] = {}
        deadline = t_trip + COOLDOWN + 15.0
        while len(first) < len(workers) and time.monotonic() < deadline:
            for sk, st in workers.items():
                if sk in first:
                    continue
                r = st.try_transition_and_claim_probe("b", lease_seconds=30)
                if r.record["_reason"] != "cooldown":
                    first[sk] = (time.monotonic() - t_trip, r.record)
            time.sleep(INTERVAL)  # the workers' gate interval
        for sk in WORKER_SKEWS:
            if sk not in first:
                v.append(f"worker {sk:+g}s: still in cooldown 15 s after its end")
                continue
            elapsed, rec = first[sk]
            if not COOLDOWN - 0.1 <= elapsed <= COOLDOWN + len(WORKER_SKEWS) * INTERVAL + EPS:
                v.append(f"worker {sk:+g}s: first non-cooldown reply {elapsed:.2f}s after the trip (R = {COOLDOWN}s)")
            if rec["_now"] < trip["open_until"]:
                v.append(f"worker {sk:+g}s: admitted at {rec['_now']} before open_until {trip['open_until']}")
            if abs(rec["_now"] - (time.time() + offset)) > 1.0:
                v.append(f"worker {sk:+g}s: gate reply used {rec['_now']}, not the server's clock")
    finally:
        client.close()
    return v


def test_cb26_server_clock_skew_bounded(skewed: tuple[RedisServer, str], request: pytest.FixtureRequest) -> None:
    server, how = skewed
    offset = 5.0 if "server+5s" in request.node.name else -5.0
    request.node.user_properties.append(("server_skew_mechanism", how))
    assert abs(server_skew(server) - offset) < 1.0, "the server clock is not skewed"
    assert skew_violations(RedisStore, server, offset) == []


def test_cb26_worker_clock_gate_mutant_is_caught(skewed: tuple[RedisServer, str],
                                                 request: pytest.FixtureRequest) -> None:
    server, _ = skewed
    offset = 5.0 if "server+5s" in request.node.name else -5.0
    v = skew_violations(WorkerClockGateRedisStore, server, offset)
    assert any("first non-cooldown reply" in x or "server's clock" in x for x in v), v
