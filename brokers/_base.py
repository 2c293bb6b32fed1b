"""The ``Broker`` port: every behaviour brokers share lives here, once.

A concrete broker implements the storage primitives of
:class:`~brokers._storage.BrokerStorage` (append, fetch, ack, retry-later, dead-letter,
…). Validation, size and TTL limits, provenance checks, the retry/backoff decision, the
dead letters (:mod:`brokers._dead_letters`), reconnect backoff and metrics are all
decided here, so the in-memory, Redis and Kafka brokers cannot drift apart.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import random
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import replace
from types import TracebackType
from typing import Any, Self

from brokers._circuit import CircuitBreakerPolicy
from brokers._dead_letters import (
    DiscardedDeadLetter,
    Rejection,
    check_entry,
    dead_letter_record,
    decode_discarded,
    discard_record,
    reprocessed,
)
from brokers._errors import (
    BrokerConnectionError,
    BrokerError,
    BrokerNotConnectedError,
    DeadLetterError,
    MessageValidationError,
)
from brokers._leases import LeaseMembership
from brokers._membership import MembershipSession, OnAssigned
from brokers._message import (
    DeadLetterMessage,
    Delivery,
    Headers,
    JSONObject,
    Message,
    Publication,
    coerce_headers,
)
from brokers._metrics import BrokerMetrics
from brokers._options import ConsumerOptions
from brokers._redelivery import RedeliveryPolicy
from brokers._storage import BrokerStorage

logger = logging.getLogger("brokers")

DAY = 86_400.0
DEFAULT_MAX_MESSAGE_BYTES = 1024 * 1024
DEFAULT_PRIORITY_LEVELS = 3
MAX_PRIORITY_LEVELS = 10
HeadersArg = Headers | Mapping[str, Any] | None


def default_consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


class Broker(BrokerStorage):
    """Abstract message broker with at-least-once, consumer-group semantics."""

    def __init__(
        self,
        *,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        message_ttl_days: float | None = 7,
        dlq_ttl_days: float = 30,
        max_stream_length: int = 100_000,
        priority_levels: int = DEFAULT_PRIORITY_LEVELS,
        max_retries: int | None = None,
        retry: RedeliveryPolicy | None = None,
        consumer_options: ConsumerOptions | None = None,
        circuit: CircuitBreakerPolicy | None = None,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        policy = retry or RedeliveryPolicy()
        if max_retries is not None:
            policy = replace(policy, max_retries=max_retries)
        if max_message_bytes <= 0:
            raise ValueError(f"max_message_bytes must be > 0, got {max_message_bytes}")
        if max_stream_length <= 0:
            raise ValueError(f"max_stream_length must be > 0, got {max_stream_length}")
        if type(priority_levels) is not int or not 1 <= priority_levels <= MAX_PRIORITY_LEVELS:
            raise ValueError(
                f"priority_levels must be an int from 1 to {MAX_PRIORITY_LEVELS}, "
                f"got {priority_levels!r}"
            )
        self.priority_levels = priority_levels
        """Delivery lanes of every topic: a message's priority, clamped to
        ``0 … priority_levels - 1``, is its lane, and a consumer takes waiting messages
        from the highest lane first. Every process using a topic must agree on it."""
        self.retry_policy = policy
        self.consumer_options = consumer_options or ConsumerOptions()
        self.circuit_policy = circuit or CircuitBreakerPolicy()
        self.max_message_bytes = max_message_bytes
        self.message_ttl = None if message_ttl_days is None else message_ttl_days * DAY
        self.dlq_ttl = dlq_ttl_days * DAY
        self.max_stream_length = max_stream_length
        self.metrics = BrokerMetrics()
        self._clock = clock
        self._rng = rng or random.Random()
        self._connected = False
        self._sessions: set[MembershipSession] = set()
        self._cleanups: list[Callable[[], Awaitable[None]]] = []
        # Message ids: a random 96-bit prefix per broker object and a counter. Unique
        # across processes like a UUID, at a tenth of uuid4's cost on the publish path.
        self._id_prefix = os.urandom(12).hex()
        self._id_seq = itertools.count(1)

    # -- lifecycle -----------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._connected

    async def connect(self) -> None:
        """Open the connection (idempotent)."""
        if not self._connected:
            await self._connect()
            self._connected = True
            self.metrics = BrokerMetrics()

    async def disconnect(self) -> None:
        """Close the connection (idempotent). Un-acknowledged messages stay pending."""
        if self._connected:
            cleanups, self._cleanups = self._cleanups, []
            for cleanup in cleanups:
                try:
                    await cleanup()
                except Exception as exc:  # a cleanup's failure must not keep us open
                    logger.warning("cleanup at disconnect failed: %s", exc)
            self._connected = False
            # Consume loops leave their groups while the connection is still open, so
            # the other members take over at once instead of after a timeout.
            sessions, self._sessions = self._sessions, set()
            for session in sessions:
                await session.close()
            await self._disconnect()

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.disconnect()

    def priority_lane(self, priority: int) -> int:
        """The lane a message of ``priority`` is stored in: ``priority`` clamped to
        ``0 … priority_levels - 1`` (0, the default, is the topic itself)."""
        return min(max(priority, 0), self.priority_levels - 1)

    def _new_id(self) -> str:
        return f"{self._id_prefix}{next(self._id_seq):08x}"

    def _require_connected(self) -> None:
        if not self._connected:
            raise BrokerNotConnectedError(
                f"{type(self).__name__} is not connected: call connect() or use 'async with'"
            )

    # -- publishing ----------------------------------------------------------------

    def build_message(
        self,
        topic: str,
        payload: JSONObject,
        *,
        headers: HeadersArg = None,
        ttl: float | None = None,
        priority: int = 0,
        message_id: str | None = None,
    ) -> tuple[Message, bytes]:
        """Validate and encode one message; raises before anything is sent."""
        batch = self._publication(topic, headers, ttl, priority)
        message_id, digest, data = batch.encode(payload, message_id or self._new_id())
        message = Message(
            id=message_id,
            topic=topic,
            payload=payload,
            headers=batch.headers,
            created_at=batch.created_at,
            expires_at=batch.expires_at,
            retry_count=0,
            priority=priority,
            provenance_hash=digest,
        )
        return message, data

    def _publication(
        self, topic: str, headers: HeadersArg, ttl: float | None, priority: int
    ) -> Publication:
        """Check what the messages of one publish call share (topic, headers, ttl,
        priority), once for all of them."""
        if not topic or type(topic) is not str:
            raise MessageValidationError(f"topic must be a non-empty string, got {topic!r}")
        parsed = coerce_headers(headers)
        if ttl is not None and ttl <= 0:
            raise MessageValidationError(f"ttl for topic {topic!r} must be > 0, got {ttl}")
        if ttl is not None and self.message_ttl is not None and ttl > self.message_ttl:
            raise MessageValidationError(
                f"ttl {ttl:g} s for topic {topic!r} is longer than the topics keep messages "
                f"(message_ttl_days: {self.message_ttl / DAY:g})"
            )
        if type(priority) is not int:
            raise MessageValidationError(f"priority must be an int, got {priority!r}")
        now = self._clock()
        lifetime = ttl if ttl is not None else self.message_ttl
        expires_at = None if lifetime is None else now + lifetime
        return Publication(topic, parsed, now, expires_at, priority, self.max_message_bytes)

    async def publish(
        self,
        topic: str,
        payload: JSONObject,
        *,
        headers: HeadersArg = None,
        ttl: float | None = None,
        priority: int = 0,
        message_id: str | None = None,
    ) -> str:
        """Publish one message; returns its id once the broker has stored it."""
        self._require_connected()
        batch = self._publication(topic, headers, ttl, priority)
        message_id, _, data = batch.encode(payload, message_id or self._new_id())
        key = batch.headers.partition_key
        await self._append(topic, (data,), self.priority_lane(priority), key)
        self.metrics.on_publish()
        return message_id

    async def publish_batch(
        self,
        topic: str,
        payloads: Iterable[JSONObject],
        *,
        headers: HeadersArg = None,
        ttl: float | None = None,
        priority: int = 0,
    ) -> list[str]:
        """Publish many messages in one round trip; all are validated before any is sent."""
        self._require_connected()
        batch = self._publication(topic, headers, ttl, priority)
        encode, new_id = batch.encode, self._new_id
        ids: list[str] = []
        datas: list[bytes] = []
        for payload in payloads:
            message_id, _, data = encode(payload, new_id())
            ids.append(message_id)
            datas.append(data)
        if datas:
            key = batch.headers.partition_key
            await self._append(topic, datas, self.priority_lane(priority), key)
            self.metrics.on_publish(len(datas))
        return ids

    # -- consuming -----------------------------------------------------------------

    async def consume(
        self,
        topic: str,
        group: str,
        *,
        consumer: str | None = None,
        batch_size: int = 10,
        on_assigned: OnAssigned | None = None,
    ) -> AsyncIterator[Message]:
        """Yield messages for ``group`` forever; acknowledge or nack each one.

        Cancelling the task that iterates ends the loop; messages it had not
        acknowledged are redelivered to the group after the visibility timeout.
        ``disconnect()`` ends every loop too: it returns, quietly, so a listener a
        pattern left running does not fail at exit. A connection loss is retried with
        backoff, without ending the loop.

        With ``on_assigned`` the loop is also a member of the group's membership
        (:mod:`brokers._membership`): between fetches it awaits ``on_assigned`` with the
        partitions it holds, first at start (even none), then on every change. When
        the loop ends it gives its partitions up at once, without a last call.
        """
        self._require_connected()
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        name = consumer or default_consumer_name()
        policy = self.circuit_policy
        wait = policy.reconnect_base_delay
        session = None if on_assigned is None else self._join(topic, group, name, on_assigned)
        try:
            if session is not None:
                self._sessions.add(session)
                await session.start()
            while self._connected:
                if session is not None:
                    await session.sync()
                try:
                    entries = await self._fetch(topic, group, name, batch_size)
                    ready = [
                        message
                        for delivery, raw in entries
                        if (message := await self._admit(topic, delivery, raw)) is not None
                    ]
                except BrokerError as exc:
                    if not self._connected:
                        return  # disconnect() ends the loop
                    if not isinstance(exc, BrokerConnectionError):
                        raise
                    logger.warning(
                        "consumer %s of %s/%s lost the broker (%s); retrying in %.2fs",
                        name,
                        topic,
                        group,
                        exc,
                        wait,
                    )
                    await asyncio.sleep(wait)
                    wait = min(wait * 2, policy.reconnect_max_delay)
                    continue
                wait = policy.reconnect_base_delay
                for message in ready:
                    yield message
        finally:
            if session is not None:
                self._sessions.discard(session)
                await session.close()

    def _join(
        self, topic: str, group: str, consumer: str, on_assigned: OnAssigned
    ) -> MembershipSession:
        """The membership a consume loop with ``on_assigned`` takes part in: leases in
        this backend's lease table. A backend with membership of its own overrides it."""
        table = self._lease_table(topic, group)
        options, rng = self.consumer_options, self._rng
        return LeaseMembership(table, topic, group, consumer, on_assigned, options, rng)

    async def _admit(self, topic: str, delivery: Delivery, raw: bytes | None) -> Message | None:
        """Decode and check one entry; anything undeliverable goes to the DLQ here."""
        now = self._clock()
        checked = check_entry(topic, delivery, raw, now)
        if isinstance(checked, Rejection):
            await self._dead_letter_entry(topic, delivery, checked)
            return None
        self.metrics.on_consume(now - checked.created_at if checked.retry_count == 0 else -1.0)
        return checked

    async def _dead_letter_entry(
        self, topic: str, delivery: Delivery, rejection: Rejection
    ) -> None:
        record = dead_letter_record(rejection, delivery, self._clock())
        await self._dead_letter(topic, delivery, record.encode())
        self.metrics.dead_lettered += 1
        logger.warning(
            "dead-lettered message %s on %s/%s: %s",
            rejection.message.id,
            topic,
            delivery.group,
            rejection.reason,
        )

    @staticmethod
    def _delivery_of(message: Message) -> Delivery:
        if message.delivery is None:
            raise ValueError(
                f"message {message.id} on {message.topic!r} was not received from consume(); "
                "only delivered messages can be acknowledged or nacked"
            )
        return message.delivery

    async def acknowledge(self, message: Message) -> None:
        """Mark a delivered message done for its group."""
        self._require_connected()
        await self._ack(message.topic, self._delivery_of(message))
        self.metrics.acknowledged += 1

    async def acknowledge_batch(self, messages: Iterable[Message]) -> None:
        """Mark many delivered messages done at once (Redis: one ``XACK`` per stream, in
        one round trip) and return once every one is recorded, as :meth:`acknowledge`
        does for one. All are checked to be delivered ones before any is acknowledged."""
        self._require_connected()
        by_topic: dict[str, list[Delivery]] = {}
        for message in messages:
            by_topic.setdefault(message.topic, []).append(self._delivery_of(message))
        for topic, deliveries in by_topic.items():
            await self._ack_many(topic, deliveries)
            self.metrics.acknowledged += len(deliveries)

    async def keep_alive(self, message: Message) -> None:
        """Say that ``message`` is still being worked on: it stays with its consumer for
        another ``visibility_timeout`` instead of being handed out again (to another
        member of the group on Redis and in memory; on Kafka, by the same loop)."""
        await self._touch(message.topic, self._delivery_of(message))

    async def nack(self, message: Message, reason: str, requeue: bool = True) -> None:
        """Give a delivered message back: retried after a backoff while
        ``retry_count < max_retries`` (and ``requeue``), else dead-lettered with ``reason``.
        """
        self._require_connected()
        delivery = self._delivery_of(message)
        self.metrics.nacked += 1
        if requeue and message.retry_count < self.retry_policy.max_retries:
            attempt = message.retry_count + 1
            delay = self.retry_policy.delay(attempt, self._rng)
            again = replace(message, retry_count=attempt, delivery=None)
            await self._retry_later(message.topic, delivery, again.encode(), delay)
            self.metrics.retried += 1
            return
        await self._dead_letter_entry(message.topic, delivery, Rejection(message, reason))

    # -- dead letters, lag, health -------------------------------------------------

    async def get_dead_letter_messages(
        self, topic: str, limit: int = 100
    ) -> list[DeadLetterMessage]:
        """The oldest ``limit`` dead letters of ``topic``, every group's."""
        self._require_connected()
        rows = await self._read_dead_letters(topic, limit)
        return [DeadLetterMessage.decode(data, topic, dlq_id) for dlq_id, data in rows]

    async def get_dead_letter_count(self, topic: str) -> int:
        """How many dead letters ``topic`` has, every group's (what metrics show as the
        DLQ's depth): counted by the server where it can (Redis ``XLEN``), never
        decoded."""
        self._require_connected()
        return await self._count_dead_letters(topic)

    async def reprocess_dead_letter_message(self, dlq_message: DeadLetterMessage) -> str:
        """Re-deliver a dead letter to the group that gave up on it, with its retry count
        reset and a fresh TTL window; removes it from the DLQ. Returns the message id."""
        self._require_connected()
        again = reprocessed(dlq_message, self._clock())
        await self._reprocess(
            again.topic, dlq_message.consumer_group, dlq_message.dlq_id, again.encode()
        )
        return again.id

    async def get_dead_letter_message(self, topic: str, dlq_id: str) -> DeadLetterMessage:
        """Dead letter ``dlq_id`` of ``topic``; :class:`DeadLetterError` if there is none
        (never was, or reprocessed, discarded or expired since)."""
        self._require_connected()
        data = await self._read_dead_letter(topic, dlq_id)
        if data is None:
            raise DeadLetterError(f"no dead letter {dlq_id!r} on {topic!r}")
        return DeadLetterMessage.decode(data, topic, dlq_id)

    async def get_dead_letter_topics(self) -> list[str]:
        """The topics that have dead letters now, sorted (the broker's own view: every
        topic, not only those this object has used)."""
        self._require_connected()
        return sorted(set(await self._dead_letter_topics()))

    async def discard_dead_letter_message(
        self, dlq_message: DeadLetterMessage, *, reason: str, discarded_by: str
    ) -> None:
        """Take a dead letter out of the DLQ for good, recorded: it moves to the topic's
        discard archive with who discarded it, when and why
        (:meth:`get_discarded_dead_letters`). :class:`DeadLetterError` if it is no longer
        in the DLQ."""
        self._require_connected()
        topic = dlq_message.original_message.topic
        record = discard_record(dlq_message, reason=reason, by=discarded_by, at=self._clock())
        if not await self._discard(topic, dlq_message.dlq_id, record):
            raise DeadLetterError(f"no dead letter {dlq_message.dlq_id!r} on {topic!r}")
        logger.info(
            "discarded dead letter %s (message %s) on %s by %s: %s",
            dlq_message.dlq_id,
            dlq_message.original_message.id,
            topic,
            discarded_by,
            reason,
        )

    async def get_discarded_dead_letters(
        self, topic: str, limit: int = 100
    ) -> list[DiscardedDeadLetter]:
        """The oldest ``limit`` records of ``topic``'s discard archive."""
        self._require_connected()
        return [decode_discarded(data, topic) for data in await self._read_discarded(topic, limit)]

    async def delete_topic(self, topic: str) -> None:
        """Remove ``topic``: its messages, its consumer groups and their retries. Its
        dead letters stay until the DLQ's TTL. For topics that belong to one
        conversation (a request-reply pattern's replies, a ``SagaPattern``'s own
        topics), so nothing piles up; deleting a topic others still use loses their
        messages."""
        self._require_connected()
        await self._delete(topic)

    def on_disconnect(
        self, cleanup: Callable[[], Awaitable[None]], *, remove: bool = False
    ) -> None:
        """Run ``cleanup`` at the start of :meth:`disconnect`, while the connection is
        still open (a pattern deleting its reply topic); once, errors logged. With
        ``remove``, forget it (the pattern cleaned up by itself)."""
        if remove:
            if cleanup in self._cleanups:
                self._cleanups.remove(cleanup)
        elif cleanup not in self._cleanups:
            self._cleanups.append(cleanup)

    async def get_partition_holders(self, topic: str, group: str) -> dict[int, str]:
        """Which member of ``group`` holds each partition of ``topic`` now, as the
        broker's membership sees it: the live consume loops and what each owns (for
        ``saga.replies``, the engines and their sagas). Lease backends (in-memory,
        Redis) name the loops ``<consumer>#<id>``; Kafka names group members."""
        self._require_connected()
        return await self._partition_holders(topic, group)

    async def _partition_holders(self, topic: str, group: str) -> dict[int, str]:
        table = self._lease_table(topic, group)
        return await table.holders(self.consumer_options.membership_partitions)

    async def get_consumer_lag(self, topic: str, group: str) -> int:
        """Messages the group has still to finish: undelivered + un-acknowledged +
        waiting for a retry."""
        self._require_connected()
        return await self._lag(topic, group)

    async def health_check(self) -> dict[str, Any]:
        """``status`` (healthy / unhealthy), ``latency_ms`` of a ping, ``uptime_seconds``."""
        started = time.perf_counter()
        status, error = "healthy", None
        try:
            self._require_connected()
            await self._ping()
        except Exception as exc:  # a health check reports, it does not raise
            status, error = "unhealthy", f"{type(exc).__name__}: {exc}"
        result: dict[str, Any] = {
            "status": status,
            "latency_ms": round((time.perf_counter() - started) * 1000.0, 3),
            "uptime_seconds": round(self.metrics.uptime(), 3) if self._connected else 0.0,
            "broker": type(self).__name__,
        }
        result.update(self._health_extra())
        if error is not None:
            result["error"] = error
        return result

    def get_metrics(self) -> dict[str, Any]:
        """Counters since ``connect()``: published, consumed, failed, throughput, latency."""
        return self.metrics.snapshot()

    def _health_extra(self) -> dict[str, Any]:
        return {}
