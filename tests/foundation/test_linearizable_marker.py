"""The ``linearizable`` marker checks what a test recorded into ``cbchaos_history`` against real Redis."""

import pytest

from pytest_cbchaos.plugin.run_id import RUN_ID_PATTERN

TESTS = '''
import pytest

def _run(cbchaos_history, client, broken):
    # worker 0 writes 1 then 2; worker 1 reads; a broken "cache" answers a stale value
    with cbchaos_history.op(0, "write", 1) as h:
        client.set("reg", 1); h.ok()
    with cbchaos_history.op(0, "write", 2) as h:
        client.set("reg", 2); h.ok()
    with cbchaos_history.op(1, "read", None) as h:
        value = int(client.get("reg"))
        h.ok(1 if broken else value)

@pytest.mark.linearizable("cas-register", workers=2)
def test_correct(cbchaos_history, cbchaos_redis):
    _run(cbchaos_history, cbchaos_redis, broken=False)

@pytest.mark.linearizable("cas-register", workers=2)
def test_stale_read(cbchaos_history, cbchaos_redis):
    _run(cbchaos_history, cbchaos_redis, broken=True)

@pytest.mark.linearizable("no-such-model")
def test_bad_model(cbchaos_history):
    pass
'''


def test_marker_passes_a_correct_history_and_fails_a_stale_read(pytester):
    pytester.makepyfile(TESTS)
    artifacts = pytester.path / "art"
    result = pytester.runpytest("-p", "no:cacheprovider", f"--cbchaos-artifacts={artifacts}")
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(["*history is not linearizable: ILLEGAL*", "*unknown model 'no-such-model'*"])
    [run] = list(artifacts.iterdir())  # one run directory: <artifacts>/<run id>/<test slug>/
    assert RUN_ID_PATTERN.match(run.name), run.name
    kept = [p.name for p in run.iterdir()]
    assert any("test_stale_read" in name for name in kept)
    assert not any("test_correct" in name for name in kept)  # --cbchaos-keep=failed
    stale = next(p for p in run.iterdir() if "test_stale_read" in p.name)
    assert (stale / "history.jsonl").read_text().count("\n") == 6
    assert '"verdict": "illegal"' in (stale / "results.json").read_text()
