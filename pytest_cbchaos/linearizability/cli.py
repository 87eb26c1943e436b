"""``cbchaos check FILE... [--model M] [--format jepsen|jsonl] [--timeout S] [--html OUT]``.

One verdict line per file. Exit codes: 0 all linearizable, 1 any not linearizable, 2 any
unknown and none not, 4 a file could not be read (located error on stderr).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Sequence

from ..history.ops import MalformedHistory
from ..history.store import History, read_jsonl
from .checker import Verdict, check, compose
from .jepsen import read_jepsen_log
from .models import get_model, model_names

EXIT = {Verdict.OK: 0, Verdict.ILLEGAL: 1, Verdict.UNKNOWN: 2}
EXIT_BAD_INPUT = 4


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
                        "(default: cas-register for Jepsen logs, kv for JSON lines)")
    p.add_argument("--format", choices=("jepsen", "jsonl"), default=None,
                   help="default: by extension (.log/.txt = jepsen, else jsonl)")
    p.add_argument("--timeout", type=float, default=10.0, metavar="S",
                   help="per-file check budget in seconds (default 10)")
    p.add_argument("--html", type=Path, default=None, metavar="OUT",
                   help="write the timeline; with several files OUT is a directory")


def _load(path: Path, fmt: str | None) -> History:
    if not path.exists():
        raise MalformedHistory(f"{path}: no such file")
    fmt = fmt or ("jepsen" if path.suffix in (".log", ".txt") else "jsonl")
    return read_jepsen_log(path) if fmt == "jepsen" else read_jsonl(path)


def run_check(args: argparse.Namespace) -> int:
    if args.timeout is not None and not args.timeout > 0:
        print(f"cbchaos check: --timeout = {args.timeout!r}; expected a number > 0", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.model is not None and args.model not in model_names():
        print(f"cbchaos check: --model = {args.model!r}; expected one of "
              f"{', '.join(model_names())}", file=sys.stderr)
        return EXIT_BAD_INPUT
    verdicts = []
    bad = False
    for path in args.files:
        try:
            history = _load(path, args.format)
            fmt = args.format or ("jepsen" if path.suffix in (".log", ".txt") else "jsonl")
            name = args.model or ("cas-register" if fmt == "jepsen" else "kv")
            model = get_model(name)
            result = check(history, model, timeout=args.timeout, mode="report")
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
            write_timeline(result, out, history=history, title=str(path),
                           recheck=f"cbchaos check {path} --model {name}")
            print(f"{path}\ttimeline: {out}")
    if bad:
        return EXIT_BAD_INPUT
    return EXIT[compose(verdicts)]


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pytest_cbchaos.linearizability",
                                description=__doc__)
    _add_args(p)
    return run_check(p.parse_args(argv))
