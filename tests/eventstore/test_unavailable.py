"""Which failures mean "the database cannot be reached", and what the writer says about
the appends such a failure caught: nothing written, or (the connection lost during
COMMIT) perhaps written, in which case a retry at the same expected version is refused.

The writer runs here on an in-memory fake of its driver session, to fail exactly where
a test needs; tests/eventstore/test_outage.py does the same against a real crash.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from sqlalchemy.exc import DBAPIError

from eventstore import (
    LOG_GENESIS,
    AppendResult,
    ConcurrencyError,
    NewRecord,
    StorageError,
    StoreUnavailableError,
)
from eventstore._dialects import Dialect
from eventstore._sessions import DriverSession, Head
from eventstore._validation import Limits, prepare_records
from eventstore._writer import GroupCommitWriter, PendingAppend

POSTGRES, SQLITE = Dialect("postgresql", in_memory=False), Dialect("sqlite", in_memory=False)


def _wrapped(error: BaseException) -> DBAPIError:
    """As SQLAlchemy raises a driver error: ``orig`` is the adapter's, caused by it."""
    adapted = RuntimeError(f"{type(error)}: {error}")
    adapted.__cause__ = error
    return DBAPIError("SELECT 1", None, adapted)


OUTAGES: list[BaseException] = [
    ConnectionRefusedError(111, "Connect call failed"),
    ConnectionResetError(104, "Connection reset by peer"),
    TimeoutError(),
    asyncpg.exceptions.CannotConnectNowError("the database system is starting up"),
    asyncpg.exceptions.CannotConnectNowError("the database system is shutting down"),
    asyncpg.exceptions.AdminShutdownError("terminating connection due to administrator command"),
    asyncpg.exceptions.CrashShutdownError("terminating connection because of crash"),
    asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed in the middle"),
    asyncpg.exceptions.ConnectionFailureError("connection failure"),
    asyncpg.InterfaceError("connection is closed"),
    asyncpg.InterfaceError("cannot perform operation: connection is closed"),
    asyncpg.InternalClientError("cannot switch to state 12; another operation (2) is in progress"),
    _wrapped(asyncpg.exceptions.CannotConnectNowError("the database system is starting up")),
    _wrapped(asyncpg.InterfaceError("connection is closed")),
]

NOT_OUTAGES: list[BaseException] = [
    asyncpg.exceptions.UniqueViolationError("duplicate key value"),
    asyncpg.exceptions.UndefinedTableError('relation "records" does not exist'),
    asyncpg.InterfaceError("cannot perform operation: another operation is in progress"),
    _wrapped(asyncpg.exceptions.SyntaxOrAccessError("syntax error")),
    ValueError("bad input"),
]


@pytest.mark.parametrize("error", OUTAGES, ids=repr)
def test_connection_level_failures_are_outages_on_postgres(error: BaseException) -> None:
    assert POSTGRES.unavailable(error)
    assert not SQLITE.unavailable(error)  # a SQLite file has no server to lose


@pytest.mark.parametrize("error", NOT_OUTAGES, ids=repr)
def test_other_failures_are_not(error: BaseException) -> None:
    assert not POSTGRES.unavailable(error)


def test_a_locked_sqlite_database_is_not_an_outage() -> None:
    locked = sqlite3.OperationalError("database is locked")
    assert not SQLITE.unavailable(locked)
    assert not SQLITE.unavailable(_wrapped(locked))


def test_the_error_names_the_operation_and_its_cause() -> None:
    cause = ConnectionRefusedError(111, "Connect call failed")
    error = StoreUnavailableError("read_all", cause)
    assert isinstance(error, StorageError) and error.__cause__ is cause
    assert error.operation == "read_all"
    assert str(error) == (
        "read_all failed: the database is unavailable "
        "(ConnectionRefusedError: [Errno 111] Connect call failed)"
    )
    assert str(StoreUnavailableError("x", TimeoutError(), "nothing was written")) == (
        "x failed: the database is unavailable (TimeoutError); nothing was written"
    )


