"""The database itself refuses to change or remove a record, whatever the client."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from eventstore import NO_STREAM, EventStore, NewRecord


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE records SET data = '{\"n\":2}' WHERE version = 1",
        "UPDATE records SET hash = 'x'",
        "DELETE FROM records WHERE version = 1",
        "DELETE FROM records",
    ],
)
async def test_raw_sql_update_and_delete_are_refused(store: EventStore, statement: str) -> None:
    await store.append("s", [NewRecord("event", "t", {"n": 1})], NO_STREAM)
    with pytest.raises(DBAPIError, match="immutable"):
        async with store._engine.begin() as conn:
            await conn.exec_driver_sql(statement)
    assert [r.data for r in await store.read_stream("s")] == [{"n": 1}]
    assert (await store.verify()).ok


async def test_truncate_is_refused_on_postgres(postgres_url: str) -> None:
    store = await EventStore.open(postgres_url)
    try:
        await store.append("s", [NewRecord("event", "t", {"n": 1})], NO_STREAM)
        with pytest.raises(DBAPIError, match="immutable"):
            async with store._engine.begin() as conn:
                await conn.execute(text("TRUNCATE records"))
        assert len(await store.read_stream("s")) == 1
    finally:
        await store.close()
