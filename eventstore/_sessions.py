"""Hot paths spoken straight to the async driver: the writer's batches and bulk reads.

Group commit spends its time in round trips: through SQLAlchemy's adapter each
statement costs several thread hops on aiosqlite (measured: 1.7 ms a 100-record batch
against 0.75 ms on the driver). The writer therefore keeps one dedicated connection,
checked out of SQLAlchemy's pool, and talks to its driver connection directly for the
four statements of a batch. Everything else (schema, migrations, reads) goes through
SQLAlchemy.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager, nullcontext, suppress
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ._canonical import LOG_GENESIS

if TYPE_CHECKING:
    from ._dialects import Dialect

Head = tuple[int, str]
"""A stream's last version and hash."""

_INSERT_COLUMNS = (
    "position, stream_id, version, kind, type, data, metadata, recorded_at, prev_hash, hash, "
    "log_hash"
)
_LOG_HEAD = "SELECT position, log_hash FROM records ORDER BY position DESC LIMIT 1"

LogHead = tuple[int, str]
"""The store's last position and its log hash (``(0, LOG_GENESIS)`` when empty)."""


class WriteConflict(Exception):
    """The database refused a batch as not extending a stream's chain (a uniqueness
    violation, or the append-only trigger): a head cache was stale."""


class DriverSession(Protocol):
    placeholder: str
    """``?`` or ``$``: how this driver numbers query parameters (see ``sql()``)."""

    def sql(self, template: str) -> str:
        """``template`` with each ``%s`` replaced by this driver's parameter marker."""

    async def fetch(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        """Rows of a read-only query, as plain tuples."""

    def transaction(self) -> Any:
        """An async context manager: BEGIN with the write lock; COMMIT, or ROLLBACK."""

    async def log_head(self) -> LogHead:
        """The store's last position and its log hash, inside the write lock."""

    async def heads(self, stream_ids: Sequence[str]) -> dict[str, Head]: ...

    async def insert(self, rows: list[tuple[Any, ...]]) -> None: ...


class WriterConnection:
    """The writer's dedicated connection, checked out of the pool once and kept.

    It is replaced after any failure but a ``WriteConflict``, and before use when the
    driver knows the server dropped it (a restart while the writer was idle): the first
    append after an outage reconnects rather than failing on a dead connection.
    """

    def __init__(self, engine: AsyncEngine, dialect: Dialect, gate: asyncio.Lock | None) -> None:
        self._engine = engine
        self._dialect = dialect
        self._gate = gate
        self._conn: AsyncConnection | None = None

    @asynccontextmanager
    async def session(self) -> AsyncIterator[DriverSession]:
        async with self._gate or nullcontext():
            conn = self._conn
            if conn is not None and self._dialect.connection_lost(
                (await conn.get_raw_connection()).driver_connection
            ):
                await self._drop()
            if self._conn is None:
                self._conn = await self._engine.connect()
            try:
                raw = await self._conn.get_raw_connection()
                yield self._dialect.driver_session(raw.driver_connection)
            except WriteConflict:
                raise
            except BaseException:
                await self._drop()
                raise

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with suppress(Exception):  # it may be dead already: the pool opens a new one
                await conn.invalidate()
                await conn.close()

    async def close(self) -> None:
        """Give the connection back to the pool."""
        conn, self._conn = self._conn, None
        if conn is not None:
            with suppress(Exception):  # one the server already dropped
                await conn.close()


def _heads_sql(count: int, placeholder: Iterable[str]) -> str:
    marks = ", ".join(placeholder)
    return (
        "SELECT r.stream_id, r.version, r.hash FROM records r JOIN ("
        f"SELECT stream_id, MAX(version) AS v FROM records WHERE stream_id IN ({marks}) "
        "GROUP BY stream_id) m ON r.stream_id = m.stream_id AND r.version = m.v"
    )


class SqliteSession:
    """aiosqlite, in autocommit mode: the session emits BEGIN IMMEDIATE itself."""

    placeholder = "?"

    def __init__(self, driver: Any) -> None:
        self._db = driver
        self._insert = f"INSERT INTO records ({_INSERT_COLUMNS}) VALUES ({', '.join('?' * 11)})"

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        await self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            await self._db.execute("ROLLBACK")
            raise
        await self._db.execute("COMMIT")

    def sql(self, template: str) -> str:
        return template.replace("%s", "?")

    async def fetch(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        return list(await self._db.execute_fetchall(sql, params))

    async def log_head(self) -> LogHead:
        async with self._db.execute(_LOG_HEAD) as cursor:
            row = await cursor.fetchone()
        return (0, LOG_GENESIS) if row is None else (int(row[0]), str(row[1]))

    async def heads(self, stream_ids: Sequence[str]) -> dict[str, Head]:
        sql = _heads_sql(len(stream_ids), ("?" for _ in stream_ids))
        async with self._db.execute(sql, tuple(stream_ids)) as cursor:
            return {sid: (int(v), str(h)) for sid, v, h in await cursor.fetchall()}

    async def insert(self, rows: list[tuple[Any, ...]]) -> None:
        try:
            await self._db.executemany(self._insert, rows)
        except sqlite3.IntegrityError as exc:
            raise WriteConflict(str(exc)) from exc


class PostgresSession:
    """asyncpg: a transaction holding an advisory lock, so positions follow commit order."""

    placeholder = "$"

    def __init__(self, driver: Any, lock_key: int) -> None:
        self._db = driver
        self._lock_key = lock_key
        # One statement a batch, its columns as arrays: the append-only trigger then
        # checks the batch once, set-based, rather than once a row.
        self._insert = (
            f"INSERT INTO records ({_INSERT_COLUMNS}) SELECT * FROM unnest("
            "$1::bigint[], $2::text[], $3::int[], $4::text[], $5::text[], $6::text[], "
            "$7::text[], $8::text[], $9::text[], $10::text[], $11::text[])"
        )

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        async with self._db.transaction():
            # Held until the commit is visible: position N+1 is never seen before N.
            await self._db.execute("SELECT pg_advisory_xact_lock($1)", self._lock_key)
            yield

    def sql(self, template: str) -> str:
        parts = template.split("%s")
        return parts[0] + "".join(f"${i}{part}" for i, part in enumerate(parts[1:], 1))

    async def fetch(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        return [tuple(row) for row in await self._db.fetch(sql, *params)]

    async def log_head(self) -> LogHead:
        row = await self._db.fetchrow(_LOG_HEAD)
        return (0, LOG_GENESIS) if row is None else (int(row[0]), str(row[1]))

    async def heads(self, stream_ids: Sequence[str]) -> dict[str, Head]:
        sql = _heads_sql(len(stream_ids), (f"${i}" for i in range(1, len(stream_ids) + 1)))
        rows = await self._db.fetch(sql, *stream_ids)
        return {row[0]: (int(row[1]), str(row[2])) for row in rows}

    async def insert(self, rows: list[tuple[Any, ...]]) -> None:
        import asyncpg

        columns = [list(column) for column in zip(*rows, strict=True)]
        try:
            await self._db.execute(self._insert, *columns)
        except asyncpg.IntegrityConstraintViolationError as exc:
            # 23505: UNIQUE(stream_id, version); 23000: the append-only trigger.
            if exc.sqlstate in ("23505", "23000"):
                raise WriteConflict(str(exc)) from exc
            raise
