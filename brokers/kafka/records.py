"""The Kafka record a message becomes: its key, its partition and its headers.

A message with a ``saga_id`` (else ``correlation_id``) header is keyed by it and goes
to the partition Kafka's default partitioner gives that key, so one saga's messages
share a partition and stay in order; others are spread round-robin. Every record
carries its publish sequence (header ``s``), a retry also the unix time it falls due
(header ``d``).
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Sequence
from typing import Any

import orjson
from aiokafka.partitioner import murmur2

SEQ_HEADER = "s"
DUE_HEADER = "d"

Record = tuple[bytes | None, bytes, list[Any]]
"""Key, value and headers of one record to send."""


class Seq:
    """A strictly increasing publish sequence (nanoseconds since the epoch, at least)."""

    def __init__(self) -> None:
        self._last = 0

    def take(self, count: int) -> int:
        """The first of ``count`` consecutive values, all after every value given out
        before (one clock read for a whole batch)."""
        first = max(self._last + 1, time.time_ns())
        self._last = first + count - 1
        return first


def header(record: Any, name: str) -> bytes | None:
    for key, value in record.headers or ():
        if key == name:
            return value  # type: ignore[no-any-return]
    return None


def murmur2_partition(key: bytes, count: int) -> int:
    """The partition Kafka's default partitioner (Java and aiokafka) gives ``key``."""
    hashed: int = murmur2(key)
    return (hashed & 0x7FFFFFFF) % count


def key_partition(key: str, count: int) -> int:
    """The partition of ``count`` a message keyed by ``key`` (its saga id, else its
    correlation id) is produced to: :func:`murmur2_partition` of the key's UTF-8 bytes,
    exactly as :func:`records_by_partition` routes it."""
    return murmur2_partition(key.encode(), count)


def uuid_key() -> bytes:
    return uuid.uuid4().hex.encode()


def key_of(data: bytes) -> bytes | None:
    """The partition key of an encoded message: its saga id, else its correlation id
    (what :attr:`~brokers.Headers.partition_key` is before encoding)."""
    try:
        headers = orjson.loads(data).get("headers") or {}
    except (orjson.JSONDecodeError, AttributeError):
        return None
    key = headers.get("saga_id") or headers.get("correlation_id")
    return key.encode() if isinstance(key, str) else None


def records_by_partition(
    datas: Sequence[bytes],
    key: bytes | None,
    count: int,
    seq: Seq,
    round_robin: itertools.count[int],
    retry_due: float | None,
) -> dict[int, list[Record]]:
    """The records of encoded messages keyed by ``key`` (or none), grouped by the
    partition (of ``count``) each goes to: all to the key's partition, else spread
    round-robin. The publish sequence is taken in publish order, before the split."""
    due = None if retry_due is None else repr(retry_due).encode()
    first = seq.take(len(datas))
    after: list[Any] = [] if due is None else [(DUE_HEADER, due)]
    headers = [[(SEQ_HEADER, (first + i).to_bytes(8, "big")), *after] for i in range(len(datas))]
    if key:
        partition = murmur2_partition(key, count)
        return {partition: [(key, data, h) for data, h in zip(datas, headers, strict=True)]}
    by_partition: dict[int, list[Record]] = {}
    for data, h in zip(datas, headers, strict=True):
        by_partition.setdefault(next(round_robin) % count, []).append((None, data, h))
    return by_partition
