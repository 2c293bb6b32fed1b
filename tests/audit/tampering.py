"""The machinery of tests/audit/test_tamper.py: a real store filled with interleaved
appends (signed or not), every kind of change a forger with write access can make
(``plan``: the SQL, and the first record it affects), and a scenario that makes one
change and checks that the verifier names exactly that record, or tells one of the
documented limits (``Detected`` / ``Limit``). The tables and the hypothesis tests that
drive it stay in test_tamper.py."""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Sequence
from dataclasses import astuple, dataclass
from typing import Any, ClassVar

import pytest
from sqlalchemy import text

from eventstore import (
    CHECKPOINT_STREAM,
    CHECKPOINT_TYPE,
    LOG_GENESIS,
    CheckpointSigner,
    EventStore,
    NewRecord,
    NotedHead,
    PublicKeys,
    StoredRecord,
    VerifyReport,
    canonical_json,
    genesis_hash,
)
from tests.audit.helpers import relinked, tamper
from tests.servers import PostgresServer

# Interleaved appends: (stream, number of records), each its own transaction.
APPENDS = [("a", 2), ("b", 1), ("a", 1), ("c", 2), ("b", 2), ("a", 2)]
CHECKPOINT_EVERY = 4
# The stores they make: stream letter and version; K<n> is the n-th signed checkpoint
# (every 4 records, and the last one on close).
UNSIGNED = ["a1", "a2", "b1", "a3", "c1", "c2", "b2", "b3", "a4", "a5"]
SIGNED = ["a1", "a2", "b1", "a3", "K1", "c1", "c2", "b2", "b3", "K2", "a4", "a5", "K3"]

COLUMNS = StoredRecord._fields
INSERT = (
    f"INSERT INTO records ({', '.join(COLUMNS)}) VALUES (:position, :stream_id, :version, "
    ":kind, :type, :data, :metadata, :recorded_at, :prev_hash, :hash, :log_hash)"
)
FIELD_VALUES: dict[str, Any] = {
    "stream_id": "forged",
    "version": None,  # version + 100
    "kind": "command",  # every record written is an event
    "type": "forged",
    "data": '{"n":99}',
    "metadata": '{"actor":"mallory"}',
    "recorded_at": "2001-01-01T00:00:00.000000Z",
    "prev_hash": "0" * 64,
    "hash": "f" * 64,
    "log_hash": "e" * 64,
}
BYTE_COLUMNS = (
    "stream_id",
    "type",
    "data",
    "metadata",
    "recorded_at",
    "prev_hash",
    "hash",
    "log_hash",
)
BYTES = "#0Zf~"  # no stream id is one byte away from another with these
REASON = {"prev_hash": "broken link", "log_hash": "log hash mismatch"}  # else hash mismatch
WRITER_FORMS = {
    "recorded_at": re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z"),
    "prev_hash": re.compile(r"[0-9a-f]{64}"),
}
"""Fields hashed as they are, so the verifier accepts only the writer's form of them."""
SIGNATURES = ("left", "own key", "old signature")
"""What a re-chaining forger does to the checkpoints after the change: leaves their data
as it was, rewrites it to the new head and signs it with a key of their own, or rewrites
it keeping the genuine key id and old signature."""

UNREADABLE = {
    "whitespace": ('{"n": 99}', "non-canonical text"),
    "not json": ("{n: 99}", "unreadable record"),
    "not an object": ("[99]", "unreadable record"),
}
"""Re-chained data no writer would store: (text, the verifier's reason)."""

KINDS = {
    "field",
    "byte",
    "position",
    "delete",
    "insert",
    "append",
    "rechain",
    "swap positions",
    "swap data",
    "truncate",
}

Statement = tuple[str, dict[str, Any]]
Change = tuple[Any, ...]
_names = itertools.count(1)


@dataclass(frozen=True)
class Audit:
    """What the auditor brings to ``verify()``."""

    keys: bool = False
    sealed: bool = False
    """The store was shut down cleanly: every record must be under a checkpoint."""
    against: bool = False
    """The head noted before the forger came."""

    def __str__(self) -> str:
        return "+".join(n for n in ("keys", "sealed", "against") if getattr(self, n)) or "plain"


