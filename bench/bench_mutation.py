"""Mutation score of the pure cores (docs/mutants.md#mutation-score): mutmut 3 mutates one module at a
time and runs that module's fast unit tests (no servers) against every mutant; prints killed/total
and the surviving mutants per module.

Not in ``bench/run_all.py``: it takes minutes (every mutant is one forked test run) and measures the
tests, not the kit's speed. Run it on its own::

    .venv/bin/python bench/bench_mutation.py [--module kernel] [--max-children 2] [--timeout 900]

Each module is mutated in a fresh temporary copy of the package and the tests (removed afterwards),
so the checkout is never touched. Equivalent mutants (no caller can observe the change) are listed
with the reason in ``bench/mutation_exclusions.json`` and are reported apart, not counted. Exit code
1 when a module scores below ``--goal`` (default 90 %) or a run fails.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, NoReturn

ROOT = Path(__file__).resolve().parent.parent
EXCLUSIONS = ROOT / "bench" / "mutation_exclusions.json"
COPIED = ("pytest_cbchaos", "tests", "conftest.py", "pyproject.toml")

# module -> the fast tests that cover it: pure functions and in-process fakes, no servers, and none of the
# differential Hypothesis tests (each takes seconds under mutmut's trampolines, per surviving mutant)
_KERNEL_FAST = ("tests/breaker/test_kernel_rules.py", "tests/breaker/test_kernel.py::test_python_codec_vectors",
                "tests/breaker/test_kernel.py::test_rule_n_and_legacy_claim",
                "tests/breaker/test_kernel.py::test_encode_is_canonical_roundtrip")
MODULES: dict[str, tuple[str, ...]] = {
    "pytest_cbchaos/breaker/kernel.py": _KERNEL_FAST,
    "pytest_cbchaos/breaker/record.py": _KERNEL_FAST,
    "pytest_cbchaos/stream/fold.py": ("tests/stream/test_event_model.py",),
    "pytest_cbchaos/stream/envelope.py": ("tests/stream/test_event_model.py",),
    "pytest_cbchaos/recovery/watchdog.py": ("tests/recovery/test_watchdog_units.py",
                                            "tests/recovery/test_recovery_units.py::"
                                            "test_stall_clock_starts_at_the_first_event_not_at_acceptance"),
    "pytest_cbchaos/recovery/status.py": ("tests/recovery/test_recovery_units.py::"
                                          "test_status_for_reason_one_condition_one_value",),
}
KILLED = {"killed", "timeout", "segfault"}  # a mutant that hangs or crashes the tests is caught too
# mutmut's exit-code table (mutmut.stats.status_by_exit_code), kept here to read its .meta files
STATUS = {1: "killed", 3: "killed", 0: "survived", 5: "no tests", 33: "no tests", 34: "skipped", 35: "suspicious",
          36: "timeout", 24: "timeout", -24: "timeout", 152: "timeout", 255: "timeout", -11: "segfault",
          -9: "segfault"}


@dataclass
class Score:
    module: str
    killed: int = 0
    total: int = 0
    survived: list[tuple[str, str]] = field(default_factory=list)  # (mutant name, mutated line)
    excluded: list[tuple[str, str]] = field(default_factory=list)
    stale: list[tuple[str, str]] = field(default_factory=list)  # (function, mutated line) of unused exclusions
    seconds: float = 0.0
    error: str = ""

    @property
    def counted(self) -> int:
        return self.total - len(self.excluded)

    @property
    def percent(self) -> float:
        return 100.0 * self.killed / self.counted if self.counted else 100.0


class ExclusionError(ValueError):
    """The exclusions file is not what the bench reads (a usage error: exit 4)."""


def load_exclusions(path: Path = EXCLUSIONS) -> dict[str, list[dict[str, str]]]:
    """module -> [{function, mutant, why}]; ``mutant`` is the mutated line, stripped (stable across renumbering)."""
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ExclusionError(f"{path}:{e.lineno}: not JSON ({e.msg})") from None
    if not isinstance(data, dict):
        raise ExclusionError(f"{path}: expected an object of module path -> list of exclusions")
    for module, items in data.items():
        if module not in MODULES or not isinstance(items, list):
            raise ExclusionError(f"{path}: key {module!r}: expected one of {list(MODULES)} with a list")
        for i, item in enumerate(items):
            ok = isinstance(item, dict) and all(isinstance(item.get(k), str) and item[k].strip()
                                                for k in ("function", "mutant", "why"))
            if not ok:
                raise ExclusionError(f"{path}: {module}[{i}]: expected non-empty strings function, mutant, why;"
                                     f" got {item!r}")
    return data


def prepare(tmp: Path, module: str, tests: tuple[str, ...]) -> None:
    """Copy the package and tests into ``tmp`` and configure mutmut for one module."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in COPIED:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, tmp / name, ignore=ignore)
        else:
            shutil.copy2(src, tmp / name)
    # the ci Hypothesis profile (tests/conftest.py) is derandomized: the same score on every run
    pytest_args = ["-p", "no:cacheprovider", "-p", "no:xdist", "-q", "--hypothesis-profile=ci"]
    conf = ("\n[tool.mutmut]\n"
            'source_paths = ["pytest_cbchaos"]\n'
            f"only_mutate = {json.dumps([module])}\n"
            f"pytest_add_cli_args = {json.dumps(pytest_args)}\n"
            f"pytest_add_cli_args_test_selection = {json.dumps(list(tests))}\n"
            "use_git_change_detection = false\n"
            "use_setproctitle = false\n")
    with open(tmp / "pyproject.toml", "a") as f:
        f.write(conf)


