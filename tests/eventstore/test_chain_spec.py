"""The chains as docs/CHAIN.md specifies them: its standard-library verifier and
``EventStore.verify()`` name the same record for the same reason on real SQLite store
files, intact and tampered with in each way the document lists (as a forger with the
database's credentials would: the triggers dropped, then raw SQL, hashes recomputed
where the forger would); and the fast path hashes exactly the spec's bytes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from eventstore import (
    EventStore,
    NotedHead,
    Record,
    verify_records,
)
from tests.eventstore.chain_forgery import (
    OLD_STORE,
    Tampering,
    agree,
    by_sql,
    connect,
    fill,
    forge,
    insert,
    set_field,
    stored_rows,
    swap,
    tamper,
    then_rechain,
    verdict,
    verify,
)


async def test_the_snippet_verifies_a_real_store_file(tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    rows = await fill(db)
    lines = await agree(tmp_path, db)
    assert lines == [
        "OK 6 records in 3 streams",
        f"head position 6 log_hash {rows[-1].log_hash}",
        "no checkpoints: nothing is signed",
    ]


async def test_the_snippet_verifies_a_store_of_schema_2(tmp_path: Path) -> None:
    """Hashes were defined over the canonical JSON of the parsed values; the store always
    wrote that text, so hashing the stored bytes verifies an old store unchanged."""
    db = tmp_path / "old.sqlite"
    shutil.copy(OLD_STORE, db)
    lines = await agree(tmp_path, db)
    assert lines == [
        "OK 52 records in 4 streams",
        "head position 52 (a store of schema 2: no store-wide chain)",
    ]


# Each: the tampering on the store of ``fill`` (1 a1, 2 a2, 3 b1, 4 a3, 5 b2, 6 c1),
# and what both verifiers say. The ids follow docs/CHAIN.md, "What is detected".
def _text(field: str, text: str) -> Tampering:
    """Store ``text`` as a2's data or metadata, and re-chain the store to its end."""
    return then_rechain(by_sql(set_field(field, 2, text)), 2)


def _insert_after(position: int, stream_record: int) -> Tampering:
    """Shift the records after ``position`` up by one (and the later versions of the
    stream of the record at ``stream_record``), and put a well-formed record there: that
    stream's next version, linked to that record, its log hash linked to ``position``'s."""

    def run(db: Path) -> None:
        rows = stored_rows(db)
        after = rows[stream_record - 1]
        forged = forge(after, rows[position - 1], position + 1)
        later = f"stream_id = '{after.stream_id}' AND version > {after.version}"
        tamper(
            db,
            f"UPDATE records SET position = position + 100 WHERE position > {position}",
            "UPDATE records SET position = position - 99 WHERE position > 100",
            f"UPDATE records SET version = version + 100 WHERE {later}",
            f"UPDATE records SET version = version - 99 WHERE {later}",
        )
        insert(db, forged)

    return run


