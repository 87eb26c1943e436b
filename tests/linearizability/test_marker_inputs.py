"""The ``linearizable`` marker on what a natural test records: Redis bytes replies pass and the kept
history.jsonl re-checks the same; an empty history or one the model cannot judge fails clearly."""

from __future__ import annotations

import pytest

TESTS = '''
import pytest

@pytest.mark.linearizable("kv", workers=2)
def test_bytes_replies(cbchaos_history, cbchaos_redis):
    with cbchaos_history.op(0, "write", 3, key="k") as h:
        cbchaos_redis.set("k", 3); h.ok()
    with cbchaos_history.op(1, "read", key="k") as h:
        h.ok(cbchaos_redis.get("k"))

@pytest.mark.linearizable("kv")
def test_nothing_recorded(cbchaos_history):
    pass

@pytest.mark.linearizable("kv", allow_empty=True)
def test_nothing_recorded_allowed(cbchaos_history):
    pass

@pytest.mark.linearizable("register")
def test_unjudgeable(cbchaos_history):
    with cbchaos_history.op(0, "write", [1, 2]) as h:
        h.ok()
    with cbchaos_history.op(1, "read") as h:
        h.ok(b"[1, 2]")
'''


def test_marker_inputs(pytester: pytest.Pytester) -> None:
    from pytest_cbchaos.cli import main

    pytester.makepyfile(test_user_marker_inputs=TESTS)  # a name no module of the suite has (in-process pytester)
    artifacts = pytester.path / "art"
    result = pytester.runpytest("-p", "no:cacheprovider", f"--cbchaos-artifacts={artifacts}",
                                "--cbchaos-keep=all")
    result.assert_outcomes(passed=2, failed=2)
    result.stdout.fnmatch_lines([
        "*test_nothing_recorded*no operations were recorded into cbchaos_history*allow_empty=True*",
        "*test_unjudgeable*cannot be checked: register: cannot compare written value [[]1, 2[]] (list)*"])
    assert "Traceback" not in result.stdout.str()
    [run] = list(artifacts.iterdir())
    kept = next(p for p in run.iterdir() if "test_bytes_replies" in p.name)
    history = kept / "history.jsonl"
    assert '"value":"3"' in history.read_text()  # Redis's b"3", as text
    assert main(["check", str(history)]) == 0
