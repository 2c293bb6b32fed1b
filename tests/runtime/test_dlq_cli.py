"""``orchestrator dlq`` as a user runs it (click's runner, ``--config`` naming the test's
real Redis or Kafka): dead letters a consumer really gave up on, a saga that really
failed, and every command's output read back."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from click.testing import CliRunner, Result

from brokers import Broker, ConsumerOptions, DeadLetterMessage, Message, RedeliveryPolicy
from orchestrator.cli import cli
from orchestrator.runtime.settings import load_settings
from tests.runtime.test_cli import FIXABLE

STEPS = "saga.steps.fixable"
REPLIES = "saga.replies"
GROUP = "workers"
FAST_CONSUMER = ConsumerOptions(visibility_timeout=2.0, block_time=0.05)
FAST_RETRY = RedeliveryPolicy(max_retries=2, base_delay=0.01, max_delay=0.05)


def run(*args: str) -> Result:
    """One ``orchestrator`` command, in this process, 200 columns wide."""
    return CliRunner().invoke(cli, list(args), obj={}, env={"COLUMNS": "200"})


def as_json(result: Result) -> Any:
    assert result.exit_code in (0, 1), result.output
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def failed_saga(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path, str]:
    """A store holding one saga whose compensation failed for good (status failed):
    its URL, the workflows directory, and the saga's id."""
    tmp = tmp_path_factory.mktemp("failed")
    flows = tmp / "flows"
    flows.mkdir()
    (flows / "fixable.py").write_text(FIXABLE)
    url = f"sqlite:///{tmp / 'sagas.sqlite'}"
    started = run(
        "start", "fixable", "--wait", "--pickup", "0.1", "--store", url, "--workflows", str(flows)
    )
    assert started.exit_code == 4, started.output
    return url, flows, started.stdout.split()[0]


@pytest.fixture(params=["redis", "kafka"])
def config(
    request: pytest.FixtureRequest, tmp_path: Path, failed_saga: tuple[str, Path, str]
) -> Path:
    """A ``--config`` file naming the store with the failed saga and the test's broker."""
    url, flows, _ = failed_saga
    messaging: dict[str, Any]
    if request.param == "redis":
        messaging = {"broker_type": "redis", "redis": {"url": request.getfixturevalue("redis_url")}}
    else:
        kafka = request.getfixturevalue("kafka_bootstrap")
        prefix = f"dlq{uuid.uuid4().hex[:8]}."
        messaging = {
            "broker_type": "kafka",
            "kafka": {"bootstrap_servers": [kafka], "topic_prefix": prefix},
        }
    path = tmp_path / "sagaflow.yaml"
    path.write_text(yaml.safe_dump({"store": url, "workflows": str(flows), **messaging}))
    return path


def _broker(config: Path) -> Broker:
    messaging = load_settings(str(config)).messaging
    return messaging.create_broker(
        consumer_options=FAST_CONSUMER, retry=FAST_RETRY, max_retries=FAST_RETRY.max_retries
    )


async def _give_up_on_everything(broker: Broker, topic: str, expected: int) -> None:
    """A consumer of group ``workers`` that rejects every message of ``topic`` until the
    topic holds ``expected`` dead letters (each after max_retries retries)."""

    async def reject() -> None:
        async for message in broker.consume(topic, GROUP, consumer="w1"):
            await broker.nack(message, f"handler crashed: boom {message.payload['n']}")

    task = asyncio.create_task(reject())
    try:
        async with asyncio.timeout(60):
            while len(await broker.get_dead_letter_messages(topic)) < expected:  # noqa: ASYNC110
                await asyncio.sleep(0.2)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _make_dead_letters(config: Path) -> dict[str, str]:
    """Three rejected step commands and, on the replies topic, one rejected outcome and
    one tampered with on the broker (its provenance hash no longer matches); the message
    id of each, by name."""
    async with _broker(config) as broker:
        ids = {f"step{n}": await broker.publish(STEPS, {"n": n}) for n in range(3)}
        ids["reply"] = await broker.publish(REPLIES, {"n": 9}, headers={"saga_id": "s-9"})
        tampered, data = broker.build_message(REPLIES, {"n": 10, "amount": 10})
        wire = orjson.loads(data)
        wire["payload"]["amount"] = 10_000
        await broker._append(REPLIES, (orjson.dumps(wire),), 0, None)
        ids["tampered"] = tampered.id
        await _give_up_on_everything(broker, STEPS, 3)
        await _give_up_on_everything(broker, REPLIES, 2)
    return ids


