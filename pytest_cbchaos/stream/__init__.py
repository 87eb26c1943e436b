"""Durable, resumable, seq-numbered turn-event stream in Redis (docs/stream-design.md).

Public API::

    from pytest_cbchaos.stream import StreamConfig, StreamStore, TurnRelay, ScriptedSource, LogReader
    from pytest_cbchaos.stream import make_app, StreamClient, fold, check_stream, Reaper
"""

from pytest_cbchaos.stream.config import StreamConfig, StreamConfigError
from pytest_cbchaos.stream.envelope import Envelope, KINDS, encode_payload
from pytest_cbchaos.stream.fold import TurnView, fold
from pytest_cbchaos.stream.store import StoreUnavailable, StreamStore
from pytest_cbchaos.stream.sources import ScriptedSource, SourceEvent, TurnSource
from pytest_cbchaos.stream.relay import TurnHandle, TurnOutcome, TurnRelay
from pytest_cbchaos.stream.reaper import Reaper
from pytest_cbchaos.stream.reader import LogReader, StreamConnectError
from pytest_cbchaos.stream.checker import StreamReport, check_stream

__all__ = [
    "StreamConfig", "StreamConfigError", "Envelope", "KINDS", "encode_payload", "TurnView", "fold",
    "StoreUnavailable", "StreamStore", "ScriptedSource", "SourceEvent", "TurnSource", "TurnHandle",
    "TurnOutcome", "TurnRelay", "Reaper", "LogReader", "StreamConnectError", "StreamReport", "check_stream",
]
