"""The event store: append, read, subscribe, verify, on SQLite or PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Sequence
from contextlib import asynccontextmanager, nullcontext, suppress
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from ._checkpoints import CheckpointSigner, PublicKeys
from ._dialects import SqliteSynchronous, create_engine
from ._errors import (
    EventStoreError,
    ReadOnlyError,
    SchemaError,
    StorageError,
    StoreClosedError,
    StoreUnavailableError,
)
from ._migrations import LATEST_VERSION, apply_migrations, check_version, schema_version
from ._port import StoreHealth
from ._records import (
    AppendResult,
    ExpectedVersion,
    NewRecord,
    Record,
    StreamInfo,
    records_from_rows,
)
from ._schema import records, stream_heads
from ._sessions import WriterConnection
from ._subscription import CommitSignal, follow
from ._validation import Limits, check_expected_version, check_stream_id, prepare_records
from ._verify import ChainVerifier, NotedHead, VerifyReport
from ._verify_reads import verify_rows
from ._writer import GroupCommitWriter, PendingAppend, WriterStats

T = TypeVar("T")
logger = logging.getLogger("eventstore")

_COLUMNS = "position, stream_id, version, kind, type, data, metadata, recorded_at, prev_hash, hash"


def _utc_now() -> datetime:
    return datetime.now(UTC)


class EventStore:
    """Immutable, SHA-256-chained streams of records.

    Open one with ``await EventStore.open(url)`` and close it with ``await store.close()``
    (or ``async with await EventStore.open(url) as store``). URLs: ``sqlite:///PATH``
    (the embedded default), ``sqlite:///:memory:`` (tests), ``postgresql://…`` (scale).

    Through an outage of the database every operation fails fast with
    ``StoreUnavailableError``; the next one after the server is back reconnects.

    ``read_only=True`` opens an existing store to read and verify it: nothing is created,
    migrated or written (a missing or foreign database is an ``EventStoreError``). With a
    ``signer`` the store appends a signed checkpoint of its head every
    ``checkpoint_every`` records it writes, when records have waited
    ``checkpoint_interval`` seconds unsigned, and when it closes (docs/CHAIN.md).
    """

    def __init__(
        self,
        url: str,
        *,
        clock: Callable[[], datetime] = _utc_now,
        limits: Limits | None = None,
        sqlite_synchronous: SqliteSynchronous = "FULL",
        max_batch_records: int = 512,
        connect_timeout: float = 10.0,
        read_only: bool = False,
        signer: CheckpointSigner | None = None,
        checkpoint_every: int = 1000,
        checkpoint_interval: float = 60.0,
    ) -> None:
        if checkpoint_every < 1 or checkpoint_interval <= 0:
            raise ValueError("need checkpoint_every >= 1 and checkpoint_interval > 0")
        if read_only and signer is not None:
            raise ValueError("a read-only store cannot sign checkpoints")
        self.url = url
        self.limits = limits or Limits()
        self.read_only = read_only
        self._clock = clock
        self._engine, self._dialect = create_engine(
            url,
            sqlite_synchronous=sqlite_synchronous,
            connect_timeout=connect_timeout,
            read_only=read_only,
        )
        self._schema = LATEST_VERSION
        self._select = f"SELECT {_COLUMNS}, log_hash FROM records"
        # A :memory: database is one connection: every use of it takes turns.
        self._gate: asyncio.Lock | None = asyncio.Lock() if self._dialect.in_memory else None
        self._commits = CommitSignal()
        self._writer_conn = WriterConnection(self._engine, self._dialect, self._gate)
        self._writer = GroupCommitWriter(
            self._writer_conn.session,
            clock,
            self._commits.notify,
            self._dialect.unavailable,
            max_batch_records=max_batch_records,
            signer=signer,
            checkpoint_every=checkpoint_every,
            checkpoint_interval=checkpoint_interval,
        )
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
            if store.read_only:
                await store._check_schema()
            else:
                await store._prepare_schema(migrate=migrate)
        except BaseException:
            await store._engine.dispose()
            raise
        if not store.read_only:
            store._writer.start()
        return store

    async def _check_schema(self) -> None:
        """Read-only: the database must hold a store this code can read."""
        try:
            async with self._connection() as conn:
                found = await schema_version(conn)
        except EventStoreError:
            raise
        except Exception as exc:
            if self._dialect.unavailable(exc):
                raise StoreUnavailableError("opening the event store", exc) from exc
            reason = getattr(exc, "orig", None) or exc
            raise StorageError(f"cannot read an event store at {self.url}: {reason}") from exc
        if found is None:
            raise SchemaError(
                f"{self.url} is not an event store: it has no eventstore_schema table"
            )
        if found > LATEST_VERSION:
            check_version(found, url=self.url)
        self._schema = found
        if found < 3:  # before the store-wide chain
            self._select = f"SELECT {_COLUMNS}, '' AS log_hash FROM records"

    @property
    def schema_version(self) -> int:
        """The schema version of the database (older ones are readable read-only)."""
        return self._schema

    async def _prepare_schema(self, *, migrate: bool) -> None:
        try:
            async with self._write_connection() as conn, conn.begin():
                await self._dialect.lock_for_write(conn)
                found = await schema_version(conn)
                if found is not None and not (migrate and found < LATEST_VERSION):
                    check_version(found, url=self.url)
                else:
                    await apply_migrations(conn, self._dialect.name, self._clock)
        except Exception as exc:
            if self._dialect.unavailable(exc):
                raise StoreUnavailableError("opening the event store", exc) from exc
            if isinstance(exc, OSError | DBAPIError):
                raise StorageError(f"cannot open the event store at {self.url}: {exc}") from exc
            raise

    async def close(self) -> None:
        """Write every append already accepted, then release the database."""
        if self._closed:
            return
        self._closed = True
        await self._writer.close()
        if self._reads:
            await asyncio.gather(*self._reads, return_exceptions=True)
        await self._writer_conn.close()
        self._commits.notify()
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
        async with self._gate or nullcontext(), self._engine.connect() as conn:
            await conn.execution_options(eventstore_write=True)
            yield conn

    @property
    def stats(self) -> WriterStats:
        """What the writer has committed so far (appends, records, transactions)."""
        return self._writer.stats

    # -- writing ----------------------------------------------------------------------

    async def append(
        self, stream_id: str, records: Sequence[NewRecord], expected_version: ExpectedVersion
    ) -> AppendResult:
        """Append ``records`` to ``stream_id`` atomically, if its version is as expected.

        ``expected_version``: ``"any"``, ``"no_stream"`` (or ``0``), or the exact version of
        the stream's last record. Raises ``ConcurrencyError`` when it does not match and
        ``InvalidRecordError`` for bad input; in both cases nothing is written.
        """
        if self.read_only:
            raise ReadOnlyError(f"the store at {self.url} was opened read-only")
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
        sql = self._select + " WHERE stream_id = %s AND version >= %s ORDER BY version"
        params: tuple[Any, ...] = (stream_id, from_version)
        if limit is not None:
            sql, params = sql + " LIMIT %s", (*params, limit)
        return await self._fetch_records(f"read_stream({stream_id!r})", sql, params)

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
        sql = self._select + " WHERE position > %s"
        params: list[Any] = [after_position]
        if types is not None:
            wanted = sorted(set(types))
            if not wanted:
                return []
            sql += f" AND type IN ({', '.join('%s' for _ in wanted)})"
            params += wanted
        query = sql + " ORDER BY position LIMIT %s"
        return await self._fetch_records("read_all", query, (*params, limit))

    async def _read(self, what: str, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        """Run ``work`` on a pooled connection, shielded from the caller's cancellation.

        A query cancelled half-way leaves its driver connection to be torn down (asyncpg
        waits for the server to confirm the cancel; seconds, measured): so a cancelled
        reader gets its CancelledError at once, while its query finishes in the
        background and the connection goes back to the pool clean. A connection the
        server dropped is invalidated, never returned to the pool, and the failure is a
        ``StoreUnavailableError`` naming ``what``.
        """

        async def run() -> T:
            async with self._connection() as conn:
                try:
                    return await work(conn)
                except Exception as exc:
                    if self._dialect.unavailable(exc):
                        with suppress(Exception):
                            await conn.invalidate()
                    raise

        task = asyncio.ensure_future(run())
        self._reads.add(task)
        task.add_done_callback(self._reads.discard)
        try:
            return await asyncio.shield(task)
        except Exception as exc:
            if self._dialect.unavailable(exc):
                raise StoreUnavailableError(what, exc) from exc
            raise

    async def _fetch_rows(
        self, what: str, template: str, params: tuple[Any, ...]
    ) -> list[tuple[Any, ...]]:
        # Straight to the driver: for bulk reads SQLAlchemy's row processing costs more
        # than the decoding we must do anyway.
        async def fetch(conn: AsyncConnection) -> list[tuple[Any, ...]]:
            raw = await conn.get_raw_connection()
            session = self._dialect.driver_session(raw.driver_connection)
            return await session.fetch(session.sql(template), *params)

        return await self._read(what, fetch)

    async def _fetch_records(
        self, what: str, template: str, params: tuple[Any, ...]
    ) -> list[Record]:
        return records_from_rows(await self._fetch_rows(what, template, params))

    async def _scalar(self, what: str, query: Any) -> int:
        async def run(conn: AsyncConnection) -> int:
            return int((await conn.execute(query)).scalar_one() or 0)

        return await self._read(what, run)

    async def stream_version(self, stream_id: str) -> int:
        """The version of the stream's last record; 0 when the stream does not exist."""
        return await self._scalar(
            f"stream_version({stream_id!r})",
            select(func.max(records.c.version)).where(records.c.stream_id == stream_id),
        )

    async def last_position(self) -> int:
        """The position of the last record committed; 0 for an empty store."""
        return await self._scalar("last_position", select(func.max(records.c.position)))

    async def streams(
        self, prefix: str = "", *, after: str = "", limit: int = 1000
    ) -> list[StreamInfo]:
        """The streams whose id starts with ``prefix``, in id order, after ``after``.

        Each with its version and the type of its last record. Page with
        ``after=page[-1].stream_id``.
        """
        query = stream_heads(prefix, after, limit)

        async def run(conn: AsyncConnection) -> list[StreamInfo]:
            return [StreamInfo(row[0], int(row[1]), row[2]) for row in await conn.execute(query)]

        return await self._read("streams", run)

    async def health(self, timeout: float = 5.0) -> StoreHealth:
        """Whether the database answers ``SELECT 1`` within ``timeout`` seconds.

        ``{"status": "ok" | "unavailable", "latency_ms": …, "error": None | "why"}``;
        it never raises (a closed store is ``"unavailable"`` too).
        """
        started = time.perf_counter()

        async def probe(conn: AsyncConnection) -> None:
            await conn.execute(text("SELECT 1"))

        error: str | None = None
        try:
            async with asyncio.timeout(timeout):
                await self._read("health", probe)
        except TimeoutError:
            error = f"no answer within {timeout} s"
        except Exception as exc:  # a health check reports, it does not raise
            error = f"{type(exc).__name__}: {exc}"
        latency_ms = round((time.perf_counter() - started) * 1000.0, 3)
        return {
            "status": "ok" if error is None else "unavailable",
            "latency_ms": latency_ms,
            "error": error,
        }

    def subscribe(
        self,
        after_position: int = 0,
        *,
        types: Collection[str] | None = None,
        batch_size: int = 500,
        poll_interval: float = 0.25,
        retry_delay: float = 0.1,
        max_retry_delay: float = 5.0,
    ) -> AsyncIterator[Record]:
        """Every record after ``after_position``: first the history, then live, forever.

        Resuming from the position of the last record handled gives no gap and no
        duplicate. Appends by this store wake it at once; other processes' appends are
        seen within ``poll_interval`` seconds. While the database is unavailable it
        retries from the last record it yielded, waiting ``retry_delay`` seconds and
        doubling up to ``max_retry_delay`` (each wait jittered down by up to half); it
        logs a warning when an outage begins and an info when it resumes.
        """
        if not 0 < retry_delay <= max_retry_delay:
            raise ValueError("need 0 < retry_delay <= max_retry_delay")
        return follow(
            self.read_all,
            self._commits,
            lambda: self._closed,
            after_position,
            types=types,
            batch_size=batch_size,
            poll_interval=poll_interval,
            retry_delay=retry_delay,
            max_retry_delay=max_retry_delay,
        )

    # -- verifying --------------------------------------------------------------------

    async def verify(
        self,
        stream_id: str | None = None,
        *,
        page_size: int = 2000,
        keys: PublicKeys | None = None,
        sealed: bool = False,
        against: NotedHead | None = None,
    ) -> VerifyReport:
        """Recompute the chains of one stream, or of the whole store in commit order.

        Reads the records exactly as stored, ``page_size`` at a time; the report's
        ``first_broken`` names the first record that does not verify, and ``head`` the
        last that did. Over the whole store: positions must run 1, 2, 3 … with no gap
        and the store-wide chain must hold; ``keys`` checks every checkpoint's
        signature, ``sealed`` requires a checkpoint after the last record, ``against``
        requires the store to still hold that noted head. One stream is checked with its
        records' neighbours in commit order. docs/CHAIN.md says what each finds.
        """
        whole = stream_id is None
        log_chain = self._schema >= 3
        verifier = ChainVerifier(
            contiguous=whole,
            log_chain=log_chain,
            keys=keys,
            sealed=sealed and whole,
            against=against if whole else None,
        )

        async def fetch(template: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
            return await self._fetch_rows("verify", template, params)

        return await verify_rows(
            fetch, verifier, stream_id=stream_id, log_chain=log_chain, page_size=page_size
        )

    async def checkpoint(self) -> AppendResult:
        """Append a signed checkpoint of the store's head now (needs a ``signer``)."""
        if self.read_only:
            raise ReadOnlyError(f"the store at {self.url} was opened read-only")
        return await self._writer.checkpoint()
