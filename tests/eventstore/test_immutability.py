"""The database itself refuses to change, remove or slip in a record, whatever the client.

Raw SQL on a real SQLite file and a real PostgreSQL, with the schema's triggers in place
(``records_no_update``/``records_no_delete`` on SQLite, ``records_no_update_delete``/
``records_no_truncate`` on PostgreSQL, ``records_append_only`` on both). Every refused
statement leaves the rows exactly as they were and the store verifying. The forged
records are well formed: their hashes are computed with eventstore's own functions, so
what refuses them is the trigger, not a malformed value.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from eventstore import (
    LOG_GENESIS,
    NO_STREAM,
    EventStore,
    NewRecord,
    StoredRecord,
    canonical_json,
    genesis_hash,
    log_link,
)
from tests.audit.helpers import relinked

COLUMNS = ", ".join(StoredRecord._fields)
INSERT = (
    f"INSERT INTO records ({COLUMNS}) VALUES (:position, :stream_id, :version, :kind, :type, "
    ":data, :metadata, :recorded_at, :prev_hash, :hash, :log_hash)"
)
# Interleaved: positions 1 a1, 2 b1, 3 a2, 4 b2, 5 a3.
FILL = [("a", 1), ("b", 1), ("a", 1), ("b", 1), ("a", 1)]
LAST = len(FILL)


@pytest.fixture(params=["sqlite-file", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A real SQLite file and a real PostgreSQL (``store`` in conftest opens it)."""
    if request.param == "sqlite-file":
        return f"sqlite:///{tmp_path / 'events.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
async def filled(store: EventStore) -> AsyncIterator[EventStore]:
    for n, (stream, count) in enumerate(FILL):
        batch = [NewRecord("event", "t", {"n": n, "i": i}, {"actor": "x"}) for i in range(count)]
        await store.append(stream, batch, "any" if n > 1 else NO_STREAM)
    rows = await _rows(store)
    assert [(r.position, r.stream_id, r.version) for r in rows] == [
        (1, "a", 1),
        (2, "b", 1),
        (3, "a", 2),
        (4, "b", 2),
        (5, "a", 3),
    ]
    yield store


async def _rows(store: EventStore) -> list[StoredRecord]:
    async with store._engine.connect() as conn:
        result = await conn.execute(text(f"SELECT {COLUMNS} FROM records ORDER BY position"))
        return [StoredRecord(*row) for row in result]


async def _raw(store: EventStore, sql: str, params: dict[str, Any] | None = None) -> None:
    async with store._engine.begin() as conn:
        if params:
            await conn.execute(text(sql), params)
        else:
            await conn.exec_driver_sql(sql)


def _forge(
    rows: Sequence[StoredRecord],
    *,
    position: int,
    stream_id: str,
    version: int,
    prev_hash: str | None = None,
    data: dict[str, Any] | None = None,
) -> StoredRecord:
    """A well-formed record: its hash and log_hash computed with eventstore's functions.

    ``prev_hash`` defaults to the hash of the stream's ``version - 1`` (or its genesis),
    the log link to the record at ``position - 1`` (or the store's last, past the end).
    """
    if prev_hash is None:
        prev_hash = next(
            (r.hash for r in rows if (r.stream_id, r.version) == (stream_id, version - 1)),
            genesis_hash(stream_id),
        )
    before = [r for r in rows if r.position < position]
    prev_log = before[-1].log_hash if before else LOG_GENESIS
    row = StoredRecord(
        position,
        stream_id,
        version,
        "event",
        "forged",
        canonical_json(data or {"forged": True}),
        canonical_json({"actor": "mallory"}),
        "2026-12-01T09:00:00.000000Z",
        prev_hash,
        "",
        "",
    )
    return relinked(row, prev_log)


async def _refused(store: EventStore, match: str, sql: str, params: dict[str, Any]) -> None:
    """``sql`` fails with the trigger's message; no row changed; the store verifies."""
    before = await _rows(store)
    with pytest.raises(DBAPIError, match=match):
        await _raw(store, sql, params)
    assert await _rows(store) == before
    report = await store.verify()
    assert report.ok and report.records_checked == LAST, report.first_broken
    assert [r.data for r in await store.read_stream("a")] == [{"n": n, "i": 0} for n in (0, 2, 4)]


