"""The conformance matrix is configured by the kit's own options, not only by PATH and the
environment: ``--cbchaos-toxiproxy-bin`` feeds the binary row, and the backend chosen with
``--cbchaos-proxy-backend`` fails rather than skips when it cannot run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("TOXIPROXY_URL", "CBCHAOS_PROXY_BACKEND")}
    env["PATH"] = os.defpath  # no toxiproxy-server on PATH: only the option can name one
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:xdist", "-q",
                           "-rs", "tests/conformance/test_conformance_api.py::test_version", *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_toxiproxy_bin_option_feeds_the_binary_row(tmp_path: Path) -> None:
    # a stand-in toxiproxy-server: the embedded proxy takes Toxiproxy's -host/-port/-seed flags
    wrapper = tmp_path / "toxiproxy-server"
    wrapper.write_text(f"#!/bin/sh\nexec {sys.executable} -m pytest_cbchaos.proxy \"$@\"\n")
    wrapper.chmod(0o755)
    out = _run(tmp_path, "-k", "binary", f"--cbchaos-toxiproxy-bin={wrapper}")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "1 passed" in out.stdout, out.stdout  # without the option this row skips: nothing on PATH


def test_chosen_backend_that_cannot_run_fails(tmp_path: Path) -> None:
    out = _run(tmp_path, "-k", "url", "--cbchaos-proxy-backend=url")
    assert out.returncode != 0, out.stdout
    assert "chosen with --cbchaos-proxy-backend" in out.stdout + out.stderr, out.stdout + out.stderr
