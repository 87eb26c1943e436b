"""Run every probe against every available adapter and render the result as a markdown table."""

from __future__ import annotations

from typing import Any, Iterable

from .base import BreakerAdapter
from .probes import PROBES, ProbeContext, ProbeError, ProbeResult


def run_matrix(ctx: ProbeContext, adapters: Iterable[type[BreakerAdapter]],
               probes: Iterable[str] = tuple(PROBES)) -> list[ProbeResult]:
    """All (probe, adapter) pairs; a probe that cannot run is recorded with ``measured=None`` and the error."""
    out = []
    for pid in probes:
        for cls in adapters:
            try:
                out.append(PROBES[pid](ctx, cls))
            except ProbeError as exc:
                out.append(ProbeResult(pid, cls.name, None, None, False, {"error": str(exc)}))
            except Exception as exc:
                if not raised_by(exc, cls):
                    raise  # the kit's own bug: never dressed up as a finding
                out.append(ProbeResult(pid, cls.name, None, None, True,
                                       {"verdict": f"target raised {type(exc).__name__}", "error": str(exc)[:300]}))
    return out


def raised_by(exc: BaseException, cls: type[BreakerAdapter]) -> bool:
    """True when the innermost frame of ``exc``'s traceback is in the adapted library's package."""
    import traceback

    frames = traceback.extract_tb(exc.__traceback__)
    pkg = f"/{cls.import_name}/"
    return bool(frames) and any(pkg in f.filename for f in frames[-3:])


def _cell(r: ProbeResult) -> str:
    if "verdict" in r.detail:
        return f"**{r.detail['verdict']}** ⚠"
    if r.measured is None:
        return "n/a"
    m: Any = r.measured
    if isinstance(m, float):
        m = f"{m:.3f}"
    return f"**{m}** ⚠" if r.weak else str(m)


def format_markdown(results: list[ProbeResult]) -> str:
    """Rows: probes; columns: adapters; weak cells bold with ⚠; thresholds in the second column."""
    adapters = list(dict.fromkeys(r.adapter for r in results))
    probes = list(dict.fromkeys(r.id for r in results))
    by = {(r.id, r.adapter): r for r in results}
    lines = ["| probe | threshold | " + " | ".join(adapters) + " |", "|---|---|" + "---|" * len(adapters)]
    for pid in probes:
        thr = next((by[(pid, a)].threshold for a in adapters if (pid, a) in by), "")
        cells = [_cell(by[(pid, a)]) if (pid, a) in by else "" for a in adapters]
        lines.append(f"| {pid} | {thr} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