async def _redelivered(config: Path, topic: str, count: int) -> list[Message]:
    """What group ``workers`` is handed on ``topic`` (acknowledged), ``count`` of them."""
    got: list[Message] = []
    async with _broker(config) as broker, asyncio.timeout(60):
        async for message in broker.consume(topic, GROUP, consumer="w2"):
            await broker.acknowledge(message)
            got.append(message)
            if len(got) == count:
                break
    return got


async def _archive(config: Path, topic: str) -> list[DeadLetterMessage]:
    async with _broker(config) as broker:
        return [d.dead_letter for d in await broker.get_discarded_dead_letters(topic)]


def _letters(config: Path, *topic: str) -> dict[str, dict[str, Any]]:
    """``dlq list --json``'s dead letters, by message id (the tampered one's too)."""
    doc = as_json(run("dlq", "list", *topic, "--config", str(config), "--json", "--no-sagas"))
    return {d["message_id"]: d for d in doc["dead_letters"]}


def test_dlq_lists_shows_reprocesses_and_discards(
    config: Path, failed_saga: tuple[str, Path, str]
) -> None:
    ids = asyncio.run(_make_dead_letters(config))
    cfg = ("--config", str(config))
    _, _, saga_id = failed_saga

    # list: the table of dead letters, then the failed saga and how to resume it
    listed = run("dlq", "list", *cfg)
    assert listed.exit_code == 0, listed.output
    out = listed.stdout
    dead_part, saga_part = out.split("failed sagas waiting for a person")
    assert dead_part.count(STEPS) == 3 and dead_part.count(REPLIES) == 2
    assert "handler crashed: boom 1" in dead_part and "provenance hash mismatch" in dead_part
    for column in ("id", "topic", "group", "reason", "retries", "age"):
        assert column in dead_part
    assert saga_id in saga_part and "compensation of pay" in saga_part
    assert f"orchestrator resume {saga_id} --config {config}" in saga_part

    doc = as_json(run("dlq", "list", *cfg, "--json"))
    letters = {d["message_id"]: d for d in doc["dead_letters"]}
    assert set(letters) == set(ids.values())
    step1 = letters[ids["step1"]]
    assert step1["topic"] == STEPS and step1["group"] == GROUP
    assert step1["reason"] == "handler crashed: boom 1" and step1["retries"] == 2
    assert 0 <= step1["age_seconds"] < 120
    assert letters[ids["tampered"]]["retries"] == 0
    [saga] = doc["sagas"]
    assert saga["saga_id"] == saga_id and saga["status"] == "failed"
    assert saga["resume"] == f"orchestrator resume {saga_id} --config {config}"
    assert set(_letters(config, REPLIES)) == {ids["reply"], ids["tampered"]}

    # show: payload, headers, reason and the provenance check, both ways
    reply = letters[ids["reply"]]
    shown = run("dlq", "show", reply["id"], "--topic", REPLIES, *cfg)
    assert shown.exit_code == 0, shown.output
    assert f"dead letter {reply['id']} on {REPLIES}" in shown.stdout
    assert "handler crashed: boom 9" in shown.stdout
    assert "provenance  ok: matches payload and headers" in shown.stdout
    assert '"saga_id": "s-9"' in shown.stdout and '"n": 9' in shown.stdout
    detail = as_json(run("dlq", "show", reply["id"], "--topic", REPLIES, *cfg, "--json"))
    assert detail["dead_letter"]["payload"] == {"n": 9}
    assert detail["dead_letter"]["headers"] == {"saga_id": "s-9"}
    assert detail["dead_letter"]["provenance"]["verified"] is True
    assert len(detail["dead_letter"]["provenance"]["hash"]) == 64
    bad = letters[ids["tampered"]]
    tampered = run("dlq", "show", bad["id"], "--topic", REPLIES, *cfg)
    assert tampered.exit_code == 1, tampered.output
    assert "provenance  MISMATCH" in tampered.stdout and '"amount": 10000' in tampered.stdout

    # reprocess one: it leaves the DLQ and the group gets it again, retries reset
    again = run("dlq", "reprocess", step1["id"], "--topic", STEPS, *cfg)
    assert again.exit_code == 0, again.output
    assert f"message {ids['step1']} delivered again to group {GROUP}" in again.stdout
    assert ids["step1"] not in _letters(config, STEPS)
    [redelivered] = asyncio.run(_redelivered(config, STEPS, 1))
    assert (redelivered.id, redelivered.retry_count) == (ids["step1"], 0)

    # discard one: gone from the DLQ, kept in the archive with who, when and why
    step0 = letters[ids["step0"]]
    gone = run("dlq", "discard", step0["id"], "--topic", STEPS, "--reason", "dup order", *cfg)
    assert gone.exit_code == 0, gone.output
    assert f"discarded {step0['id']} on {STEPS}" in gone.stdout and "dup order" in gone.stdout
    assert set(_letters(config, STEPS)) == {ids["step2"]}
    archive = as_json(run("dlq", "list", STEPS, "--discarded", *cfg, "--json"))
    [kept] = archive["discarded"]
    assert (kept["id"], kept["message_id"]) == (step0["id"], ids["step0"])
    assert kept["discard_reason"] == "dup order" and "@" in kept["discarded_by"]
    assert [d.original_message.payload for d in asyncio.run(_archive(config, STEPS))] == [{"n": 0}]
    shown_archive = run("dlq", "list", STEPS, "--discarded", *cfg)
    assert "dup order" in shown_archive.stdout and step0["id"] in shown_archive.stdout

    # reprocess --all of a topic: every dead letter of it, the others stay
    every = as_json(run("dlq", "reprocess", "--all", "--topic", STEPS, *cfg, "--json"))
    assert [r["message_id"] for r in every["reprocessed"]] == [ids["step2"]]
    assert _letters(config, STEPS) == {}
    assert set(_letters(config)) == {ids["reply"], ids["tampered"]}
    [step2] = asyncio.run(_redelivered(config, STEPS, 1))
    assert step2.id == ids["step2"]

    # an id no topic has: one line, exit 2 (and a JSON document with --json)
    missing = run("dlq", "show", "999-0", *cfg)
    assert missing.exit_code == 2 and "no dead letter '999-0' on any topic" in missing.stderr
    missing_json = run("dlq", "discard", "999-0", "--reason", "x", *cfg, "--json")
    assert missing_json.exit_code == 2
    assert json.loads(missing_json.stdout)["ok"] is False


