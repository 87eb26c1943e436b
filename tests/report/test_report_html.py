"""report.html in headless Chromium: summary counts and a failing scenario's counterexample are visible."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from html import unescape
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="chromium not installed (apt-get install chromium)")


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    profile = tmp_path / "chromium-profile"
    profile.mkdir(exist_ok=True)
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True,
                          text=True, timeout=60)


def test_report_html_renders_in_chromium(scenario_project: pytest.Pytester, scn, tmp_path: Path) -> None:
    r = scenario_project.runpytest(*scn.PLUGINS, "scenarios", "--cbchaos-report", "rep", "-p", "no:cacheprovider")
    assert r.ret == pytest.ExitCode.TESTS_FAILED
    html = scenario_project.path / "rep" / "report.html"
    report = json.loads((scenario_project.path / "rep" / "report.json").read_text())
    url = html.resolve().as_uri()

    dom = _chromium(tmp_path, "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    text = dom.stdout
    for key in ("tests", "passed", "failed", "violations", "faults_injected"):
        m = re.search(rf'id="summary-{key}">(\d+)<', text)
        assert m and int(m.group(1)) == report["summary"][key], key
    # the failing scenario's counterexample is in a visible block of the rendered DOM
    blocks = [unescape(b) for b in re.findall(r'<pre class="counterexample">(.*?)</pre>', text, re.S)]
    assert any('"lost":' in b and '"acknowledged":' in b for b in blocks)
    assert 'class="fault-band"' in text and 'class="lat"' in text  # timeline drawn with a shaded fault window

    shot = tmp_path / "report.png"
    res = _chromium(tmp_path, f"--screenshot={shot}", "--window-size=1280,1600", url)
    assert res.returncode == 0 and shot.exists() and shot.stat().st_size > 10_000, res.stderr[-2000:]
