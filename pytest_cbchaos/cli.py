"""The ``cbchaos`` command: run scenarios, re-render reports, start servers, diagnose backends.

    cbchaos run PATH... | --builtin [--report DIR] [--seed N] [--redis BACKEND|URL] [--toxiproxy BACKEND|URL] [-n N]
                [--background-load N] [-- PYTEST-ARGS]
    cbchaos init [DIR]            write a starter set (scenarios, conftest.py, a test, a CI workflow)
    cbchaos report DIR            re-render DIR/report.html from DIR/report.json
    cbchaos servers               start Redis + the fault proxy, print addresses, wait for Ctrl-C
    cbchaos doctor                which backends are available, how to install the missing ones
    cbchaos check ...             offline linearizability check (pytest_cbchaos.linearizability.cli)

Exit codes follow pytest's (0 ok, 1 failures, 2 interrupted, 3 internal, 4 usage, 5 nothing collected);
a malformed scenario is a located message and exit code 4, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import json
import shutil
import sys
import tempfile
import threading
from pathlib import Path
from typing import Sequence

USAGE = 4
REDIS_CHOICES = ("auto", "binary", "fakeredis", "docker")
PROXY_CHOICES = ("embedded", "binary", "docker")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse exits 2; usage errors are 4 here, as in pytest
        self.print_usage(sys.stderr)
        print(f"cbchaos: error: {message}", file=sys.stderr)
        raise SystemExit(USAGE)


def _backend(value: str, kind: str) -> tuple[str, str | None]:
    """``--redis``/``--toxiproxy`` as (backend, url): a backend name, or a URL meaning the ``url`` backend."""
    if "://" in value or (kind == "toxiproxy" and ":" in value and not value.startswith("/")):
        return "url", value if "://" in value or kind == "redis" else f"http://{value}"
    choices = REDIS_CHOICES if kind == "redis" else PROXY_CHOICES
    if value not in choices:
        raise SystemExit(_usage(f"--{kind} {value!r}: expected one of {', '.join(choices)} or a URL"))
    return value, None


def _backend_args(value: str | None, kind: str) -> list[str]:
    if not value:
        return []
    backend, url = _backend(value, kind)
    option = "--cbchaos-redis" if kind == "redis" else "--cbchaos-proxy"
    args = [f"{option}-backend", backend]
    if url:
        args += [f"--cbchaos-{kind}-url", url]
    return args


def _usage(message: str) -> int:
    print(f"cbchaos: error: {message}", file=sys.stderr)
    return USAGE


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="cbchaos", description="pytest-cbchaos chaos scenarios, reports and servers")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    run = sub.add_parser("run", help="run scenario files / test paths through pytest")
    run.add_argument("paths", nargs="*", metavar="PATH")
    run.add_argument("--builtin", action="store_true", help="run the scenarios shipped with pytest-cbchaos")
    run.add_argument("--report", metavar="DIR", help="write report.json and report.html into DIR")
    run.add_argument("--seed", type=int, help="seed for workloads, ports and toxicity rolls")
    run.add_argument("--redis", metavar="BACKEND|URL", help=f"{'|'.join(REDIS_CHOICES)} or redis://...")
    run.add_argument("--toxiproxy", metavar="BACKEND|URL", help=f"{'|'.join(PROXY_CHOICES)} or host:port")
    run.add_argument("-k", dest="keyword", help="pytest -k expression")
    run.add_argument("-m", dest="markexpr", help="pytest -m expression")
    run.add_argument("-n", dest="numprocesses", help="xdist workers (needs pytest-xdist)")
    run.add_argument("--background-load", metavar="N",
                     help="keep N busy processes running for the whole run (0-64, per machine)")
    run.add_argument("-q", "--quiet", action="store_true")
    run.epilog = "Arguments after a lone -- are passed to pytest unchanged."
    init = sub.add_parser("init", help="write a starter set: scenarios, conftest.py, a test, a CI workflow")
    init.add_argument("dir", nargs="?", default=".", metavar="DIR", help="where (default: the current directory)")
    rep = sub.add_parser("report", help="re-render report.html from report.json")
    rep.add_argument("dir", metavar="DIR")
    srv = sub.add_parser("servers", help="start Redis and the fault proxy for manual exploration")
    srv.add_argument("--redis", default="auto", metavar="BACKEND|URL", help=f"{'|'.join(REDIS_CHOICES)} or redis://...")
    srv.add_argument("--toxiproxy", default="embedded", metavar="BACKEND|URL",
                     help=f"{'|'.join(PROXY_CHOICES)} or host:port")
    srv.add_argument("--once", action="store_true", help=argparse.SUPPRESS)  # print and exit (tests)
    doc = sub.add_parser("doctor", help="show available backends and install hints")
    doc.add_argument("--opencode-bin", metavar="PATH", help="opencode executable to check (default: "
                     "$CBCHAOS_OPENCODE_BIN, then .cbchaos-node/, then PATH, as the plugin searches)")
    from pytest_cbchaos.linearizability.cli import add_check_parser

    add_check_parser(sub)
    return p


def cmd_run(args: argparse.Namespace) -> int:
    import pytest

    from pytest_cbchaos.scenario.errors import ScenarioErrors
    from pytest_cbchaos.scenario.loader import discover, load_many

    paths = [Path(p) for p in args.paths]
    if args.builtin:
        from pytest_cbchaos.scenario.builtin import builtin_dir

        try:
            paths.append(builtin_dir())
        except FileNotFoundError as exc:
            return _usage(str(exc))
    if not paths:
        return _usage("run: expected PATH... (scenario files or directories, test paths) or --builtin")
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        return _usage(f"no such file or directory: {', '.join(missing)}")
    try:
        load_many(discover(paths))  # validate up front: a malformed scenario is a usage error
    except ScenarioErrors as exc:
        for e in exc.errors:
            print(f"cbchaos: malformed scenario: {e.format()}", file=sys.stderr)
        return USAGE
    argv = [str(p) for p in paths]
    try:
        options = _backend_args(args.redis, "redis") + _backend_args(args.toxiproxy, "toxiproxy")
    except SystemExit as exc:
        return int(exc.code or USAGE)
    if args.report:
        options += ["--cbchaos-report", args.report]
    if args.seed is not None:
        options += ["--cbchaos-seed", str(args.seed)]
    if args.background_load is not None:
        options += ["--cbchaos-background-load", args.background_load]
    if args.keyword:
        options += ["-k", args.keyword]
    if args.markexpr:
        options += ["-m", args.markexpr]
    if args.numprocesses:
        options += ["--numprocesses", args.numprocesses]
    # OPTION=VALUE, one token each: pytest takes a separate value that names an existing directory (the
    # report directory of an earlier run) for a path, which moves its rootdir and changes the node ids
    argv += [f"{flag}{'' if flag in ('-k', '-m') else '='}{value}" for flag, value in zip(options[::2], options[1::2])]
    argv += ["-q"] if args.quiet else ["-v", "--durations=5"]  # -v: one progress line per scenario
    extra = list(getattr(args, "pytest_args", []))
    argv += ["-p", "pytest_cbchaos.plugin.scenario", "-p", "pytest_cbchaos.plugin.report", *extra]
    return int(pytest.main(argv))


def cmd_init(args: argparse.Namespace) -> int:
    from pytest_cbchaos.starter import StarterExists, write_starter

    dest = Path(args.dir)
    if dest.exists() and not dest.is_dir():
        return _usage(f"init {dest}: not a directory")
    try:
        written = write_starter(dest)
    except StarterExists as exc:
        return _usage(f"init: {exc}")
    except OSError as exc:
        return _usage(f"init {dest}: cannot write ({exc.strerror or exc})")
    for path in written:
        print(f"wrote {path}")
    print(f"next: cd {dest} && pytest -n auto && cbchaos run scenarios/ --report cbchaos-report")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from pytest_cbchaos.report.html import write_html
    from pytest_cbchaos.report.model import validate

    directory = Path(args.dir)
    if directory.is_file() and directory.suffix == ".json":  # DIR/report.json given: same thing
        directory, src = directory.parent, directory
    elif directory.exists() and not directory.is_dir():
        return _usage(f"{directory}: not a directory; expected the report DIR holding report.json")
    else:
        src = directory / "report.json"
    try:
        report = json.loads(src.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return _usage(f"{src}: no such file (run `cbchaos run ... --report {directory}` first)")
    except json.JSONDecodeError as exc:
        return _usage(f"{src}:{exc.lineno}: not valid JSON: {exc.msg}")
    except UnicodeDecodeError as exc:
        return _usage(f"{src}: not UTF-8 text (byte {exc.start}: {exc.reason}); expected report.json")
    except OSError as exc:
        return _usage(f"{src}: cannot read ({exc.strerror or exc})")
    try:
        validate(report)
    except Exception as exc:
        path = "/".join(str(p) for p in getattr(exc, "absolute_path", []))
        return _usage(f"{src}: {path or '<top level>'}: {getattr(exc, 'message', exc)} (see docs/report-schema.md)")
    try:
        out = write_html(report, directory)
    except OSError as exc:
        return _usage(f"{directory / 'report.html'}: cannot write ({exc.strerror or exc})")
    print(f"wrote {out}")
    return 0


def cmd_servers(args: argparse.Namespace) -> int:
    """Both servers start, or the command exits 4 naming the one that could not (nothing keeps running)."""
    from pytest_cbchaos.env import Environment, Unavailable
    from pytest_cbchaos.settings import Settings

    try:
        redis_backend, redis_url = _backend(args.redis, "redis")
        proxy_backend, proxy_url = _backend(args.toxiproxy, "toxiproxy")
    except SystemExit as exc:
        return int(exc.code or USAGE)
    workdir = Path(tempfile.mkdtemp(prefix="cbchaos-servers-"))
    env = Environment.from_settings(Settings.defaults(redis_backend=redis_backend, redis_url=redis_url,
                                                      proxy_backend=proxy_backend, toxiproxy_url=proxy_url),
                                    workdir, worker="cli")
    try:
        try:
            server = env.redis()
        except Unavailable as exc:
            return _usage(str(exc))
        try:
            proxy = env.proxy("redis", f"{server.host}:{server.port}")
        except Unavailable as exc:
            return _usage(f"--toxiproxy {args.toxiproxy}: {exc}")
        print(f"redis      {server.backend} {server.version}  redis://:{server.password}@{server.host}:{server.port}/0"
              if server.password else f"redis      {server.backend} {server.version}  {server.host}:{server.port}")
        print(f"toxiproxy  {env.toxiproxy().url}")
        print(f"proxy      redis  listen {proxy.listen_host}:{proxy.listen_port} -> {server.host}:{server.port}")
        print(f"logs       {workdir} (removed at exit)")
        sys.stdout.flush()
        if args.once:
            return 0
        print("Ctrl-C to stop")
        stop = threading.Event()
        try:
            while not stop.wait(3600):
                pass
        except KeyboardInterrupt:
            print("stopping")
        return 0
    finally:
        env.stop()
        shutil.rmtree(workdir, ignore_errors=True)  # the servers' logs die with them


def _module(name: str) -> str | None:
    try:
        mod = importlib.import_module(name)
        return str(getattr(mod, "__version__", "installed"))
    except Exception:
        return None


def _opencode_row(explicit: str | None) -> tuple[str, str, str]:
    """opencode as the plugin finds it (same search, same words): found, or what was tried."""
    from pytest_cbchaos.servers.opencode import discover_opencode

    found = discover_opencode(explicit, Path.cwd(), source="--opencode-bin")
    if found.binary is not None:
        return ("opencode", f"{found.binary.path} (version {found.binary.version})", "")
    return ("opencode", "missing", f"{found.reason()} (opencode scenarios skip meanwhile)")


TOPOLOGIES = (("redis sentinel topology", "sentinel", "cbchaos_redis_sentinel", "--sentinel"),
              ("redis cluster topology", "cluster", "cbchaos_redis_cluster", "--cluster-enabled yes"))


def topology_rows(executable: str | None = None) -> list[tuple[str, str, str]]:
    """One row per multi-server topology (docs/redis-topologies.md): the binary that runs it, or why it
    cannot run here (its fixture's tests skip with the same reason)."""
    from pytest_cbchaos.servers.redis import BackendUnavailable
    from pytest_cbchaos.servers.sentinel import topology_binary

    rows = []
    for name, topology, fixture, mode in TOPOLOGIES:
        try:
            path, version = topology_binary(executable, topology)
        except BackendUnavailable as exc:
            rows.append((name, "cannot run here", f"{exc} ({fixture} tests skip meanwhile)"))
        else:
            rows.append((name, f"can run: {path} {mode} (version {version})", ""))
    return rows


def doctor_rows(opencode_bin: str | None = None) -> list[tuple[str, str, str]]:
    """(component, status, hint) for every backend the kit can use."""
    rows: list[tuple[str, str, str]] = []
    redis_bin = shutil.which("redis-server")
    rows.append(("redis-server", redis_bin or "missing",
                 "" if redis_bin else "apt-get install redis-server (embedded fakeredis is used meanwhile)"))
    rows += topology_rows()
    fr = _module("fakeredis")
    lupa = _module("lupa")
    rows.append(("fakeredis", fr or "missing", "" if fr else "pip install 'fakeredis[lua]'"))
    rows.append(("lupa (Lua for fakeredis)", lupa or "missing", "" if lupa else "pip install lupa"))
    tp = shutil.which("toxiproxy-server")
    rows.append(("toxiproxy-server", tp or "missing (embedded proxy is the default)",
                 "" if tp else "optional: download from github.com/Shopify/toxiproxy releases"))
    rows.append(_opencode_row(opencode_bin))
    docker = shutil.which("docker")
    rows.append(("docker", docker or "missing", "" if docker else "optional: docker backends only"))
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    rows.append(("chromium", chromium or "missing", "" if chromium else "optional: apt-get install chromium (report tests)"))
    faketime = shutil.which("faketime")
    rows.append(("faketime", faketime or "missing", "" if faketime else "optional: apt-get install faketime (server clock skew)"))
    return rows


def cmd_doctor(args: argparse.Namespace) -> int:
    rows = doctor_rows(args.opencode_bin)
    width = max(len(r[0]) for r in rows)
    for comp, status, hint in rows:
        print(f"{comp:<{width}}  {status}" + (f"\n{'':<{width}}  -> {hint}" if hint else ""))
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from pytest_cbchaos.linearizability.cli import run_check

    return int(run_check(args))


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; ``argv=None`` means this process's own command line (the ``cbchaos`` console
    script), and then ``check`` ends the process itself once its verdict is out
    (``exit_after_verdict``: no interpreter teardown freeing the search memo)."""
    parser = build_parser()
    own_process = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    passthrough: list[str] = []
    if argv[:1] == ["run"] and "--" in argv:
        cut = argv.index("--")
        argv, passthrough = argv[:cut], argv[cut + 1:]
    try:
        args = parser.parse_args(argv)
        args.pytest_args = passthrough
    except SystemExit as exc:
        return int(exc.code) if isinstance(exc.code, int) else USAGE
    handler = {"run": cmd_run, "init": cmd_init, "report": cmd_report, "servers": cmd_servers, "doctor": cmd_doctor,
               "check": cmd_check}[args.command]
    try:
        code = handler(args)
    except KeyboardInterrupt:
        code = 2
    if own_process and args.command == "check":
        from pytest_cbchaos.linearizability.cli import exit_after_verdict

        exit_after_verdict(code)
    return code


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
