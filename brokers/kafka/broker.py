"""Apache Kafka broker (aiokafka).

Topics, for topic ``t`` and group ``g`` (all behind the optional ``topic_prefix``;
:mod:`brokers.kafka.topics`):

* ``t`` — the messages, ``partitions`` partitions. A message with a ``saga_id`` (else
  ``correlation_id``) header is keyed by it, so one saga's messages share a partition
  and stay in order; others are spread round-robin. Each record carries its publish
  sequence (header ``s``), so a consumer holding several partitions hands messages out
  in publish order (:mod:`brokers.kafka.records`).
* ``t.priority.n`` — priority lane ``n`` (1 … ``priority_levels - 1``) of ``t``, keyed
  and partitioned like ``t`` (which is lane 0); a consume loop reads every lane and
  hands out the highest lane's records first (:mod:`brokers.kafka.buffer`).
* ``t.retry.g`` — the group's retries and reprocessed dead letters (header ``d`` is the
  unix time a retry falls due); only group ``g`` reads it.
* ``t.dlq`` — dead letters, one partition, keyed by dead-letter id; reprocessing writes a
  tombstone (a null value) for the id, and the topic is compacted.
* ``t.dlq.discarded`` — the discard archive: a discarded dead letter is written here
  (with who, when and why) before its tombstone in ``t.dlq``.

Consumer group ``g`` commits, per partition, only the contiguous acknowledged offsets
(:mod:`brokers.kafka.offsets`), so a message is done only when it and everything
before it in its partition are. A consumer that dies leaves (or times out of) the group;
the rebalance hands its partitions to another member, which resumes from the committed
offset: what was not acknowledged is delivered again (:mod:`brokers.kafka.member`, who
gets which partition: :mod:`brokers.kafka.assignor`, reporting it to the caller:
:mod:`brokers.kafka.membership`; acknowledgements after a loop ended:
:mod:`brokers.kafka.late_acks`). Producers are
idempotent with ``acks=all``. Driver errors are mapped to :mod:`brokers._errors` at this
boundary (:class:`~brokers.kafka.clients.KafkaIO`).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka import errors as kerr
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment as MemberAssignment

from brokers._base import Broker, default_consumer_name
from brokers._circuit import CircuitBreaker
from brokers._config import KAFKA_MAX_MESSAGE_BYTES, KAFKA_RETENTION_DAYS
from brokers._dead_letters import record_topic
from brokers._errors import BrokerError
from brokers._membership import MembershipSession, OnAssigned
from brokers._message import Delivery, Message
from brokers.kafka.clients import KafkaIO, client_settings, produce, read_compacted, stop
from brokers.kafka.late_acks import LateAcks
from brokers.kafka.member import Member
from brokers.kafka.membership import KafkaMembership
from brokers.kafka.records import Seq, key_of, records_by_partition, uuid_key
from brokers.kafka.topics import Topics


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
        options.setdefault("message_ttl_days", KAFKA_RETENTION_DAYS)
        super().__init__(max_message_bytes=max_message_bytes, **options)
        self.bootstrap_servers = bootstrap_servers
        self.topic_prefix = topic_prefix
        self.partitions = partitions
        self.replication_factor = replication_factor
        self._settings = client_settings(
            bootstrap_servers=bootstrap_servers,
            client_id=client_id,
            security_protocol=security_protocol,
            sasl_mechanism=sasl_mechanism,
            sasl_username=sasl_username,
            sasl_password=sasl_password,
            ssl_cafile=ssl_cafile,
            ssl_certfile=ssl_certfile,
            ssl_keyfile=ssl_keyfile,
            request_timeout=request_timeout,
            linger_ms=linger_ms,
            batch_bytes=batch_bytes,
            compression_type=compression_type,
            max_message_bytes=max_message_bytes,
            consumer_options=self.consumer_options,
            session_timeout=session_timeout,
            heartbeat_interval=heartbeat_interval,
        )
        self._commit_interval = commit_interval
        self._circuit = CircuitBreaker(f"kafka {bootstrap_servers}", self.circuit_policy)
        self._io = KafkaIO(bootstrap_servers, self._circuit)
        self._topics = Topics(
            topic_prefix,
            partitions,
            replication_factor,
            max_message_bytes,
            self.dlq_ttl,
            self.message_ttl,
        )
        self._producer: AIOKafkaProducer | None = None
        self._admin: AIOKafkaAdminClient | None = None
        self._util: AIOKafkaConsumer | None = None
        self._members: dict[str, Member] = {}
        self._late_acks = LateAcks(self._settings.common, self._io)
        self._tokens = itertools.count(1)
        self._rr = itertools.count()
        self._seq = Seq()
        self._dlq_lock = asyncio.Lock()

    @property
    def circuit(self) -> CircuitBreaker:
        return self._circuit

    def kafka_topic(self, topic: str) -> str:
        """The Kafka topic that carries ``topic``."""
        return self._topics.main(topic)

    # -- connection ------------------------------------------------------------------

    @property
    def _prod(self) -> AIOKafkaProducer:
        if self._producer is None:
            self._require_connected()
            raise AssertionError("unreachable")
        return self._producer

    async def _connect(self) -> None:
        producer = AIOKafkaProducer(**self._settings.common, **self._settings.producer)
        admin = AIOKafkaAdminClient(**self._settings.common)
        util = AIOKafkaConsumer(**self._settings.common, enable_auto_commit=False)
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
        committers = self._late_acks.release()
        self._topics.forget()
        for client in (util, *committers, admin, producer):
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

    async def _ensure_topics(self, *names: str, dlq: bool = False) -> None:
        await self._topics.ensure(self._admin, self._io, *names, dlq=dlq)

    # -- publishing ------------------------------------------------------------------

    async def _send(
        self, name: str, datas: Sequence[bytes], retry_due: float | None, key: bytes | None
    ) -> None:
        await self._ensure_topics(name)
        producer = self._prod
        count = self._topics.partition_count(name)

        async def send() -> None:
            by_partition = records_by_partition(datas, key, count, self._seq, self._rr, retry_due)
            await produce(producer, name, by_partition, self._settings.request_timeout)

        await self._io(send)

    async def _append(self, topic: str, datas: Sequence[bytes], lane: int, key: str | None) -> None:
        name = self._topics.lane(topic, lane)
        await self._send(name, datas, None, None if key is None else key.encode())

    def _lanes(self, topic: str) -> dict[str, int]:
        """The Kafka topics of ``topic``'s priority lanes above 0, and their lanes."""
        return {self._topics.lane(topic, n): n for n in range(1, self.priority_levels)}

    # -- consuming -------------------------------------------------------------------

    async def consume(
        self,
        topic: str,
        group: str,
        *,
        consumer: str | None = None,
        batch_size: int = 10,
        on_assigned: OnAssigned | None = None,
    ) -> AsyncIterator[Message]:
        """See :meth:`Broker.consume`. Each loop is one member of the Kafka group; when
        it ends it commits what is acknowledged and leaves the group, so the rest of
        the group takes over its partitions at once. With ``on_assigned`` it reports
        the partitions of ``topic`` Kafka assigns it (:mod:`brokers.kafka.membership`)."""
        self._require_connected()
        name = consumer or default_consumer_name()
        token = f"{name}#{next(self._tokens)}"
        gid = self._topics.group_id(group)
        member = Member(
            token,
            name,
            gid,
            self._topics.main(topic),
            self._topics.retry(topic, group),
            self._clock,
            self._commit_interval,
            visibility_timeout=self.consumer_options.visibility_timeout,
            group_name=group,
            fetch_committed=lambda tps: self._committed_offsets(gid, tps),
            lanes=self._lanes(topic),
        )
        member.gained = self._late_acks.taken
        self._members[token] = member
        inner = super().consume(
            topic, group, consumer=token, batch_size=batch_size, on_assigned=on_assigned
        )
        assert isinstance(inner, AsyncGenerator)
        try:
            async for message in inner:
                yield message
        finally:
            await inner.aclose()
            await self._close_member(member)

    def _join(
        self, topic: str, group: str, consumer: str, on_assigned: OnAssigned
    ) -> MembershipSession:
        """Kafka's own group protocol is the membership, not leases (``consumer`` is the
        loop's member token, see :meth:`consume`)."""
        count = self._topics.partition_count
        member = self._members[consumer]
        return KafkaMembership(member, topic, group, on_assigned, lambda: count(member.main))

    async def _fetch(
        self, topic: str, group: str, consumer: str, count: int
    ) -> Sequence[tuple[Delivery, bytes | None]]:
        member = self._members[consumer]
        if member.consumer is None:
            await self._ensure_topics(member.main, *member.lanes, member.retry)
            await member.start({**self._settings.common, **self._settings.consumer}, self._io)
        elif member.lanes and member.buffer.queued:
            await self._io(member.poll_lanes)
        out = member.take(count)
        if out:
            return out
        wait = member.buffer.wait_hint(self.consumer_options.block_time)
        batches = await self._io(lambda: member.poll(wait, max(count, 500)))
        member.add(batches)
        return member.take(count)

    async def _close_member(self, member: Member) -> None:
        if member.closing:
            await member.closed.wait()
            return
        member.closing = True
        try:
            await member.stop()
            await member.commit()
            if member.consumer is not None:
                await stop(member.consumer)
        finally:
            self._late_acks.adopt(member)
            self._members.pop(member.token, None)
            member.closed.set()

    # -- acknowledgement, retries and dead letters -------------------------------------

    async def _ack(self, topic: str, delivery: Delivery) -> None:
        token = delivery.source
        tp, offset = _entry(delivery)
        member = self._members.get(token)
        if member is not None and not member.closing:
            member.ack(tp, offset)
            return
        if member is not None:
            await member.closed.wait()
            member.ack(tp, offset)
        group = self._topics.group_id(delivery.group)
        await self._late_acks.ack(group, token, tp, offset, tracked=member is not None)

    async def _touch(self, topic: str, delivery: Delivery) -> None:
        member = self._members.get(delivery.source)
        if member is not None:
            member.buffer.touch(*_entry(delivery))

    async def _retry_later(self, topic: str, delivery: Delivery, data: bytes, delay: float) -> None:
        name = self._topics.retry(topic, delivery.group)
        await self._send(name, (data,), self._clock() + delay, key_of(data))
        await self._ack(topic, delivery)

    async def _dead_letter(self, topic: str, delivery: Delivery, record: bytes) -> None:
        name = self._topics.dlq(topic)
        await self._ensure_topics(name, dlq=True)
        producer = self._prod
        key = uuid_key()
        await self._io(lambda: producer.send_and_wait(name, record, key=key, partition=0))
        await self._ack(topic, delivery)

    async def _count_dead_letters(self, topic: str) -> int:
        return len(await self._dead_letter_rows(topic))

    async def _read_dead_letters(self, topic: str, limit: int) -> list[tuple[str, bytes]]:
        rows = await self._dead_letter_rows(topic)
        return list(itertools.islice(rows.items(), limit))

    async def _read_dead_letter(self, topic: str, dlq_id: str) -> bytes | None:
        return (await self._dead_letter_rows(topic)).get(dlq_id)

    async def _dead_letter_rows(self, topic: str) -> dict[str, bytes]:
        """The topic's DLQ; nothing (and no topic created) when it has none yet."""
        name = self._topics.dlq(topic)
        if not await self._topics.exists(self._admin, self._io, name):
            return {}
        return await self._read_partition0(name)

    async def _read_partition0(self, name: str) -> dict[str, bytes]:
        tp = TopicPartition(name, 0)
        async with self._dlq_lock:
            return await self._io(lambda: read_compacted(self._settings.common, tp))

    async def _dead_letter_topics(self) -> list[str]:
        admin = self._admin
        assert admin is not None
        names = await self._io(admin.list_topics)
        found: list[str] = []
        for name in self._topics.dlq_candidates(names):
            rows = await self._read_partition0(name)
            topic = record_topic(next(iter(rows.values()), None))
            if topic is not None:
                found.append(topic or self._topics.topic_of_dlq(name))
        return found

    async def _discard(self, topic: str, dlq_id: str, record: bytes) -> bool:
        if dlq_id not in await self._dead_letter_rows(topic):
            return False
        archive, name = self._topics.discarded(topic), self._topics.dlq(topic)
        await self._ensure_topics(archive, dlq=True)
        producer, key = self._prod, dlq_id.encode()
        await self._io(lambda: producer.send_and_wait(archive, record, key=key, partition=0))
        await self._io(lambda: producer.send_and_wait(name, None, key=key, partition=0))
        return True

    async def _read_discarded(self, topic: str, limit: int) -> list[bytes]:
        archive = self._topics.discarded(topic)
        await self._ensure_topics(archive, dlq=True)
        rows = await self._read_partition0(archive)
        return list(itertools.islice(rows.values(), limit))

    async def _reprocess(self, topic: str, group: str, dlq_id: str, data: bytes) -> None:
        await self._send(self._topics.retry(topic, group), (data,), 0.0, key_of(data))
        producer = self._prod
        name = self._topics.dlq(topic)
        await self._io(lambda: producer.send_and_wait(name, None, key=dlq_id.encode(), partition=0))

    # -- membership, lag -------------------------------------------------------------

    async def _delete(self, topic: str) -> None:
        admin = self._admin
        assert admin is not None
        main = self._topics.main(topic)
        names = await self._io(admin.list_topics)
        companions = (f"{main}.retry.", f"{main}.priority.")
        doomed = [n for n in names if n == main or n.startswith(companions)]
        if not doomed:
            return
        response = await self._io(lambda: admin.delete_topics(doomed))
        refused = {  # a topic already gone is what was asked for
            str(name): _refusal(code)
            for name, code, *_ in response.topic_error_codes
            if code not in (0, kerr.UnknownTopicOrPartitionError.errno)
        }
        self._topics.deleted(*(name for name in doomed if name not in refused))
        if refused:
            reasons = ", ".join(f"{name} ({why})" for name, why in sorted(refused.items()))
            raise BrokerError(f"kafka did not delete topics of {topic!r}: {reasons}")

    async def _partition_holders(self, topic: str, group: str) -> dict[int, str]:
        """The group's members as Kafka describes them, with their assignment of the
        topic's partitions (the retry topic's are not shown)."""
        admin = self._admin
        assert admin is not None
        gid, name = self._topics.group_id(group), self._topics.main(topic)
        described = await self._io(lambda: admin.describe_consumer_groups([gid]))
        holders: dict[int, str] = {}
        for response in described:
            for found in response.to_object()["groups"]:
                for member in found["members"]:
                    if not member["member_assignment"]:
                        continue
                    assigned = MemberAssignment.decode(member["member_assignment"])
                    for assigned_topic, partitions in assigned.assignment:
                        if assigned_topic == name:
                            for partition in partitions:
                                holders[partition] = str(member["member_id"])
        return holders

    async def _lag(self, topic: str, group: str) -> int:
        gid = self._topics.group_id(group)
        for member in list(self._members.values()):
            if member.group == gid:
                if member.closing:
                    await member.closed.wait()
                else:
                    await member.commit()
        names = [self._topics.main(topic), *self._lanes(topic), self._topics.retry(topic, group)]
        await self._ensure_topics(*names)
        tps = [tp for name in names for tp in self._topics.partitions_of(name)]
        util = self._util
        assert util is not None
        end = await self._io(lambda: util.end_offsets(tps))
        start = await self._io(lambda: util.beginning_offsets(tps))
        committed = await self._committed_offsets(gid, tps)
        total = 0
        for tp in tps:
            done = committed.get(tp)
            total += max(0, end[tp] - max(start[tp] if done is None else done, start[tp]))
        return total

    async def _committed_offsets(
        self, gid: str, tps: list[TopicPartition]
    ) -> dict[TopicPartition, int | None]:
        """Group ``gid``'s committed offset of each of ``tps`` (``None``: none yet)."""
        admin = self._admin
        if admin is None:
            self._require_connected()
            raise AssertionError("unreachable")
        found = await self._io(lambda: admin.list_consumer_group_offsets(gid, partitions=tps))
        out: dict[TopicPartition, int | None] = dict.fromkeys(tps)
        for tp, meta in found.items():
            if meta is not None and meta.offset >= 0:
                out[tp] = meta.offset
        return out


_TOPIC_DELETION_DISABLED = 73


def _refusal(code: int) -> str:
    """Why Kafka refused to delete a topic, from its error code."""
    if code == _TOPIC_DELETION_DISABLED:  # not among aiokafka's errors
        return "error 73: topic deletion is disabled on the server, delete.topic.enable=false"
    return f"error {code}: {kerr.for_code(code).__name__}"


def _entry(delivery: Delivery) -> tuple[TopicPartition, int]:
    """The partition and offset a delivery came from."""
    name, partition, offset = delivery.entry_id.rsplit(":", 2)
    return TopicPartition(name, int(partition)), int(offset)