def mutated_line(tmp: Path, name: str) -> str:
    """The one changed line of a mutant, from ``mutmut show`` (what exclusions match on)."""
    out = subprocess.run([sys.executable, "-m", "mutmut", "show", name], cwd=tmp, capture_output=True, text=True,
                         timeout=120).stdout
    plus = [ln[1:].strip() for ln in out.splitlines() if ln.startswith("+") and not ln.startswith("+++")]
    return " | ".join(plus) if plus else "?"


def function_of(name: str) -> str:
    m = re.search(r"\.x[ǁ_]?(.+?)__mutmut_\d+$", name)
    return m.group(1).replace("ǁ", ".") if m else name


def run_module(module: str, tests: tuple[str, ...], excl: list[dict[str, str]], max_children: int,
               timeout: float) -> Score:
    score = Score(module)
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="cbchaos-mutation-") as d:
        tmp = Path(d)
        prepare(tmp, module, tests)
        env = dict(os.environ, PYTHONPATH="", PYTHONDONTWRITEBYTECODE="1", PYTHONUNBUFFERED="1")
        env.pop("COVERAGE_PROCESS_START", None)
        rc, output = _run_mutmut(tmp, env, module, max_children, t0 + timeout)
        if rc is None:
            score.error = f"mutmut did not finish within {timeout:.0f} s (--timeout)"
            score.seconds = time.monotonic() - t0
            return score
        meta = tmp / "mutants" / (module + ".meta")
        if rc != 0 or not meta.exists():
            score.error = f"mutmut run exited {rc}:\n{output[-3000:]}"
            score.seconds = time.monotonic() - t0
            return score
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        tally(score, codes, excl, lambda name: mutated_line(tmp, name))
    score.seconds = time.monotonic() - t0
    return score


def tally(score: Score, codes: dict[str, int], excl: list[dict[str, str]], line_of: Callable[[str], str]) -> None:
    """Count mutmut's exit codes into ``score``: killed, excluded (listed as equivalent) or survived; an
    exclusion that matches no surviving mutant is ``stale`` (the line changed, or a test now kills it)."""
    wanted = {(e["function"], e["mutant"]) for e in excl}
    used = set()
    for name, code in sorted(codes.items(), key=lambda kv: _natural(kv[0])):
        score.total += 1
        status = STATUS.get(code, "suspicious")
        if status in KILLED:
            score.killed += 1
            continue
        key = (function_of(name), line_of(name))
        if key in wanted:
            used.add(key)
            score.excluded.append((name, key[1]))
        else:
            score.survived.append((name, f"{status}: {key[1]}"))
    score.stale = sorted(wanted - used)


