"""Loading history files for ``cbchaos check``: format from content, no silent empty histories.

The format is sniffed from the first non-blank line, not from the file name: a JSON-lines history
saved as ``.log`` read as a Jepsen log would check as an empty (trivially linearizable) history.
See docs/linearizability.md "Command line".
"""

from __future__ import annotations

import re
from pathlib import Path

from ..history.ops import MalformedHistory
from ..history.store import History, read_jsonl
from .jepsen import EXPECTED_LINE, UnrecognisedLine, parse_jepsen_line, read_jepsen_log
from .porcupine_kv import read_porcupine_kv

FORMATS = ("jepsen", "jsonl", "porcupine-kv")
_JEPSEN_LOG_LINE = re.compile(r"^\s*(?:TRACE|DEBUG|INFO|WARN|ERROR|FATAL)\s+jepsen\.")


def sniff_format(path: Path, *, skip_unparsed: bool = False) -> str:
    """``jsonl``, ``porcupine-kv`` (an EDN map, ``{:``) or ``jepsen`` from the first recognisable
    line; an empty file counts as ``jsonl``."""
    with open(path, encoding="utf-8", errors="replace") as fh:
        for lineno, line in enumerate(fh, 1):
            text = line.strip()
            if not text:
                continue
            if text.startswith("{:"):
                return "porcupine-kv"
            if text.startswith("{"):
                return "jsonl"
            if parse_jepsen_line(line.rstrip("\n")) is not None or _JEPSEN_LOG_LINE.match(line):
                return "jepsen"
            if skip_unparsed:
                continue
            shown = text if len(text) <= 80 else text[:77] + "..."
            raise MalformedHistory(
                f"{path}:{lineno}: cannot tell the history format from {shown!r}; expected a JSON "
                f"event object per line (jsonl), a Porcupine kv map per line (porcupine-kv) or "
                f"{EXPECTED_LINE} (pass --format to choose)")
    return "jsonl"


def load_history(path: Path, fmt: str | None = None, *, allow_empty: bool = False,
                 skip_unparsed: bool = False) -> tuple[History, str]:
    """Read one history file; returns ``(history, format)``. Errors name the file and line."""
    if not path.exists():
        raise MalformedHistory(f"{path}: no such file")
    if path.is_dir():
        raise MalformedHistory(f"{path}: is a directory; expected a history file")
    if fmt is not None and fmt not in FORMATS:
        raise MalformedHistory(f"--format = {fmt!r}; expected one of {', '.join(FORMATS)}")
    fmt = fmt or sniff_format(path, skip_unparsed=skip_unparsed)
    try:
        if fmt == "jepsen":
            history = read_jepsen_log(path, skip_unparsed=skip_unparsed)
        elif fmt == "porcupine-kv":
            history = read_porcupine_kv(path, skip_unparsed=skip_unparsed)
        else:
            history = read_jsonl(path)
    except UnicodeDecodeError as exc:
        raise MalformedHistory(f"{path}: not UTF-8 text (byte {exc.start}: {exc.reason}); "
                               "expected a JSON-lines, Porcupine kv or Jepsen history") from None
    except UnrecognisedLine as exc:
        raise UnrecognisedLine(f"{exc} (--skip-unparsed ignores such lines)") from None
    if not allow_empty and not history.client_events():
        raise MalformedHistory(f"{path}: no operations in this {fmt} history; expected at least "
                               "one invoke event (pass --allow-empty to accept an empty history)")
    return history, fmt
