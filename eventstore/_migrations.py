"""Versioned schema migrations, explicit DDL per dialect.

A new database gets every migration when it is first created. An existing database
older than the code is refused until it is migrated explicitly (``orchestrator migrate``
or ``EventStore.open(url, migrate=True)``); one newer than the code is always refused.
Never edit a released migration: add the next one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import inspect, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from ._canonical import LOG_GENESIS, log_link
from ._errors import SchemaError, SchemaOutdatedError, SchemaTooNewError
from ._schema import schema_versions

Step = str | Callable[[AsyncConnection], Awaitable[None]]
"""A DDL statement, or a data step run in the migration's transaction."""


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    sqlite: tuple[Step, ...]
    postgresql: tuple[Step, ...]

    def statements(self, dialect: str) -> tuple[Step, ...]:
        return self.sqlite if dialect == "sqlite" else self.postgresql


async def _link_existing_records(conn: AsyncConnection) -> None:
    """Give every record already stored its store-wide link, in position order."""
    prev_log, after = LOG_GENESIS, 0
    while True:
        page = (
            await conn.execute(
                text(
                    "SELECT position, hash FROM records WHERE position > :after "
                    "ORDER BY position LIMIT 5000"
                ),
                {"after": after},
            )
        ).all()
        if not page:
            return
        updates = []
        for position, hash_ in page:
            prev_log = log_link(prev_log, hash_, position)
            updates.append({"log": prev_log, "position": position})
        await conn.execute(
            text("UPDATE records SET log_hash = :log WHERE position = :position"), updates
        )
        after = page[-1][0]


_SQLITE_NO_UPDATE = """CREATE TRIGGER records_no_update BEFORE UPDATE ON records
            BEGIN SELECT RAISE(ABORT, 'records are immutable: UPDATE refused'); END"""

# An INSERT must extend both chains at their ends: the next position, the stream's next
# version, linked to the stream's last hash. The checks also stop INSERT OR REPLACE
# (REPLACE deletes without firing the DELETE trigger) and upserts before they start.
_SQLITE_APPEND_ONLY = """CREATE TRIGGER records_append_only BEFORE INSERT ON records
WHEN NEW.position IS NOT (SELECT COALESCE(MAX(position), 0) + 1 FROM records)
  OR (NEW.version - 1) || ' ' || NEW.prev_hash IS NOT COALESCE(
    (SELECT version || ' ' || hash FROM records WHERE stream_id = NEW.stream_id
     ORDER BY version DESC LIMIT 1),
    '0 ' || NEW.prev_hash)
  OR length(NEW.log_hash) IS NOT 64
BEGIN SELECT RAISE(ABORT,
  'records are append-only: an INSERT must extend the chain at the next position'); END"""
"""(One seek per index: the stream's last version and hash, compared as one value.)"""

# PostgreSQL checks a whole INSERT statement at once, after it (a transition table of
# the rows it added; the writer inserts a batch as one statement): the new positions run
# on from the old last one with nothing after them, and every new row links to the
# record before it in its stream (prev_hash, the genesis for version 1), which is not
# later than it in the log. One call a batch and one index probe a row (measured: about
# 8% of batch appends; checking log_hash too would double that, and the verifier
# checks it anyway).
_PG_APPEND_ONLY = r"""CREATE FUNCTION records_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    first_position BIGINT;
    last_position BIGINT;
    added_count BIGINT;
    previous BIGINT;
    bad RECORD;
BEGIN
    SELECT min(position), max(position), count(*)
        INTO first_position, last_position, added_count FROM added;
    IF added_count = 0 THEN
        RETURN NULL;
    END IF;
    SELECT COALESCE(max(position), 0) INTO previous FROM records
        WHERE position < first_position;
    -- max(), not EXISTS (… position > last): an index probe whatever the statistics
    -- say (an EXISTS the planner expects to match turns into a scan of the table).
    IF last_position - first_position + 1 <> added_count
       OR first_position <> previous + 1
       OR (SELECT max(position) FROM records) <> last_position THEN
        RAISE EXCEPTION USING
            ERRCODE = 'integrity_constraint_violation',
            MESSAGE = format('records are append-only: an INSERT must extend the chain at '
                             'the next position (%s)', previous + 1);
    END IF;
    -- One index probe a row (correlated: the planner knows nothing of the transition
    -- table's size, and would rather hash-join a scan of the whole table).
    SELECT a.position, a.stream_id, a.version INTO bad
    FROM added a
    WHERE a.prev_hash IS DISTINCT FROM (CASE WHEN a.version = 1
              THEN encode(sha256('\x6576656e7473746f72652e67656e6573697300'::bytea
                                 || convert_to(a.stream_id, 'UTF8')), 'hex')
              ELSE (SELECT s.hash FROM records s WHERE s.stream_id = a.stream_id
                    AND s.version = a.version - 1 AND s.position < a.position) END)
    ORDER BY a.position
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION USING
            ERRCODE = 'integrity_constraint_violation',
            MESSAGE = format('records are append-only: an INSERT must extend the chain at '
                             'the next position and the next version of %L (position %s, '
                             'version %s does not)', bad.stream_id, bad.position, bad.version);
    END IF;
    RETURN NULL;
END $$"""

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
            _SQLITE_NO_UPDATE,
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
    Migration(
        3,
        "store-wide chain (log_hash); append-only: an INSERT must extend the chains",
        sqlite=(
            "ALTER TABLE records ADD COLUMN log_hash CHAR(64) NOT NULL DEFAULT ''",
            "DROP TRIGGER records_no_update",
            _link_existing_records,
            _SQLITE_NO_UPDATE,
            _SQLITE_APPEND_ONLY,
        ),
        postgresql=(
            "ALTER TABLE records ADD COLUMN log_hash CHAR(64)",
            "ALTER TABLE records DISABLE TRIGGER records_no_update_delete",
            _link_existing_records,
            "ALTER TABLE records ENABLE TRIGGER records_no_update_delete",
            "ALTER TABLE records ALTER COLUMN log_hash SET NOT NULL",
            _PG_APPEND_ONLY,
            """CREATE TRIGGER records_append_only AFTER INSERT ON records
            REFERENCING NEW TABLE AS added
            FOR EACH STATEMENT EXECUTE FUNCTION records_append_only()""",
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
        for step in migration.statements(dialect):
            if isinstance(step, str):
                await conn.execute(text(step))
            else:
                await step(conn)
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
