"""Kafka-only behaviour beyond the contract: the commit tracker's property, message size,
saga-keyed partitions, out-of-order acknowledgements and redelivery by rebalance."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from brokers import (
    BrokerError,
    ConfigError,
    ConsumerOptions,
    KafkaBroker,
    Message,
    MessageTooLargeError,
    MessagingConfig,
)
from brokers.kafka.offsets import OffsetTracker
from tests.brokers.conftest import FAST_CONSUMER, FAST_REDELIVERY

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
        saga = message.headers.saga_id
        assert saga is not None
        per_saga.setdefault(saga, []).append((int(partition), message.payload["step"]))
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
