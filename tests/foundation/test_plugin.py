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
    result.stderr.fnmatch_lines(["*--cbchaos-startup-timeout='soon': expected a finite number*"])


def test_ini_values_are_read(pytester):
    pytester.makeini("[pytest]\ncbchaos_keep = sideways\n")
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--cbchaos-keep='sideways' (ini cbchaos_keep): expected one of failed, all, none*"])


@pytest.mark.parametrize("option, expected", [
    ("--cbchaos-startup-timeout=nan", "*--cbchaos-startup-timeout='nan': expected a finite number*"),
    ("--cbchaos-startup-timeout=inf", "*--cbchaos-startup-timeout='inf': expected a finite number*"),
    ("--cbchaos-startup-timeout=0", "*--cbchaos-startup-timeout='0': expected a finite number between 0.1 and*"),
    ("--cbchaos-check-timeout=nan", "*--cbchaos-check-timeout='nan': expected a finite number*"),
    ("--cbchaos-check-timeout=-inf", "*--cbchaos-check-timeout='-inf': expected a finite number*"),
    ("--cbchaos-check-timeout=-1", "*--cbchaos-check-timeout='-1': expected a finite number between 0.001 and*"),
    ("--cbchaos-seed=-1", "*--cbchaos-seed='-1': expected an integer between 0 and*"),
    ("--cbchaos-shrink-retries=1000", "*--cbchaos-shrink-retries='1000': expected an integer between 0 and 100*"),
    ("--cbchaos-max-cache=0", "*--cbchaos-max-cache='0': expected an integer >= 1*"),
    ("--cbchaos-port-range=20000-20003", "*--cbchaos-port-range='20000-20003': expected a range with at least 16 "
                                         "ports outside the OS ephemeral range; this one has 4*"),
    ("--cbchaos-redis-exec=/no/such/redis-server", "*--cbchaos-redis-exec='/no/such/redis-server': expected an "
                                                   "executable file (no such executable)*"),
])
def test_impossible_numbers_and_paths_are_usage_errors_before_any_test(pytester, option, expected):
    pytester.makepyfile("def test_x(): raise AssertionError('ran')")
    result = pytester.runpytest(option)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([expected])
    assert "Traceback" not in result.stderr.str() and "ran" not in result.stdout.str()


def test_port_range_must_hold_every_xdist_worker(pytester):
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest("-n", "3", "--cbchaos-port-range=20000-20039")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*expected a range with at least 48 ports*(16 per process x 3 processes)*has 40*"])


def test_environment_values_are_checked_and_named(pytester, monkeypatch):
    pytester.makepyfile("def test_x(): pass")
    monkeypatch.setenv("CBCHAOS_SEED", "nan")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--cbchaos-seed='nan' (env CBCHAOS_SEED): expected an integer*"])


@pytest.mark.parametrize("option", ["--cbchaos-report", "--cbchaos-artifacts"])
def test_unwritable_output_directories_are_usage_errors_before_any_test(pytester, option):
    pytester.makepyfile("def test_x(): raise AssertionError('ran')")
    (pytester.path / "a-file").write_text("not a directory")
    for bad, why in [("a-file/out", "*a-file is not a directory*"), ("a-file", "*it exists and is not a directory*"),
                     ("/proc/cbchaos-out", "*/proc/cbchaos-out: it is not writable*")]:
        result = pytester.runpytest(f"{option}={bad}")
        assert result.ret == pytest.ExitCode.USAGE_ERROR, bad
        result.stderr.fnmatch_lines([f"*{option}='{bad}': expected a directory that exists or can be created, "
                                     f"and is writable: {why}"])
        assert "ran" not in result.stdout.str()
    result = pytester.runpytest(f"{option}=new/deeper")  # creatable: fine, and the probe leaves nothing behind
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    if option == "--cbchaos-artifacts":
        assert not (pytester.path / "new").exists()


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


MARKED = """
    import pytest

    @pytest.mark.requires_real_redis
    def test_real(): pass

    @pytest.mark.cbchaos_backends("fakeredis")
    def test_on_fakeredis(): pass

    @pytest.mark.cbchaos_backends("redis:binary", "proxy:embedded")
    def test_binary_behind_embedded(): pass

    @pytest.mark.cbchaos_backends("embedded")
    def test_on_embedded(): pass
"""


