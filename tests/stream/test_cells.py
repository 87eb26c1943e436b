"""Every outcome cell of the stream's scripts is reached on every run (docs/stream-design.md#script-outcome-cells),
on redis-server and on fakeredis; the script mutants leave exactly their cells unreached."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import pytest
from fakeredis import aioredis as fake_aioredis

from pytest_cbchaos.stream import StreamConfig, StreamStore
from pytest_cbchaos.stream.cells import CELLS, markdown_table, render, unreached, walk
from pytest_cbchaos.testing.stream_mutants import M14SingleEventResendStore, M26AgeFromCreationStore
from tests.stream.stream_helpers import client_for

DOC = Path(__file__).resolve().parents[2] / "docs" / "stream-design.md"


def _walk(run: Any, client: Any, store_class: type[StreamStore] = StreamStore) -> list[Any]:
    prefix = f"cells{secrets.token_hex(4)}:"

    async def main() -> list[Any]:
        try:
            results = await walk(store_class(client, StreamConfig.ci(prefix=prefix)))
            print(render(results))
            return results
        finally:
            keys = [k async for k in client.scan_iter(match=f"{prefix}*", count=1000)]
            if keys:
                await client.delete(*keys)
            await client.aclose()
    return run(main())


@pytest.fixture(params=["redis-server", "fakeredis"])
def cell_client(request: Any) -> Any:
    if request.param == "fakeredis":
        return lambda: fake_aioredis.FakeRedis()
    proc = request.getfixturevalue("cbchaos_redis_proc")
    return lambda: client_for(proc)


def test_every_cell_is_reached(cell_client, run):
    results = _walk(run, cell_client())
    assert [r.cell for r in results] == list(CELLS)
    assert unreached(results) == [], render(results)


def test_single_event_resend_mutant_is_caught(cell_client, run):
    """An identical resend of an applied single-event call must be DUP; the mutant answers by the state."""
    missed = unreached(_walk(run, cell_client(), M14SingleEventResendStore))
    assert missed == ["append/DUP/terminal/lost answered FENCED", "append/DUP/control/lost answered CONFLICT",
                      "append/DUP/content/lost answered CONFLICT"], missed


def test_age_from_creation_trim_mutant_is_caught(cell_client, run):
    """A 100 s turn that ended 1 s ago is not older than 50 s; measured from its creation it would be."""
    missed = unreached(_walk(run, cell_client(), M26AgeFromCreationStore))
    assert missed == ["trim/NOOP/age answered OK"], missed


def test_doc_table_is_the_code_table():
    assert markdown_table() in DOC.read_text(), "docs/stream-design.md#script-outcome-cells differs from CELLS"