PLAIN, NOTED = Audit(), Audit(against=True)
KEYS, SEALED = Audit(keys=True), Audit(keys=True, sealed=True)
AGAINST = Audit(keys=True, against=True)


@dataclass(frozen=True)
class Detected:
    position: int
    stream_id: str
    version: int
    reason: str
    outcome: ClassVar[str] = "detected"


@dataclass(frozen=True)
class Limit:
    """Every chain intact: the store as the forger left it verifies."""

    rows: tuple[StoredRecord, ...]
    outcome: ClassVar[str] = "limit"


Expected = Detected | Limit


# -- the store's rows, and forging them ------------------------------------------------


def _label(row: StoredRecord) -> str:
    return (
        f"K{row.version}" if row.stream_id == CHECKPOINT_STREAM else f"{row.stream_id}{row.version}"
    )


def _is_checkpoint(row: StoredRecord) -> bool:
    return bool(row.stream_id == CHECKPOINT_STREAM and row.type == CHECKPOINT_TYPE)


def _named(row: StoredRecord, reason: str) -> Detected:
    return Detected(row.position, row.stream_id, row.version, reason)


def _last_hash(rows: Sequence[StoredRecord], stream: str, before_version: int) -> str:
    """The hash of ``stream``'s ``before_version - 1`` (its genesis for version 1)."""
    return next(
        (r.hash for r in rows if (r.stream_id, r.version) == (stream, before_version - 1)),
        genesis_hash(stream),
    )


def _forged(rows: Sequence[StoredRecord], position: int, stream: str, version: int) -> StoredRecord:
    """A forged record of ``stream`` at ``version``, linked to its predecessor in the
    stream and in the log (the record at ``position - 1`` or the store's last)."""
    before = [r for r in rows if r.position < position]
    row = StoredRecord(
        position,
        stream,
        version,
        "event",
        "forged",
        '{"forged":true}',
        "{}",
        rows[-1].recorded_at,
        _last_hash(rows, stream, version),
        "",
        "",
    )
    return relinked(row, before[-1].log_hash if before else LOG_GENESIS)


def _rechain(
    rows: Sequence[StoredRecord], start: int, sig: str, forger: CheckpointSigner
) -> list[StoredRecord]:
    """``rows`` (a whole store, in position order) with every prev_hash, hash and
    log_hash recomputed from position ``start`` on, and the checkpoints there as ``sig``."""
    heads: dict[str, str] = {}
    prev_log = LOG_GENESIS
    out = []
    for row in rows:
        if row.position >= start:
            row = row._replace(prev_hash=heads.get(row.stream_id, genesis_hash(row.stream_id)))
            if _is_checkpoint(row) and sig != "left":
                data = json.loads(row.data)
                if sig == "own key":
                    row = row._replace(
                        data=forger.data_json(row.position - 1, prev_log, data["signed_at"])
                    )
                else:  # the genuine key id and signature, over the new head
                    data.update(position=row.position - 1, log_hash=prev_log)
                    row = row._replace(data=canonical_json(data))
            row = relinked(row, prev_log)
        heads[row.stream_id] = row.hash
        prev_log = row.log_hash
        out.append(row)
    return out


def _update(at: int, **values: Any) -> Statement:
    sets = ", ".join(f"{name} = :{name}" for name in values)
    return f"UPDATE records SET {sets} WHERE position = :at", {**values, "at": at}


def _insert(row: StoredRecord) -> Statement:
    return INSERT, row._asdict()


def _shift(column: str, by: int, where: str, params: dict[str, Any]) -> list[Statement]:
    """``column += by`` for the rows ``where``, through a detour past every value in use,
    so that no UNIQUE constraint sees two rows on one value half-way."""
    return [
        (f"UPDATE records SET {column} = {column} + 1000 WHERE {where}", params),
        (f"UPDATE records SET {column} = {column} - {1000 - by} WHERE {column} >= 1000", {}),
    ]


