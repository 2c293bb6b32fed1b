"""Kafka-only behaviour beyond the contract: the commit tracker's property, message size,
saga-keyed partitions, out-of-order acknowledgements, redelivery by rebalance, committed
offsets that reach the end through every kind of rebalance (read through Kafka's admin
API), and group membership (``on_assigned``) with a member process killed."""

from __future__ import annotations

import asyncio
import random
import signal
import uuid
import zlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.partitioner import DefaultPartitioner
from hypothesis import given, settings
from hypothesis import strategies as st

from brokers import (
    Assignment,
    BrokerError,
    ConfigError,
    ConsumerOptions,
    DeadLetterError,
    KafkaBroker,
    Message,
    MessageTooLargeError,
    MessagingConfig,
)
from brokers.kafka.assignor import assign_sticky
from brokers.kafka.offsets import OffsetTracker
from brokers.kafka.records import key_partition
from tests.brokers.conftest import FAST_CONSUMER, FAST_REDELIVERY
from tests.kafka_server import ChildLoop, GroupOffsets

TEN_MB = 10 * 1024 * 1024


@settings(max_examples=300, deadline=None)
@given(
    start=st.integers(0, 1000),
    gaps=st.lists(st.integers(1, 3), min_size=1, max_size=40),
    data=st.data(),
)
def test_the_committable_offset_never_passes_an_unacknowledged_message(
    start: int, gaps: list[int], data: st.DataObject
) -> None:
    offsets = []
    at = start
    for gap in gaps:  # offsets increase, with gaps (compaction, markers)
        offsets.append(at)
        at += gap
    tracker = OffsetTracker()
    for offset in offsets:
        tracker.deliver(offset)
    order = data.draw(st.permutations(offsets))
    acked: set[int] = set()
    last = tracker.committable
    for offset in order[: data.draw(st.integers(0, len(order)))]:
        tracker.ack(offset)
        tracker.ack(offset)  # twice is harmless
        acked.add(offset)
        committable = tracker.committable
        assert committable is not None and last is not None and committable >= last
        assert all(o in acked for o in offsets if o < committable)
        pending = [o for o in offsets if o not in acked]
        assert committable == (min(pending) if pending else offsets[-1] + 1)
        assert tracker.outstanding == len(pending)
        last = committable


def test_offsets_must_increase_and_commits_are_recorded() -> None:
    tracker = OffsetTracker()
    tracker.deliver(5)
    with pytest.raises(ValueError):
        tracker.deliver(5)
    assert tracker.dirty and tracker.committable == 5
    tracker.committed(5)
    assert not tracker.dirty
    assert tracker.ack(5) and tracker.committable == 6 and tracker.dirty
    assert not tracker.ack(99)


@pytest.fixture
async def kafka(kafka_bootstrap: str) -> AsyncIterator[KafkaBroker]:
    broker = KafkaBroker(
        kafka_bootstrap,
        topic_prefix=f"k-{uuid.uuid4().hex[:8]}.",
        consumer_options=FAST_CONSUMER,
        retry=FAST_REDELIVERY,
    )
    await broker.connect()
    yield broker
    await broker.disconnect()


async def _take(broker: KafkaBroker, topic: str, group: str, n: int, **kw: object) -> list[Message]:
    got: list[Message] = []
    async with asyncio.timeout(20):
        async for message in broker.consume(topic, group, **kw):  # type: ignore[arg-type]
            got.append(message)
            await broker.acknowledge(message)
            if len(got) == n:
                break
    return got


async def test_looking_for_dead_letters_creates_no_topic(kafka: KafkaBroker) -> None:
    """``dlq list/show`` and every metrics scrape look at DLQs: on a topic with none,
    they find nothing and leave the cluster as it was."""
    assert await kafka.get_dead_letter_messages("quiet") == []
    assert await kafka.get_dead_letter_count("quiet") == 0
    with pytest.raises(DeadLetterError):
        await kafka.get_dead_letter_message("quiet", "k-1")
    admin = kafka._admin
    assert admin is not None
    names = await admin.list_topics()
    assert kafka._topics.dlq("quiet") not in names
    assert kafka._topics.main("quiet") not in names


