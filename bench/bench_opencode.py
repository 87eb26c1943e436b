"""Benchmark: real opencode cold start to healthy, and an end-to-end turn with the mock provider.

Run: ``.venv/bin/python bench/bench_opencode.py [--starts 5] [--turns 10]``. Prints medians (and min/max)
of several runs, with ratios against baselines measured in the same process:

* cold start vs. ``opencode --version`` (process exec + runtime boot, no server);
* turn (POST /session + POST /session/{id}/message, first turn of a fresh session on a warm server,
  two provider calls: title and main) vs. one direct streaming request to the mock provider.

Figures only; nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from pytest_cbchaos.servers import mockllm as m
from pytest_cbchaos.servers.opencode import OpencodeServer, require_opencode


def fmt(xs: list[float]) -> str:
    return f"median {statistics.median(xs) * 1000:8.1f} ms  (min {min(xs) * 1000:.1f}, max {max(xs) * 1000:.1f}, n={len(xs)})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--starts", type=int, default=5)
    ap.add_argument("--turns", type=int, default=10)
    args = ap.parse_args()
    binary = require_opencode()
    print(f"opencode {binary.version} at {binary.path}")
    version_runs = []
    for _ in range(args.starts):
        t0 = time.perf_counter()
        subprocess.run([str(binary.path), "--version"], capture_output=True, check=True, timeout=30)
        version_runs.append(time.perf_counter() - t0)

    with m.MockLLM() as mock, tempfile.TemporaryDirectory() as tmp:
        starts, instance = [], []
        for i in range(args.starts):
            server = OpencodeServer(root=Path(tmp) / f"s{i}", binary=binary, provider_url=mock.base_url,
                                    provider_key=mock.api_key, warm=False)
            t0 = time.perf_counter()
            server.start()
            t1 = time.perf_counter()
            server.request("GET", "/session/status", timeout=30)
            instance.append(time.perf_counter() - t1)
            starts.append(t1 - t0)
            server.stop()

        direct = []
        body = {"model": "mock", "stream": True, "messages": [{"role": "user", "content": "hi"}], "tools": [{}]}
        with httpx.Client(timeout=10, headers={"Authorization": f"Bearer {mock.api_key}"}) as c:
            for _ in range(args.turns):
                mock.script("main", [m.text("hello from the mock", chunks=4)])
                t0 = time.perf_counter()
                c.post(mock.base_url + "/chat/completions", json=body).read()
                direct.append(time.perf_counter() - t0)

        server = OpencodeServer(root=Path(tmp) / "turns", binary=binary, provider_url=mock.base_url,
                                provider_key=mock.api_key)
        server.start()
        turns = []
        try:
            with server.client(timeout=60) as c:
                for i in range(args.turns + 1):
                    mock.script("main", [m.text("hello from the mock", chunks=4)])
                    t0 = time.perf_counter()
                    sid = c.post("/session", json={}).json()["id"]
                    r = c.post(f"/session/{sid}/message", json={"providerID": "cbchaos", "modelID": "mock",
                                                                 "parts": [{"type": "text", "text": f"turn {i}"}]})
                    elapsed = time.perf_counter() - t0
                    assert r.status_code == 200 and r.json()["info"].get("finish") == "stop", r.text[:300]
                    if i:  # the very first turn loads the provider SDK; reported separately
                        turns.append(elapsed)
                    else:
                        first = elapsed
        finally:
            server.stop()

    print(f"baseline  opencode --version          {fmt(version_runs)}")
    print(f"cold start to healthy /global/health  {fmt(starts)}   ratio {statistics.median(starts) / statistics.median(version_runs):.1f}x --version")
    print(f"first directory request (instance)    {fmt(instance)}")
    print(f"baseline  direct mock completion      {fmt(direct)}")
    print(f"first turn after start                {first * 1000:8.1f} ms")
    print(f"turn end to end (new session, 2 LLM calls) {fmt(turns)}   ratio {statistics.median(turns) / statistics.median(direct):.0f}x direct mock")


if __name__ == "__main__":
    main()
