"""Tampering with a real store (a SQLite file, a real PostgreSQL) is detected, and the
first affected record is named. The forger has the database's credentials: the test
drops the immutability triggers, then edits rows with raw SQL.

What "first affected" means: the first record, in commit order, at which the stored
data stops being what was written: the changed record itself; for a deleted or moved
record, the one now sitting where it was (positions of a whole store run 1, 2, 3 …);
for a forged insertion, the genuine record it displaced.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventstore import NO_STREAM, EventStore, NewRecord, Record, record_hash
from eventstore._canonical import genesis_hash
from orchestrator.audit import verify_store
from tests.audit.helpers import tamper
from tests.servers import PostgresServer

# Interleaved appends: stream, number of records. 10 records, positions 1..10.
APPENDS = [("a", 2), ("b", 1), ("a", 1), ("c", 2), ("b", 2), ("a", 2)]
N = sum(n for _, n in APPENDS)
FIELDS = (
    "stream_id",
    "version",
    "kind",
    "type",
    "data",
    "metadata",
    "recorded_at",
    "prev_hash",
    "hash",
    "position",
)
_names = itertools.count(1)


async def _fill(store: EventStore) -> list[Record]:
    for n, (stream, count) in enumerate(APPENDS):
        batch = [NewRecord("event", "t", {"n": n, "i": i}, {"actor": "x"}) for i in range(count)]
        await store.append(stream, batch, "any" if n else NO_STREAM)
    records = await store.read_all()
    assert [r.position for r in records] == list(range(1, N + 1))
    return records


@dataclass(frozen=True)
class Expected:
    position: int | None
    """Position of the record verification must name; None: the chain stays intact."""
    stream_id: str | None = None
    version: int | None = None


def _field_change(records: list[Record], i: int, name: str) -> tuple[list[Any], Expected]:
    r = records[i]
    where = f"WHERE position = {r.position}"
    new: dict[str, Any] = {
        "stream_id": "forged",
        "version": r.version + 100,
        "kind": "command",
        "type": "forged",
        "data": '{"n":99}',
        "metadata": '{"actor":"mallory"}',
        "recorded_at": "2001-01-01T00:00:00.000000Z",
        "prev_hash": "0" * 64,
        "hash": "f" * 64,
    }
    if name == "position":
        moved_to = N + 10
        sql = f"UPDATE records SET position = {moved_to} {where}"
        if r.position == N:  # the last record moved further: named there
            return [sql], Expected(moved_to, r.stream_id, r.version)
        after = records[i + 1]
        return [sql], Expected(after.position, after.stream_id, after.version)
    stream = new["stream_id"] if name == "stream_id" else r.stream_id
    version = new["version"] if name == "version" else r.version
    sql = f"UPDATE records SET {name} = :value {where}"
    return [(sql, {"value": new[name]})], Expected(r.position, stream, version)


def _delete(records: list[Record], i: int) -> tuple[list[Any], Expected]:
    sql = f"DELETE FROM records WHERE position = {records[i].position}"
    if i == N - 1:
        return [sql], Expected(None)  # a cut-off tail: only a noted head shows it
    after = records[i + 1]
    return [sql], Expected(after.position, after.stream_id, after.version)


def _insert(records: list[Record], i: int, middle: bool) -> tuple[list[Any], Expected]:
    """A forged record with a valid hash, put before records[i] in its stream: the
    stream's later versions are shifted up by one (UNIQUE(stream_id, version)), and
    with ``middle`` the later positions too, so the forgery sits in commit order where
    the displaced record was."""
    r = records[i]
    prev = next(
        (x.hash for x in records if x.stream_id == r.stream_id and x.version == r.version - 1),
        genesis_hash(r.stream_id),
    )
    position = r.position if middle else N + 1
    forged = Record(
        position, r.stream_id, r.version, "event", "forged", {"x": 1}, {}, r.recorded_at, prev, ""
    )
    forged = forged._replace(hash=record_hash(forged))
    s, v, p = r.stream_id, r.version, r.position
    statements: list[Any] = [
        f"UPDATE records SET version = version + 1000 WHERE stream_id = '{s}' AND version >= {v}",
        f"UPDATE records SET version = version - 999 WHERE stream_id = '{s}' AND version >= 1000",
    ]
    if middle:
        statements += [
            f"UPDATE records SET position = position + 1000 WHERE position >= {p}",
            "UPDATE records SET position = position - 999 WHERE position >= 1000",
        ]
    statements.append(
        (
            "INSERT INTO records (position, stream_id, version, kind, type, data, metadata, "
            "recorded_at, prev_hash, hash) VALUES (:position, :stream_id, :version, :kind, "
            ":type, :data, :metadata, :recorded_at, :prev_hash, :hash)",
            {**forged._asdict(), "data": '{"x":1}', "metadata": "{}"},
        )
    )
    return statements, Expected(p + 1 if middle else p, s, v + 1)


def _swap(records: list[Record], i: int, j: int, what: str) -> tuple[list[Any], Expected]:
    a, b = sorted((records[i], records[j]), key=lambda r: r.position)
    if what == "data":
        statements: list[Any] = [
            f"UPDATE records SET data = (SELECT data FROM records WHERE position = {b.position})"
            f" WHERE position = {a.position}",
            (f"UPDATE records SET data = :d WHERE position = {b.position}", {"d": _text(a.data)}),
        ]
        return statements, Expected(a.position, a.stream_id, a.version)
    statements = [
        f"UPDATE records SET position = -1 WHERE position = {a.position}",
        f"UPDATE records SET position = {a.position} WHERE position = {b.position}",
        f"UPDATE records SET position = {b.position} WHERE position = -1",
    ]
    return statements, Expected(a.position, b.stream_id, b.version)  # b now sits first


def _text(data: dict[str, Any]) -> str:
    import json

    return json.dumps(data, sort_keys=True, separators=(",", ":"))


def _same_stream_pairs(records: list[Record]) -> list[tuple[int, int]]:
    return [
        (i, j)
        for i, j in itertools.combinations(range(len(records)), 2)
        if records[i].stream_id == records[j].stream_id
    ]


changes = st.one_of(
    st.tuples(st.just("field"), st.integers(0, N - 1), st.sampled_from(FIELDS)),
    st.tuples(st.just("delete"), st.integers(0, N - 1)),
    st.tuples(st.just("insert"), st.integers(0, N - 1), st.booleans()),
    st.tuples(st.just("swap data"), st.integers(0, N - 1), st.integers(1, N - 1)),
    st.tuples(st.just("swap positions"), st.integers(0, 100)),
)


def _plan(records: list[Record], change: tuple[Any, ...]) -> tuple[list[Any], Expected]:
    kind = change[0]
    if kind == "field":
        return _field_change(records, change[1], change[2])
    if kind == "delete":
        return _delete(records, change[1])
    if kind == "insert":
        return _insert(records, change[1], change[2])
    if kind == "swap data":
        i = change[1]
        return _swap(records, i, (i + change[2]) % N, "data")
    pairs = _same_stream_pairs(records)
    i, j = pairs[change[1] % len(pairs)]
    return _swap(records, i, j, "positions")


async def _scenario(url: str, change: tuple[Any, ...]) -> None:
    store = await EventStore.open(url)
    try:
        records = await _fill(store)
        intact = await verify_store(store)
        assert intact.report.ok and intact.last_hash == records[-1].hash
        statements, expected = _plan(records, change)
        await tamper(store, *statements)
        result = await verify_store(store)
    finally:
        await store.close()
    broken = result.report.first_broken
    if expected.position is None:  # the cut-off tail: the chain is shorter, and says so
        assert broken is None and result.last_hash == records[-2].hash != intact.last_hash
        return
    assert broken is not None, f"{change} not detected"
    found = (broken.position, broken.stream_id, broken.version)
    assert found == (expected.position, expected.stream_id, expected.version), (change, broken)
    assert result.exit_code == 1


def _sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('audit_tamper') / 'events.db'}"


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(change=changes)
def test_any_tampering_of_a_sqlite_file_names_the_first_affected_record(
    change: tuple[Any, ...], tmp_path_factory: pytest.TempPathFactory
) -> None:
    asyncio.run(_scenario(_sqlite_url(tmp_path_factory), change))


@pytest.mark.postgres
@settings(
    max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(change=changes)
def test_any_tampering_of_postgresql_names_the_first_affected_record(
    change: tuple[Any, ...], postgres_server: PostgresServer
) -> None:
    url = postgres_server.create_database(f"audit_tamper_{next(_names)}")
    asyncio.run(_scenario(url, change))


EVERY_KIND = [
    *(("field", 4, name) for name in FIELDS),
    ("field", N - 1, "position"),
    ("delete", 0),
    ("delete", 2),
    ("delete", N - 1),
    ("insert", 0, False),
    ("insert", 5, True),
    ("swap data", 1, 3),
    ("swap positions", 0),
    ("swap positions", 7),
]


@pytest.mark.parametrize("change", EVERY_KIND, ids=str)
def test_every_kind_of_tampering_of_a_sqlite_file(
    change: tuple[Any, ...], tmp_path_factory: pytest.TempPathFactory
) -> None:
    asyncio.run(_scenario(_sqlite_url(tmp_path_factory), change))


@pytest.mark.postgres
@pytest.mark.parametrize("change", [("insert", 5, True), ("swap positions", 3), ("delete", 3)])
def test_every_kind_of_tampering_of_postgresql(
    change: tuple[Any, ...], postgres_server: PostgresServer
) -> None:
    url = postgres_server.create_database(f"audit_tamper_{next(_names)}")
    asyncio.run(_scenario(url, change))


def test_order_between_streams_is_not_attested(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Documented limit (docs/CHAIN.md): positions are not hashed, so two records of
    different streams that trade places leave every chain intact."""

    async def run() -> None:
        store = await EventStore.open(_sqlite_url(tmp_path_factory))
        try:
            records = await _fill(store)
            statements, _ = _swap(records, 1, 2, "positions")  # a2 and b1
            await tamper(store, *statements)
            assert (await verify_store(store)).report.ok
        finally:
            await store.close()

    asyncio.run(run())