# -- UPDATE, DELETE, TRUNCATE ----------------------------------------------------------


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE records SET data = '{\"n\":2}' WHERE position = 1",
        "UPDATE records SET hash = 'x'",
        "UPDATE records SET log_hash = prev_hash WHERE position = 3",
        "UPDATE records SET position = position + 100 WHERE position = 5",
        "UPDATE records SET version = version WHERE stream_id = 'b'",
        "DELETE FROM records WHERE position = 3",
        "DELETE FROM records WHERE position = 5",
        "DELETE FROM records",
    ],
)
async def test_raw_update_and_delete_are_refused(filled: EventStore, statement: str) -> None:
    await _refused(filled, "immutable", statement, {})


async def test_truncate_is_refused_on_postgres(postgres_url: str) -> None:
    store = await EventStore.open(postgres_url)
    try:
        await store.append("a", [NewRecord("event", "t", {"n": 0, "i": 0})], NO_STREAM)
        before = await _rows(store)
        for statement in ("TRUNCATE records", "TRUNCATE records CASCADE"):
            with pytest.raises(DBAPIError, match="immutable: TRUNCATE refused"):
                await _raw(store, statement)
        assert await _rows(store) == before and (await store.verify()).ok
    finally:
        await store.close()


# -- slipping a record in --------------------------------------------------------------


def _values(row: StoredRecord) -> dict[str, Any]:
    return row._asdict()


@pytest.mark.parametrize("position", [1, 3], ids=["position-1", "middle"])
@pytest.mark.parametrize("verb", ["INSERT OR REPLACE", "REPLACE"])
async def test_sqlite_replace_of_an_existing_record_is_refused(
    tmp_path: Path, verb: str, position: int
) -> None:
    """REPLACE deletes the conflicting row without firing the DELETE trigger; the
    append-only trigger refuses it first, even for a record rewritten to verify."""
    store = await EventStore.open(f"sqlite:///{tmp_path / 'events.db'}")
    try:
        for n, (stream, _) in enumerate(FILL):
            await store.append(stream, [NewRecord("event", "t", {"n": n, "i": 0})], "any")
        rows = await _rows(store)
        old = rows[position - 1]
        forged = _forge(rows, position=position, stream_id=old.stream_id, version=old.version)
        sql = INSERT.replace("INSERT", verb, 1)
        before = await _rows(store)
        with pytest.raises(DBAPIError, match="append-only"):
            await _raw(store, sql, _values(forged))
        assert await _rows(store) == before and (await store.verify()).ok
    finally:
        await store.close()


@pytest.mark.parametrize("position", [1, 3, LAST], ids=["position-1", "middle", "last"])
async def test_upsert_on_an_existing_position_is_refused(filled: EventStore, position: int) -> None:
    rows = await _rows(filled)
    old = rows[position - 1]
    forged = _forge(rows, position=position, stream_id=old.stream_id, version=old.version)
    update = ", ".join(f"{c} = excluded.{c}" for c in StoredRecord._fields if c != "position")
    sql = f"{INSERT} ON CONFLICT (position) DO UPDATE SET {update}"
    # SQLite's INSERT trigger runs first; PostgreSQL checks inserts after the statement,
    # so there the conflict's UPDATE is refused first.
    await _refused(filled, "append-only|immutable: UPDATE refused", sql, _values(forged))


async def test_upsert_on_an_existing_stream_version_is_refused(filled: EventStore) -> None:
    """At the next position, but conflicting on (stream_id, version): a rewrite of a2."""
    rows = await _rows(filled)
    forged = _forge(rows, position=LAST + 1, stream_id="a", version=2)
    sql = (
        f"{INSERT} ON CONFLICT (stream_id, version) DO UPDATE SET "
        "data = excluded.data, hash = excluded.hash, log_hash = excluded.log_hash"
    )
    await _refused(filled, "append-only|immutable: UPDATE refused", sql, _values(forged))


FORGED_INSERTS = {
    # What: (position, stream, version, prev_hash: None = the right one, "wrong" = another)
    "at position 1": (1, "a", 1, None),
    "at an existing middle position": (3, "a", 2, None),
    "at the last position": (LAST, "a", 3, None),
    "at a gap (MAX+2)": (LAST + 2, "a", 4, None),
    "at MAX+1 skipping a version": (LAST + 1, "a", 5, None),
    "at MAX+1 repeating a version": (LAST + 1, "a", 3, None),
    "at MAX+1 repeating version 1": (LAST + 1, "b", 1, None),
    "at MAX+1 with a wrong prev_hash": (LAST + 1, "a", 4, "wrong"),
    "at MAX+1 linked to an older record": (LAST + 1, "b", 3, "a1"),
}