def test_dlq_list_says_plainly_when_there_is_no_store(tmp_path: Path, redis_url: str) -> None:
    config = tmp_path / "sagaflow.yaml"
    store = tmp_path / "nowhere.sqlite"
    config.write_text(
        yaml.safe_dump(
            {"store": f"sqlite:///{store}", "broker_type": "redis", "redis": {"url": redis_url}}
        )
    )
    listed = run("dlq", "list", "--config", str(config))
    assert listed.exit_code == 0, listed.output
    assert "no dead letters on any topic" in listed.stdout
    assert f"no event store at sqlite:///{store}: no sagas to resume" in listed.stdout
    assert not store.exists()  # read-only: nothing created
    store.write_text("not a database")
    broken = run("dlq", "list", "--config", str(config))
    assert broken.exit_code == 2 and broken.stderr.count("\n") == 1, broken.output
    assert "error:" in broken.stderr


def test_dlq_needs_a_shared_broker_and_an_id_or_all(tmp_path: Path) -> None:
    memory = run("dlq", "list", "--store", f"sqlite:///{tmp_path / 'x.sqlite'}")
    assert memory.exit_code == 2 and "broker_type redis or kafka" in memory.stderr
    as_doc = run("dlq", "list", "--json")
    assert (
        as_doc.exit_code == 2 and "broker_type redis or kafka" in json.loads(as_doc.stdout)["error"]
    )
    neither = run("dlq", "reprocess")
    assert neither.exit_code == 2 and "ID or --all" in neither.stderr
    both = run("dlq", "reprocess", "1-0", "--all")
    assert both.exit_code == 2 and "ID or --all" in both.stderr
    no_topic = run("dlq", "list", "--discarded", "--json")  # --json: an error is JSON too
    assert no_topic.exit_code == 2
    assert json.loads(no_topic.stdout)["error"] == "--discarded needs a TOPIC"
