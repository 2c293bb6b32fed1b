"""aiokafka plumbing for :mod:`brokers.kafka.broker`: names, keys, the publish sequence,
stopping clients, and reading a compacted topic to its end."""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.partitioner import murmur2

logger = logging.getLogger("brokers")
_NAME_OK = re.compile(r"[^A-Za-z0-9._-]")


def topic_name(name: str) -> str:
    # Kafka topic names are [A-Za-z0-9._-]; anything else is spelled as _xx (hex).
    return _NAME_OK.sub(lambda m: f"_{ord(m.group()):02x}", name)


class Seq:
    """A strictly increasing publish sequence (nanoseconds since the epoch, at least)."""

    def __init__(self) -> None:
        self._last = 0

    def __call__(self) -> bytes:
        self._last = max(self._last + 1, time.time_ns())
        return self._last.to_bytes(8, "big")


async def stop(client: Any) -> None:
    """Stop an aiokafka client, whatever it raises on the way down; only a cancellation
    of the calling task itself goes on (aiokafka can leak its own tasks' ones)."""
    try:
        await (client.close() if isinstance(client, AIOKafkaAdminClient) else client.stop())
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
    except Exception as exc:
        logger.debug("stopping %s: %s", type(client).__name__, exc)


def murmur2_partition(key: bytes, count: int) -> int:
    """The partition Kafka's default partitioner (Java and aiokafka) gives ``key``."""
    hashed: int = murmur2(key)
    return (hashed & 0x7FFFFFFF) % count


def uuid_key() -> bytes:
    return uuid.uuid4().hex.encode()


def key_of(data: bytes) -> bytes | None:
    """The partition key of an encoded message: its saga id, else its correlation id."""
    try:
        headers = orjson.loads(data).get("headers") or {}
    except (orjson.JSONDecodeError, AttributeError):
        return None
    key = headers.get("saga_id") or headers.get("correlation_id")
    return key.encode() if isinstance(key, str) else None


async def read_compacted(common: dict[str, Any], tp: TopicPartition) -> dict[str, bytes]:
    """Key → latest value of a partition read from its start to its current end; a
    null value (a tombstone) removes its key. Keys keep their first-seen order."""
    rows: dict[str, bytes] = {}
    reader = AIOKafkaConsumer(**common, enable_auto_commit=False, auto_offset_reset="earliest")
    await reader.start()
    try:
        reader.assign([tp])
        end = (await reader.end_offsets([tp]))[tp]
        reader.seek(tp, 0)
        seen = -1
        while seen < end - 1:
            batch = await reader.getmany(tp, timeout_ms=1000)
            for record in batch.get(tp, ()):
                seen = record.offset
                key = (record.key or b"").decode()
                if record.value is None:
                    rows.pop(key, None)
                else:
                    rows[key] = record.value
            if not batch and await reader.position(tp) >= end:
                break
    finally:
        await stop(reader)
    return rows