@pytest.mark.parametrize("what", FORGED_INSERTS)
async def test_a_forged_insert_that_does_not_extend_the_chain_is_refused(
    filled: EventStore, what: str
) -> None:
    position, stream, version, link = FORGED_INSERTS[what]
    rows = await _rows(filled)
    prev_hash = {None: None, "wrong": "0" * 64, "a1": rows[0].hash}[link]
    forged = _forge(rows, position=position, stream_id=stream, version=version, prev_hash=prev_hash)
    # SQLite's trigger runs before the row's constraints; PostgreSQL's after the statement,
    # so there a taken position or version is refused by its UNIQUE constraint first.
    refusal = "append-only|duplicate key value violates unique constraint"
    await _refused(filled, refusal, INSERT, _values(forged))


@pytest.mark.parametrize("stream, version", [("a", 4), ("b", 3), ("new", 1)])
async def test_a_correct_insert_at_the_end_is_accepted_and_verifies(
    filled: EventStore, stream: str, version: int
) -> None:
    """The trigger is no blanket refusal: an INSERT at MAX+1 with the stream's next
    version, linked to its last hash, with the right hash and log_hash, is accepted.

    And the verifier cannot tell it from a genuine append: this is the documented limit
    "a forged record appended at the very end of the store (position MAX+1, with
    correct hashes)". Only a signed checkpoint shows it (``sealed=True`` after a clean
    close, tests/audit/test_tamper.py), never the chains alone.
    """
    rows = await _rows(filled)
    forged = _forge(rows, position=LAST + 1, stream_id=stream, version=version)
    await _raw(filled, INSERT, _values(forged))
    assert await _rows(filled) == [*rows, forged]
    report = await filled.verify()
    assert report.ok and report.last_position == LAST + 1
    assert report.head is not None and report.head.log_hash == forged.log_hash
    assert (await filled.verify(stream)).ok
    assert (await filled.read_stream(stream))[-1].data == {"forged": True}
    # And the store goes on appending after it, as after any record.
    await filled.append(stream, [NewRecord("event", "t", {"after": 1})], version)
    assert (await filled.verify()).ok


# What the triggers leave to the verifier: the two databases check different amounts.
# SQLite's trigger checks position, version and the link to the stream's last record;
# PostgreSQL's also the genesis link of a new stream. Neither recomputes a record's hash
# (canonical JSON is the verifier's job) nor its log_hash (a cost on every append).
ACCEPTED_BUT_NAMED = {
    # what: (refused by PostgreSQL too, the verifier's reason)
    "a new stream with a wrong genesis link": (True, "broken link"),
    "a wrong log_hash": (False, "log hash mismatch"),
    "a wrong hash, the log linked to it": (False, "hash mismatch"),
}


@pytest.mark.parametrize("what", ACCEPTED_BUT_NAMED)
async def test_what_a_trigger_lets_through_at_the_end_the_verifier_names(
    filled: EventStore, what: str
) -> None:
    pg_refuses, reason = ACCEPTED_BUT_NAMED[what]
    rows = await _rows(filled)
    end = LAST + 1
    if reason == "broken link":
        forged = _forge(rows, position=end, stream_id="new", version=1, prev_hash="0" * 64)
    elif reason == "log hash mismatch":
        forged = _forge(rows, position=end, stream_id="new", version=1)._replace(log_hash="e" * 64)
    else:
        forged = _forge(rows, position=end, stream_id="new", version=1)._replace(hash="f" * 64)
        forged = forged._replace(log_hash=log_link(rows[-1].log_hash, forged.hash, end))
    if filled._dialect.name == "postgresql" and pg_refuses:
        await _refused(filled, "append-only", INSERT, _values(forged))
        return
    await _raw(filled, INSERT, _values(forged))
    broken = (await filled.verify()).first_broken
    assert broken is not None
    assert (broken.position, broken.stream_id, broken.version, broken.reason) == (
        end,
        "new",
        1,
        reason,
    )
