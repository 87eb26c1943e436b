"""One sentence saying what went wrong in a failed test or scenario, in the domain's words.

Computed once per report entry (``headline`` in report.json) from what the run recorded: the
first violated check (its classifier message or detail), the audit's reasons (a fault that was not
applied, nothing observed), the run's error, or the test's own assertion. Terminal and HTML show
that field; none of them words it again.
"""

from __future__ import annotations

import re
from typing import Any

BAD = ("violated", "illegal")


def headline(entry: dict[str, Any]) -> str:
    """The sentence, or "" for a test that passed (or was skipped) with a clean verdict."""
    failed = entry.get("outcome") in ("failed", "error") or entry.get("verdict") in ("violated", "error", "unknown")
    if not failed:
        return ""
    for check in entry.get("checks") or []:
        if check.get("verdict") in BAD and check.get("enforced", True):
            why = check.get("classification") or check.get("detail") or "see its counterexample"
            return _sentence(f"{check['name']} was violated: {why}")
    reasons = entry.get("verdict_reasons") or []
    if reasons:
        return _sentence(f"No verdict could be trusted: {reasons[0]}")
    for check in entry.get("checks") or []:
        if check.get("verdict") == "unknown":
            return _sentence(f"{check['name']} could not decide: {check.get('detail') or 'budget exhausted'}")
    if entry.get("error"):
        return _sentence(f"The run stopped with an error: {entry['error']}")
    assertion = _assertion(entry.get("longrepr") or "")
    if assertion:
        return _sentence(f"The test's assertion failed: {assertion}")
    return "The test failed; its output is below."


def _assertion(longrepr: str) -> str:
    """The first ``E   ...`` line pytest printed (the exception and its message)."""
    for line in longrepr.splitlines():
        m = re.match(r"^E\s+(.*\S)", line)
        if m:
            return m.group(1)
    lines = [ln.strip() for ln in longrepr.splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def _sentence(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    if len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return text if text.endswith((".", "…", "!", "?")) else text + "."