def test_backend_markers_skip_on_the_backend_in_use(pytester):
    pytester.makepyfile(MARKED)
    result = pytester.runpytest("--cbchaos-redis-backend=fakeredis", "-rs")
    result.assert_outcomes(passed=2, skipped=2)
    result.stdout.fnmatch_lines([
        "*SKIPPED*requires_real_redis: the Redis backend in use is fakeredis (chosen with --cbchaos-redis-backend)*",
        "*SKIPPED*cbchaos_backends('redis:binary', 'proxy:embedded'): the redis backend in use is fakeredis*",
    ])
    result = pytester.runpytest("--cbchaos-redis-backend=binary", "-rs")
    result.assert_outcomes(passed=3, skipped=1)
    result.stdout.fnmatch_lines(["*SKIPPED*cbchaos_backends('fakeredis'): the redis backend in use is binary*"])


def test_bad_backend_marker_arguments_are_usage_errors(pytester):
    pytester.makepyfile("""
        import pytest
        @pytest.mark.cbchaos_backends("binary")
        def test_x(): pass
    """)
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*test_x: @pytest.mark.cbchaos_backends: 'binary' names both a Redis and a proxy "
                                 "backend; expected redis:binary or proxy:binary*"])
    pytester.makepyfile("""
        import pytest
        @pytest.mark.cbchaos_backends("fakeredus")
        def test_x(): pass
    """)
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*'fakeredus': expected one of*"])


@pytest.fixture
def no_redis_server(monkeypatch):
    """PATH without redis-server, so ``auto`` falls back to fakeredis."""
    import os
    import shutil

    bindir = os.path.dirname(shutil.which("python") or "/usr/bin/python")
    monkeypatch.setenv("PATH", bindir)
    import pytest_cbchaos.servers.redis as r
    if shutil.which("redis-server"):
        pytest.skip("redis-server is in the Python bin directory")
    assert r.fakeredis_available()


def test_auto_fallback_is_named_in_the_header_and_fails_real_redis_tests_under_ci(pytester, no_redis_server,
                                                                                 monkeypatch):
    pytester.makepyfile(MARKED)
    monkeypatch.delenv("CI", raising=False)
    result = pytester.runpytest("-rs")
    result.stdout.fnmatch_lines(["cbchaos: proxy=embedded redis=fakeredis (auto: fell back, no redis-server on PATH) *"])
    result.assert_outcomes(passed=2, skipped=2)
    result.stdout.fnmatch_lines(["*SKIPPED*requires_real_redis: the Redis backend in use is fakeredis "
                                 "(auto: fell back, no redis-server on PATH)*"])
    monkeypatch.setenv("CI", "true")
    result = pytester.runpytest()
    result.assert_outcomes(passed=2, skipped=1, errors=1)
    result.stdout.fnmatch_lines(["*requires_real_redis: the Redis backend in use is fakeredis*(required: CI is set)*"])


def test_header_names_the_redis_binary_auto_chose(pytester):
    import shutil

    if not shutil.which("redis-server"):
        pytest.skip("needs redis-server on PATH")
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest()
    result.stdout.fnmatch_lines([f"cbchaos: proxy=embedded redis=binary (auto: redis-server at "
                                 f"{shutil.which('redis-server')}) *"])


def test_ports_exhausted_at_run_time_are_a_usage_error(pytester, monkeypatch, tmp_path):
    """The range is large enough on paper, but other processes hold every port of it. (A runtime dir of
    its own: the machine's other sessions hold real port locks in any range this test could pick.)"""
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    pytester.makepyfile("""
        import fcntl, os
        from pytest_cbchaos.servers.ports import runtime_dir

        (runtime_dir() / "ports").mkdir(exist_ok=True)
        held = []  # the lock of every port of the range, as another pytest process would hold them
        for port in range(21900, 21916):
            fd = os.open(runtime_dir() / "ports" / f"{port}.lock", os.O_CREAT | os.O_RDWR, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            held.append(fd)

        def test_x(cbchaos_redis_proc): pass
    """)
    result = pytester.runpytest_subprocess("--cbchaos-port-range=21900-21915", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stdout.fnmatch_lines(["*pytest-cbchaos: no free port in 21900-21915*widen --cbchaos-port-range*"])
    assert "Traceback" not in result.stdout.str() + result.stderr.str()
