"""Options, usage errors, markers and xdist isolation, through pytester."""

import pytest


def test_bad_option_values_are_usage_errors_naming_the_option(pytester):
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest("--cbchaos-redis-backend=mongo", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--cbchaos-redis-backend='mongo': expected one of auto, binary, fakeredis, docker, url*"])
    result = pytester.runpytest("--cbchaos-port-range=9-1")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--cbchaos-port-range*"])
    result = pytester.runpytest("--cbchaos-startup-timeout=soon")
    result.stderr.fnmatch_lines(["*--cbchaos-startup-timeout='soon': expected a number*"])


def test_ini_values_are_read(pytester):
    pytester.makeini("[pytest]\ncbchaos_keep = sideways\n")
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--cbchaos-keep='sideways': expected one of failed, all, none*"])


def test_markers_are_registered_for_strict_markers(pytester):
    pytester.makepyfile("""
        import pytest
        @pytest.mark.chaos("latency")
        @pytest.mark.requires_real_redis
        @pytest.mark.cbchaos_backends("embedded")
        def test_x(): pass
    """)
    pytester.runpytest("--strict-markers").assert_outcomes(passed=1)


def test_unreachable_redis_url_is_a_usage_error(pytester):
    pytester.makepyfile("def test_x(cbchaos_redis_proc): pass")
    result = pytester.runpytest("--cbchaos-redis-backend=url", "--cbchaos-redis-url=redis://127.0.0.1:1/0")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stdout.fnmatch_lines(["*Redis at 127.0.0.1:1*unreachable*"])


def test_xdist_workers_get_their_own_servers(pytester):
    pytester.makepyfile("""
        import os, json
        import pytest
        @pytest.mark.parametrize("i", range(4))
        def test_w(i, cbchaos_redis, cbchaos_redis_proc, cbchaos_redis_proxy, cbchaos_redis_admin):
            assert cbchaos_redis_admin.dbsize() == 0  # no keys from other tests or workers
            cbchaos_redis.set("mine", i)
            out = os.environ["OUT"] + "/" + os.environ["PYTEST_XDIST_WORKER"] + f"-{i}.json"
            with open(out, "w") as fh:
                json.dump([cbchaos_redis_proc.port, cbchaos_redis_proxy.listen_port, cbchaos_redis_proc.pid], fh)
    """)
    import json
    import os

    out = pytester.path / "out"
    out.mkdir()
    os.environ["OUT"] = str(out)
    try:
        result = pytester.runpytest_subprocess("-n", "2", "-p", "no:cacheprovider")
    finally:
        del os.environ["OUT"]
    result.assert_outcomes(passed=4)
    by_worker = {}
    for f in out.iterdir():
        by_worker.setdefault(f.name.split("-")[0], set()).add(tuple(json.loads(f.read_text())))
    assert len(by_worker) == 2
    (a,), (b,) = by_worker.values()
    assert not set(a) & set(b)  # distinct ports and pids per worker
