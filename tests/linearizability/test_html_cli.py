"""HTML timeline in headless Chromium, and the ``check`` command."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from lin_events import ev

from pytest_cbchaos.faults.journal import FaultJournal
from pytest_cbchaos.history import History, Recorder, write_jsonl
from pytest_cbchaos.linearizability import CasRegisterModel, KVModel, check
from pytest_cbchaos.linearizability.cli import add_check_parser, run_check
from pytest_cbchaos.linearizability.html import render_timeline, write_timeline

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _chromium(tmp: Path, *args: str) -> subprocess.CompletedProcess:
    if not Path(CHROMIUM).exists():
        pytest.skip("chromium not installed")
    profile = tempfile.mkdtemp(dir=tmp, prefix="chromium-profile-")
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=90)


def _illegal_history_with_fault() -> tuple[History, object]:
    journal = FaultJournal()
    rec = Recorder(2, journal=journal)
    rec.invoke(0, "write", 1, key="k").ok()
    with journal.window("latency", "redis-proxy", {"ms": 200}):
        rec.invoke(1, "write", 2, key="k").ok()
    rec.invoke(0, "read", key="k").ok(1)          # stale: write(2) completed before
    rec.invoke(1, "write", "<script>alert(1)</script>", key="x").ok()
    rec.close()
    h = rec.history()
    return h, check(h, KVModel(), mode="report")


def _appends_read_impossible(path: Path) -> Path:
    rec = Recorder(13)
    for call in [rec.invoke(p, "append", chr(97 + p), key="k") for p in range(12)]:
        call.ok()
    rec.invoke(12, "read", key="k").ok("zz")
    rec.close()
    return write_jsonl(rec.history(), path)


def test_timeline_renders_in_chromium_and_shows_failing_op(tmp_path: Path) -> None:
    h, result = _illegal_history_with_fault()
    out = write_timeline(result, tmp_path / "timeline.html", history=h, title="mutant",
                         recheck="cbchaos check history.jsonl --model kv")
    text = out.read_text()
    assert "<script>alert(1)" not in text          # user values escaped inside the JSON block
    assert "http://" not in text.replace("http://www.w3.org/2000/svg", "")  # no network
    dom = _chromium(tmp_path, "--dump-dom", out.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    assert 'data-rendered="1"' in html
    assert 'class="op ok failing"' in html and 'id="first-error"' in html
    assert html.count('class="lane-label"') >= 3     # nemesis + two process lanes
    assert 'class="fault"' in html and "latency redis-proxy" in html
    assert "first unplaceable op" in html and "read[k]() -&gt; 1" in html
    shot = tmp_path / "timeline.png"
    r = _chromium(tmp_path, "--window-size=1200,800", f"--screenshot={shot}", out.as_uri())
    assert r.returncode == 0 and shot.exists() and shot.stat().st_size > 10_000


def test_timeline_size_budget() -> None:
    rows = []
    for i in range(1000):
        rows += [(2 * i, i % 8, "invoke", "write", i, f"k{i % 4}"),
                 (2 * i + 1, i % 8, "ok", "write", None, f"k{i % 4}")]
    r = check(ev(rows), KVModel(), mode="report")
    html = render_timeline(r)
    assert len(html.encode()) <= 150_000 + 150 * 1000
    data = html.split('id="cbchaos-data">', 1)[1].split("</script>", 1)[0]
    assert json.loads(data)["n_ops"] == 1000


def _run_cli(*argv: str) -> tuple[int, str, str]:
    p = subprocess.run([sys.executable, "-m", "pytest_cbchaos.linearizability", *argv],
                       capture_output=True, text=True, timeout=120)
    return p.returncode, p.stdout, p.stderr


def test_cli_exit_codes_and_verdict_lines(corpus: Path, tmp_path: Path) -> None:
    ok, bad = corpus / "etcd_031.log", corpus / "etcd_004.log"
    rc, out, _ = _run_cli(str(ok))
    assert rc == 0 and out.count("\n") == 1 and "\tOK\t" in out
    rc, out, _ = _run_cli(str(ok), str(bad), "--html", str(tmp_path / "tl"))
    assert rc == 1 and "\tILLEGAL\t" in out and "first unplaceable" in out
    assert (tmp_path / "tl" / "etcd_004.log.html").exists()
    # unknown: a tiny timeout on a history no search decides fast (12 concurrent appends, then a read of
    # a value no order yields: every order must be tried)
    rc, out, _ = _run_cli(str(_appends_read_impossible(tmp_path / "hard.jsonl")), "--model", "kv",
                          "--timeout", "0.001")
    assert rc == 2 and "\tUNKNOWN\t" in out
    # jsonl with explicit model
    h, _ = _illegal_history_with_fault()
    p = write_jsonl(h, tmp_path / "h.jsonl")
    rc, out, _ = _run_cli(str(p), "--model", "kv", "--format", "jsonl", "--html",
                          str(tmp_path / "one.html"))
    assert rc == 1 and (tmp_path / "one.html").exists()


def test_cli_bad_input_is_located(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"type":"invoke","process":0,"f":"read","value":null,"time":0,"index":0}\n'
                   '{"type":"ok","process":0,"f":"read","value":1,"time":"x","index":1}\n')
    rc, out, err = _run_cli(str(bad))
    assert rc == 4 and "bad.jsonl:2: key 'time' = 'x'" in err and "Traceback" not in err
    rc, _, err = _run_cli(str(tmp_path / "missing.jsonl"))
    assert rc == 4 and "no such file" in err
    rc, _, err = _run_cli(str(bad), "--model", "nope")
    assert rc == 4 and "--model = 'nope'" in err


def test_add_check_parser_dispatch(corpus: Path, capsys: pytest.CaptureFixture) -> None:
    import argparse
    parser = argparse.ArgumentParser(prog="cbchaos")
    sub = parser.add_subparsers(dest="cmd")
    add_check_parser(sub)
    args = parser.parse_args(["check", str(corpus / "etcd_005.log"), "--model", "cas-register"])
    assert args.func(args) == 0 and run_check(args) == 0
    assert "OK" in capsys.readouterr().out


def test_minimal_window_is_shown_in_the_page_unit() -> None:
    """Nanosecond histories are drawn in ms: the window's cut must be converted too (it was
    printed as "up to 54192951 ms")."""
    from pytest_cbchaos.history.ops import Op
    from pytest_cbchaos.linearizability import RegisterModel, check
    from pytest_cbchaos.linearizability.html import timeline_data

    ms = 1_000_000
    ops = [Op(0, 0, "write", 1, None, 0, 1 * ms, "ok"), Op(1, 1, "write", 2, None, 2 * ms, 3 * ms, "ok"),
           Op(2, 2, "read", None, 1, 4 * ms, 5 * ms, "ok")]
    data = timeline_data(check(ops, RegisterModel(), mode="report", fast_path=False))
    window = data["partitions"][0]["window"]
    assert data["unit"] == "ms" and window["cut"] == window["cut_ns"] / ms == 5
