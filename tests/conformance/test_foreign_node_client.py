"""A foreign client: the npm package ``toxiproxy-node-client`` drives each backend as a Node user
would (create, toxic, update, disable, reset, remove), and the toxic is felt on the wire."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CLIENT = ROOT / ".cbchaos-node" / "node_modules" / "toxiproxy-node-client"
SCRIPT = Path(__file__).parent / "node" / "drive_toxiproxy.js"


def _skip_reason() -> str | None:
    if shutil.which("node") is None:
        return "node is not installed (the setup script installs the Node client when npm exists)"
    if not (CLIENT / "package.json").exists():
        return f"toxiproxy-node-client is not installed in {CLIENT.parent} (run ./scripts/setup)"
    return None


def test_node_client_drives_the_api(tp, echo) -> None:
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    run = subprocess.run(["node", str(SCRIPT), str(CLIENT), tp.url, echo.address],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    seen = json.loads(run.stdout.strip().splitlines()[-1])
    assert seen["version"].strip().startswith('{"version"')
    assert seen["created"]["name"] == "node_client" and seen["created"]["enabled"] is True
    assert seen["toxic"]["attributes"] == {"latency": 300, "jitter": 0}
    assert seen["rttWithToxicMs"] >= 300  # a latency toxic never delivers early
    assert seen["updated"]["attributes"]["latency"] == 0 == seen["fetched"]["attributes"]["latency"]
    assert "node_client" in seen["listed"] and seen["disabled"] is False
    assert seen["duplicate"] == "ToxiproxyError"  # 409: the client raises its own error type
    assert seen["afterReset"]["enabled"] is True and seen["toxicsAfterReset"] == []
    assert seen["removed"] is True
