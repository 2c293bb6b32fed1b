"""Versioned migrations: created on first open, upgraded only when asked, newer refused."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import inspect, text

from eventstore import (
    NO_STREAM,
    SCHEMA_VERSION,
    EventStore,
    NewRecord,
    SchemaError,
    SchemaOutdatedError,
    SchemaTooNewError,
)
from eventstore._migrations import apply_migrations


async def _tables(store: EventStore) -> set[str]:
    async with store._engine.connect() as conn:
        return set(await conn.run_sync(lambda c: inspect(c).get_table_names()))


async def test_a_new_database_gets_the_whole_schema(shared_url: str) -> None:
    store = await EventStore.open(shared_url)
    try:
        assert {"records", "eventstore_schema"} <= await _tables(store)
        async with store._engine.connect() as conn:
            versions = [
                r[0]
                for r in await conn.execute(
                    text("SELECT version FROM eventstore_schema ORDER BY version")
                )
            ]
        assert versions == list(range(1, SCHEMA_VERSION + 1))
    finally:
        await store.close()
    reopened = await EventStore.open(shared_url)  # opening again changes nothing
    await reopened.close()


async def _make_old_database(url: str) -> None:
    store = EventStore(url)
    async with store._write_connection() as conn, conn.begin():
        await apply_migrations(conn, store._dialect.name, lambda: datetime.now(UTC), upto=1)
    await store._engine.dispose()


async def test_an_older_schema_is_refused_until_migrated_explicitly(shared_url: str) -> None:
    await _make_old_database(shared_url)
    with pytest.raises(SchemaOutdatedError, match=r"version 1 is older.*orchestrator migrate"):
        await EventStore.open(shared_url)
    store = await EventStore.open(shared_url, migrate=True)
    try:
        await store.append("s", [NewRecord("event", "t", {})], NO_STREAM)
        with pytest.raises(Exception, match="immutable"):
            async with store._engine.begin() as conn:
                await conn.execute(text("DELETE FROM records"))
    finally:
        await store.close()
    again = await EventStore.open(shared_url)
    await again.close()


async def test_a_newer_schema_is_refused(shared_url: str) -> None:
    store = await EventStore.open(shared_url)
    async with store._engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO eventstore_schema (version, description, applied_at) "
                "VALUES (99, 'from the future', '2099-01-01')"
            )
        )
    await store.close()
    for migrate in (False, True):
        with pytest.raises(SchemaTooNewError, match="99 is newer"):
            await EventStore.open(shared_url, migrate=migrate)


async def test_a_foreign_records_table_is_refused(shared_url: str) -> None:
    store = EventStore(shared_url)
    async with store._engine.begin() as conn:
        await conn.execute(text("CREATE TABLE records (id INTEGER)"))
    await store._engine.dispose()
    with pytest.raises(SchemaError, match="not created by the event store"):
        await EventStore.open(shared_url)