# -- the writer, on a fake session --------------------------------------------------------


class FakeDatabase:
    """Rows by stream; fails the next transaction at ``fail_at`` ("begin" or "commit")."""

    def __init__(self) -> None:
        self.rows: list[tuple[Any, ...]] = []
        self.fail_at: str | None = None

    @asynccontextmanager
    async def session(self) -> AsyncIterator[DriverSession]:
        yield FakeSession(self)  # type: ignore[misc]


class FakeSession:
    placeholder = "?"

    def __init__(self, db: FakeDatabase) -> None:
        self._db = db
        self._staged: list[tuple[Any, ...]] = []

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        fail, self._db.fail_at = self._db.fail_at, None
        if fail == "begin":
            raise ConnectionRefusedError(111, "Connect call failed")
        yield
        self._db.rows += self._staged  # committed ...
        if fail == "commit":  # ... but the answer never came back
            raise asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed")

    async def log_head(self) -> tuple[int, str]:
        rows = self._db.rows
        return (len(rows), rows[-1][10]) if rows else (0, LOG_GENESIS)

    async def heads(self, stream_ids: Sequence[str]) -> dict[str, Head]:
        found: dict[str, Head] = {}
        for row in self._db.rows:
            if row[1] in stream_ids:
                found[row[1]] = (row[2], row[9])
        return found

    async def insert(self, rows: list[tuple[Any, ...]]) -> None:
        self._staged += rows


async def _writer(db: FakeDatabase) -> GroupCommitWriter:
    writer = GroupCommitWriter(
        db.session, lambda: datetime(2026, 1, 1, tzinfo=UTC), lambda: None, POSTGRES.unavailable
    )
    writer.start()
    return writer


def _append(writer: GroupCommitWriter, stream: str, n: int, expected: Any) -> Any:
    prepared = prepare_records(stream, [NewRecord("event", "t", {"n": n})], Limits())
    future = asyncio.get_running_loop().create_future()
    return writer.submit(PendingAppend(stream, f'"{stream}"', prepared, expected, future))


async def test_an_append_that_never_reached_commit_was_not_written() -> None:
    db = FakeDatabase()
    writer = await _writer(db)
    await _append(writer, "s", 0, 0)
    db.fail_at = "begin"
    with pytest.raises(StoreUnavailableError, match="nothing was written") as caught:
        await _append(writer, "s", 1, 1)
    assert caught.value.operation == "append to 's'"
    assert isinstance(await _append(writer, "s", 1, 1), AppendResult)  # the writer lives on
    assert [row[2] for row in db.rows] == [1, 2]
    await writer.close()


async def test_after_a_lost_commit_a_blind_retry_cannot_write_twice() -> None:
    db = FakeDatabase()
    writer = await _writer(db)
    await _append(writer, "s", 0, 0)
    db.fail_at = "commit"
    with pytest.raises(StoreUnavailableError, match="may have been written"):
        await _append(writer, "s", 1, 1)
    with pytest.raises(ConcurrencyError) as caught:  # the same expected version again
        await _append(writer, "s", 1, 1)
    assert caught.value.actual == 2
    assert [row[2] for row in db.rows] == [1, 2]  # version 2 once, from the lost commit
    await writer.close()


async def test_appends_queued_behind_an_outage_fail_with_it() -> None:
    db = FakeDatabase()
    writer = await _writer(db)
    db.fail_at = "begin"
    outcomes = await asyncio.gather(
        *(_append(writer, f"q{i}", i, "no_stream") for i in range(2000)),  # several batches
        return_exceptions=True,
    )
    assert all(isinstance(o, StoreUnavailableError) for o in outcomes)
    assert db.rows == []
    assert isinstance(await _append(writer, "q0", 0, "no_stream"), AppendResult)
    await writer.close()
