"""What differs between SQLite and PostgreSQL: URLs, connection set-up, the write lock,
and which driver errors mean the database cannot be reached."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import event, make_url, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool

from ._errors import EventStoreError
from ._sessions import DriverSession, PostgresSession, SqliteSession

SqliteSynchronous = Literal["OFF", "NORMAL", "FULL", "EXTRA"]

# Any fixed 64-bit key: every writer of one PostgreSQL database takes this lock.
_PG_WRITE_LOCK_KEY = 0x5A6A_E0E5

# SQLSTATEs of an unreachable server besides class 08 (connection exception): admin
# shutdown, crash shutdown, cannot connect now (starting up, shutting down, recovering).
_PG_UNAVAILABLE = frozenset({"57P01", "57P02", "57P03"})
_CLOSED = ("connection is closed", "connection was closed")


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc``, then what it wraps: SQLAlchemy's ``orig``, then ``__cause__`` links."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen and len(seen) < 8:
        seen.add(id(current))
        yield current
        orig = getattr(current, "orig", None)
        current = orig if isinstance(orig, BaseException) else current.__cause__


@dataclass(frozen=True)
class Dialect:
    name: Literal["sqlite", "postgresql"]
    in_memory: bool
    """A SQLite ``:memory:`` database: one connection, every use serialised."""

    def driver_session(self, driver_connection: Any) -> DriverSession:
        """The group-commit writer's statements on this database's driver connection."""
        if self.name == "postgresql":
            return PostgresSession(driver_connection, _PG_WRITE_LOCK_KEY)
        return SqliteSession(driver_connection)

    async def lock_for_write(self, conn: AsyncConnection) -> None:
        """Serialise writers, so global positions are assigned in commit order.

        SQLite: the ``BEGIN IMMEDIATE`` of a write connection already holds the database's
        write lock. PostgreSQL: a transaction-scoped advisory lock, released only after
        the commit is visible, so a record at position N+1 is never visible before N.
        """
        if self.name == "postgresql":
            await conn.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_WRITE_LOCK_KEY}
            )

    def unavailable(self, exc: BaseException) -> bool:
        """Whether ``exc`` means the server cannot be reached (down, starting up or
        shutting down, the connection refused, reset or closed), rather than that it
        refused what was sent. Never on SQLite: a file has no outage, and "database is
        locked" beyond ``busy_timeout`` is contention, not one."""
        if self.name != "postgresql":
            return False
        import asyncpg

        for error in _causes(exc):
            if isinstance(error, OSError):  # refused, reset, timed out, no route
                return True
            if isinstance(error, DBAPIError) and error.connection_invalidated:
                return True
            state = getattr(error, "sqlstate", None)
            if isinstance(state, str) and (state.startswith("08") or state in _PG_UNAVAILABLE):
                return True
            if isinstance(error, asyncpg.InterfaceError) and any(
                closed in str(error) for closed in _CLOSED
            ):
                return True
            # The client's protocol lost step with the server, as when an idle connection
            # is sent "terminating connection due to administrator command" just before
            # the socket closes: the connection is unusable, whatever the caller sent.
            if isinstance(error, asyncpg.InternalClientError):
                return True
        return False

    def connection_lost(self, driver_connection: Any) -> bool:
        """Whether the driver already knows this connection is dead (no round trip)."""
        return self.name == "postgresql" and bool(driver_connection.is_closed())


def normalise_url(url: str) -> URL:
    """Accept plain ``sqlite://`` / ``postgresql://`` URLs and pick the async driver."""
    try:
        parsed = make_url(url)
    except Exception as exc:
        raise EventStoreError(f"not a database URL: {url!r} ({exc})") from exc
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return parsed.set(drivername="sqlite+aiosqlite")
    if backend in ("postgresql", "postgres"):
        return parsed.set(drivername="postgresql+asyncpg")
    raise EventStoreError(
        f"unsupported store URL {url!r}: use sqlite:///PATH, sqlite:///:memory: or "
        "postgresql://USER@HOST:PORT/DB"
    )


