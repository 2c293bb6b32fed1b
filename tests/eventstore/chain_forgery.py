"""A forger's tools for tests of docs/CHAIN.md: real SQLite store files filled by the
store, raw SQL on them with the triggers dropped (hashes recomputed as a forger would),
and docs/CHAIN.md's standard-library verifier run beside ``EventStore.verify()``
(``agree``: both name the same record for the same reason)."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from eventstore import (
    CHECKPOINT_STREAM,
    LOG_GENESIS,
    NO_STREAM,
    CheckpointSigner,
    EventStore,
    NewRecord,
    PublicKeys,
    StoredRecord,
    VerifyReport,
    canonical_json,
    genesis_hash,
    log_link,
    record_hash,
)

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "CHAIN.md"
OLD_STORE = ROOT / "tests" / "audit" / "stores" / "demo-0.1.sqlite"
COLUMNS = ", ".join(StoredRecord._fields)
TRIGGERS = ("records_no_update", "records_no_delete", "records_append_only")


def snippet() -> str:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) == 1, "docs/CHAIN.md should hold exactly one python block"
    return blocks[0]


def run_snippet(tmp_path: Path, *args: Path) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "verify_chain.py"
    script.write_text(snippet())
    return subprocess.run(
        [sys.executable, "-I", str(script), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


# -- real store files, and a forger's tools ---------------------------------------------


async def fill(db: Path, signer: CheckpointSigner | None = None) -> list[StoredRecord]:
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
    return stored_rows(db)


@contextmanager
def connect(db: Path) -> Iterator[sqlite3.Connection]:
    """A plain sqlite3 connection that commits on success and is closed."""
    conn = sqlite3.connect(db)
    try:
        with conn:
            yield conn
    finally:
        conn.close()


def stored_rows(db: Path) -> list[StoredRecord]:
    with connect(db) as conn:
        query = f"SELECT {COLUMNS} FROM records ORDER BY position"
        return [StoredRecord(*row) for row in conn.execute(query)]


def tamper(db: Path, *statements: str | tuple[str, tuple[object, ...]]) -> None:
    """Drop the triggers, then run raw SQL."""
    with connect(db) as conn:
        for trigger in TRIGGERS:
            conn.execute(f"DROP TRIGGER IF EXISTS {trigger}")
        for statement in statements:
            conn.execute(*((statement,) if isinstance(statement, str) else statement))


def rechain(
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
    with connect(db) as conn:
        for row in stored_rows(db):
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


def set_field(field: str, position: int, value: object) -> tuple[str, tuple[object, ...]]:
    return f"UPDATE records SET {field} = ? WHERE position = ?", (value, position)


def swap(one: int, other: int) -> tuple[str, ...]:
    return (
        f"UPDATE records SET position = -1 WHERE position = {one}",
        f"UPDATE records SET position = {one} WHERE position = {other}",
        f"UPDATE records SET position = {other} WHERE position = -1",
    )


def insert(db: Path, row: StoredRecord) -> None:
    marks = ", ".join("?" for _ in StoredRecord._fields)
    tamper(db, (f"INSERT INTO records ({COLUMNS}) VALUES ({marks})", tuple(row)))


def forge(
    after: StoredRecord, before: StoredRecord, position: int, **fields: object
) -> StoredRecord:
    """A well-formed record at ``position``: the next version of ``after``'s stream,
    linked to it, with a correct hash and a log hash linked to ``before``'s."""
    row = after._replace(position=position, version=after.version + 1, prev_hash=after.hash)
    row = row._replace(**fields)
    row = row._replace(hash=record_hash(row))
    return row._replace(log_hash=log_link(before.log_hash, row.hash, position))


# -- the two verifiers side by side ---------------------------------------------------


def verdict(report: VerifyReport) -> str:
    if report.ok:
        return f"OK {report.records_checked} records in {report.streams_checked} streams"
    broken = report.first_broken
    assert broken is not None
    where = f"stream {broken.stream_id!r} version {broken.version} (position {broken.position})"
    return f"{where}: {broken.reason}"


async def verify(db: Path, key: Path | None = None, **options: object) -> VerifyReport:
    store = await EventStore.open(f"sqlite:///{db}", read_only=True)
    try:
        keys = None if key is None else PublicKeys.from_files([key])
        return await store.verify(keys=keys, **options)  # type: ignore[arg-type]
    finally:
        await store.close()


async def agree(tmp_path: Path, db: Path, key: Path | None = None) -> list[str]:
    """The snippet's output, once it agrees with ``EventStore.verify()``: the same first
    line when intact, the same record and reason when not, exit 1, never a traceback."""
    said = verdict(await verify(db, key))
    done = run_snippet(tmp_path, db, *([key] if key else []))
    assert done.stderr == ""
    lines = done.stdout.splitlines()
    assert lines[0] == said or lines[0].startswith(f"{said}: "), (lines, said)
    assert done.returncode == (0 if said.startswith("OK") else 1)
    return lines


# Each tampering: something done to a store file.
Tampering = Callable[[Path], None]


def by_sql(*statements: str | tuple[str, tuple[object, ...]]) -> Tampering:
    return lambda db: tamper(db, *statements)


def then_rechain(
    tampering: Tampering, start: int, end: int | None = None, **kw: object
) -> Tampering:
    def run(db: Path) -> None:
        tampering(db)
        rechain(db, start, end, **kw)  # type: ignore[arg-type]

    return run
