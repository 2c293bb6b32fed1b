"""Read-only opening never creates, migrates or writes: not a missing file, not an empty
one, not a foreign database; a store of the previous schema is read as it is; and the
explicit migration links its records into the store-wide chain."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from eventstore import (
    NO_STREAM,
    EventStore,
    EventStoreError,
    NewRecord,
    SchemaError,
    SchemaOutdatedError,
    StorageError,
)
from tests.servers import PostgresServer

OLD_STORE = Path(__file__).resolve().parents[1] / "audit" / "stores" / "demo-0.1.sqlite"


def _listing(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


async def test_a_missing_file_is_an_error_and_stays_missing(tmp_path: Path) -> None:
    with pytest.raises(EventStoreError, match=r"no event store at .*typo\.sqlite.*does not exist"):
        await EventStore.open(f"sqlite:///{tmp_path / 'typo.sqlite'}", read_only=True)
    assert _listing(tmp_path) == {}
    with pytest.raises(EventStoreError, match="is not a file"):
        await EventStore.open(f"sqlite:///{tmp_path}", read_only=True)
    with pytest.raises(EventStoreError, match="in-memory"):
        await EventStore.open("sqlite:///:memory:", read_only=True)


@pytest.mark.parametrize(
    ("content", "error", "message"),
    [
        (b"", SchemaError, "is not an event store"),
        (b"not a database, just text" * 20, StorageError, "file is not a database"),
    ],
)
async def test_an_empty_or_foreign_file_is_an_error_and_stays_as_it_was(
    tmp_path: Path, content: bytes, error: type[Exception], message: str
) -> None:
    path = tmp_path / "store.sqlite"
    path.write_bytes(content)
    with pytest.raises(error, match=message):
        await EventStore.open(f"sqlite:///{path}", read_only=True)
    assert _listing(tmp_path) == {"store.sqlite": content}


async def test_a_foreign_sqlite_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE invoices (id INTEGER)")
    before = _listing(tmp_path)
    with pytest.raises(SchemaError, match="not an event store"):
        await EventStore.open(f"sqlite:///{path}", read_only=True)
    assert _listing(tmp_path) == before


async def test_reading_a_closed_store_leaves_every_file_as_it_was(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.sqlite'}"
    store = await EventStore.open(url)
    await store.append("a", [NewRecord("event", "t", {"n": 1})], NO_STREAM)
    await store.close()
    before = _listing(tmp_path)
    reader = await EventStore.open(url, read_only=True)
    try:
        assert (await reader.verify()).ok
        assert [r.data for r in await reader.read_stream("a")] == [{"n": 1}]
    finally:
        await reader.close()
    assert _listing(tmp_path) == before  # no -wal, no -shm, not a byte changed


async def test_a_store_in_use_is_read_through_its_wal(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.sqlite'}"
    writer = await EventStore.open(url)
    try:
        await writer.append("a", [NewRecord("event", "t", {"n": 1})], NO_STREAM)
        reader = await EventStore.open(url, read_only=True)
        try:
            await writer.append("a", [NewRecord("event", "t", {"n": 2})], 1)
            assert [r.data["n"] for r in await reader.read_stream("a")] == [1, 2]
            assert (await reader.verify()).ok
        finally:
            await reader.close()
    finally:
        await writer.close()


async def test_postgresql_read_only_sessions_cannot_write(postgres_server: PostgresServer) -> None:
    url = postgres_server.create_database("read_only_pg")
    store = await EventStore.open(url)
    await store.append("a", [NewRecord("event", "t", {"n": 1})], NO_STREAM)
    await store.close()
    reader = await EventStore.open(url, read_only=True)
    try:
        assert (await reader.verify()).ok
        with pytest.raises(DBAPIError, match="read-only transaction"):
            async with reader._engine.connect() as conn:
                await conn.execute(text("CREATE TABLE sneaky (id INTEGER)"))
    finally:
        await reader.close()


async def test_postgresql_without_a_store_is_refused(postgres_server: PostgresServer) -> None:
    empty = postgres_server.create_database("read_only_empty")
    with pytest.raises(SchemaError, match="not an event store"):
        await EventStore.open(empty, read_only=True)
    missing = empty.rsplit("/", 1)[0] + "/no_such_database"
    with pytest.raises(StorageError, match="no_such_database"):
        await EventStore.open(missing, read_only=True)
    store = await EventStore.open(empty)  # still empty: the refusal created nothing
    try:
        assert await store.last_position() == 0
    finally:
        await store.close()


async def test_the_previous_schema_is_read_as_it_is_then_migrated(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    shutil.copy(OLD_STORE, path)
    url = f"sqlite:///{path}"
    reader = await EventStore.open(url, read_only=True)
    try:
        assert reader.schema_version == 2
        report = await reader.verify()
        assert report.ok and report.records_checked == 52 and not report.log_chain
        assert all(r.log_hash == "" for r in await reader.read_all())
    finally:
        await reader.close()
    with pytest.raises(SchemaOutdatedError):
        await EventStore.open(url)  # writing needs the explicit migration
    migrated = await EventStore.open(url, migrate=True)
    try:
        report = await migrated.verify()
        assert report.ok and report.log_chain and report.records_checked == 52
        assert report.head is not None and len(report.head.log_hash) == 64
        appended = await migrated.append("after", [NewRecord("event", "t", {})], NO_STREAM)
        assert appended.last_position == 53
        assert (await migrated.verify()).ok
        with pytest.raises(DBAPIError, match="append-only"):
            async with migrated._engine.begin() as conn:
                await conn.execute(
                    text(
                        "INSERT INTO records SELECT 99, stream_id, 2, kind, type, data, "
                        "metadata, recorded_at, prev_hash, hash, log_hash FROM records "
                        "WHERE position = 53"
                    )
                )
    finally:
        await migrated.close()
