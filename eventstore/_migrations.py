"""Versioned schema migrations, explicit DDL per dialect.

A new database gets every migration when it is first created. An existing database
older than the code is refused until it is migrated explicitly (``orchestrator migrate``
or ``EventStore.open(url, migrate=True)``); one newer than the code is always refused.
Never edit a released migration: add the next one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import inspect, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from ._errors import SchemaError, SchemaOutdatedError, SchemaTooNewError
from ._schema import schema_versions


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    sqlite: tuple[str, ...]
    postgresql: tuple[str, ...]

    def statements(self, dialect: str) -> tuple[str, ...]:
        return self.sqlite if dialect == "sqlite" else self.postgresql


_SCHEMA_TABLE = """CREATE TABLE eventstore_schema (
    version INTEGER PRIMARY KEY,
    description TEXT NOT NULL,
    applied_at VARCHAR(32) NOT NULL
)"""

_RECORD_COLUMNS = """
    stream_id VARCHAR(200) NOT NULL,
    version INTEGER NOT NULL CHECK (version >= 1),
    kind VARCHAR(16) NOT NULL CHECK (kind IN ('command', 'event')),
    type VARCHAR(200) NOT NULL,
    data TEXT NOT NULL,
    metadata TEXT NOT NULL,
    recorded_at VARCHAR(32) NOT NULL,
    prev_hash CHAR(64) NOT NULL,
    hash CHAR(64) NOT NULL,
    CONSTRAINT records_stream_version UNIQUE (stream_id, version)
)"""

MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "records table with (stream_id, version) uniqueness",
        sqlite=(
            _SCHEMA_TABLE,
            "CREATE TABLE records (position INTEGER PRIMARY KEY," + _RECORD_COLUMNS,
        ),
        postgresql=(
            _SCHEMA_TABLE,
            "CREATE TABLE records (position BIGINT PRIMARY KEY," + _RECORD_COLUMNS,
        ),
    ),
    Migration(
        2,
        "immutability: triggers refuse UPDATE and DELETE of records",
        sqlite=(
            """CREATE TRIGGER records_no_update BEFORE UPDATE ON records
            BEGIN SELECT RAISE(ABORT, 'records are immutable: UPDATE refused'); END""",
            """CREATE TRIGGER records_no_delete BEFORE DELETE ON records
            BEGIN SELECT RAISE(ABORT, 'records are immutable: DELETE refused'); END""",
        ),
        postgresql=(
            """CREATE FUNCTION records_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN RAISE EXCEPTION 'records are immutable: % refused', TG_OP; END $$""",
            """CREATE TRIGGER records_no_update_delete BEFORE UPDATE OR DELETE ON records
            FOR EACH ROW EXECUTE FUNCTION records_immutable()""",
            """CREATE TRIGGER records_no_truncate BEFORE TRUNCATE ON records
            FOR EACH STATEMENT EXECUTE FUNCTION records_immutable()""",
        ),
    ),
)

LATEST_VERSION = MIGRATIONS[-1].version


async def schema_version(conn: AsyncConnection) -> int | None:
    """The database's schema version, or None for a database without the event store."""

    def tables(sync_conn: object) -> set[str]:
        return set(inspect(sync_conn).get_table_names())

    names = await conn.run_sync(tables)
    if "eventstore_schema" not in names:
        if "records" in names:
            raise SchemaError(
                "a 'records' table exists without 'eventstore_schema': "
                "this database was not created by the event store"
            )
        return None
    result = await conn.execute(select(schema_versions.c.version))
    return max((row[0] for row in result), default=0)


async def apply_migrations(
    conn: AsyncConnection, dialect: str, now: Callable[[], datetime], upto: int | None = None
) -> list[int]:
    """Apply every migration after the database's version (up to ``upto``); returns them.

    Runs inside the caller's transaction, which must hold the database's write lock.
    """
    current = await schema_version(conn) or 0
    applied: list[int] = []
    for migration in MIGRATIONS:
        if migration.version <= current or (upto is not None and migration.version > upto):
            continue
        for statement in migration.statements(dialect):
            await conn.execute(text(statement))
        await conn.execute(
            schema_versions.insert().values(
                version=migration.version,
                description=migration.description,
                applied_at=now().isoformat(),
            )
        )
        applied.append(migration.version)
    return applied


def check_version(found: int | None, *, url: str) -> None:
    """Refuse a database whose schema is not exactly the code's."""
    if found is None or found == LATEST_VERSION:
        return
    if found > LATEST_VERSION:
        raise SchemaTooNewError(
            f"{url}: schema version {found} is newer than this code knows "
            f"({LATEST_VERSION}); upgrade the software, do not write to it with this one"
        )
    raise SchemaOutdatedError(
        f"{url}: schema version {found} is older than this code's {LATEST_VERSION}; "
        "upgrade it explicitly with `orchestrator migrate --store URL` "
        "(or EventStore.open(url, migrate=True))"
    )