def _replace_tail(start: int, rows: Sequence[StoredRecord]) -> list[Statement]:
    statements: list[Statement] = [("DELETE FROM records WHERE position >= :p", {"p": start})]
    return statements + [_insert(r) for r in rows if r.position >= start]


# -- what the verifier must find -------------------------------------------------------


def _gap(rows: Sequence[StoredRecord], i: int) -> Expected:
    """rows[i] gone from its place: the next record now follows rows[i - 1]."""
    nxt = rows[i + 1]
    return _named(
        nxt, "missing version" if nxt.stream_id == rows[i].stream_id else "missing position"
    )


def _renamed(row: StoredRecord, stream: str) -> Detected:
    """``row`` moved to a stream of its own: version 1 links to the wrong genesis."""
    return Detected(
        row.position, stream, row.version, "broken link" if row.version == 1 else "missing version"
    )


def _intact(
    after: Sequence[StoredRecord],
    rows: Sequence[StoredRecord],
    audit: Audit,
    *,
    rewritten_from: int | None = None,
    sig: str = "left",
) -> Expected:
    """The forger left every chain intact (``after`` is the store now): only a checkpoint
    after the rewrite, the noted head, or a record no checkpoint covers can tell."""
    found: list[tuple[int, int, Detected]] = []  # (position, precedence in one record, …)
    if rewritten_from is not None:
        signed = [r for r in after if _is_checkpoint(r) and r.position >= rewritten_from]
        if signed and sig == "left":
            found.append((signed[0].position, 0, _named(signed[0], "checkpoint mismatch")))
        elif signed and audit.keys:
            found.append((signed[0].position, 0, _named(signed[0], "bad signature")))
    noted = rows[-1]
    if audit.against:
        at = [r for r in after if r.position == noted.position]
        if at and at[0].log_hash != noted.log_hash:
            found.append((at[0].position, 1, _named(at[0], "head mismatch")))
    if found:
        return min(found, key=lambda f: f[:2])[2]
    if audit.against and after[-1].position < noted.position:
        return _named(after[-1], "head missing")
    if audit.sealed:
        last_checkpoint = max((i for i, r in enumerate(after) if _is_checkpoint(r)), default=-1)
        unsigned = [r for r in after[last_checkpoint + 1 :] if not _is_checkpoint(r)]
        if unsigned:
            return _named(unsigned[0], "unsigned record")
    assert list(after) != list(rows)
    return Limit(tuple(after))


# -- the kinds of change ---------------------------------------------------------------


def _index(rows: Sequence[StoredRecord], target: int | str, *, records_only: bool = False) -> int:
    """A label ("b2", "K1", "last") from the tables, or any int from hypothesis."""
    if target == "last":
        return len(rows) - 1
    if isinstance(target, str):
        return [_label(r) for r in rows].index(target)
    if records_only:
        choices = [i for i, r in enumerate(rows) if not _is_checkpoint(r)]
        return choices[target % len(choices)]
    return target % len(rows)


def _other(rows: Sequence[StoredRecord], i: int, target: int | str) -> int:
    if isinstance(target, str):
        return _index(rows, target)
    return (i + 1 + target % (len(rows) - 1)) % len(rows)