async def test_ten_megabyte_messages_travel_and_larger_ones_are_refused(
    kafka: KafkaBroker,
) -> None:
    assert kafka.max_message_bytes == TEN_MB
    blob = "x" * (TEN_MB - 1024)
    msg_id = await kafka.publish("big", {"blob": blob})
    [got] = await _take(kafka, "big", "g", 1)
    assert got.id == msg_id and got.payload["blob"] == blob
    with pytest.raises(MessageTooLargeError) as info:
        await kafka.publish("big", {"blob": "x" * TEN_MB})
    assert str(TEN_MB) in str(info.value) and "'big'" in str(info.value)
    with pytest.raises(ValueError, match="over the Kafka broker's limit"):
        KafkaBroker("x:1", max_message_bytes=TEN_MB + 1)


async def test_one_sagas_messages_share_a_partition_in_order(kafka: KafkaBroker) -> None:
    sagas = [f"saga-{i}" for i in range(6)]
    for step in range(5):
        for saga in sagas:
            await kafka.publish("steps", {"step": step}, headers={"saga_id": saga})
    got = await _take(kafka, "steps", "g", 30, batch_size=30)
    per_saga: dict[str, list[tuple[int, int]]] = {}
    for message in got:
        assert message.delivery is not None
        _, partition, _offset = message.delivery.entry_id.rsplit(":", 2)
        key = message.headers.saga_id
        assert key is not None
        per_saga.setdefault(key, []).append((int(partition), message.payload["step"]))
    for saga, seen in per_saga.items():
        assert len({p for p, _ in seen}) == 1, f"{saga} spread over partitions: {seen}"
        assert [s for _, s in seen] == list(range(5))


async def test_out_of_order_acks_never_commit_past_an_unacknowledged_message(
    kafka: KafkaBroker,
) -> None:
    await kafka.publish_batch("ooo", [{"i": i} for i in range(3)], headers={"saga_id": "one"})
    got: list[Message] = []
    async with asyncio.timeout(20):
        async for message in kafka.consume("ooo", "g", batch_size=3):
            got.append(message)
            if len(got) == 3:
                break
    await kafka.acknowledge(got[2])
    await kafka.acknowledge(got[1])
    assert await kafka.get_consumer_lag("ooo", "g") == 3  # offset 0 still open
    again = await _take(kafka, "ooo", "g", 3)  # the consumer is gone: all come back
    assert [m.payload["i"] for m in again] == [0, 1, 2]
    assert await kafka.get_consumer_lag("ooo", "g") == 0


async def test_a_message_its_handler_dropped_comes_again_and_the_commit_moves_on(
    kafka: KafkaBroker,
) -> None:
    # The handler of the first message dies without acknowledging it (or its nack
    # fails): after the visibility timeout (0.3 s) the same loop hands it out again.
    ids = await kafka.publish_batch("drop", [{"i": i} for i in range(3)], headers={"saga_id": "x"})
    seen: list[str] = []
    async with asyncio.timeout(20):
        async for message in kafka.consume("drop", "g"):
            seen.append(message.id)
            if message.id != ids[0] or seen.count(ids[0]) > 1:
                await kafka.acknowledge(message)
            if seen.count(ids[0]) == 2 and set(ids) <= set(seen):
                break
    assert seen[:3] == ids
    assert await kafka.get_consumer_lag("drop", "g") == 0


