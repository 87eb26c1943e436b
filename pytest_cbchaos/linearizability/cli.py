"""``cbchaos check FILE... [--model M] [--format jepsen|jsonl|porcupine-kv] [--timeout S] [--html OUT]
[--allow-empty] [--skip-unparsed]``.

One verdict line per file. Exit codes: 0 all linearizable, 1 any not linearizable, 2 any
unknown and none not, 4 a file could not be read, has no operations or an unparsable line, or
a bad option (located error on stderr). The format is sniffed from the content. ``--timeout``
bounds each file's load, check and counterexample; the process then exits without freeing the
search's memory (docs/linearizability.md#command-line).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, NoReturn, Sequence

from ..history.ops import MalformedHistory
from .checker import Verdict, check, compose
from .inputs import FORMATS, load_history
from .models import get_model, model_names
from .porcupine_kv import porcupine_kv_model

EXIT = {Verdict.OK: 0, Verdict.ILLEGAL: 1, Verdict.UNKNOWN: 2}
EXIT_BAD_INPUT = 4

#: the clock a file's budget is measured on (tests script it)
clock = time.monotonic


def add_check_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register the ``check`` sub-command on an ``argparse`` sub-parsers object."""
    p = subparsers.add_parser("check", help="check recorded histories for linearizability",
                              description=__doc__)
    _add_args(p)
    p.set_defaults(func=run_check)
    return p


def _add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("files", nargs="+", metavar="FILE", type=Path)
    p.add_argument("--model", default=None,
                   help="register | cas-register | kv | breaker-store | counter | set "
                        "(default: cas-register for Jepsen logs, kv for JSON lines and Porcupine kv "
                        "histories, whose keys start as \"\")")
    p.add_argument("--format", choices=FORMATS, default=None,
                   help="default: sniffed from the first non-blank line")
    p.add_argument("--timeout", type=float, default=10.0, metavar="S",
                   help="per-file budget in seconds: reading the file, the check and its counterexample "
                        "(default 10)")
    p.add_argument("--html", type=Path, default=None, metavar="OUT",
                   help="write the timeline; with several files OUT is a directory")
    p.add_argument("--allow-empty", action="store_true",
                   help="accept a history with no operations (default: input error, exit 4)")
    p.add_argument("--skip-unparsed", action="store_true",
                   help="ignore lines of a Jepsen or Porcupine kv log that are not operations "
                        "(default: error)")


def _html_target_error(out: Path, several: bool) -> str | None:
    """Why ``--html OUT`` cannot be written, checked before any (possibly long) check."""
    if several:
        if out.exists() and not out.is_dir():
            return f"--html {out}: exists and is not a directory; with several files OUT is a directory"
        parent = out if out.exists() else out.parent
    else:
        if out.is_dir():
            return f"--html {out}: is a directory; expected a file path (OUT.html)"
        parent = out.parent
    if not parent.is_dir():
        return f"--html {out}: directory {parent} does not exist"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"--html {out}: directory {parent} is not writable"
    return None


def run_check(args: argparse.Namespace) -> int:
    if args.timeout is not None and not (math.isfinite(args.timeout) and args.timeout > 0):
        print(f"cbchaos check: --timeout = {args.timeout!r}; expected a finite number > 0",
              file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.model is not None and args.model not in model_names():
        print(f"cbchaos check: --model = {args.model!r}; expected one of "
              f"{', '.join(model_names())}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.html is not None:
        why = _html_target_error(args.html, len(args.files) > 1)
        if why:
            print(f"cbchaos check: {why}", file=sys.stderr)
            return EXIT_BAD_INPUT
    verdicts = []
    bad = False
    for path in args.files:
        start = clock()
        try:
            history, fmt = load_history(path, args.format,
                                        allow_empty=getattr(args, "allow_empty", False),
                                        skip_unparsed=getattr(args, "skip_unparsed", False))
            name = args.model or ("cas-register" if fmt == "jepsen" else "kv")
            model = porcupine_kv_model() if (fmt, name) == ("porcupine-kv", "kv") else get_model(name)
            result = check(history, model, timeout=_left(args.timeout, start), mode="report")
        except (MalformedHistory, OSError, UnicodeDecodeError) as exc:
            print(f"cbchaos check: {exc}", file=sys.stderr)
            bad = True
            continue
        verdicts.append(result.verdict)
        line = f"{path}\t{result.verdict.value.upper()}\t{result.summary()}"
        cx = result.counterexample
        if cx and cx.get("first_unplaceable"):
            fu = cx["first_unplaceable"]
            line += f"\tfirst unplaceable: #{fu['index']} {fu['describe']} in state {fu['state']}"
        print(line)
        if args.html is not None:
            from .html import write_timeline
            out = args.html
            if len(args.files) > 1:
                out = args.html / (path.name + ".html")
            try:
                write_timeline(result, out, history=history, title=str(path),
                               recheck=f"cbchaos check {path} --model {name}")
                _sync(out)
            except OSError as exc:
                print(f"cbchaos check: --html {out}: cannot write ({exc.strerror or exc})",
                      file=sys.stderr)
                bad = True
                continue
            print(f"{path}\ttimeline: {out}")
    if bad:
        return EXIT_BAD_INPUT
    return EXIT[compose(verdicts)]


def _left(timeout: float, start: float) -> float:
    """What is left of a file's budget once it is read: the check, counterexample included, gets
    only that (docs/linearizability.md#command-line)."""
    return max(0.0, timeout - (clock() - start))


def _sync(path: Path) -> None:
    """Put a written output on disk before the process ends with ``os._exit``."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def exit_after_verdict(code: int) -> NoReturn:
    """End a ``check`` process once its verdict is out: flush stdout and stderr, then ``os._exit``.

    Interpreter teardown would free the search memo and the history (seconds on a large memo), past
    the budget ``--timeout`` promises; outputs are already closed and synced (``_sync``). Used by
    every entry point that runs the check as its own process (docs/linearizability.md#command-line).
    """
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe or stream: the exit code still carries the verdict
            pass
    os._exit(code)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m pytest_cbchaos.linearizability``: ``cbchaos check`` under its own name; a usage
    error exits 4, as there."""
    from ..cli import USAGE, _Parser

    p = _Parser(prog="python -m pytest_cbchaos.linearizability", description=__doc__)
    _add_args(p)
    try:
        args = p.parse_args(argv)
    except SystemExit as exc:  # --help exits 0; _Parser.error exits USAGE
        return int(exc.code) if isinstance(exc.code, int) else USAGE
    return run_check(args)
