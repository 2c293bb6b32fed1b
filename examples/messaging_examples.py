"""The seed README's messaging examples, runnable: every pattern, end to end.

    python examples/messaging_examples.py --example all
    python examples/messaging_examples.py --example request_reply --redis redis://127.0.0.1:6379/0

Examples: basic, request_reply, pubsub, work_queue, saga, dlq (or all). They run on
the in-memory broker unless ``--redis URL`` is given; each prints what it does and
ends with ``ok`` (exit 1 if one does not do what it says).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from brokers import (
    Broker,
    ConsumerOptions,
    InMemoryBroker,
    Message,
    PubSubPattern,
    RedeliveryPolicy,
    RedisStreamsBroker,
    RequestReplyPattern,
    WorkQueuePattern,
)
from orchestrator import SagaPattern

Example = Callable[[Broker, str], Awaitable[None]]


async def basic(broker: Broker, ns: str) -> None:
    """Publish a message and consume it (the README's Quick Start)."""
    topic = f"{ns}.agent.tasks"
    message_id = await broker.publish(topic, {"task": "analyze_esg", "company": "ACME Corp"})
    print(f"published {message_id}")
    async for message in broker.consume(topic, "workers"):
        print(f"received {message.payload}")
        await broker.acknowledge(message)
        check(message.id == message_id and message.verify(), "the message came back intact")
        break


async def request_reply(broker: Broker, ns: str) -> None:
    """Send a request and wait for its reply."""
    topic = f"{ns}.agent.llm"
    pattern = RequestReplyPattern(broker)

    async def answer(request: Message) -> dict[str, Any]:
        return {"summary": f"read {len(request.payload['prompt'])} characters"}

    server = asyncio.create_task(RequestReplyPattern(broker).handle_requests(topic, answer))
    try:
        response = await pattern.send_request(
            topic, {"prompt": "Analyze this ESG report"}, timeout=10.0
        )
        check(response is not None, "a reply came back in time")
        assert response is not None
        print(f"response: {response.payload}")
    finally:
        server.cancel()
        await asyncio.gather(server, return_exceptions=True)
        await pattern.close()


async def pubsub(broker: Broker, ns: str) -> None:
    """Every subscriber gets every message."""
    topic = f"{ns}.esg.updates"
    pattern = PubSubPattern(broker)
    seen: dict[str, list[Any]] = {"auditor": [], "dashboard": []}
    done = asyncio.Event()

    def subscriber(name: str) -> Callable[[Message], None]:
        def handle(message: Message) -> None:
            seen[name].append(message.payload["score"])
            if all(len(got) == 3 for got in seen.values()):
                done.set()

        return handle

    tasks = [
        asyncio.create_task(pattern.subscribe(topic, subscriber(name), subscriber=f"{ns}-{name}"))
        for name in seen
    ]
    try:
        await asyncio.sleep(0.2)  # the subscribers' groups start at the stream's end
        for score in (71, 74, 80):
            await pattern.publish(topic, {"company": "ACME Corp", "score": score})
        await asyncio.wait_for(done.wait(), 10)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    print(f"each subscriber got {seen}")
    check(all(got == [71, 74, 80] for got in seen.values()), "every subscriber got every score")


async def work_queue(broker: Broker, ns: str) -> None:
    """Distribute tasks among workers (the README's 100 tasks, 10 workers)."""
    topic = f"{ns}.agent.work_queue"
    pattern = WorkQueuePattern(broker)
    done: list[int] = []

    async def process_task(payload: dict[str, Any]) -> dict[str, Any]:
        done.append(payload["site_id"])
        return {"status": "completed"}

    tasks = [{"calculation": "scope1_emissions", "site_id": i} for i in range(100)]
    await pattern.submit_batch(topic, tasks)
    stats = await pattern.process_tasks(
        topic, process_task, consumer_group="calculation_workers", num_workers=10
    )
    print(f"stats {stats}")
    check(sorted(done) == list(range(100)), "each of the 100 tasks was processed once")


async def saga(broker: Broker, ns: str) -> None:
    """A saga with compensation: the second run fails and is rolled back."""
    log: list[str] = []

    def validate(data: dict[str, Any]) -> dict[str, Any]:
        log.append("validate")
        return {"validated": True}

    def compensate_validate(data: dict[str, Any]) -> None:
        log.append("undo validate")

    def calculate(data: dict[str, Any]) -> dict[str, Any]:
        log.append("calculate")
        if data.get("company") == "Broken Corp":
            raise RuntimeError("no activity data")
        return {"emissions": 2500}

    def compensate_calculate(data: dict[str, Any]) -> None:
        log.append("undo calculate")

    pattern = SagaPattern(broker, name=f"esg_{ns.replace('-', '_')}")
    pattern.add_step("validate", validate, compensate_validate)
    pattern.add_step("calculate", calculate, compensate_calculate)
    result = await pattern.execute({"company": "ACME Corp"})
    print(f"result: {result.status}, outputs {result.outputs}")
    check(result.outputs["calculate"] == {"emissions": 2500}, "the saga completed")
    log.clear()
    failed = await pattern.execute({"company": "Broken Corp"})
    print(f"result: {failed.status} ({failed.error}); ran {log}")
    check(failed.status == "compensated", "the failing saga was compensated")
    check(log == ["validate", "calculate", "undo validate"], "validation was rolled back")


async def dlq(broker: Broker, ns: str) -> None:
    """A message that keeps failing lands in the DLQ; inspect it, reprocess it."""
    topic = f"{ns}.agent.tasks"
    await broker.publish(topic, {"task": "parse", "file": "broken.pdf"})
    attempts = 0
    async for message in broker.consume(topic, "workers"):
        attempts += 1
        if attempts <= broker.retry_policy.max_retries + 1:
            await broker.nack(message, "cannot parse broken.pdf", requeue=True)
            if attempts == broker.retry_policy.max_retries + 1:
                break
            continue
    dlq_messages = await broker.get_dead_letter_messages(topic, limit=100)
    for dlq_msg in dlq_messages:
        print(f"failed: {dlq_msg.original_message.id}")
        print(f"reason: {dlq_msg.failure_reason}")
        print(f"retries: {dlq_msg.original_message.retry_count}")
    check(len(dlq_messages) == 1, "the message is in the DLQ after its retries")
    await broker.reprocess_dead_letter_message(dlq_messages[0])
    async for message in broker.consume(topic, "workers"):
        print(f"reprocessed: {message.payload}")
        await broker.acknowledge(message)
        check(message.retry_count == 0, "it came back with a fresh retry count")
        break
    check(await broker.get_dead_letter_count(topic) == 0, "the DLQ is empty again")


EXAMPLES: dict[str, Example] = {
    "basic": basic,
    "request_reply": request_reply,
    "pubsub": pubsub,
    "work_queue": work_queue,
    "saga": saga,
    "dlq": dlq,
}


class ExampleFailed(AssertionError):
    pass


def check(ok: bool, what: str) -> None:
    if not ok:
        raise ExampleFailed(f"expected: {what}")


def make_broker(redis: str | None) -> Broker:
    fast = RedeliveryPolicy(max_retries=3, base_delay=0.01, max_delay=0.05)
    options = ConsumerOptions(block_time=0.05)
    if redis is None:
        return InMemoryBroker(retry=fast, consumer_options=options)
    return RedisStreamsBroker(redis_url=redis, retry=fast, consumer_options=options)


async def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--example", choices=[*EXAMPLES, "all"], default="all")
    parser.add_argument("--redis", metavar="URL", help="run on Redis Streams at URL")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="  (%(name)s %(levelname)s: %(message)s)")
    chosen = list(EXAMPLES) if args.example == "all" else [args.example]
    failed = 0
    for name in chosen:
        print(f"== {name}: {(EXAMPLES[name].__doc__ or '').strip()}")
        broker = make_broker(args.redis)
        await broker.connect()
        try:
            await EXAMPLES[name](broker, f"ex-{uuid.uuid4().hex[:6]}")
            print("ok")
        except ExampleFailed as exc:
            failed += 1
            print(f"FAILED: {exc}")
        finally:
            await broker.disconnect()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