def _run_mutmut(tmp: Path, env: dict[str, str], module: str, max_children: int,
                deadline: float) -> tuple[int | None, str]:
    """Run mutmut, printing its mutant counter every few seconds; None when the deadline passes."""
    proc = subprocess.Popen([sys.executable, "-m", "mutmut", "run", "--max-children", str(max_children)], cwd=tmp,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    assert proc.stdout is not None
    os.set_blocking(proc.stdout.fileno(), False)
    out, shown, last = bytearray(), "", time.monotonic()
    try:
        while proc.poll() is None:
            if time.monotonic() > deadline:
                return None, out.decode(errors="replace")
            chunk = proc.stdout.read() or b""
            out += chunk
            counts = re.findall(rb"(\d+)/(\d+)  ", bytes(out[-400:]))
            now = time.monotonic()
            if counts and now - last >= 5:
                done, total = (int(x) for x in counts[-1])
                if f"{done}/{total}" != shown:
                    shown, last = f"{done}/{total}", now
                    print(f"    {Path(module).name}: {done}/{total} mutants tested", flush=True)
            time.sleep(0.2)
        out += proc.stdout.read() or b""
        return proc.returncode, out.decode(errors="replace")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # mutmut's workers are in its session
            proc.wait()


def _natural(name: str) -> tuple[str, int]:
    m = re.match(r"(.*?)(\d+)$", name)
    return (m.group(1), int(m.group(2))) if m else (name, 0)


def _positive(kind: type) -> Callable[[str], float]:
    """An argparse type: a finite number above zero (NaN and inf would make the deadline meaningless)."""
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {kind.__name__}, got {text!r}") from None
        if not math.isfinite(value) or value <= 0:
            raise argparse.ArgumentTypeError(f"expected a finite number above 0, got {text!r}")
        return value
    return parse


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(4, f"{self.prog}: error: {message}\n")  # usage errors exit 4, as every cbchaos command


def main(argv: list[str] | None = None) -> int:
    ap = _Parser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--module", action="append", default=[],
                    help="only modules whose path contains this (repeatable); default: all")
    ap.add_argument("--max-children", type=_positive(int), default=min(2, os.cpu_count() or 1))
    ap.add_argument("--timeout", type=_positive(float), default=900.0, help="seconds per module before giving up")
    ap.add_argument("--goal", type=_positive(float), default=90.0, help="minimum killed %% per module")
    args = ap.parse_args(argv)
    if args.goal > 100:
        ap.error(f"--goal: expected a percentage up to 100, got {args.goal}")
    try:
        import mutmut  # noqa: F401
    except ImportError:
        print("bench_mutation: mutmut is not installed (pip install -e '.[dev]')", file=sys.stderr)
        return 4
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so the temporary copies are removed
    try:
        exclusions = load_exclusions()
    except ExclusionError as e:
        print(f"bench_mutation: {e}", file=sys.stderr)
        return 4
    chosen = [m for m in MODULES if not args.module or any(s in m for s in args.module)]
    if not chosen:
        print(f"bench_mutation: no module matches {args.module}; known: {list(MODULES)}", file=sys.stderr)
        return 4
    t0 = time.monotonic()
    scores = []
    for i, module in enumerate(chosen, 1):
        print(f"[{i}/{len(chosen)}] {module}: mutating, tests {', '.join(MODULES[module])} ...", flush=True)
        s = run_module(module, MODULES[module], exclusions.get(module, []), args.max_children, args.timeout)
        scores.append(s)
        if s.error:
            print(f"    FAILED after {s.seconds:.0f} s: {s.error}", flush=True)
            continue
        print(f"    {s.killed}/{s.counted} killed ({s.percent:.1f} %), {len(s.excluded)} excluded as equivalent,"
              f" {s.seconds:.0f} s", flush=True)
        for name, what in s.survived:
            print(f"    survived {name}  {what}", flush=True)
        for function, line in s.stale:
            print(f"    stale exclusion (no surviving mutant matches; remove it): {function} | {line}", flush=True)
    print(f"\n{'module':40} {'killed/total':>13} {'%':>6} {'excluded':>9} {'s':>5}")
    for s in scores:
        figures = "error" if s.error else f"{s.killed}/{s.counted}"
        print(f"{s.module:40} {figures:>13} {s.percent:6.1f} {len(s.excluded):9} {s.seconds:5.0f}")
    print(f"wall time {time.monotonic() - t0:.0f} s")
    bad = [s for s in scores if s.error or s.percent < args.goal]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