async def test_a_crashed_member_s_messages_go_to_the_other_member(kafka: KafkaBroker) -> None:
    ids = set(await kafka.publish_batch("work", [{"i": i} for i in range(40)]))
    done: list[str] = []
    crashed_held: list[str] = []
    crash = asyncio.Event()

    async def doomed() -> None:
        async for message in kafka.consume("work", "g", consumer="doomed", batch_size=5):
            crashed_held.append(message.id)  # never acknowledged
            if len(crashed_held) == 3:
                crash.set()
                await asyncio.Event().wait()

    async def survivor() -> None:
        async for message in kafka.consume("work", "g", consumer="survivor", batch_size=5):
            done.append(message.id)
            await kafka.acknowledge(message)
            if ids <= set(done):
                return

    task = asyncio.create_task(doomed())
    async with asyncio.timeout(20):
        await crash.wait()
    other = asyncio.create_task(survivor())
    await asyncio.sleep(0.5)
    task.cancel()  # the crash: its consumer leaves the group, nothing acknowledged
    async with asyncio.timeout(30):
        await other
    assert set(crashed_held) <= set(done)
    assert ids == set(done)
    assert await kafka.get_consumer_lag("work", "g") == 0


async def test_many_concurrent_publishes_to_one_partition_all_arrive(kafka: KafkaBroker) -> None:
    # One record batch per publish, queued behind each other, used to time out within a
    # second: aiokafka's send_batch takes the waited time off its timeout at every wake.
    one = {"saga_id": "one-saga"}
    singles = [kafka.publish("hot", {"i": i}, headers=one) for i in range(500)]
    batches = [kafka.publish_batch("hot", [{"i": i}] * 50, headers=one) for i in range(40)]
    await asyncio.gather(*singles, *batches)
    assert await kafka.get_consumer_lag("hot", "g") == 500 + 40 * 50


async def test_health_names_the_server_and_a_dead_one_is_a_connection_error(
    kafka: KafkaBroker,
) -> None:
    health = await kafka.health_check()
    assert health["status"] == "healthy" and health["broker"] == "KafkaBroker"
    dead = KafkaBroker("127.0.0.1:1", request_timeout=1.0, consumer_options=ConsumerOptions())
    with pytest.raises(BrokerError):
        async with asyncio.timeout(30):
            await dead.connect()


