"""What a breaker store can express (docs/adapters.md#capabilities).

The conformance suite, the store machine and the concurrent test compare only the fields a store
declares and skip, with a reason, what it cannot express ("n/a: no probe tokens"), so a store with
another protocol is judged on behaviour, not on our record layout.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..record import FIELDS as ALL_FIELDS
ALL_OPS = frozenset({"gate", "record_failure", "record_success", "release_probe", "renew_probe",
                     "force_open", "reset", "get_state"})
ALL_OUTCOMES = ("success", "failure", "abort", "free")
TIME_SOURCES = ("client", "server")
APPLIED = ("reply", "snapshot")

#: feature -> the reason reported when a store lacks it
REASONS = {"probe_tokens": "n/a: no probe tokens", "leases": "n/a: no probe leases",
           "op_ids": "n/a: no op ids", "corrupt_report": "n/a: no _corrupt report",
           "client_time": "n/a: the store reads its own clock"}


@dataclass(frozen=True)
class Capabilities:
    """Declared by a store (attribute ``capabilities``) or by its adapter.

    ``applied``: ``"reply"`` = the reply carries ``_applied``; ``"snapshot"`` = the adapter derives
    it from the record before and after the op (adapters/snapshot.py does it race-free).
    ``time_precision``: the largest rounding of stored timestamps (compare within it).
    """

    probe_tokens: bool = True
    leases: bool = True
    op_ids: bool = True
    time: str = "client"
    fields: tuple[str, ...] = ALL_FIELDS
    ops: frozenset[str] = ALL_OPS
    release_outcomes: tuple[str, ...] = ALL_OUTCOMES
    applied: str = "reply"
    corrupt_report: bool = True
    time_precision: float = 0.0
    notes: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if self.time not in TIME_SOURCES:
            raise ValueError(f"Capabilities.time: expected one of {TIME_SOURCES}, got {self.time!r}")
        if self.applied not in APPLIED:
            raise ValueError(f"Capabilities.applied: expected one of {APPLIED}, got {self.applied!r}")
        bad = [f for f in self.fields if f not in ALL_FIELDS]
        if bad or "state" not in self.fields:
            raise ValueError(f"Capabilities.fields: expected 'state' and names from {ALL_FIELDS}, got {bad or self.fields}")
        unknown = sorted(set(self.ops) - ALL_OPS)
        if unknown:
            raise ValueError(f"Capabilities.ops: unknown {unknown}; expected names from {sorted(ALL_OPS)}")
        if not self.probe_tokens and "probe_token" in self.fields:
            raise ValueError("Capabilities: a store without probe tokens cannot store 'probe_token'")

    def lacks(self, *features: str) -> str | None:
        """The n/a reason for the first missing feature (or op), None when all are present."""
        for f in features:
            if f in REASONS:
                have = self.time == "client" if f == "client_time" else getattr(self, f)
                if not have:
                    return REASONS[f]
            elif f in ALL_OPS and f not in self.ops:
                return f"n/a: no {f} operation"
        return None

    def same(self, name: str, got: object, want: object) -> bool:
        """Field equality within the declared timestamp precision."""
        if self.time_precision and isinstance(got, float) and isinstance(want, float):
            return abs(got - want) <= self.time_precision
        return got == want


OURS = Capabilities()


def capabilities_of(store: object) -> Capabilities:
    """A store's declared capabilities; our own protocol when it declares none."""
    caps = getattr(store, "capabilities", None)
    return caps if isinstance(caps, Capabilities) else OURS