def plan(
    rows: Sequence[StoredRecord], change: Change, audit: Audit, forger: CheckpointSigner
) -> tuple[list[Statement], Expected]:
    """The forger's SQL for ``change``, and what verify(audit) must then report."""
    kind = change[0]
    if kind == "truncate":
        k = change[1]
        sql = ("DELETE FROM records WHERE position > :p", {"p": len(rows) - k})
        return [sql], _intact(rows[:-k], rows, audit)
    if kind == "append":
        stream = CHECKPOINT_STREAM if change[1] == "K" else change[1]
        version = 1 + max((r.version for r in rows if r.stream_id == stream), default=0)
        row = _forged(rows, len(rows) + 1, stream, version)
        return [_insert(row)], _intact([*rows, row], rows, audit)
    if kind == "rechain":
        return _plan_rechain(rows, change, audit, forger)
    i = _index(rows, change[1])
    r = rows[i]
    last = i == len(rows) - 1
    if kind == "field":
        name = change[2]
        value = r.version + 100 if name == "version" else FIELD_VALUES[name]
        if name == "stream_id":
            expected: Expected = _renamed(r, value)
        elif name == "version":
            expected = Detected(r.position, r.stream_id, value, "missing version")
        else:
            expected = _named(r, REASON.get(name, "hash mismatch"))
        return [_update(r.position, **{name: value})], expected
    if kind == "byte":
        name, offset, byte = change[2], change[3], change[4]
        old = getattr(r, name)
        k = offset % len(old)
        byte = byte if old[k] != byte else BYTES[(BYTES.index(byte) + 1) % len(BYTES)]
        value = old[:k] + byte + old[k + 1 :]
        if name == "stream_id":
            expected = _renamed(r, value)
        elif name in WRITER_FORMS and not WRITER_FORMS[name].fullmatch(value):
            expected = _named(r, "unreadable record")  # hashed as it is: only its own form
        else:
            expected = _named(r, REASON.get(name, "hash mismatch"))
        return [_update(r.position, **{name: value})], expected
    if kind == "position":
        # Position 0 (or below): read first, and no position of the store's.
        to = 0 if change[2] == "0" else len(rows) + 5
        sql = _update(r.position, position=to)
        if to == 0:
            return [sql], Detected(0, r.stream_id, r.version, "unreadable record")
        if not last:
            return [sql], _gap(rows, i)
        return [sql], Detected(to, r.stream_id, r.version, "missing position")
    if kind == "delete":
        sql = ("DELETE FROM records WHERE position = :p", {"p": r.position})
        return [sql], _intact(rows[:-1], rows, audit) if last else _gap(rows, i)
    if kind == "insert":
        # A forged record before r in its stream: the stream's later versions shift up,
        # and in the middle of the log, so do the later positions.
        s, v, p = r.stream_id, r.version, r.position
        shifts = _shift("version", 1, "stream_id = :s AND version >= :v", {"s": s, "v": v})
        if change[2] == "middle of the log":
            shifts += _shift("position", 1, "position >= :p", {"p": p})
            forged = _forged(rows, p, s, v)
            if audit.against and p == len(rows):  # the forgery sits on the noted head
                return [*shifts, _insert(forged)], _named(forged, "head mismatch")
            return [*shifts, _insert(forged)], Detected(p + 1, s, v + 1, "broken link")
        forged = _forged(rows, len(rows) + 1, s, v)
        return [*shifts, _insert(forged)], Detected(p, s, v + 1, "missing version")
    if kind in ("swap positions", "swap data"):
        a, b = sorted((r, rows[_other(rows, i, change[2])]), key=lambda x: x.position)
        if kind == "swap data":
            statements = [_update(a.position, data=b.data), _update(b.position, data=a.data)]
            return statements, _named(a, "hash mismatch")
        statements = [
            _update(a.position, position=-1),
            _update(b.position, position=a.position),
            _update(-1, position=b.position),
        ]
        # b now sits where a was: its stream's records before a's place decide.
        before = sum(1 for x in rows if x.stream_id == b.stream_id and x.position < a.position)
        reason = "missing version" if b.version != before + 1 else "log hash mismatch"
        return statements, Detected(a.position, b.stream_id, b.version, reason)
    raise AssertionError(f"unknown change {change}")


