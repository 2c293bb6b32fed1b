"""The broker contract: every backend in conftest.BACKENDS must pass all of it."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math

import orjson
import pytest

from brokers import (
    Assignment,
    Broker,
    BrokerNotConnectedError,
    DeadLetterError,
    Headers,
    Message,
    MessageTooLargeError,
    MessageValidationError,
    RedeliveryPolicy,
    RequestReplyPattern,
)
from tests.brokers.conftest import Backend, eventually, take


async def test_publish_then_consume_round_trips_payload_and_headers(broker: Broker) -> None:
    headers = Headers(
        correlation_id="c-1",
        causation_id="m-0",
        reply_to="r",
        saga_id="s-1",
        traceparent="00-abc-def-01",
        extra={"idempotency_key": "s-1:a:1"},
    )
    msg_id = await broker.publish(
        "t", {"n": 1, "nested": {"x": [1, 2.5, None]}}, headers=headers, priority=7
    )
    [got] = await take(broker, "t", "g", 1)
    assert got.id == msg_id
    assert got.topic == "t"
    assert got.payload == {"n": 1, "nested": {"x": [1, 2.5, None]}}
    assert got.headers == headers
    assert got.priority == 7
    assert got.retry_count == 0
    assert got.verify()
    assert got.delivery is not None and got.delivery.group == "g"


async def test_publish_batch_keeps_order_and_ids(broker: Broker) -> None:
    ids = await broker.publish_batch("t", [{"i": i} for i in range(25)])
    got = await take(broker, "t", "g", 25)
    assert [m.id for m in got] == ids
    assert [m.payload["i"] for m in got] == list(range(25))


async def test_separate_groups_each_see_every_message(broker: Broker) -> None:
    ids = await broker.publish_batch("t", [{"i": i} for i in range(10)])
    first = await take(broker, "t", "g1", 10)
    second = await take(broker, "t", "g2", 10)
    assert [m.id for m in first] == ids
    assert [m.id for m in second] == ids


async def test_members_of_a_group_share_the_work(backend: Backend) -> None:
    broker = await backend.make(consumer_options=_long_visibility())
    seen: dict[str, list[str]] = {"a": [], "b": []}
    b_started = asyncio.Event()
    # On Kafka a member takes work only from the partitions it holds: both must be in
    # the group before there is any, or the first can take it all while the second joins.
    partitioned = backend.name == "kafka"
    holding = {"a": asyncio.Event(), "b": asyncio.Event()}

    async def assigned(name: str, assignment: Assignment) -> None:
        if assignment.partitions:
            holding[name].set()

    async def member(name: str) -> None:
        hook = functools.partial(assigned, name) if partitioned else None
        consuming = broker.consume("t", "g", consumer=name, batch_size=1, on_assigned=hook)
        async for message in consuming:
            seen[name].append(message.id)
            if name == "a" and len(seen["a"]) == 1:
                await b_started.wait()  # hold one message until b has taken work too
            if name == "b":
                b_started.set()
            await broker.acknowledge(message)
            if len(seen["a"]) + len(seen["b"]) == len(ids):
                return

    ids: list[str] = []
    tasks = [asyncio.create_task(member("a")), asyncio.create_task(member("b"))]
    if partitioned:  # a new cluster's group coordinator can take a while to appear
        async with asyncio.timeout(90):
            await asyncio.gather(holding["a"].wait(), holding["b"].wait())
    ids += await broker.publish_batch("t", [{"i": i} for i in range(20)])
    async with asyncio.timeout(10):
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert seen["a"] and seen["b"]
    assert sorted(seen["a"] + seen["b"]) == sorted(ids)
    assert await broker.get_consumer_lag("t", "g") == 0


async def test_unacknowledged_message_of_a_crashed_consumer_is_redelivered(
    broker: Broker,
) -> None:
    msg_id = await broker.publish("t", {"job": 1})
    received = asyncio.Event()

    async def crashing() -> None:
        async for _message in broker.consume("t", "g", consumer="crasher"):
            received.set()
            await asyncio.Event().wait()  # stuck forever: never acknowledges

    task = asyncio.create_task(crashing())
    async with asyncio.timeout(10):
        await received.wait()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert await broker.get_consumer_lag("t", "g") == 1  # still pending, not lost
    [again] = await take(broker, "t", "g", 1, consumer="survivor")
    assert again.id == msg_id
    assert again.delivery is not None and again.delivery.consumer == "survivor"
    assert await broker.get_consumer_lag("t", "g") == 0


async def test_a_message_kept_alive_stays_with_its_consumer(broker: Broker) -> None:
    """``keep_alive`` while working on a message: no other member of the group gets it,
    however long past the visibility timeout (0.3 s here) the work takes."""
    await broker.publish("t", {"long": "job"})
    working = broker.consume("t", "g", consumer="worker")
    async with asyncio.timeout(10):
        held = await anext(working)  # the loop stays a member of the group meanwhile
    others: list[Message] = []

    async def other_member() -> None:
        async for message in broker.consume("t", "g", consumer="other"):
            others.append(message)

    other = asyncio.create_task(other_member())
    loop = asyncio.get_running_loop()
    until = loop.time() + 1.5  # five visibility timeouts
    while loop.time() < until:
        await broker.keep_alive(held)
        await asyncio.sleep(0.1)
    await broker.acknowledge(held)
    await asyncio.sleep(0.4)  # past one more visibility timeout
    await working.aclose()
    other.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await other
    assert others == []
    assert await broker.get_consumer_lag("t", "g") == 0


async def test_cancelling_consume_while_waiting_ends_it_cleanly(broker: Broker) -> None:
    async def idle() -> None:
        async for _message in broker.consume("quiet", "g"):
            pass

    task = asyncio.create_task(idle())
    await asyncio.sleep(0.1)  # let it block in the broker's wait
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await broker.publish("quiet", {"after": True})
    [got] = await take(broker, "quiet", "g", 1)
    assert got.payload == {"after": True}


async def test_nack_retries_with_backoff_then_dead_letters(broker: Broker) -> None:
    msg_id = await broker.publish("t", {"bad": True})
    counts = []
    async with asyncio.timeout(10):
        async for message in broker.consume("t", "g", consumer="w"):
            counts.append(message.retry_count)
            await broker.nack(message, "boom: cannot process")
            if len(counts) == broker.retry_policy.max_retries + 1:
                break
    assert counts == [0, 1, 2]
    await eventually(lambda: _has_dead_letters(broker, "t", 1), "message dead-lettered")
    [dead] = await broker.get_dead_letter_messages("t", limit=100)
    assert dead.original_message.id == msg_id
    assert dead.failure_reason == "boom: cannot process"
    assert dead.original_message.retry_count == 2
    assert dead.consumer_group == "g"
    assert dead.consumer == "w"
    assert await broker.get_consumer_lag("t", "g") == 0
    metrics = broker.get_metrics()
    assert (metrics["messages_nacked"], metrics["messages_failed"]) == (3, 1)  # one for good


async def test_nack_without_requeue_dead_letters_at_once(broker: Broker) -> None:
    await broker.publish("t", {"x": 1})
    [message] = await take(broker, "t", "g", 1, ack=False)
    await broker.nack(message, "poison", requeue=False)
    [dead] = await broker.get_dead_letter_messages("t")
    assert dead.failure_reason == "poison"
    assert dead.original_message.retry_count == 0


async def test_retry_is_delayed_without_blocking_other_messages(backend: Backend) -> None:
    slow = RedeliveryPolicy(max_retries=3, base_delay=3600, max_delay=3600, jitter=0)
    broker = await backend.make(retry=slow)
    first = await broker.publish("t", {"i": 1})
    second = await broker.publish("t", {"i": 2})
    got: list[Message] = []
    async with asyncio.timeout(10):
        async for message in broker.consume("t", "g"):
            got.append(message)
            if message.id == first:
                await broker.nack(message, "later")
            else:
                await broker.acknowledge(message)
                break
    assert [m.id for m in got] == [first, second]
    assert await broker.get_consumer_lag("t", "g") == 1  # the retry waits, counted


async def test_retry_goes_only_to_the_group_that_nacked(broker: Broker) -> None:
    await broker.publish("t", {"x": 1})
    [message] = await take(broker, "t", "g1", 1, ack=False)
    await broker.nack(message, "again")
    [retried] = await take(broker, "t", "g1", 1)
    assert retried.retry_count == 1
    [other] = await take(broker, "t", "g2", 1)
    assert other.retry_count == 0
    assert await broker.get_consumer_lag("t", "g2") == 0


async def test_reprocessing_a_dead_letter_delivers_it_again(broker: Broker) -> None:
    msg_id = await broker.publish("t", {"x": 1})
    [message] = await take(broker, "t", "g", 1, ack=False)
    await broker.nack(message, "poison", requeue=False)
    [dead] = await broker.get_dead_letter_messages("t")
    assert await broker.reprocess_dead_letter_message(dead) == msg_id
    [again] = await take(broker, "t", "g", 1)
    assert again.id == msg_id
    assert again.retry_count == 0
    assert again.payload == {"x": 1}
    assert await broker.get_dead_letter_messages("t") == []


async def test_expired_message_is_dead_lettered_not_delivered(backend: Backend) -> None:
    broker = await backend.make()
    stale = await broker.publish("t", {"old": True}, ttl=60)
    backend.clock.advance(120)
    fresh = await broker.publish("t", {"old": False}, ttl=60)
    [got] = await take(broker, "t", "g", 1)
    assert got.id == fresh
    [dead] = await broker.get_dead_letter_messages("t")
    assert dead.original_message.id == stale
    assert dead.failure_reason == "expired"


async def test_oversized_message_is_refused_naming_size_and_limit(broker: Broker) -> None:
    assert broker.max_message_bytes == 1024 * 1024
    with pytest.raises(MessageTooLargeError) as info:
        await broker.publish("big.topic", {"blob": "x" * (1024 * 1024)})
    text = str(info.value)
    assert "big.topic" in text and "1048576" in text and str(info.value.size) in text
    assert info.value.size > info.value.limit
    with pytest.raises(MessageTooLargeError):
        await broker.publish_batch("big.topic", [{"ok": 1}, {"blob": "x" * (1024 * 1024)}])
    assert await broker.get_consumer_lag("big.topic", "g") == 0  # nothing half-sent


@pytest.mark.parametrize(
    "payload",
    [
        [1, 2],
        "text",
        {"x": math.nan},
        {"x": math.inf},
        {"x": {1, 2}},
        {1: "int key"},
        {"x": object()},
    ],
    ids=["list", "str", "nan", "inf", "set", "int-key", "object"],
)
async def test_payload_must_be_a_json_object(broker: Broker, payload: object) -> None:
    with pytest.raises(MessageValidationError):
        await broker.publish("t", payload)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "raw",
    [b"not json at all", b"[1, 2, 3]", b'{"id": "x"}', b'{"id": 5, "payload": {}}'],
    ids=["garbage", "array", "missing-fields", "wrong-types"],
)
async def test_malformed_entry_is_dead_lettered_and_consumer_keeps_going(
    backend: Backend, raw: bytes
) -> None:
    broker = await backend.make()
    await backend.write_raw("t", raw)
    good = await broker.publish("t", {"ok": True})
    [got] = await take(broker, "t", "g", 1)
    assert got.id == good
    [dead] = await broker.get_dead_letter_messages("t")
    assert dead.failure_reason.startswith("malformed")
    assert dead.raw is not None and raw.decode() in dead.raw
    with pytest.raises(DeadLetterError):
        await broker.reprocess_dead_letter_message(dead)


async def test_tampered_message_fails_provenance_and_is_dead_lettered(
    backend: Backend,
) -> None:
    broker = await backend.make()
    message, data = broker.build_message("t", {"amount": 10})
    wire = orjson.loads(data)
    wire["payload"]["amount"] = 10_000
    await backend.write_raw("t", orjson.dumps(wire))
    good = await broker.publish("t", {"amount": 1})
    [got] = await take(broker, "t", "g", 1)
    assert got.id == good
    [dead] = await broker.get_dead_letter_messages("t")
    assert dead.original_message.id == message.id
    assert "provenance" in dead.failure_reason


async def test_consumer_lag_counts_undelivered_and_unacknowledged(broker: Broker) -> None:
    await broker.publish_batch("t", [{"i": i} for i in range(5)])
    assert await broker.get_consumer_lag("t", "g") == 5
    got = await take(broker, "t", "g", 2, ack=False, batch_size=2)
    assert await broker.get_consumer_lag("t", "g") == 5
    await broker.acknowledge(got[0])
    assert await broker.get_consumer_lag("t", "g") == 4


async def test_acknowledging_a_message_twice_is_harmless(broker: Broker) -> None:
    await broker.publish("t", {"x": 1})
    [got] = await take(broker, "t", "g", 1)
    await broker.acknowledge(got)
    assert await broker.get_consumer_lag("t", "g") == 0


async def test_a_batch_acknowledged_at_once_is_done_and_not_delivered_again(
    broker: Broker,
) -> None:
    await broker.publish_batch("t", [{"i": i} for i in range(7)])
    await broker.publish("u", {"i": "other topic"})
    got = await take(broker, "t", "g", 7, ack=False, batch_size=7)
    [other] = await take(broker, "u", "g", 1, ack=False)
    acknowledged = broker.metrics.acknowledged
    await broker.acknowledge_batch([*got, other])
    assert broker.metrics.acknowledged == acknowledged + 8
    assert await broker.get_consumer_lag("t", "g") == 0
    assert await broker.get_consumer_lag("u", "g") == 0
    await broker.acknowledge_batch([])  # nothing to do
    await broker.acknowledge_batch(got[:2])  # again: harmless, like acknowledge
    await broker.publish("t", {"i": "next"})
    [after] = await take(broker, "t", "g", 1)  # the next one, not one acknowledged
    assert after.payload == {"i": "next"}


async def test_a_batch_with_a_message_not_delivered_acknowledges_none(broker: Broker) -> None:
    await broker.publish("t", {"x": 1})
    [got] = await take(broker, "t", "g", 1, ack=False)
    stranger, _ = broker.build_message("t", {"x": 2})
    with pytest.raises(ValueError, match="consume"):
        await broker.acknowledge_batch([got, stranger])
    assert await broker.get_consumer_lag("t", "g") == 1


async def test_only_delivered_messages_can_be_acknowledged(broker: Broker) -> None:
    message, _ = broker.build_message("t", {"x": 1})
    with pytest.raises(ValueError, match="consume"):
        await broker.acknowledge(message)


async def test_operations_need_a_connection(backend: Backend) -> None:
    broker = await backend.make()
    await broker.disconnect()
    with pytest.raises(BrokerNotConnectedError):
        await broker.publish("t", {"x": 1})
    health = await broker.health_check()
    assert health["status"] == "unhealthy"
    async with broker:
        await broker.publish("t", {"x": 1})
        assert (await broker.health_check())["status"] == "healthy"


async def test_health_and_metrics_report_the_seed_keys(broker: Broker) -> None:
    await broker.publish_batch("t", [{"i": i} for i in range(3)])
    await take(broker, "t", "g", 3)
    health = await broker.health_check()
    assert health["status"] == "healthy"
    assert health["latency_ms"] >= 0 and health["uptime_seconds"] >= 0
    metrics = broker.get_metrics()
    assert metrics["messages_published"] == 3
    assert metrics["messages_consumed"] == 3
    assert metrics["messages_failed"] == 0
    assert metrics["throughput_per_second"] > 0  # its window: tests/brokers/test_counters.py
    assert metrics["average_latency_ms"] >= 0


def _long_visibility():  # type: ignore[no-untyped-def]
    from brokers import ConsumerOptions

    return ConsumerOptions(visibility_timeout=30, block_time=0.05)


async def _has_dead_letters(broker: Broker, topic: str, n: int) -> bool:
    return len(await broker.get_dead_letter_messages(topic)) >= n


async def _dead_letter(broker: Broker, topic: str, payload: dict[str, int], why: str) -> str:
    """Publish one message, have group g give up on it at once; its message id."""
    msg_id = await broker.publish(topic, payload)
    [message] = await take(broker, topic, "g", 1, ack=False)
    await broker.nack(message, why, requeue=False)
    return msg_id


async def test_a_dead_letter_is_read_by_its_id(broker: Broker) -> None:
    first = await _dead_letter(broker, "t", {"i": 1}, "one")
    second = await _dead_letter(broker, "t", {"i": 2}, "two")
    listed = await broker.get_dead_letter_messages("t")
    assert [d.original_message.id for d in listed] == [first, second]
    for dead in listed:
        assert await broker.get_dead_letter_message("t", dead.dlq_id) == dead
    for unknown in ("nope", "1-0", "424242"):
        with pytest.raises(DeadLetterError, match="no dead letter"):
            await broker.get_dead_letter_message("t", unknown)
    with pytest.raises(DeadLetterError):
        await broker.get_dead_letter_message("other", listed[0].dlq_id)


async def test_the_topics_with_dead_letters_are_listed(broker: Broker) -> None:
    assert await broker.get_dead_letter_topics() == []
    await _dead_letter(broker, "orders", {"i": 1}, "bad")
    await _dead_letter(broker, "saga.replies", {"i": 2}, "bad")
    for name in ("fine", "odd.dlq", "odd:dlq"):  # topics without dead letters, some
        await broker.publish(name, {"ok": True})  # named like a DLQ themselves
        await take(broker, name, "g", 1)
    assert await broker.get_dead_letter_topics() == ["orders", "saga.replies"]
    [dead] = await broker.get_dead_letter_messages("orders")
    await broker.reprocess_dead_letter_message(dead)
    assert await broker.get_dead_letter_topics() == ["saga.replies"]


async def test_dead_letters_are_counted_as_they_come_and_go(broker: Broker) -> None:
    assert await broker.get_dead_letter_count("never") == 0
    for n in range(3):
        await _dead_letter(broker, "counted", {"n": n}, "bad")
    assert await broker.get_dead_letter_count("counted") == 3
    first, second, _ = await broker.get_dead_letter_messages("counted")
    await broker.reprocess_dead_letter_message(first)
    await broker.discard_dead_letter_message(second, reason="tested", discarded_by="me")
    assert await broker.get_dead_letter_count("counted") == 1
    assert await broker.get_dead_letter_count("never") == 0


async def test_a_discarded_dead_letter_is_kept_in_the_discard_archive(broker: Broker) -> None:
    msg_id = await _dead_letter(broker, "t", {"amount": 10}, "poison")
    kept = await _dead_letter(broker, "t", {"amount": 20}, "poison")
    dead = next(
        d for d in await broker.get_dead_letter_messages("t") if d.original_message.id == msg_id
    )
    assert await broker.get_discarded_dead_letters("t") == []
    await broker.discard_dead_letter_message(dead, reason="duplicate", discarded_by="ann@ops")
    assert [d.original_message.id for d in await broker.get_dead_letter_messages("t")] == [kept]
    with pytest.raises(DeadLetterError):
        await broker.get_dead_letter_message("t", dead.dlq_id)
    [archived] = await broker.get_discarded_dead_letters("t")
    assert archived.dead_letter == dead  # the record as it was, with its DLQ id
    assert archived.dead_letter.original_message.payload == {"amount": 10}
    assert (archived.discarded_by, archived.reason) == ("ann@ops", "duplicate")
    assert archived.discarded_at >= dead.failed_at
    with pytest.raises(DeadLetterError, match="no dead letter"):
        await broker.discard_dead_letter_message(dead, reason="again", discarded_by="ann@ops")
    assert len(await broker.get_discarded_dead_letters("t")) == 1


async def test_disconnect_ends_running_consume_loops_quietly(backend: Backend) -> None:
    """A loop still running when the broker disconnects (a pattern's listener, a
    worker) returns without an error, and a request-reply pattern left open does not
    leave a failed task behind (the seed's snippet closes nothing)."""
    broker = await backend.make()
    await broker.publish("quiet-end", {"n": 1})
    got: list[Message] = []

    async def loop() -> str:
        async for message in broker.consume("quiet-end", "g"):
            got.append(message)
            await broker.acknowledge(message)
        return "returned"

    running = asyncio.create_task(loop())
    server = asyncio.create_task(
        RequestReplyPattern(broker).handle_requests("quiet-llm", lambda m: {"ok": True})
    )
    pattern = RequestReplyPattern(broker)
    reply = await pattern.send_request("quiet-llm", {"prompt": "hi"}, timeout=20)
    assert reply is not None and reply.payload == {"ok": True}
    async with asyncio.timeout(20):
        while not got:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
    listener = pattern._listener
    assert listener is not None and not listener.done()
    await broker.disconnect()
    async with asyncio.timeout(20):
        assert await running == "returned"
        await asyncio.wait([server, listener])
    assert server.exception() is None
    # the pattern never closed was closed by disconnect(): its listener stopped
    assert listener.cancelled() or listener.exception() is None
