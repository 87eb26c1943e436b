"""Operation histories: recorder (threads, asyncio tasks, processes), pairing, JSON-lines storage.

Design: docs/linearizability-design.md#history-model.
"""

from .classify import Classifier, default_classifier
from .ops import INF, UNKNOWN, MalformedHistory, Op, pair_events, validate_event
from .recorder import OpHandle, Recorder, RecorderClosed, RemoteWorker
from .store import History, read_jsonl, write_edn, write_jsonl

__all__ = [
    "Classifier", "default_classifier", "INF", "UNKNOWN", "MalformedHistory", "Op",
    "pair_events", "validate_event", "OpHandle", "Recorder", "RecorderClosed", "RemoteWorker",
    "History", "read_jsonl", "write_edn", "write_jsonl",
]
