"""Repeat one scenario N times through ``cbchaos run`` and print the pass count and wall time.

Default: the example scenario of docs/scenarios.md (taken from the doc, so the loop runs exactly
what the doc shows), with its faults. A failing run's artifacts (``history.jsonl``, ...) are
copied to ``--keep DIR/run-K`` for a regression fixture. Figures only, never assertions.

    .venv/bin/python bench/bench_scenario_repeat.py [--runs 20] [--file F.yaml] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def doc_example() -> str:
    """The first ``yaml`` block of docs/scenarios.md."""
    text = (ROOT / "docs" / "scenarios.md").read_text()
    m = re.search(r"```yaml\n(.*?)```", text, re.S)
    if m is None:
        raise SystemExit("docs/scenarios.md has no ```yaml block")
    return m.group(1)


def run_once(path: Path, work: Path, k: int) -> tuple[bool, float, list[str], Path]:
    """One ``cbchaos run``; returns (passed, seconds, names of failed checks, artifacts dir)."""
    rep = work / f"report-{k}"
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "pytest_cbchaos.cli", "run", str(path), "--report", str(rep), "-q"],
                          cwd=work, capture_output=True, text=True)
    dt = time.monotonic() - t0
    failed: list[str] = []
    try:
        report = json.loads((rep / "report.json").read_text())
        for test in report.get("tests", []):
            for c in test.get("checks", []):
                if c.get("verdict") not in ("ok", "passed", None):
                    failed.append(f"{c.get('name') or c.get('id')}={c.get('verdict')}")
    except (OSError, ValueError):
        failed.append(f"no report (exit {proc.returncode})")
    arts = next((p for p in (work / ".cbchaos").glob("*") if p.is_dir()), work)
    return proc.returncode == 0, dt, failed, arts


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--file", type=Path, help="scenario file (default: the docs/scenarios.md example)")
    ap.add_argument("--keep", type=Path, help="copy failing runs' artifacts here")
    args = ap.parse_args()
    passed = 0
    t0 = time.monotonic()
    for k in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="cbchaos-repeat-") as tmp:
            work = Path(tmp)
            path = work / "example.scenario.yaml"
            path.write_text(args.file.read_text() if args.file else doc_example())
            ok, dt, failed, arts = run_once(path, work, k)
            passed += ok
            print(f"run {k + 1:3d}: {'pass' if ok else 'FAIL'} {dt:6.1f} s {' '.join(failed)}", flush=True)
            if not ok and args.keep:
                dest = args.keep / f"run-{k + 1}"
                shutil.copytree(arts, dest, dirs_exist_ok=True)
                shutil.copytree(work / f"report-{k}", dest / "report", dirs_exist_ok=True)
    wall = time.monotonic() - t0
    print(f"passed {passed}/{args.runs} in {wall:.1f} s wall ({wall / max(args.runs, 1):.1f} s per run)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