EDIT = by_sql(set_field("data", 2, '{"total":13.5}'))
TAMPERINGS: dict[str, tuple[Tampering, str]] = {
    "changes a field": (EDIT, "stream 'a' version 2 (position 2): hash mismatch"),
    "changes its type": (
        by_sql(set_field("type", 3, "forged")),
        "stream 'b' version 1 (position 3): hash mismatch",
    ),
    "changes its kind": (
        by_sql(set_field("kind", 4, "command")),
        "stream 'a' version 3 (position 4): hash mismatch",
    ),
    "changes its metadata": (
        by_sql(set_field("metadata", 3, '{"actor":"mallory"}')),
        "stream 'b' version 1 (position 3): hash mismatch",
    ),
    "changes its hash": (
        by_sql(set_field("hash", 2, "0" * 64)),
        "stream 'a' version 2 (position 2): hash mismatch",
    ),
    "changes its prev_hash": (
        by_sql(set_field("prev_hash", 4, "0" * 64)),
        "stream 'a' version 3 (position 4): broken link",
    ),
    "inserts a record (next: another stream)": (
        _insert_after(2, 2),
        "stream 'b' version 1 (position 4): log hash mismatch",
    ),
    "inserts a record (next: the same stream)": (
        _insert_after(1, 1),
        "stream 'a' version 3 (position 3): broken link",
    ),
    "changes recorded_at": (
        by_sql(set_field("recorded_at", 3, "2020-01-01T00:00:00.000000Z")),
        "stream 'b' version 1 (position 3): hash mismatch",
    ),
    "changes a field, recomputes its hashes (next: another stream)": (
        then_rechain(EDIT, 2, 2),
        "stream 'b' version 1 (position 3): log hash mismatch",
    ),
    "changes a field, recomputes its hashes (next: the same stream)": (
        then_rechain(by_sql(set_field("data", 1, "{}")), 1, 1),
        "stream 'a' version 2 (position 2): broken link",
    ),
    "changes a field, re-chains its stream": (
        then_rechain(EDIT, 2, streams={"a"}),
        "stream 'b' version 1 (position 3): log hash mismatch",
    ),
    "deletes a record (next: another stream)": (
        by_sql("DELETE FROM records WHERE position = 2"),
        "stream 'b' version 1 (position 3): missing position",
    ),
    "deletes the last record of a stream, not of the store": (
        by_sql("DELETE FROM records WHERE position = 5"),
        "stream 'c' version 1 (position 6): missing position",
    ),
    "deletes a record (next: the same stream)": (
        by_sql("DELETE FROM records WHERE position = 1"),
        "stream 'a' version 2 (position 2): missing version",
    ),
    "swaps two records of one stream": (
        by_sql(*swap(1, 2)),
        "stream 'a' version 2 (position 1): missing version",
    ),
    "swaps two records of different streams": (
        by_sql(*swap(2, 3)),
        "stream 'b' version 1 (position 2): log hash mismatch",
    ),
    "moves a record to the end": (
        by_sql("UPDATE records SET position = 7 WHERE position = 3"),
        "stream 'a' version 3 (position 4): missing position",
    ),
    "duplicate keys": (
        _text("data", '{"amount":1,"amount":1000}'),
        "stream 'a' version 2 (position 2): non-canonical text",
    ),
    "duplicate keys in metadata": (
        _text("metadata", '{"a":1,"a":1}'),
        "stream 'a' version 2 (position 2): non-canonical text",
    ),
    "whitespace": (
        _text("data", '{"a": 1}'),
        "stream 'a' version 2 (position 2): non-canonical text",
    ),
    "keys out of order": (
        _text("data", '{"b":1,"a":2}'),
        "stream 'a' version 2 (position 2): non-canonical text",
    ),
    "another float form": (
        _text("data", '{"x":1e-7}'),
        "stream 'a' version 2 (position 2): non-canonical text",
    ),
    "an upper-case exponent": (
        _text("data", '{"x":1E-07}'),
        "stream 'a' version 2 (position 2): non-canonical text",
    ),
    "escaped non-ASCII": (
        _text("data", '{"x":"\\u00e9"}'),
        "stream 'a' version 2 (position 2): non-canonical text",
    ),
    "a number too large for a float": (
        _text("data", '{"x":1e400}'),
        "stream 'a' version 2 (position 2): non-canonical text",
    ),
    "NaN": (_text("data", '{"x":NaN}'), "stream 'a' version 2 (position 2): unreadable record"),
    "not JSON": (_text("data", '{"x":'), "stream 'a' version 2 (position 2): unreadable record"),
    "a JSON list": (_text("data", "[1,2]"), "stream 'a' version 2 (position 2): unreadable record"),
    "a JSON string": (
        _text("metadata", '"{}"'),
        "stream 'a' version 2 (position 2): unreadable record",
    ),
    "data as a blob": (
        by_sql("UPDATE records SET data = CAST(data AS BLOB) WHERE position = 2"),
        "stream 'a' version 2 (position 2): unreadable record",
    ),
    # The limits: what leaves every chain intact.
    "truncates the store": (
        by_sql("DELETE FROM records WHERE position = 6"),
        "OK 5 records in 2 streams",
    ),
    "re-chains the store to its end": (then_rechain(EDIT, 2), "OK 6 records in 3 streams"),
}


