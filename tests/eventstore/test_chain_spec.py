"""The chains as docs/CHAIN.md specifies them: its standard-library verifier and
``EventStore.verify()`` name the same record for the same reason on real SQLite store
files, intact and tampered with in each way the document lists (as a forger with the
database's credentials would: the triggers dropped, then raw SQL, hashes recomputed
where the forger would); and the fast path hashes exactly the spec's bytes."""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eventstore import (
    CHECKPOINT_STREAM,
    LOG_GENESIS,
    NO_STREAM,
    CheckpointSigner,
    EventStore,
    InvalidRecordError,
    NewRecord,
    NotedHead,
    PublicKeys,
    Record,
    StoredRecord,
    VerifyReport,
    canonical_json,
    genesis_hash,
    log_link,
    record_hash,
    verify_records,
)
from eventstore._canonical import body_json

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "CHAIN.md"
OLD_STORE = ROOT / "tests" / "audit" / "stores" / "demo-0.1.sqlite"
COLUMNS = ", ".join(StoredRecord._fields)
TRIGGERS = ("records_no_update", "records_no_delete", "records_append_only")


def _snippet() -> str:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) == 1, "docs/CHAIN.md should hold exactly one python block"
    return blocks[0]


def _run_snippet(tmp_path: Path, *args: Path) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "verify_chain.py"
    script.write_text(_snippet())
    return subprocess.run(
        [sys.executable, "-I", str(script), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


# -- real store files, and a forger's tools ---------------------------------------------


async def _fill(db: Path, signer: CheckpointSigner | None = None) -> list[StoredRecord]:
    """Positions 1 a1, 2 a2, 3 b1, 4 a3, 5 b2, 6 c1 (with a signer and checkpoints every
    two records, checkpoints come in between)."""
    options = {} if signer is None else {"signer": signer, "checkpoint_every": 2}
    store = await EventStore.open(f"sqlite:///{db}", **options)
    data = {"total": 12.5, "tiny": 1e-07, "big": 1e16, "zero": -0.0, "name": "Zoë\u2028"}
    await store.append("a", [NewRecord("event", "placed", data)] * 2, NO_STREAM)
    await store.append("b", [NewRecord("command", "ship", {}, {"actor": "ops"})], NO_STREAM)
    await store.append("a", [NewRecord("event", "paid", {"by": None, "n": 2**64 - 1})], 2)
    await store.append("b", [NewRecord("event", "shipped", {"at": "dock 3"})], 1)
    await store.append("c", [NewRecord("event", "opened", {"tags": ["x", "ü"]})], NO_STREAM)
    await store.close()
    return _rows(db)


@contextmanager
def _connect(db: Path) -> Iterator[sqlite3.Connection]:
    """A plain sqlite3 connection that commits on success and is closed."""
    conn = sqlite3.connect(db)
    try:
        with conn:
            yield conn
    finally:
        conn.close()


def _rows(db: Path) -> list[StoredRecord]:
    with _connect(db) as conn:
        query = f"SELECT {COLUMNS} FROM records ORDER BY position"
        return [StoredRecord(*row) for row in conn.execute(query)]


def _tamper(db: Path, *statements: str | tuple[str, tuple[object, ...]]) -> None:
    """Drop the triggers, then run raw SQL."""
    with _connect(db) as conn:
        for trigger in TRIGGERS:
            conn.execute(f"DROP TRIGGER IF EXISTS {trigger}")
        for statement in statements:
            conn.execute(*((statement,) if isinstance(statement, str) else statement))


def _rechain(
    db: Path,
    start: int,
    end: int | None = None,
    *,
    streams: set[str] | None = None,
    fix_checkpoints: bool = False,
) -> None:
    """Recompute ``prev_hash``, ``hash`` and ``log_hash`` of the records from ``start``
    to ``end`` (of ``streams`` only, if given) from their stored bytes, each linked to
    the record before it as stored. ``fix_checkpoints``: also rewrite every checkpoint's
    data to sign the new head (keeping its old signature: no key)."""
    heads: dict[str, str] = {}
    log = LOG_GENESIS
    with _connect(db) as conn:
        for row in _rows(db):
            chosen = start <= row.position <= (end or row.position)
            if chosen and (streams is None or row.stream_id in streams):
                if fix_checkpoints and row.stream_id == CHECKPOINT_STREAM:
                    data = json.loads(row.data) | {"position": row.position - 1, "log_hash": log}
                    row = row._replace(data=canonical_json(data))
                row = row._replace(prev_hash=heads.get(row.stream_id, genesis_hash(row.stream_id)))
                row = row._replace(hash=record_hash(row))
                row = row._replace(log_hash=log_link(log, row.hash, row.position))
                conn.execute(
                    "UPDATE records SET data = ?, prev_hash = ?, hash = ?, log_hash = ? "
                    "WHERE position = ?",
                    (row.data, row.prev_hash, row.hash, row.log_hash, row.position),
                )
            heads[row.stream_id], log = row.hash, row.log_hash


def _set(field: str, position: int, value: object) -> tuple[str, tuple[object, ...]]:
    return f"UPDATE records SET {field} = ? WHERE position = ?", (value, position)


def _swap(one: int, other: int) -> tuple[str, ...]:
    return (
        f"UPDATE records SET position = -1 WHERE position = {one}",
        f"UPDATE records SET position = {one} WHERE position = {other}",
        f"UPDATE records SET position = {other} WHERE position = -1",
    )


def _insert(db: Path, row: StoredRecord) -> None:
    marks = ", ".join("?" for _ in StoredRecord._fields)
    _tamper(db, (f"INSERT INTO records ({COLUMNS}) VALUES ({marks})", tuple(row)))


def _forge(
    after: StoredRecord, before: StoredRecord, position: int, **fields: object
) -> StoredRecord:
    """A well-formed record at ``position``: the next version of ``after``'s stream,
    linked to it, with a correct hash and a log hash linked to ``before``'s."""
    row = after._replace(position=position, version=after.version + 1, prev_hash=after.hash)
    row = row._replace(**fields)
    row = row._replace(hash=record_hash(row))
    return row._replace(log_hash=log_link(before.log_hash, row.hash, position))


# -- the two verifiers side by side ---------------------------------------------------


def _said(report: VerifyReport) -> str:
    if report.ok:
        return f"OK {report.records_checked} records in {report.streams_checked} streams"
    broken = report.first_broken
    assert broken is not None
    where = f"stream {broken.stream_id!r} version {broken.version} (position {broken.position})"
    return f"{where}: {broken.reason}"


async def _verify(db: Path, key: Path | None = None, **options: object) -> VerifyReport:
    store = await EventStore.open(f"sqlite:///{db}", read_only=True)
    try:
        keys = None if key is None else PublicKeys.from_files([key])
        return await store.verify(keys=keys, **options)  # type: ignore[arg-type]
    finally:
        await store.close()


async def _agree(tmp_path: Path, db: Path, key: Path | None = None) -> list[str]:
    """The snippet's output, once it agrees with ``EventStore.verify()``: the same first
    line when intact, the same record and reason when not, exit 1, never a traceback."""
    said = _said(await _verify(db, key))
    done = _run_snippet(tmp_path, db, *([key] if key else []))
    assert done.stderr == ""
    lines = done.stdout.splitlines()
    assert lines[0] == said or lines[0].startswith(f"{said}: "), (lines, said)
    assert done.returncode == (0 if said.startswith("OK") else 1)
    return lines


async def test_the_snippet_verifies_a_real_store_file(tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    rows = await _fill(db)
    lines = await _agree(tmp_path, db)
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
    lines = await _agree(tmp_path, db)
    assert lines == [
        "OK 52 records in 4 streams",
        "head position 52 (a store of schema 2: no store-wide chain)",
    ]


# Each: the tampering on the store of ``_fill`` (1 a1, 2 a2, 3 b1, 4 a3, 5 b2, 6 c1),
# and what both verifiers say. The ids follow docs/CHAIN.md, "What is detected".
Tampering = Callable[[Path], None]


def _sql(*statements: str | tuple[str, tuple[object, ...]]) -> Tampering:
    return lambda db: _tamper(db, *statements)


def _then_rechain(
    tampering: Tampering, start: int, end: int | None = None, **kw: object
) -> Tampering:
    def run(db: Path) -> None:
        tampering(db)
        _rechain(db, start, end, **kw)  # type: ignore[arg-type]

    return run


def _text(field: str, text: str) -> Tampering:
    """Store ``text`` as a2's data or metadata, and re-chain the store to its end."""
    return _then_rechain(_sql(_set(field, 2, text)), 2)


def _insert_after(position: int, stream_record: int) -> Tampering:
    """Shift the records after ``position`` up by one (and the later versions of the
    stream of the record at ``stream_record``), and put a well-formed record there: that
    stream's next version, linked to that record, its log hash linked to ``position``'s."""

    def run(db: Path) -> None:
        rows = _rows(db)
        after = rows[stream_record - 1]
        forged = _forge(after, rows[position - 1], position + 1)
        later = f"stream_id = '{after.stream_id}' AND version > {after.version}"
        _tamper(
            db,
            f"UPDATE records SET position = position + 100 WHERE position > {position}",
            "UPDATE records SET position = position - 99 WHERE position > 100",
            f"UPDATE records SET version = version + 100 WHERE {later}",
            f"UPDATE records SET version = version - 99 WHERE {later}",
        )
        _insert(db, forged)

    return run


EDIT = _sql(_set("data", 2, '{"total":13.5}'))
TAMPERINGS: dict[str, tuple[Tampering, str]] = {
    "changes a field": (EDIT, "stream 'a' version 2 (position 2): hash mismatch"),
    "changes its type": (
        _sql(_set("type", 3, "forged")),
        "stream 'b' version 1 (position 3): hash mismatch",
    ),
    "changes its kind": (
        _sql(_set("kind", 4, "command")),
        "stream 'a' version 3 (position 4): hash mismatch",
    ),
    "changes its metadata": (
        _sql(_set("metadata", 3, '{"actor":"mallory"}')),
        "stream 'b' version 1 (position 3): hash mismatch",
    ),
    "changes its hash": (
        _sql(_set("hash", 2, "0" * 64)),
        "stream 'a' version 2 (position 2): hash mismatch",
    ),
    "changes its prev_hash": (
        _sql(_set("prev_hash", 4, "0" * 64)),
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
        _sql(_set("recorded_at", 3, "2020-01-01T00:00:00.000000Z")),
        "stream 'b' version 1 (position 3): hash mismatch",
    ),
    "changes a field, recomputes its hashes (next: another stream)": (
        _then_rechain(EDIT, 2, 2),
        "stream 'b' version 1 (position 3): log hash mismatch",
    ),
    "changes a field, recomputes its hashes (next: the same stream)": (
        _then_rechain(_sql(_set("data", 1, "{}")), 1, 1),
        "stream 'a' version 2 (position 2): broken link",
    ),
    "changes a field, re-chains its stream": (
        _then_rechain(EDIT, 2, streams={"a"}),
        "stream 'b' version 1 (position 3): log hash mismatch",
    ),
    "deletes a record (next: another stream)": (
        _sql("DELETE FROM records WHERE position = 2"),
        "stream 'b' version 1 (position 3): missing position",
    ),
    "deletes the last record of a stream, not of the store": (
        _sql("DELETE FROM records WHERE position = 5"),
        "stream 'c' version 1 (position 6): missing position",
    ),
    "deletes a record (next: the same stream)": (
        _sql("DELETE FROM records WHERE position = 1"),
        "stream 'a' version 2 (position 2): missing version",
    ),
    "swaps two records of one stream": (
        _sql(*_swap(1, 2)),
        "stream 'a' version 2 (position 1): missing version",
    ),
    "swaps two records of different streams": (
        _sql(*_swap(2, 3)),
        "stream 'b' version 1 (position 2): log hash mismatch",
    ),
    "moves a record to the end": (
        _sql("UPDATE records SET position = 7 WHERE position = 3"),
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
        _sql("UPDATE records SET data = CAST(data AS BLOB) WHERE position = 2"),
        "stream 'a' version 2 (position 2): unreadable record",
    ),
    # The limits: what leaves every chain intact.
    "truncates the store": (
        _sql("DELETE FROM records WHERE position = 6"),
        "OK 5 records in 2 streams",
    ),
    "re-chains the store to its end": (_then_rechain(EDIT, 2), "OK 6 records in 3 streams"),
}


@pytest.mark.parametrize("what", TAMPERINGS)
async def test_the_snippet_and_the_store_name_the_same_record(tmp_path: Path, what: str) -> None:
    db = tmp_path / "events.db"
    await _fill(db)
    tampering, expected = TAMPERINGS[what]
    tampering(db)
    lines = await _agree(tmp_path, db)
    assert lines[0] == expected or lines[0].startswith(f"{expected}: ")


async def test_a_forged_append_in_the_middle_of_the_log_is_named(tmp_path: Path) -> None:
    """What the stream chains alone missed: a well-formed record appended to a stream
    that ended long ago ('a', at position 4), the later positions shifted up by one to
    make room. Stream 'a' is intact, every version and position in order; the
    store-wide chain breaks at the record after the forgery, in a whole-store pass and
    in a pass over either stream."""
    db = tmp_path / "events.db"
    rows = await _fill(db)
    a3 = rows[3]
    forged = _forge(a3, a3, 5, type="saga.started", data='{"forged":true}')
    _tamper(
        db,
        "UPDATE records SET position = position + 100 WHERE position >= 5",
        "UPDATE records SET position = position - 99 WHERE position >= 100",
    )
    _insert(db, forged)
    assert [(r.position, r.stream_id, r.version) for r in _rows(db)] == [
        (1, "a", 1), (2, "a", 2), (3, "b", 1), (4, "a", 3), (5, "a", 4), (6, "b", 2), (7, "c", 1),
    ]  # fmt: skip

    expected = "stream 'b' version 2 (position 6): log hash mismatch"
    assert (await _agree(tmp_path, db))[0].startswith(f"{expected}: ")
    for stream in ("a", "b"):
        assert _said(await _verify(db, stream_id=stream)) == expected

    # The stream chains, the versions and the positions alone see nothing wrong.
    old_checks = verify_records(
        [Record(*r[:5], json.loads(r.data), json.loads(r.metadata), *r[7:]) for r in _rows(db)],
        contiguous=True,
    )
    assert old_checks.ok and old_checks.records_checked == 7


async def test_a_forged_append_at_the_end_is_a_limit_without_a_key(tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    rows = await _fill(db)
    _insert(db, _forge(rows[5], rows[5], 7, data='{"forged":true}'))
    lines = await _agree(tmp_path, db)
    assert lines[:2] == [
        "OK 7 records in 3 streams",
        f"head position 7 log_hash {_rows(db)[-1].log_hash}",
    ]


async def test_the_plain_reader_takes_a_value_the_verifier_refuses(tmp_path: Path) -> None:
    """Why the reader's rule: a correctly hashed text with a duplicate key reads as one
    amount in Python and another in SQLite's json_extract."""
    db = tmp_path / "events.db"
    await _fill(db)
    _text("data", '{"amount":1,"amount":1000}')(db)
    store = await EventStore.open(f"sqlite:///{db}", read_only=True)
    try:
        assert (await store.read_stream("a"))[1].data == {"amount": 1000}
    finally:
        await store.close()
    with _connect(db) as conn:
        query = "SELECT json_extract(data, '$.amount') FROM records WHERE position = 2"
        assert conn.execute(query).fetchone() == (1,)
    assert _said(await _verify(db)) == "stream 'a' version 2 (position 2): non-canonical text"


async def test_a_noted_head_shows_truncation_and_a_full_rechain(tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    rows = await _fill(db)
    noted = NotedHead(6, rows[-1].log_hash, rows[-1].hash)
    lines = await _agree(tmp_path, db)
    assert lines[1] == f"head position {noted.position} log_hash {noted.log_hash}"
    assert (await _verify(db, against=noted)).ok

    copy = tmp_path / "rechained.db"
    shutil.copy(db, copy)
    _then_rechain(EDIT, 2)(copy)
    assert _said(await _verify(copy)) == "OK 6 records in 3 streams"
    assert (
        _said(await _verify(copy, against=noted))
        == "stream 'c' version 1 (position 6): head mismatch"
    )

    _tamper(db, "DELETE FROM records WHERE position >= 5")
    assert _said(await _verify(db)) == "OK 4 records in 2 streams"
    assert (
        _said(await _verify(db, against=noted)) == "stream 'a' version 3 (position 4): head missing"
    )


# -- signed checkpoints -------------------------------------------------------------------


async def _signed(tmp_path: Path) -> tuple[Path, Path, CheckpointSigner, list[StoredRecord]]:
    signer = CheckpointSigner.generate()
    key = tmp_path / "checkpoint.pub"
    key.write_bytes(signer.public_pem())
    db = tmp_path / "events.db"
    rows = await _fill(db, signer)
    assert [(r.stream_id, r.version) for r in rows] == [
        ("a", 1), ("a", 2), (CHECKPOINT_STREAM, 1), ("b", 1), ("a", 3), (CHECKPOINT_STREAM, 2),
        ("b", 2), ("c", 1), (CHECKPOINT_STREAM, 3),
    ]  # fmt: skip
    return db, key, signer, rows


async def test_checkpoints_are_verified_with_the_public_key(tmp_path: Path) -> None:
    db, key, _, rows = await _signed(tmp_path)
    report = await _verify(db, key, sealed=True)
    assert report.ok and (report.checkpoints, report.signed_through, report.unsigned) == (3, 9, 0)
    assert await _agree(tmp_path, db, key) == [
        "OK 9 records in 4 streams",
        f"head position 9 log_hash {rows[-1].log_hash}",
        "signed through position 9 by 3 checkpoints; 0 records after the last",
    ]
    assert (await _agree(tmp_path, db))[2] == (
        "3 checkpoints up to position 9, signatures not checked (no public key given); "
        "0 records after the last"
    )
    data = json.loads(rows[5].data)
    assert set(data) == {"key_id", "log_hash", "position", "signature", "signed_at"}
    assert (data["position"], data["log_hash"]) == (5, rows[4].log_hash)
    assert data["signed_at"] == rows[5].recorded_at


def _checkpoint_data(
    position: int, change: Callable[[dict[str, object]], dict[str, object]]
) -> Tampering:
    """Rewrite the checkpoint at ``position``'s data, then re-chain the store to its end."""

    def run(db: Path) -> None:
        row = _rows(db)[position - 1]
        data = change(json.loads(row.data))
        _tamper(db, _set("data", position, canonical_json(data)))
        _rechain(db, position)

    return run


def _flip(data: dict[str, object]) -> dict[str, object]:
    signature = str(data["signature"])
    return data | {"signature": signature[:-1] + ("0" if signature[-1] != "0" else "1")}


OTHER = CheckpointSigner.generate()
CP2 = f"stream {CHECKPOINT_STREAM!r} version 2 (position 6)"
CP3 = f"stream {CHECKPOINT_STREAM!r} version 3 (position 9)"
# Each: the tampering, what a verification without the key says, and with it.
CHECKPOINT_TAMPERINGS: dict[str, tuple[Tampering, str, str]] = {
    # The last checkpoint: any change to an earlier one moves the head the next one signed.
    "a forged signature": (
        _checkpoint_data(9, _flip),
        "OK 9 records in 4 streams",
        f"{CP3}: bad signature",
    ),
    "signed by another key": (
        _checkpoint_data(
            9, lambda d: json.loads(OTHER.data_json(8, str(d["log_hash"]), str(d["signed_at"])))
        ),
        "OK 9 records in 4 streams",
        f"{CP3}: bad signature",
    ),
    "an earlier checkpoint with a forged signature": (
        _checkpoint_data(6, _flip),
        f"{CP3}: checkpoint mismatch",
        f"{CP2}: bad signature",
    ),
    "a checkpoint of another head": (
        _checkpoint_data(6, lambda d: d | {"position": 4}),
        f"{CP2}: checkpoint mismatch",
        f"{CP2}: checkpoint mismatch",
    ),
    "a checkpoint without its signature": (
        _checkpoint_data(6, lambda d: {k: v for k, v in d.items() if k != "signature"}),
        f"{CP2}: unreadable record",
        f"{CP2}: unreadable record",
    ),
    "the store re-chained past a checkpoint": (
        _then_rechain(_sql(_set("data", 1, "{}")), 1),
        f"stream {CHECKPOINT_STREAM!r} version 1 (position 3): checkpoint mismatch",
        f"stream {CHECKPOINT_STREAM!r} version 1 (position 3): checkpoint mismatch",
    ),
    "… and the checkpoints rewritten to match": (
        _then_rechain(_sql(_set("data", 1, "{}")), 1, fix_checkpoints=True),
        "OK 9 records in 4 streams",
        f"stream {CHECKPOINT_STREAM!r} version 1 (position 3): bad signature",
    ),
}


@pytest.mark.parametrize("what", CHECKPOINT_TAMPERINGS)
async def test_a_tampered_checkpoint_is_named(tmp_path: Path, what: str) -> None:
    db, key, _, _ = await _signed(tmp_path)
    tampering, without_key, with_key = CHECKPOINT_TAMPERINGS[what]
    tampering(db)
    for given_key, expected in ((None, without_key), (key, with_key)):
        line = (await _agree(tmp_path, db, given_key))[0]
        assert line == expected or line.startswith(f"{expected}: ")


async def test_sealed_names_an_extended_tail_and_a_cut_that_is_not_on_a_checkpoint(
    tmp_path: Path,
) -> None:
    db, key, _, rows = await _signed(tmp_path)
    extended = tmp_path / "extended.db"
    shutil.copy(db, extended)
    _insert(extended, _forge(rows[7], rows[8], 10, data='{"forged":true}'))
    assert (await _agree(tmp_path, extended, key))[2] == (
        "signed through position 9 by 3 checkpoints; 1 records after the last"
    )
    said = _said(await _verify(extended, key, sealed=True))
    assert said == "stream 'c' version 2 (position 10): unsigned record"
    # Then a look-alike checkpoint of the new head: --sealed without the key is fooled.
    forged = _rows(extended)[-1]
    head = json.loads(OTHER.data_json(10, forged.log_hash, rows[8].recorded_at))
    _insert(extended, _forge(rows[8], forged, 11, data=canonical_json(head)))
    assert _said(await _verify(extended, sealed=True)) == "OK 11 records in 4 streams"
    said = _said(await _verify(extended, key, sealed=True))
    assert said == f"stream {CHECKPOINT_STREAM!r} version 4 (position 11): bad signature"

    _tamper(db, "DELETE FROM records WHERE position >= 9")  # the last checkpoint cut off
    assert (
        _said(await _verify(db, key, sealed=True))
        == "stream 'b' version 2 (position 7): unsigned record"
    )
    _tamper(db, "DELETE FROM records WHERE position >= 7")  # a cut right after one
    assert _said(await _verify(db, key, sealed=True)) == "OK 6 records in 3 streams"


# -- exports ------------------------------------------------------------------------------


async def test_the_snippet_verifies_an_export_as_the_store_does(tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    await _fill(db)
    store = await EventStore.open(f"sqlite:///{db}", read_only=True)
    try:
        records = await store.read_stream("a")
    finally:
        await store.close()
    target = tmp_path / "a.jsonl"

    def export(lines: list[str]) -> list[str]:
        target.write_text("".join(f"{line}\n" for line in lines), "utf-8")
        done = _run_snippet(tmp_path, target)
        assert done.stderr == "" and done.returncode == (0 if done.stdout.startswith("OK") else 1)
        return done.stdout.splitlines()

    lines = [json.dumps(r._asdict(), ensure_ascii=False) for r in records]
    assert export(lines) == ["OK 3 records in 1 streams", f"head a version 3 {records[-1].hash}"]
    assert verify_records(records).ok

    edited = [*records[:1], records[1]._replace(data={"total": 13.5}), *records[2:]]
    said = _said(verify_records(edited))
    assert said == "stream 'a' version 2 (position 2): hash mismatch"
    assert export([json.dumps(r._asdict()) for r in edited])[0].startswith(f"{said}: ")

    duplicate = lines[1].replace('"data": {', '"data": {"total": 0, ', 1)
    assert export([lines[0], duplicate, lines[2]])[0].startswith("line 2: unreadable record")
    assert export([lines[0], lines[1].replace("12.5", "NaN")])[0].startswith(
        "line 2: unreadable record"
    )
    assert export([lines[0], "[1]"])[0].startswith("line 2: unreadable record")


# -- known disagreements, kept as reproductions -------------------------------------------


async def test_a_recorded_at_not_in_the_writer_s_form_is_unreadable(tmp_path: Path) -> None:
    """recorded_at and prev_hash go into the hashed body as they are: text that would
    close the string and add a key is refused by both verifiers, not hashed."""
    db = tmp_path / "events.db"
    await _fill(db)
    _tamper(db, _set("recorded_at", 6, 'x","forged":"1'))
    _rechain(db, 6)
    lines = await _agree(tmp_path, db)
    assert "(position 6): unreadable record" in lines[0], lines


async def test_an_append_to_the_checkpoint_stream_is_refused(tmp_path: Path) -> None:
    """The stream is the store's own: only the writer appends signed checkpoints."""
    store = await EventStore.open(f"sqlite:///{tmp_path / 'events.db'}")
    try:
        record = NewRecord("event", "eventstore.checkpoint", {"note": "mine"})
        with pytest.raises(InvalidRecordError, match="only the writer appends"):
            await store.append(CHECKPOINT_STREAM, [record], NO_STREAM)
        assert await store.last_position() == 0
    finally:
        await store.close()


# -- the fast path hashes the spec's bytes ---------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4)
    ),
    max_leaves=12,
)
objects = st.dictionaries(st.text(max_size=8), json_values, max_size=5)


@given(
    data=objects,
    metadata=objects,
    stream=st.text(min_size=1, max_size=20),
    type_=st.text(min_size=1, max_size=20),
    version=st.integers(1, 10**9),
)
def test_the_fast_body_is_byte_for_byte_the_canonical_body(
    data: dict[str, object],
    metadata: dict[str, object],
    stream: str,
    type_: str,
    version: int,
) -> None:
    prev, at = "ab" * 32, "2026-12-01T09:00:00.000001Z"
    full = canonical_json(
        {
            "data": data,
            "kind": "event",
            "metadata": metadata,
            "prev_hash": prev,
            "recorded_at": at,
            "stream_id": stream,
            "type": type_,
            "version": version,
        }
    )
    fast = body_json(
        data_json=canonical_json(data),
        kind_json=canonical_json("event"),
        metadata_json=canonical_json(metadata),
        prev_hash=prev,
        recorded_at=at,
        stream_id_json=canonical_json(stream),
        type_json=canonical_json(type_),
        version=version,
    )
    assert fast == full


@given(value=objects)
def test_canonical_json_is_the_documented_json_dumps(value: dict[str, object]) -> None:
    documented = json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    assert canonical_json(value) == documented