def test_kafka_yaml_section_with_tls_and_errors_naming_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in [k for k in __import__("os").environ if k.startswith("GREENLANG_")]:
        monkeypatch.delenv(key)
    path = tmp_path / "messaging.yaml"
    path.write_text(
        "broker_type: kafka\n"
        "kafka:\n"
        "  bootstrap_servers: [127.0.0.1:9093]\n"
        "  security_protocol: SSL\n"
        "  ssl_cafile: null\n"
        "  partitions: 8\n"
    )
    config = MessagingConfig.from_yaml(path)
    assert config.kafka.partitions == 8 and config.kafka.security_protocol == "SSL"
    kwargs = config.kafka.to_dict()
    assert kwargs["bootstrap_servers"] == ["127.0.0.1:9093"]
    assert kwargs["max_message_bytes"] == TEN_MB
    broker = config.create_broker()
    assert isinstance(broker, KafkaBroker) and broker.partitions == 8
    path.write_text("broker_type: kafka\nkafka:\n  partitons: 8\n")
    with pytest.raises(ConfigError, match=r"kafka\.partitons"):
        MessagingConfig.from_yaml(path)
    path.write_text("broker_type: kafka\nkafka:\n  max_message_bytes: 20000000\n")
    with pytest.raises(ConfigError, match=r"kafka\.max_message_bytes"):
        MessagingConfig.from_yaml(path)
    monkeypatch.setenv("GREENLANG_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    with pytest.raises(ConfigError, match="sasl_mechanism"):
        MessagingConfig.from_env()


def test_config_builds_a_kafka_broker(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {
        "BROKER_TYPE": "kafka",
        "KAFKA_BOOTSTRAP_SERVERS": "k1:9092,k2:9092",
        "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "KAFKA_SASL_USERNAME": "svc",
        "KAFKA_SASL_PASSWORD": "secret",
    }
    for key, value in env.items():
        monkeypatch.setenv(f"GREENLANG_{key}", value)
    config = MessagingConfig.from_env()
    broker = config.create_broker()
    assert isinstance(broker, KafkaBroker)
    assert broker.bootstrap_servers == ["k1:9092", "k2:9092"]
    assert "secret" not in repr(config)


# -- committed offsets through rebalances, read as Kafka's own tools read them ----------

SESSION = 3.0
"""The session timeout of the members killed or frozen below, and of their survivors."""
ALL = frozenset(range(4))
"""Every partition of the topics below (``partitions=4``)."""


def test_a_key_s_partition_is_the_one_aiokafka_s_default_partitioner_picks() -> None:
    everything = sorted(ALL)
    for i in range(500):
        key = f"saga-{uuid.UUID(int=i)}"
        expected = DefaultPartitioner()(key.encode(), everything, everything)
        assert key_partition(key, len(ALL)) == expected


def test_claims_stay_within_an_even_split_and_retries_go_beside_their_partition() -> None:
    tp = TopicPartition
    topics = ["t", "t.retry.g"]

    def held(got: dict[str, Any], member: str, topic: str = "t") -> set[int]:
        return {p for t, ps in got[member].assignment if t == topic for p in ps}

    got = assign_sticky(
        {"a": topics, "b": topics},
        {"a": [tp("t", 0), tp("t", 1), tp("t.retry.g", 2)], "b": []},  # a is busy everywhere
        {"t": [0, 1, 2, 3], "t.retry.g": [0, 1, 2, 3]},
    )
    assert held(got, "a") == {0, 1} and held(got, "b") == {2, 3}  # its claims, up to 2 of 4
    for member in "ab":
        assert held(got, member, "t.retry.g") == held(got, member)
    busy = {"a": [tp("t", 0), tp("t", 1)], "b": [tp("t", 2), tp("t", 3)], "c": []}
    got = assign_sticky(dict.fromkeys("abc", topics), busy, {"t": [0, 1, 2, 3]})
    assert sorted(len(held(got, m)) for m in "abc") == [1, 1, 2]  # c joining gets one
    assert held(got, "a") <= {0, 1} and held(got, "b") <= {2, 3}


async def until(check: Callable[[], bool], what: str, seconds: float = 30.0) -> None:
    try:
        async with asyncio.timeout(seconds):
            while not check():  # noqa: ASYNC110 (polls what other tasks and processes do)
                await asyncio.sleep(0.02)
    except TimeoutError:
        pytest.fail(f"never happened within {seconds} s: {what}")


class Worker:
    """A consume loop of group ``g`` on ``t`` that acknowledges every message after a
    random delay from a task of its own (so out of order), nacks a tenth of them once
    (the retry topic) and keeps those ``hold`` picks in flight; it records its
    assignments, and each message it received with the partitions it held then."""

    def __init__(
        self, broker: KafkaBroker, name: str, hold: Callable[[Message], bool] = lambda m: False
    ) -> None:
        self.broker = broker
        self.hold = hold
        self.held: list[Message] = []
        self.assignments: list[Assignment] = []
        self.received: list[tuple[Message, frozenset[int]]] = []
        self.done: set[str] = set()
        self._acks: set[asyncio.Task[None]] = set()
        self.task = asyncio.create_task(self._run(name))

    async def _assigned(self, assignment: Assignment) -> None:
        self.assignments.append(assignment)

    @property
    def partitions(self) -> frozenset[int] | None:
        return self.assignments[-1].partitions if self.assignments else None

    async def _run(self, name: str) -> None:
        async for message in self.broker.consume(
            "t", "g", consumer=name, batch_size=8, on_assigned=self._assigned
        ):
            self.received.append((message, self.partitions or frozenset()))
            if self.hold(message):
                self.held.append(message)
                continue
            task = asyncio.create_task(self._finish(message))
            self._acks.add(task)
            task.add_done_callback(self._acks.discard)

    async def _finish(self, message: Message) -> None:
        await asyncio.sleep(random.random() * 0.02)
        if message.retry_count == 0 and zlib.crc32(message.id.encode()) % 10 == 0:
            await self.broker.nack(message, "once more")
        else:
            await self.broker.acknowledge(message)
            self.done.add(message.id)

    async def stop(self) -> None:
        """End the loop (it leaves the group); acknowledgements under way still land."""
        self.task.cancel()
        await asyncio.wait([self.task])
        await asyncio.gather(*self._acks)


def split(a: frozenset[int] | None, b: frozenset[int] | None) -> bool:
    """Both hold some, none twice, every partition once."""
    if not a or not b:
        return False
    return not a & b and a | b == ALL


async def _publish(broker: KafkaBroker, n: int) -> set[str]:
    ids: set[str] = set()
    for saga in range(n // 4):  # keyed, so every partition gets some
        payloads = [{"step": step} for step in range(4)]
        ids |= set(await broker.publish_batch("t", payloads, headers={"saga_id": f"s{saga}"}))
    return ids


def _broker(bootstrap: str, **options: Any) -> KafkaBroker:
    options = {"consumer_options": FAST_CONSUMER, "retry": FAST_REDELIVERY, **options}
    prefix = f"r-{uuid.uuid4().hex[:8]}."
    return KafkaBroker(bootstrap, topic_prefix=prefix, partitions=len(ALL), **options)


@pytest.fixture
async def survivor(kafka_bootstrap: str) -> AsyncIterator[KafkaBroker]:
    broker = _broker(kafka_bootstrap, session_timeout=SESSION)
    await broker.connect()
    yield broker
    await broker.disconnect()


async def test_commits_reach_the_end_after_members_join_leave_and_rejoin(
    survivor: KafkaBroker,
) -> None:
    broker = survivor
    async with GroupOffsets(broker, "t", "g") as offsets:
        ids = await _publish(broker, 80)
        a = Worker(broker, "a")
        await until(lambda: len(a.done) >= 20, "a works alone")
        b = Worker(broker, "b")  # joins
        await until(lambda: split(a.partitions, b.partitions), "a and b split the partitions")
        ids |= await _publish(broker, 80)
        await until(lambda: len(b.done) >= 10, "b works")
        await a.stop()  # leaves normally, acknowledging late what it had in flight
        await until(lambda: b.partitions == ALL, "b holds everything")
        c = Worker(broker, "c")  # joins: b gives up half, then regains it
        ids |= await _publish(broker, 80)
        await until(lambda: split(b.partitions, c.partitions), "b and c split the partitions")
        await c.stop()
        ids |= await _publish(broker, 40)
        await until(lambda: ids <= a.done | b.done | c.done, "every message acknowledged")
        await offsets.settled()  # lag 0, and no committed offset ever went backwards
        await b.stop()


async def test_commits_follow_acknowledgements_while_the_loops_wait_for_messages(
    kafka_bootstrap: str,
) -> None:
    # A loop waits up to block_time (30 s) for messages: a commit that waited for its
    # next fetch would come after the 30 s the polls below allow.
    broker = _broker(kafka_bootstrap, consumer_options=ConsumerOptions(0.3, block_time=30.0))
    await broker.connect()

    def first_of_partition_0(message: Message) -> bool:
        assert message.delivery is not None
        return message.delivery.entry_id == f"{broker.kafka_topic('t')}:0:0"

    try:
        async with GroupOffsets(broker, "t", "g") as offsets:
            ids = await _publish(broker, 80)
            a = Worker(broker, "a", hold=first_of_partition_0)
            await until(lambda: bool(a.held), "a holds the first message of p0")
            b = Worker(broker, "b")  # joins; a keeps p0, its message in flight
            await until(lambda: split(a.partitions, b.partitions), "a and b split the partitions")
            await until(lambda: ids <= a.done | b.done | {m.id for m in a.held}, "all handled")
            p0 = TopicPartition(broker.kafka_topic("t"), 0)

            def all_but_p0(now: dict[TopicPartition, tuple[int, int]]) -> bool:
                rest = {tp: ce for tp, ce in now.items() if tp != p0}
                return GroupOffsets.at_end(rest) and now[p0][0] <= 0  # p0 waits for offset 0

            await offsets.wait_for(all_but_p0, "every partition but p0 at its end")
            assert 0 in (a.partitions or ())  # a kept the partition of its message in flight
            await broker.acknowledge(a.held[0])
            await offsets.settled()
            await a.stop()
            await b.stop()
    finally:
        await broker.disconnect()


async def _child(broker: KafkaBroker, mode: str) -> ChildLoop:
    servers = broker.bootstrap_servers
    assert isinstance(servers, str)
    prefix = broker.topic_prefix
    child = await ChildLoop.start(servers, prefix, "t", "g", mode=mode, session=SESSION)
    await until(lambda: child.held == ALL, "the child process holds every partition")
    return child


async def test_a_killed_member_s_partitions_move_with_their_keys_and_commits_reach_the_end(
    survivor: KafkaBroker,
) -> None:
    async with GroupOffsets(survivor, "t", "g") as offsets:
        child = await _child(survivor, "odd")  # even offsets stay in flight: out of order
        try:
            worker = Worker(survivor, "survivor")
            await until(lambda: split(child.held, worker.partitions), "disjoint, covering all")
            ids = await _publish(survivor, 160)
            await until(lambda: len(child.got) >= 40, "the child has messages in flight")
            assignment = worker.assignments[-1]
            assert assignment.count == len(ALL) and assignment.partitioner is key_partition
            for message, held in worker.received:  # a keyed message reaches its key's holder
                assert message.headers.saga_id is not None
                assert key_partition(message.headers.saga_id, len(ALL)) in held
            for event in child.got:
                assert key_partition(event["key"], len(ALL)) == event["partition"]
                assert child.held is not None and event["partition"] in child.held
            child.signal(signal.SIGKILL)
            # Its session lapses after SESSION; the survivor hears of the rebalance at its
            # next heartbeat and reports it from its loop at once.
            await until(lambda: worker.partitions == ALL, "the survivor holds every partition",
                        seconds=SESSION + 5)  # fmt: skip
            await until(lambda: ids <= worker.done, "the survivor redelivered and acknowledged")
            await offsets.settled()
            await worker.stop()
        finally:
            await child.close()


async def test_a_member_frozen_past_its_session_comes_back_without_moving_commits_back(
    survivor: KafkaBroker,
) -> None:
    async with GroupOffsets(survivor, "t", "g") as offsets:
        child = await _child(survivor, "slow")  # acknowledges each message a second later
        try:
            worker = Worker(survivor, "survivor")
            await until(lambda: split(child.held, worker.partitions), "the two split the work")
            ids = await _publish(survivor, 80)
            await until(lambda: len(child.got) >= 10, "the child has messages in flight")
            child.signal(signal.SIGSTOP)  # frozen: expelled after its session timeout
            await until(lambda: worker.partitions == ALL, "the survivor holds every partition")
            await until(lambda: ids <= worker.done, "the survivor did the frozen one's work")
            await offsets.settled()
            rejoined = len(child.assignments)
            child.signal(signal.SIGCONT)  # acknowledges late, is refused, joins again
            await until(lambda: len(child.assignments) > rejoined and bool(child.held),
                        "the child holds partitions again")  # fmt: skip
            more = await _publish(survivor, 80)
            await until(lambda: more <= worker.done | child.acked, "the new messages are done")
            await offsets.settled()  # and no committed offset ever went backwards
            await worker.stop()
        finally:
            await child.close()
