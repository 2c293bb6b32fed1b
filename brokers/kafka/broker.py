"""Apache Kafka broker (aiokafka).

Topics, for topic ``t`` and group ``g`` (all behind the optional ``topic_prefix``):

* ``t`` — the messages, ``partitions`` partitions. A message with a ``saga_id`` (else
  ``correlation_id``) header is keyed by it, so one saga's messages share a partition
  and stay in order; others are spread round-robin. Each record carries its publish
  sequence (header ``s``), so a consumer holding several partitions hands messages out
  in publish order.
* ``t.retry.g`` — the group's retries and reprocessed dead letters (header ``d`` is the
  unix time a retry falls due); only group ``g`` reads it.
* ``t.dlq`` — dead letters, one partition, keyed by dead-letter id; reprocessing writes a
  tombstone (a null value) for the id, and the topic is compacted.

Consumer group ``g`` commits, per partition, only the contiguous acknowledged offsets
(:mod:`brokers.kafka.offsets`), so a message is done only when it and everything
before it in its partition are. A consumer that dies leaves (or times out of) the group;
the rebalance hands its partitions to another member, which resumes from the committed
offset: what was not acknowledged is delivered again. Producers are idempotent with
``acks=all``. Driver errors are mapped to :mod:`brokers._errors` at this boundary.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka import errors as kerr
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.structs import OffsetAndMetadata

from brokers._base import Broker, default_consumer_name
from brokers._circuit import CircuitBreaker
from brokers._config import KAFKA_MAX_MESSAGE_BYTES
from brokers._errors import BrokerConnectionError, BrokerError
from brokers._message import Delivery, Message
from brokers.kafka.clients import (
    Seq,
    key_of,
    murmur2_partition,
    read_compacted,
    stop,
    topic_name,
    uuid_key,
)
from brokers.kafka.member import DUE_HEADER, SEQ_HEADER, Member, StickyInFlightAssignor
from brokers.kafka.offsets import OffsetTracker

T = TypeVar("T")
logger = logging.getLogger("brokers")

_OVERHEAD = 64 * 1024  # record batch, key and header bytes beside the value


class KafkaBroker(Broker):
    """Broker on Apache Kafka. ``bootstrap_servers=`` plus security settings; the
    other options are :class:`Broker`'s. ``max_message_bytes`` defaults to 10 MiB here
    (Kafka's producer, topic and ``message.max.bytes`` limits must allow it)."""

    def __init__(
        self,
        bootstrap_servers: str | list[str] = "localhost:9092",
        *,
        topic_prefix: str = "",
        partitions: int = 4,
        replication_factor: int = 1,
        client_id: str = "sagaflow",
        security_protocol: str = "PLAINTEXT",
        sasl_mechanism: str | None = None,
        sasl_username: str | None = None,
        sasl_password: str | None = None,
        ssl_cafile: str | None = None,
        ssl_certfile: str | None = None,
        ssl_keyfile: str | None = None,
        linger_ms: int = 5,
        batch_bytes: int = 512 * 1024,
        compression_type: str | None = None,
        session_timeout: float | None = None,
        heartbeat_interval: float | None = None,
        request_timeout: float = 30.0,
        commit_interval: float = 0.05,
        max_message_bytes: int = KAFKA_MAX_MESSAGE_BYTES,
        **options: Any,
    ) -> None:
        if max_message_bytes > KAFKA_MAX_MESSAGE_BYTES:
            raise ValueError(
                f"max_message_bytes {max_message_bytes} is over the Kafka broker's limit "
                f"of {KAFKA_MAX_MESSAGE_BYTES} bytes"
            )
        if partitions < 1:
            raise ValueError(f"partitions must be >= 1, got {partitions}")
        super().__init__(max_message_bytes=max_message_bytes, **options)
        self.bootstrap_servers = bootstrap_servers
        self.topic_prefix = topic_prefix
        self.partitions = partitions
        self.replication_factor = replication_factor
        self._common: dict[str, Any] = {
            "bootstrap_servers": bootstrap_servers,
            "client_id": client_id,
            "security_protocol": security_protocol,
            "request_timeout_ms": int(request_timeout * 1000),
        }
        if sasl_mechanism is not None:
            self._common.update(
                sasl_mechanism=sasl_mechanism,
                sasl_plain_username=sasl_username,
                sasl_plain_password=sasl_password,
            )
        if security_protocol in ("SSL", "SASL_SSL"):
            from aiokafka.helpers import create_ssl_context

            self._common["ssl_context"] = create_ssl_context(
                cafile=ssl_cafile, certfile=ssl_certfile, keyfile=ssl_keyfile
            )
        self._producer_options = {
            "acks": "all",
            "enable_idempotence": True,
            "linger_ms": linger_ms,
            "max_batch_size": batch_bytes,
            "max_request_size": max_message_bytes + _OVERHEAD,
            "compression_type": compression_type,
        }
        visibility = self.consumer_options.visibility_timeout
        session = session_timeout if session_timeout is not None else max(visibility, 1.0)
        heartbeat = heartbeat_interval if heartbeat_interval is not None else min(session / 3, 1.0)
        block_ms = int(self.consumer_options.block_time * 1000)
        self._consumer_options = {
            "enable_auto_commit": False,
            "auto_offset_reset": "earliest",  # a new group starts from the oldest retained
            "session_timeout_ms": int(session * 1000),
            "heartbeat_interval_ms": max(10, int(heartbeat * 1000)),
            "fetch_max_wait_ms": max(1, min(500, block_ms)),
            "consumer_timeout_ms": max(1, min(200, block_ms)),
            "max_partition_fetch_bytes": max_message_bytes + _OVERHEAD,
            "fetch_max_bytes": max(50 * 1024 * 1024, max_message_bytes + _OVERHEAD),
            "isolation_level": "read_uncommitted",
        }
        self._commit_interval = commit_interval
        self._circuit = CircuitBreaker(f"kafka {bootstrap_servers}", self.circuit_policy)
        self._producer: AIOKafkaProducer | None = None
        self._admin: AIOKafkaAdminClient | None = None
        self._util: AIOKafkaConsumer | None = None
        self._committers: dict[str, AIOKafkaConsumer] = {}
        self._topics: dict[str, int] = {}
        self._members: dict[str, Member] = {}
        self._orphans: dict[tuple[str, TopicPartition], tuple[str, OffsetTracker]] = {}
        self._tokens = itertools.count(1)
        self._rr = itertools.count()
        self._seq = Seq()
        self._dlq_lock = asyncio.Lock()

    @property
    def circuit(self) -> CircuitBreaker:
        return self._circuit

    # -- names -----------------------------------------------------------------------

    def kafka_topic(self, topic: str) -> str:
        """The Kafka topic that carries ``topic``."""
        return self.topic_prefix + topic_name(topic)

    def _retry_topic(self, topic: str, group: str) -> str:
        return f"{self.kafka_topic(topic)}.retry.{topic_name(group)}"

    def _dlq_topic(self, topic: str) -> str:
        return f"{self.kafka_topic(topic)}.dlq"

    def _group_id(self, group: str) -> str:
        return self.topic_prefix + group

    # -- I/O boundary ----------------------------------------------------------------

    async def _io(self, fn: Callable[[], Awaitable[T]]) -> T:
        async def mapped() -> T:
            try:
                return await fn()
            except (kerr.KafkaConnectionError, kerr.NodeNotReadyError, OSError) as exc:
                raise BrokerConnectionError(f"kafka at {self.bootstrap_servers}: {exc}") from exc
            except kerr.KafkaTimeoutError as exc:
                raise BrokerConnectionError(
                    f"kafka at {self.bootstrap_servers}: timed out ({exc})"
                ) from exc
            except kerr.MessageSizeTooLargeError as exc:
                raise BrokerError(
                    f"kafka at {self.bootstrap_servers} refused a message as too large "
                    f"({exc}); raise the topic's max.message.bytes / the broker's "
                    "message.max.bytes to at least max_message_bytes"
                ) from exc
            except kerr.KafkaError as exc:
                raise BrokerError(f"kafka at {self.bootstrap_servers}: {exc}") from exc

        return await self._circuit.call(mapped)

    @property
    def _prod(self) -> AIOKafkaProducer:
        if self._producer is None:
            self._require_connected()
            raise AssertionError("unreachable")
        return self._producer

    async def _connect(self) -> None:
        producer = AIOKafkaProducer(**self._common, **self._producer_options)
        admin = AIOKafkaAdminClient(**self._common)
        util = AIOKafkaConsumer(**self._common, enable_auto_commit=False)
        started: list[Any] = []
        try:
            for client, start in ((producer, producer.start), (admin, admin.start)):
                await self._io(start)
                started.append(client)
            await self._io(util.start)
            started.append(util)
        except BaseException:
            for client in started:
                await stop(client)
            raise
        self._producer, self._admin, self._util = producer, admin, util

    async def _disconnect(self) -> None:
        for member in list(self._members.values()):
            await self._close_member(member)
        producer, self._producer = self._producer, None
        admin, self._admin = self._admin, None
        util, self._util = self._util, None
        committers, self._committers = self._committers, {}
        self._topics.clear()
        self._orphans.clear()
        for client in (util, *committers.values(), admin, producer):
            if client is not None:
                await stop(client)

    async def _ping(self) -> None:
        admin = self._admin
        if admin is None:
            self._require_connected()
            return
        await self._io(admin.describe_cluster)

    def _health_extra(self) -> dict[str, Any]:
        return {
            "circuit": self._circuit.state.value,
            "server": str(self.bootstrap_servers),
            "consumers": len(self._members),
        }

    # -- topics ----------------------------------------------------------------------

    async def _ensure_topics(self, *names: str, dlq: bool = False) -> None:
        missing = [name for name in names if name not in self._topics]
        if not missing:
            return
        admin = self._admin
        assert admin is not None
        limit = str(self.max_message_bytes + _OVERHEAD)
        configs = {"max.message.bytes": limit}
        if dlq:
            configs |= {
                "cleanup.policy": "compact,delete",
                "retention.ms": str(int(self.dlq_ttl * 1000)),
            }
        count = 1 if dlq else self.partitions
        new = [
            NewTopic(name, count, self.replication_factor, topic_configs=dict(configs))
            for name in missing
        ]

        async def create() -> None:
            with contextlib.suppress(kerr.TopicAlreadyExistsError):
                await admin.create_topics(new)

        await self._io(create)
        described = await self._io(lambda: admin.describe_topics(missing))
        for info in described:
            if not info.get("error_code") and info.get("partitions"):
                self._topics[str(info["topic"])] = len(info["partitions"])

    def _partitions_of(self, name: str) -> list[TopicPartition]:
        return [TopicPartition(name, p) for p in range(self._topics.get(name, 0))]

    # -- publishing ------------------------------------------------------------------

    async def _send(self, name: str, datas: Sequence[bytes], retry_due: float | None) -> None:
        await self._ensure_topics(name)
        producer = self._prod
        count = self._topics.get(name, self.partitions)

        async def send() -> None:
            # Whole record batches per partition (aiokafka's create_batch/send_batch): one
            # future per batch instead of one per message.
            # The publish sequence is taken in publish order, before the split.
            due = None if retry_due is None else repr(retry_due).encode()
            by_partition: dict[int, list[tuple[bytes | None, bytes, list[Any]]]] = {}
            for data in datas:
                key = key_of(data)
                headers: list[Any] = [(SEQ_HEADER, self._seq())]
                if due is not None:
                    headers.append((DUE_HEADER, due))
                partition = murmur2_partition(key, count) if key else next(self._rr) % count
                by_partition.setdefault(partition, []).append((key, data, headers))
            futures = []
            for partition, items in by_partition.items():
                batch = producer.create_batch()
                for key, data, headers in items:
                    while (
                        batch.append(key=key, value=data, timestamp=None, headers=headers) is None
                    ):
                        batch.close()
                        futures.append(await producer.send_batch(batch, name, partition=partition))
                        batch = producer.create_batch()
                batch.close()
                futures.append(await producer.send_batch(batch, name, partition=partition))
            await asyncio.gather(*futures)

        await self._io(send)

    async def _append(self, topic: str, datas: Sequence[bytes]) -> None:
        await self._send(self.kafka_topic(topic), datas, None)

    # -- consuming -------------------------------------------------------------------

    async def consume(
        self,
        topic: str,
        group: str,
        *,
        consumer: str | None = None,
        batch_size: int = 10,
    ) -> AsyncIterator[Message]:
        """See :meth:`Broker.consume`. Each loop is one member of the Kafka group; when
        it ends it commits what is acknowledged and leaves the group, so the rest of
        the group takes over its partitions at once."""
        self._require_connected()
        name = consumer or default_consumer_name()
        token = f"{name}#{next(self._tokens)}"
        member = Member(
            token,
            name,
            self._group_id(group),
            self.kafka_topic(topic),
            self._retry_topic(topic, group),
            self._clock,
            self._commit_interval,
        )
        member.group_name = group
        member.on_assigned = self._on_assigned
        self._members[token] = member
        inner = super().consume(topic, group, consumer=token, batch_size=batch_size)
        assert isinstance(inner, AsyncGenerator)
        try:
            async for message in inner:
                yield message
        finally:
            await inner.aclose()
            await self._close_member(member)

    def _on_assigned(self, member: Member, assigned: set[TopicPartition]) -> None:
        for tp in assigned:  # a live owner now: older members' trackers are moot
            self._orphans.pop((member.group, tp), None)

    async def _start_member(self, member: Member) -> AIOKafkaConsumer:
        await self._ensure_topics(member.main, member.retry)
        consumer = AIOKafkaConsumer(
            **self._common,
            **self._consumer_options,
            group_id=member.group,
            partition_assignment_strategy=(StickyInFlightAssignor(member),),
        )
        consumer.subscribe([member.main, member.retry], listener=member.listener())
        member.consumer = consumer
        try:
            await self._io(consumer.start)
        except BaseException:
            member.consumer = None
            await stop(consumer)
            raise
        return consumer

    async def _fetch(
        self, topic: str, group: str, consumer: str, count: int
    ) -> Sequence[tuple[Delivery, bytes | None]]:
        member = self._members[consumer]
        client = member.consumer or await self._start_member(member)
        if member.due_commit():
            await member.commit()
        out = member.take(count)
        if out:
            return out
        wait = member.wait_hint(self.consumer_options.block_time)
        batches = await self._io(
            lambda: client.getmany(timeout_ms=int(wait * 1000), max_records=max(count, 500))
        )
        member.add(batches)
        return member.take(count)

    async def _close_member(self, member: Member) -> None:
        if member.closing:
            await member.closed.wait()
            return
        member.closing = True
        try:
            await member.commit()
            if member.consumer is not None:
                await stop(member.consumer)
        finally:
            for tp, tracker in member.trackers.items():
                if member.inflight.get(tp):
                    self._orphans[(member.group, tp)] = (member.token, tracker)
            self._members.pop(member.token, None)
            member.closed.set()

    # -- acknowledgement ---------------------------------------------------------------

    async def _ack(self, topic: str, delivery: Delivery) -> None:
        token = delivery.source
        name, partition, offset = delivery.entry_id.rsplit(":", 2)
        tp = TopicPartition(name, int(partition))
        member = self._members.get(token)
        if member is not None and not member.closing:
            member.ack(tp, int(offset))
            return
        if member is not None:
            await member.closed.wait()
            member.ack(tp, int(offset))
        group = self._group_id(delivery.group)
        orphan = self._orphans.get((group, tp))
        if orphan is None or orphan[0] != token:
            return  # its partition has a new owner, who will deliver it again
        tracker = orphan[1]
        if (member is not None or tracker.ack(int(offset))) and tracker.dirty:
            await self._commit_as_group(group, tp, tracker)

    async def _commit_as_group(
        self, group: str, tp: TopicPartition, tracker: OffsetTracker
    ) -> None:
        """Commit for a member that has left: accepted while the group has no members."""
        offset = tracker.committable
        if offset is None:
            return
        committer = self._committers.get(group)
        if committer is None:
            committer = AIOKafkaConsumer(**self._common, group_id=group, enable_auto_commit=False)
            await self._io(committer.start)
            self._committers[group] = committer
        committer.assign([tp])
        committer.pause(tp)
        try:
            await committer.commit({tp: OffsetAndMetadata(offset, "")})
        except kerr.KafkaError as exc:
            logger.debug(
                "commit of %s:%s for %s after its consumer left: %s", tp, offset, group, exc
            )
            return
        tracker.committed(offset)

    async def _retry_later(self, topic: str, delivery: Delivery, data: bytes, delay: float) -> None:
        name = self._retry_topic(topic, delivery.group)
        await self._send(name, (data,), self._clock() + delay)
        await self._ack(topic, delivery)

    async def _dead_letter(self, topic: str, delivery: Delivery, record: bytes) -> None:
        name = self._dlq_topic(topic)
        await self._ensure_topics(name, dlq=True)
        producer = self._prod
        key = uuid_key()
        await self._io(lambda: producer.send_and_wait(name, record, key=key, partition=0))
        await self._ack(topic, delivery)

    async def _read_dead_letters(self, topic: str, limit: int) -> list[tuple[str, bytes]]:
        name = self._dlq_topic(topic)
        await self._ensure_topics(name, dlq=True)
        tp = TopicPartition(name, 0)
        async with self._dlq_lock:
            rows = await self._io(lambda: read_compacted(self._common, tp))
        return list(itertools.islice(rows.items(), limit))

    async def _reprocess(self, topic: str, group: str, dlq_id: str, data: bytes) -> None:
        await self._send(self._retry_topic(topic, group), (data,), 0.0)
        producer = self._prod
        name = self._dlq_topic(topic)
        await self._io(lambda: producer.send_and_wait(name, None, key=dlq_id.encode(), partition=0))

    # -- lag -------------------------------------------------------------------------

    async def _lag(self, topic: str, group: str) -> int:
        gid = self._group_id(group)
        for member in list(self._members.values()):
            if member.group == gid:
                if member.closing:
                    await member.closed.wait()
                else:
                    await member.commit()
        main, retry = self.kafka_topic(topic), self._retry_topic(topic, group)
        await self._ensure_topics(main, retry)
        tps = self._partitions_of(main) + self._partitions_of(retry)
        util, admin = self._util, self._admin
        assert util is not None and admin is not None
        end = await self._io(lambda: util.end_offsets(tps))
        start = await self._io(lambda: util.beginning_offsets(tps))
        committed = await self._io(lambda: admin.list_consumer_group_offsets(gid, partitions=tps))
        total = 0
        for tp in tps:
            meta = committed.get(tp)
            done = meta.offset if meta is not None and meta.offset >= 0 else start[tp]
            total += max(0, end[tp] - max(done, start[tp]))
        return total