@pytest.mark.parametrize("what", TAMPERINGS)
async def test_the_snippet_and_the_store_name_the_same_record(tmp_path: Path, what: str) -> None:
    db = tmp_path / "events.db"
    await fill(db)
    tampering, expected = TAMPERINGS[what]
    tampering(db)
    lines = await agree(tmp_path, db)
    assert lines[0] == expected or lines[0].startswith(f"{expected}: ")


async def test_a_forged_append_in_the_middle_of_the_log_is_named(tmp_path: Path) -> None:
    """What the stream chains alone missed: a well-formed record appended to a stream
    that ended long ago ('a', at position 4), the later positions shifted up by one to
    make room. Stream 'a' is intact, every version and position in order; the
    store-wide chain breaks at the record after the forgery, in a whole-store pass and
    in a pass over either stream."""
    db = tmp_path / "events.db"
    rows = await fill(db)
    a3 = rows[3]
    forged = forge(a3, a3, 5, type="saga.started", data='{"forged":true}')
    tamper(
        db,
        "UPDATE records SET position = position + 100 WHERE position >= 5",
        "UPDATE records SET position = position - 99 WHERE position >= 100",
    )
    insert(db, forged)
    assert [(r.position, r.stream_id, r.version) for r in stored_rows(db)] == [
        (1, "a", 1), (2, "a", 2), (3, "b", 1), (4, "a", 3), (5, "a", 4), (6, "b", 2), (7, "c", 1),
    ]  # fmt: skip

    expected = "stream 'b' version 2 (position 6): log hash mismatch"
    assert (await agree(tmp_path, db))[0].startswith(f"{expected}: ")
    for stream in ("a", "b"):
        assert verdict(await verify(db, stream_id=stream)) == expected

    # The stream chains, the versions and the positions alone see nothing wrong.
    old_checks = verify_records(
        [
            Record(*r[:5], json.loads(r.data), json.loads(r.metadata), *r[7:])
            for r in stored_rows(db)
        ],
        contiguous=True,
    )
    assert old_checks.ok and old_checks.records_checked == 7


async def test_a_forged_append_at_the_end_is_a_limit_without_a_key(tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    rows = await fill(db)
    insert(db, forge(rows[5], rows[5], 7, data='{"forged":true}'))
    lines = await agree(tmp_path, db)
    assert lines[:2] == [
        "OK 7 records in 3 streams",
        f"head position 7 log_hash {stored_rows(db)[-1].log_hash}",
    ]


async def test_the_plain_reader_takes_a_value_the_verifier_refuses(tmp_path: Path) -> None:
    """Why the reader's rule: a correctly hashed text with a duplicate key reads as one
    amount in Python and another in SQLite's json_extract."""
    db = tmp_path / "events.db"
    await fill(db)
    _text("data", '{"amount":1,"amount":1000}')(db)
    store = await EventStore.open(f"sqlite:///{db}", read_only=True)
    try:
        assert (await store.read_stream("a"))[1].data == {"amount": 1000}
    finally:
        await store.close()
    with connect(db) as conn:
        query = "SELECT json_extract(data, '$.amount') FROM records WHERE position = 2"
        assert conn.execute(query).fetchone() == (1,)
    assert verdict(await verify(db)) == "stream 'a' version 2 (position 2): non-canonical text"


async def test_a_noted_head_shows_truncation_and_a_full_rechain(tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    rows = await fill(db)
    noted = NotedHead(6, rows[-1].log_hash, rows[-1].hash)
    lines = await agree(tmp_path, db)
    assert lines[1] == f"head position {noted.position} log_hash {noted.log_hash}"
    assert (await verify(db, against=noted)).ok

    copy = tmp_path / "rechained.db"
    shutil.copy(db, copy)
    then_rechain(EDIT, 2)(copy)
    assert verdict(await verify(copy)) == "OK 6 records in 3 streams"
    assert (
        verdict(await verify(copy, against=noted))
        == "stream 'c' version 1 (position 6): head mismatch"
    )

    tamper(db, "DELETE FROM records WHERE position >= 5")
    assert verdict(await verify(db)) == "OK 4 records in 2 streams"
    assert (
        verdict(await verify(db, against=noted))
        == "stream 'a' version 3 (position 4): head missing"
    )
