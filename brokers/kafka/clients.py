"""aiokafka clients for :mod:`brokers.kafka.broker`: their settings, the I/O boundary
every call crosses, producing records, stopping clients, and reading a compacted topic
to its end."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka import errors as kerr
from aiokafka.admin import AIOKafkaAdminClient

from brokers._circuit import CircuitBreaker
from brokers._errors import BrokerConnectionError, BrokerError
from brokers._options import ConsumerOptions
from brokers.kafka.records import Record

T = TypeVar("T")
logger = logging.getLogger("brokers")

RECORD_OVERHEAD = 64 * 1024
"""Record batch, key and header bytes beside the value."""

SHARED_BATCHES_UP_TO = 32
"""A publish of at most this many records joins the producer's shared batches."""


@dataclass(frozen=True, slots=True)
class ClientSettings:
    """Keyword arguments for the aiokafka clients of one broker."""

    common: dict[str, Any]
    """Every client's: servers, client id, security, request timeout."""
    producer: dict[str, Any]
    """The producer's, beside ``common``: idempotent, ``acks=all``, batching, size."""
    consumer: dict[str, Any]
    """A group member's, beside ``common``: manual commits, session, fetch waits, size."""

    @property
    def request_timeout(self) -> float:
        return float(self.common["request_timeout_ms"]) / 1000


def client_settings(
    *,
    bootstrap_servers: str | list[str],
    client_id: str,
    security_protocol: str,
    sasl_mechanism: str | None,
    sasl_username: str | None,
    sasl_password: str | None,
    ssl_cafile: str | None,
    ssl_certfile: str | None,
    ssl_keyfile: str | None,
    request_timeout: float,
    linger_ms: int,
    batch_bytes: int,
    compression_type: str | None,
    max_message_bytes: int,
    consumer_options: ConsumerOptions,
    session_timeout: float | None,
    heartbeat_interval: float | None,
) -> ClientSettings:
    """The aiokafka settings for ``KafkaBroker``'s options (see its signature)."""
    common: dict[str, Any] = {
        "bootstrap_servers": bootstrap_servers,
        "client_id": client_id,
        "security_protocol": security_protocol,
        "request_timeout_ms": int(request_timeout * 1000),
    }
    if sasl_mechanism is not None:
        common.update(
            sasl_mechanism=sasl_mechanism,
            sasl_plain_username=sasl_username,
            sasl_plain_password=sasl_password,
        )
    if security_protocol in ("SSL", "SASL_SSL"):
        from aiokafka.helpers import create_ssl_context

        common["ssl_context"] = create_ssl_context(
            cafile=ssl_cafile, certfile=ssl_certfile, keyfile=ssl_keyfile
        )
    producer = {
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": linger_ms,
        "max_batch_size": batch_bytes,
        "max_request_size": max_message_bytes + RECORD_OVERHEAD,
        "compression_type": compression_type,
    }
    visibility = consumer_options.visibility_timeout
    session = session_timeout if session_timeout is not None else max(visibility, 1.0)
    heartbeat = heartbeat_interval if heartbeat_interval is not None else min(session / 3, 1.0)
    block_ms = int(consumer_options.block_time * 1000)
    consumer = {
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",  # a new group starts from the oldest retained
        "session_timeout_ms": int(session * 1000),
        "heartbeat_interval_ms": max(10, int(heartbeat * 1000)),
        "fetch_max_wait_ms": max(1, min(500, block_ms)),
        "consumer_timeout_ms": max(1, min(200, block_ms)),
        "max_partition_fetch_bytes": max_message_bytes + RECORD_OVERHEAD,
        "fetch_max_bytes": max(50 * 1024 * 1024, max_message_bytes + RECORD_OVERHEAD),
        "isolation_level": "read_uncommitted",
    }
    return ClientSettings(common, producer, consumer)


class KafkaIO:
    """The boundary of every call to Kafka: it goes through the circuit breaker, and
    driver errors come out as :mod:`brokers._errors`."""

    def __init__(self, bootstrap_servers: str | list[str], circuit: CircuitBreaker) -> None:
        self._servers = bootstrap_servers
        self._circuit = circuit

    async def __call__(self, fn: Callable[[], Awaitable[T]]) -> T:
        servers = self._servers

        async def mapped() -> T:
            try:
                return await fn()
            except (kerr.KafkaConnectionError, kerr.NodeNotReadyError, OSError) as exc:
                raise BrokerConnectionError(f"kafka at {servers}: {exc}") from exc
            except kerr.KafkaTimeoutError as exc:
                raise BrokerConnectionError(f"kafka at {servers}: timed out ({exc})") from exc
            except kerr.MessageSizeTooLargeError as exc:
                raise BrokerError(
                    f"kafka at {servers} refused a message as too large "
                    f"({exc}); raise the topic's max.message.bytes / the broker's "
                    "message.max.bytes to at least max_message_bytes"
                ) from exc
            except kerr.KafkaError as exc:
                raise BrokerError(f"kafka at {servers}: {exc}") from exc

        return await self._circuit.call(mapped)


async def produce(
    producer: AIOKafkaProducer,
    topic: str,
    by_partition: Mapping[int, list[Record]],
    timeout: float,
) -> None:
    """Send records to their partitions of ``topic`` and wait until Kafka has them all.

    A few records go through ``producer.send``: each joins the batch its partition is
    filling for ``linger_ms``, so the publishes of many concurrent handlers share a
    request. More go as whole batches (``send_batch``, one future per batch instead of
    one per record). aiokafka gives up on a batch early when other batches of the
    partition are queued before it (its wait takes the time since the first try off the
    timeout again at every wake-up), so a batch refused that way is offered again until
    ``timeout`` has really passed.
    """
    futures = []
    if sum(len(items) for items in by_partition.values()) <= SHARED_BATCHES_UP_TO:
        for partition, items in by_partition.items():
            for key, data, headers in items:
                sent = producer.send(topic, data, key=key, partition=partition, headers=headers)
                futures.append(await sent)
    else:
        deadline = time.monotonic() + timeout
        for partition, items in by_partition.items():
            batch = producer.create_batch()
            for key, data, headers in items:
                while batch.append(key=key, value=data, timestamp=None, headers=headers) is None:
                    batch.close()
                    futures.append(await _send_batch(producer, batch, topic, partition, deadline))
                    batch = producer.create_batch()
            batch.close()
            futures.append(await _send_batch(producer, batch, topic, partition, deadline))
    await asyncio.gather(*futures)


async def _send_batch(
    producer: AIOKafkaProducer, batch: Any, topic: str, partition: int, deadline: float
) -> Any:
    while True:
        try:
            return await producer.send_batch(batch, topic, partition=partition)
        except kerr.KafkaTimeoutError:  # not queued: offered again, the deadline permitting
            if time.monotonic() >= deadline:
                raise


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
