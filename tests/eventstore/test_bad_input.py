"""Bad input is refused with an error naming what is wrong, before anything is written."""

from __future__ import annotations

import math
from typing import Any

import pytest

from eventstore import NO_STREAM, EventStore, InvalidRecordError, Limits, NewRecord


def ok(n: int = 1) -> NewRecord:
    return NewRecord("event", "t", {"n": n})


@pytest.mark.parametrize(
    ("stream_id", "records", "expected", "message"),
    [
        ("", [ok()], NO_STREAM, "stream id must not be empty"),
        ("   ", [ok()], NO_STREAM, "stream id must not be empty"),
        ("x" * 201, [ok()], NO_STREAM, "201 characters long; the limit is 200"),
        ("tab\there", [ok()], NO_STREAM, "control character"),
        (42, [ok()], NO_STREAM, "stream id must be a string"),
        ("s", [], NO_STREAM, "has no records"),
        ("s", ok(), NO_STREAM, "sequence of NewRecord"),
        ("s", [ok(), {"kind": "event"}], NO_STREAM, "record 1 .* is a dict"),
        (
            "s",
            [ok(), NewRecord("event", "t", {"when": object()})],
            NO_STREAM,
            "record 1 .*data is not portable JSON",
        ),
        ("s", [NewRecord("event", "t", {"x": math.nan})], NO_STREAM, "data is not valid JSON"),
        ("s", [NewRecord("event", "t", {"x": [math.inf]})], NO_STREAM, "data is not valid JSON"),
        (
            "s",
            [NewRecord("event", "t", {}, {"trace": {1, 2}})],
            NO_STREAM,
            "metadata is not portable JSON",
        ),
        (
            "s",
            [NewRecord("event", "t", ["not", "an", "object"])],
            NO_STREAM,  # type: ignore[arg-type]
            "data must be a JSON object",
        ),
        (
            "s",
            [NewRecord("fact", "t", {})],
            NO_STREAM,  # type: ignore[arg-type]
            "kind must be 'command' or 'event'",
        ),
        ("s", [NewRecord("event", "", {})], NO_STREAM, "type must be a non-empty string"),
        ("s", [ok()], -1, "expected_version must be"),
        ("s", [ok()], "latest", "expected_version must be"),
        ("s", [ok()], True, "expected_version must be"),
    ],
)
async def test_refused_with_a_clear_error_and_nothing_written(
    store: EventStore, stream_id: Any, records: Any, expected: Any, message: str
) -> None:
    await store.append("s", [ok(0)], NO_STREAM)
    before = await store.last_position()
    with pytest.raises(InvalidRecordError, match=message):
        await store.append(stream_id, records, expected)
    assert await store.last_position() == before
    assert [r.data for r in await store.read_stream("s")] == [{"n": 0}]


async def test_records_over_the_size_limit_are_refused_whole(store_url: str) -> None:
    store = await EventStore.open(store_url, limits=Limits(max_record_bytes=1000))
    try:
        small, big = ok(), NewRecord("event", "t", {"blob": "é" * 600})
        with pytest.raises(InvalidRecordError, match=r"record 1 .* is 1\d\d\d bytes .* 1000"):
            await store.append("s", [small, big], NO_STREAM)
        assert await store.stream_version("s") == 0
        await store.append("s", [small], NO_STREAM)
    finally:
        await store.close()


@pytest.mark.parametrize(
    ("data", "message"),
    [({"big": 2**64}, "Integer exceeds 64-bit range"), ({"nested": {1: "a"}}, "key must be str")],
)
async def test_json_the_reader_could_not_return_exactly_is_refused(
    store: EventStore, data: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidRecordError, match=f"data is not portable JSON: .*{message}"):
        await store.append("s", [NewRecord("event", "t", data)], NO_STREAM)
    assert await store.stream_version("s") == 0


async def test_unicode_and_64_bit_integers_round_trip(store: EventStore) -> None:
    data = {"name": "Zürich ☃", "big": 2**64 - 1, "neg": -(2**63), "f": 1e16, "z": -0.5}
    await store.append("s", [NewRecord("event", "t", data)], NO_STREAM)
    [record] = await store.read_stream("s")
    assert record.data == data
    assert (await store.verify()).ok