def _read_only_sqlite(url: URL, given: str) -> URL:
    """The URL that opens an existing SQLite file without writing anything.

    A file no process has open (no ``-wal`` beside it) is opened ``immutable``, so not
    even the ``-wal``/``-shm`` files of WAL mode are created; one in use is opened
    ``mode=ro`` and read through the WAL its writer keeps.
    """
    if url.database in (None, "", ":memory:"):
        raise EventStoreError(f"{given}: an in-memory database holds no store to read")
    path = Path(url.database)
    if not path.is_file():
        what = "is not a file" if path.exists() else "does not exist"
        raise EventStoreError(f"no event store at {given}: {path} {what}")
    mode = {"mode": "ro"} if Path(f"{path}-wal").exists() else {"immutable": "1"}
    return url.set(database=f"file:{path.resolve()}", query={**mode, "uri": "true"})


def create_engine(
    url: str,
    *,
    sqlite_synchronous: SqliteSynchronous = "FULL",
    busy_timeout_ms: int = 30_000,
    connect_timeout: float = 10.0,
    read_only: bool = False,
) -> tuple[AsyncEngine, Dialect]:
    """An engine for ``url``; ``read_only``: one that cannot write, nor create a database
    that does not exist."""
    parsed = normalise_url(url)
    if parsed.get_backend_name() == "postgresql":
        engine = _postgres_engine(parsed, connect_timeout, read_only)
        return engine, Dialect("postgresql", in_memory=False)
    in_memory = parsed.database in (None, "", ":memory:")
    kwargs: dict[str, Any] = {}
    if read_only:
        parsed = _read_only_sqlite(parsed, url)
    elif in_memory:
        kwargs = {"poolclass": StaticPool, "connect_args": {"check_same_thread": False}}
    engine = create_async_engine(parsed, **kwargs)

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control from the driver: we emit BEGIN ourselves below.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        # The busy timeout first: switching a new file to WAL needs the file to itself,
        # and another process may be creating the schema in it at that very moment.
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        if not in_memory and not read_only:
            _use_wal(cursor, busy_timeout_ms / 1000)
        if not read_only:
            cursor.execute(f"PRAGMA synchronous={sqlite_synchronous}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        # Writers take the write lock up front, so the position they read stays theirs.
        write = conn.get_execution_options().get("eventstore_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine, Dialect("sqlite", in_memory=in_memory)


def _use_wal(cursor: Any, patience: float) -> None:
    """Switch the file to WAL (once: the mode is stored in the file). The switch needs
    the file to itself and SQLite may refuse it at once, without its busy handler, while
    another process is creating the schema: so try again, up to ``patience`` seconds."""
    deadline = time.monotonic() + patience
    while True:
        try:
            cursor.execute("PRAGMA journal_mode")
            if str(cursor.fetchone()[0]).lower() != "wal":
                cursor.execute("PRAGMA journal_mode=WAL")
            return
        except Exception as exc:  # the driver's OperationalError, through its adapter
            if "database is locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _postgres_engine(url: URL, connect_timeout: float, read_only: bool) -> AsyncEngine:
    connect_args: dict[str, Any] = {"timeout": connect_timeout}
    if read_only:  # every transaction of the session refuses to write, server-side
        connect_args["server_settings"] = {"default_transaction_read_only": "on"}
    engine = create_async_engine(url, pool_size=5, max_overflow=10, connect_args=connect_args)

    @event.listens_for(engine.sync_engine, "checkout")
    def _on_checkout(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        # After a server restart the pool still holds the old connections. asyncpg knows
        # they are closed (it saw the socket end), so replace them here, for free: a
        # pre-ping would cost three round trips on every checkout. The pool reconnects on
        # DisconnectionError; reads that then meet a dead connection invalidate it.
        if dbapi_connection.driver_connection.is_closed():
            raise DisconnectionError("the connection was closed by the server")

    return engine
