"""Verification recomputes the chain and names the first broken record and why.

(The full tamper matrix, with hypothesis choosing the record and the change, belongs to
the audit work; these pin each kind of break on every backend.)"""

from __future__ import annotations

import pytest
from sqlalchemy import text

from eventstore import NO_STREAM, ChainHead, EventStore, NewRecord, Record


async def _fill(store: EventStore) -> None:
    for stream in ("a", "b"):
        await store.append(
            stream, [NewRecord("event", "t", {"n": i}) for i in range(1, 5)], NO_STREAM
        )


async def _tamper(store: EventStore, *statements: str) -> None:
    async with store._engine.begin() as conn:
        if store._dialect.name == "sqlite":
            await conn.exec_driver_sql("DROP TRIGGER records_no_update")
            await conn.exec_driver_sql("DROP TRIGGER records_no_delete")
        else:
            await conn.exec_driver_sql("DROP TRIGGER records_no_update_delete ON records")
        for statement in statements:
            await conn.execute(text(statement))


async def test_an_intact_store_verifies(store: EventStore) -> None:
    await _fill(store)
    report = await store.verify()
    assert report.ok and report.records_checked == 8 and report.streams_checked == 2
    one = await store.verify("b")
    assert one.ok and one.records_checked == 4


def _head(record: Record) -> ChainHead:
    return ChainHead(
        record.position, record.stream_id, record.version, record.hash, record.log_hash
    )


async def test_an_empty_store_has_no_head(store: EventStore) -> None:
    report = await store.verify()
    assert report.ok and report.records_checked == 0 and report.head is None
    assert (await store.verify("nothing")).head is None


async def test_the_head_is_the_last_record_verified(store: EventStore) -> None:
    await _fill(store)
    last_a, last_b = (await store.read_stream("a"))[-1], (await store.read_stream("b"))[-1]
    report = await store.verify()
    assert report.head == _head(last_b) and report.last_position == last_b.position
    assert (await store.verify("a")).head == _head(last_a)


async def test_paging_changes_nothing(store: EventStore) -> None:
    await _fill(store)
    for stream_id in (None, "a"):
        whole = await store.verify(stream_id)
        for page_size in (1, 3, 4):
            assert await store.verify(stream_id, page_size=page_size) == whole
    with pytest.raises(ValueError, match="page_size"):
        await store.verify(page_size=0)


async def test_after_a_break_the_head_is_the_record_before_it(store: EventStore) -> None:
    await _fill(store)
    before = (await store.read_stream("b"))[1]
    await _tamper(store, "UPDATE records SET type = 'forged' WHERE stream_id = 'b' AND version = 3")
    for stream_id in (None, "b"):
        report = await store.verify(stream_id, page_size=2)
        assert report.first_broken is not None and report.first_broken.version == 3
        assert report.head == _head(before)


async def test_a_changed_field_is_a_hash_mismatch_at_that_record(store: EventStore) -> None:
    await _fill(store)
    await _tamper(store, "UPDATE records SET type = 'forged' WHERE stream_id = 'b' AND version = 3")
    report = await store.verify()
    assert report.first_broken is not None
    broken = report.first_broken
    assert (broken.stream_id, broken.version, broken.reason) == ("b", 3, "hash mismatch")
    assert broken.position == (await store.read_stream("b"))[2].position
    assert "hash mismatch" in broken.describe() and "'b' version 3" in broken.describe()
    assert (await store.verify("a")).ok
    assert (await store.verify("b")).first_broken == broken


async def test_a_deleted_record_is_a_missing_version(store: EventStore) -> None:
    await _fill(store)
    await _tamper(store, "DELETE FROM records WHERE stream_id = 'a' AND version = 2")
    broken = (await store.verify()).first_broken
    assert broken is not None
    assert (broken.stream_id, broken.version, broken.reason) == ("a", 3, "missing version")
    assert (broken.expected, broken.found) == ("2", "3")


async def test_a_rehashed_record_breaks_the_link_to_the_next(store: EventStore) -> None:
    await _fill(store)
    await _tamper(
        store, "UPDATE records SET prev_hash = hash WHERE stream_id = 'a' AND version = 4"
    )
    broken = (await store.verify()).first_broken
    assert broken is not None and (broken.stream_id, broken.version) == ("a", 4)
    assert broken.reason == "broken link"
