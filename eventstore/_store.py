"""The event store: append, read, subscribe, verify, on SQLite or PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

import orjson
from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from ._dialects import SqliteSynchronous, create_engine
from ._errors import StorageError, StoreClosedError
from ._migrations import LATEST_VERSION, apply_migrations, check_version, schema_version
from ._records import AppendResult, ExpectedVersion, NewRecord, Record, StreamInfo
from ._schema import records
from ._sessions import DriverSession, WriteConflict
from ._validation import Limits, check_expected_version, check_stream_id, prepare_records
from ._verify import ChainVerifier, VerifyReport
from ._writer import GroupCommitWriter, PendingAppend, WriterStats

T = TypeVar("T")

_SELECT = (
    "SELECT position, stream_id, version, kind, type, data, metadata, recorded_at, "
    "prev_hash, hash FROM records"
)


def _loads(text: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:  # integers beyond 64 bits: the standard library has them
        return json.loads(text)


def _records(rows: Sequence[Sequence[Any]]) -> list[Record]:
    return [
        Record(p, s, v, k, t, _loads(d), _loads(m), at, prev, h)
        for (p, s, v, k, t, d, m, at, prev, h) in rows
    ]


def _utc_now() -> datetime:
    return datetime.now(UTC)


class EventStore:
    """Immutable, SHA-256-chained streams of records.

    Open one with ``await EventStore.open(url)`` and close it with ``await store.close()``
    (or ``async with await EventStore.open(url) as store``). URLs: ``sqlite:///PATH``
    (the embedded default), ``sqlite:///:memory:`` (tests), ``postgresql://…`` (scale).
    """

    def __init__(
        self,
        url: str,
        *,
        clock: Callable[[], datetime] = _utc_now,
        limits: Limits | None = None,
        sqlite_synchronous: SqliteSynchronous = "FULL",
        max_batch_records: int = 512,
    ) -> None:
        self.url = url
        self.limits = limits or Limits()
        self._clock = clock
        self._engine, self._dialect = create_engine(url, sqlite_synchronous=sqlite_synchronous)
        # A :memory: database is one connection: every use of it takes turns.
        self._gate: asyncio.Lock | None = asyncio.Lock() if self._dialect.in_memory else None
        self._committed = asyncio.Event()
        self._writer = GroupCommitWriter(
            self._write_session, clock, self._notify, max_batch_records=max_batch_records
        )
        self._writer_conn: AsyncConnection | None = None
        self._closed = False
        self._reads: set[asyncio.Future[Any]] = set()

    # -- life cycle -------------------------------------------------------------------

    @classmethod
    async def open(cls, url: str, *, migrate: bool = False, **options: Any) -> EventStore:
        """Open the store at ``url``, creating its schema in a new database.

        An existing database with an older schema is refused unless ``migrate=True``;
        one with a newer schema is always refused.
        """
        store = cls(url, **options)
        try:
            await store._prepare_schema(migrate=migrate)
        except BaseException:
            await store._engine.dispose()
            raise
        store._writer.start()
        return store

    async def _prepare_schema(self, *, migrate: bool) -> None:
        try:
            async with self._write_connection() as conn, conn.begin():
                await self._dialect.lock_for_write(conn)
                found = await schema_version(conn)
                if found is not None and not (migrate and found < LATEST_VERSION):
                    check_version(found, url=self.url)
                else:
                    await apply_migrations(conn, self._dialect.name, self._clock)
        except (OSError, DBAPIError) as exc:
            raise StorageError(f"cannot open the event store at {self.url}: {exc}") from exc

    async def close(self) -> None:
        """Write every append already accepted, then release the database."""
        if self._closed:
            return
        self._closed = True
        await self._writer.close()
        if self._reads:
            await asyncio.gather(*self._reads, return_exceptions=True)
        if self._writer_conn is not None:
            await self._writer_conn.close()
        self._notify()
        await self._engine.dispose()

    async def __aenter__(self) -> EventStore:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[AsyncConnection]:
        if self._closed:
            raise StoreClosedError("the event store is closed")
        if self._gate is None:
            async with self._engine.connect() as conn:
                yield conn
        else:
            async with self._gate, self._engine.connect() as conn:
                yield conn

    @asynccontextmanager
    async def _write_connection(self) -> AsyncIterator[AsyncConnection]:
        gate = self._gate or _NO_GATE
        async with gate, self._engine.connect() as conn:
            await conn.execution_options(eventstore_write=True)
            yield conn

    @property
    def stats(self) -> WriterStats:
        """What the writer has committed so far (appends, records, transactions)."""
        return self._writer.stats

    @asynccontextmanager
    async def _write_session(self) -> AsyncIterator[DriverSession]:
        """The writer's dedicated connection, reconnected after a failure."""
        gate = self._gate or _NO_GATE
        async with gate:
            if self._writer_conn is None:
                self._writer_conn = await self._engine.connect()
            conn = self._writer_conn
            try:
                raw = await conn.get_raw_connection()
                yield self._dialect.driver_session(raw.driver_connection)
            except WriteConflict:
                raise
            except BaseException:
                self._writer_conn = None
                await conn.invalidate()
                await conn.close()
                raise

    def _notify(self) -> None:
        self._committed.set()
        self._committed = asyncio.Event()

    # -- writing ----------------------------------------------------------------------

    async def append(
        self, stream_id: str, records: Sequence[NewRecord], expected_version: ExpectedVersion
    ) -> AppendResult:
        """Append ``records`` to ``stream_id`` atomically, if its version is as expected.

        ``expected_version``: ``"any"``, ``"no_stream"`` (or ``0``), or the exact version of
        the stream's last record. Raises ``ConcurrencyError`` when it does not match and
        ``InvalidRecordError`` for bad input; in both cases nothing is written.
        """
        check_stream_id(stream_id, self.limits)
        expected = check_expected_version(expected_version)
        prepared = prepare_records(stream_id, records, self.limits)
        loop = asyncio.get_running_loop()
        pending = PendingAppend(
            stream_id,
            json.dumps(stream_id, ensure_ascii=False),
            prepared,
            expected,
            loop.create_future(),
        )
        return await self._writer.submit(pending)

    # -- reading ----------------------------------------------------------------------

    async def read_stream(
        self, stream_id: str, from_version: int = 1, limit: int | None = None
    ) -> list[Record]:
        """The records of ``stream_id`` from ``from_version`` on, in version order."""
        sql = _SELECT + " WHERE stream_id = %s AND version >= %s ORDER BY version"
        params: tuple[Any, ...] = (stream_id, from_version)
        if limit is not None:
            sql, params = sql + " LIMIT %s", (*params, limit)
        return await self._fetch_records(sql, params)

    async def read_all(
        self,
        after_position: int = 0,
        limit: int = 1000,
        *,
        types: Collection[str] | None = None,
    ) -> list[Record]:
        """Records of every stream after ``after_position``, in commit order.

        ``types`` keeps only records of those types (a projection that needs few).
        """
        sql = _SELECT + " WHERE position > %s"
        params: list[Any] = [after_position]
        if types is not None:
            wanted = sorted(set(types))
            if not wanted:
                return []
            sql += f" AND type IN ({', '.join('%s' for _ in wanted)})"
            params += wanted
        return await self._fetch_records(sql + " ORDER BY position LIMIT %s", (*params, limit))

    async def _read(self, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        """Run ``work`` on a pooled connection, shielded from the caller's cancellation.

        A query cancelled half-way leaves its driver connection to be torn down (asyncpg
        waits for the server to confirm the cancel; seconds, measured): so a cancelled
        reader gets its CancelledError at once, while its query finishes in the
        background and the connection goes back to the pool clean.
        """

        async def run() -> T:
            async with self._connection() as conn:
                return await work(conn)

        task = asyncio.ensure_future(run())
        self._reads.add(task)
        task.add_done_callback(self._reads.discard)
        return await asyncio.shield(task)

    async def _fetch_records(self, template: str, params: tuple[Any, ...]) -> list[Record]:
        # Straight to the driver: for bulk reads SQLAlchemy's row processing costs more
        # than the decoding we must do anyway.
        async def fetch(conn: AsyncConnection) -> list[Record]:
            raw = await conn.get_raw_connection()
            session = self._dialect.driver_session(raw.driver_connection)
            return _records(await session.fetch(session.sql(template), *params))

        return await self._read(fetch)

    async def _scalar(self, query: Any) -> int:
        async def run(conn: AsyncConnection) -> int:
            return int((await conn.execute(query)).scalar_one() or 0)

        return await self._read(run)

    async def stream_version(self, stream_id: str) -> int:
        """The version of the stream's last record; 0 when the stream does not exist."""
        return await self._scalar(
            select(func.max(records.c.version)).where(records.c.stream_id == stream_id)
        )

    async def last_position(self) -> int:
        """The position of the last record committed; 0 for an empty store."""
        return await self._scalar(select(func.max(records.c.position)))

    async def streams(
        self, prefix: str = "", *, after: str = "", limit: int = 1000
    ) -> list[StreamInfo]:
        """The streams whose id starts with ``prefix``, in id order, after ``after``.

        Each with its version and the type of its last record. Page with
        ``after=page[-1].stream_id``.
        """
        heads = (
            select(records.c.stream_id, func.max(records.c.version).label("version"))
            .where(records.c.stream_id > after)
            .group_by(records.c.stream_id)
        )
        if prefix:
            escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            heads = heads.where(records.c.stream_id.like(escaped + "%", escape="\\"))
        latest = heads.subquery()
        query = (
            select(records.c.stream_id, records.c.version, records.c.type)
            .join(
                latest,
                (records.c.stream_id == latest.c.stream_id)
                & (records.c.version == latest.c.version),
            )
            .order_by(records.c.stream_id)
            .limit(limit)
        )

        async def run(conn: AsyncConnection) -> list[StreamInfo]:
            return [StreamInfo(row[0], int(row[1]), row[2]) for row in await conn.execute(query)]

        return await self._read(run)

    async def subscribe(
        self,
        after_position: int = 0,
        *,
        types: Collection[str] | None = None,
        batch_size: int = 500,
        poll_interval: float = 0.25,
    ) -> AsyncIterator[Record]:
        """Every record after ``after_position``: first the history, then live, forever.

        Resuming from the position of the last record handled gives no gap and no
        duplicate. Appends by this store wake it at once; other processes' appends are
        seen within ``poll_interval`` seconds.
        """
        position = after_position
        while True:
            committed = self._committed
            page = await self.read_all(position, batch_size, types=types)
            for record in page:
                yield record
                position = record.position
            if len(page) < batch_size:
                if self._closed:
                    return
                # asyncio.wait, not wait_for: on Python 3.11 wait_for can swallow a
                # cancellation that arrives as the event fires, and the reader lives on.
                waiter = asyncio.ensure_future(committed.wait())
                try:
                    await asyncio.wait({waiter}, timeout=poll_interval)
                finally:
                    waiter.cancel()

    # -- verifying --------------------------------------------------------------------

    async def verify(self, stream_id: str | None = None, *, page_size: int = 2000) -> VerifyReport:
        """Recompute the hash chain of one stream, or of the whole store in commit order.

        Over the whole store positions must also run 1, 2, 3 … with no gap (the writer
        assigns them so), which catches a deleted record at the end of its stream. Reads
        ``page_size`` records at a time; the report's ``head`` is the last record that
        verified.
        """
        if page_size < 1:
            raise ValueError(f"page_size must be at least 1, not {page_size}")
        verifier = ChainVerifier(contiguous=stream_id is None)
        after = 0  # a position over the whole store, a version in one stream
        while True:
            if stream_id is None:
                page = await self.read_all(after, page_size)
            else:
                page = await self.read_stream(stream_id, after + 1, page_size)
            for record in page:
                if not verifier.feed(record):
                    return verifier.report()
            if len(page) < page_size:
                return verifier.report()
            after = page[-1].position if stream_id is None else page[-1].version


class _NoGate:
    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *exc_info: object) -> None:
        return None


_NO_GATE = _NoGate()