def _plan_rechain(
    rows: Sequence[StoredRecord], change: Change, audit: Audit, forger: CheckpointSigner
) -> tuple[list[Statement], Expected]:
    """Change record r (edit its data, insert a record before it, or delete it), then
    recompute every hash and log_hash from there to the end of the store.

    Data rewritten as text no writer would store, its hash computed over that text, is
    named by the reader's rule, key or not: "non-canonical text" (the same object with
    other bytes) or "unreadable record" (not a JSON object)."""
    _, target, how, sig = change
    i = _index(rows, target, records_only=True)
    r = rows[i]
    p = r.position
    if how in UNREADABLE:
        edited = [*rows[:i], r._replace(data=UNREADABLE[how][0]), *rows[i + 1 :]]
        statements = _replace_tail(p, _rechain(edited, p, sig, forger))
        return statements, _named(r, UNREADABLE[how][1])
    if how == "edit":
        edited = [*rows[:i], r._replace(data='{"n":"rewritten"}'), *rows[i + 1 :]]
    elif how == "insert":
        forged = _forged(rows, p, r.stream_id, r.version)
        later = [
            x._replace(position=x.position + 1, version=x.version + (x.stream_id == r.stream_id))
            for x in rows[i:]
        ]
        edited = [*rows[:i], forged, *later]
    else:
        later = [
            x._replace(position=x.position - 1, version=x.version - (x.stream_id == r.stream_id))
            for x in rows[i + 1 :]
        ]
        edited = [*rows[:i], *later]
    after = _rechain(edited, p, sig, forger)
    expected = _intact(after, rows, audit, rewritten_from=p, sig=sig)
    return _replace_tail(p, after), expected


# -- running one case ------------------------------------------------------------------


async def _rows(store: EventStore) -> list[StoredRecord]:
    async with store._engine.connect() as conn:
        result = await conn.execute(
            text(f"SELECT {', '.join(COLUMNS)} FROM records ORDER BY position")
        )
        return [StoredRecord(*row) for row in result]


async def _fill(url: str, signer: CheckpointSigner | None) -> None:
    options: dict[str, Any] = {}
    if signer is not None:
        options = {"signer": signer, "checkpoint_every": CHECKPOINT_EVERY}
    store = await EventStore.open(url, checkpoint_interval=3600, **options)
    try:
        for n, (stream, count) in enumerate(APPENDS):
            batch = [
                NewRecord("event", "t", {"n": n, "i": i}, {"actor": "x"}) for i in range(count)
            ]
            await store.append(stream, batch, "any")
    finally:
        await store.close()  # a clean close: with a signer, it seals the store


async def scenario(url: str, change: Change, audit: Audit, *, signed: bool) -> Expected:
    """Fill a store (signed or not), let the forger make ``change``, verify as ``audit``
    does and check that the report is exactly what was expected."""
    signer = CheckpointSigner.generate() if signed else None
    await _fill(url, signer)
    store = await EventStore.open(url)  # the forger's and the auditor's: no signer
    try:
        rows = await _rows(store)
        assert [_label(r) for r in rows] == (SIGNED if signed else UNSIGNED)
        keys = PublicKeys.from_pem(signer.public_pem()) if signer else None
        intact = await store.verify(keys=keys, sealed=signed)
        assert intact.ok and intact.head is not None, intact.first_broken
        assert (intact.head.position, intact.head.log_hash) == (len(rows), rows[-1].log_hash)
        noted = NotedHead(intact.head.position, intact.head.log_hash, intact.head.hash)
        statements, expected = plan(rows, change, audit, CheckpointSigner.generate())
        await tamper(store, *statements)
        report = await store.verify(
            keys=keys if audit.keys else None,
            sealed=audit.sealed,
            against=noted if audit.against else None,
        )
        forged_rows = await _rows(store)
    finally:
        await store.close()
    _check(report, expected, forged_rows, change)
    return expected


def _check(
    report: VerifyReport, expected: Expected, rows: list[StoredRecord], change: Change
) -> None:
    broken = report.first_broken
    if isinstance(expected, Detected):
        assert broken is not None, f"{change} not detected"
        found = (broken.position, broken.stream_id, broken.version, broken.reason)
        assert found == astuple(expected), (change, broken.describe())
        return
    assert broken is None, (change, broken.describe())
    # The forger's store is the one modelled (but a row at position 0, never read).
    assert [r for r in rows if r.position > 0] == list(expected.rows), change
    end = expected.rows[-1]
    assert report.head is not None and report.last_position == end.position
    assert report.head.log_hash == end.log_hash and report.records_checked == len(expected.rows)


def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('tamper') / 'events.db'}"


def postgres_url(server: PostgresServer) -> str:
    return server.create_database(f"audit_tamper_{next(_names)}")
