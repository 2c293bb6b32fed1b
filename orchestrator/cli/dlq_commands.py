"""``orchestrator dlq``: the work that needs a person, from the command line.

Two kinds of it, side by side: the broker's dead letters (messages a consumer gave up
on: ``list``, ``show``, ``reprocess``, ``discard``) and the sagas that failed for good
and wait for ``orchestrator resume`` (``list`` shows them under the dead letters).

The broker is the configured one (``--config`` / ``GREENLANG_*``, as for
``orchestrator run``); it must be one other processes share (Redis or Kafka). The store
is opened read-only, only by ``list``. A dead letter is named by the id ``list`` shows;
``--topic`` says which topic's when one id is on several. ``discard`` never drops a dead
letter unrecorded: it moves to the topic's discard archive with who discarded it, when
and why (``list TOPIC --discarded`` shows the archive).
"""

from __future__ import annotations

import getpass
import json
import shlex
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from brokers import Broker, DeadLetterError, DeadLetterMessage, DiscardedDeadLetter
from eventstore import EventStore
from orchestrator.cli.app import (
    cli,
    console,
    echo_json,
    fail,
    run_async,
    settings_of,
    store_options,
)
from orchestrator.cli.dlq_views import (
    age,
    discarded_json,
    letter_json,
    letters_table,
    print_archive,
    print_sagas,
    provenance,
    say,
)
from orchestrator.cli.render import when
from orchestrator.core.state import SagaState, SagaStatus
from orchestrator.errors import OrchestratorError
from orchestrator.runtime.client import read_saga
from orchestrator.runtime.saga_log import STREAM_PREFIX, saga_of
from orchestrator.runtime.settings import Settings

ALL_LIMIT = 100_000
"""Most dead letters of one topic ``reprocess --all`` takes in one run."""

EXIT_PROVENANCE = 1
"""``dlq show``: the dead letter's provenance hash does not match its payload/headers."""


# -- the broker ---------------------------------------------------------------------


def _broker(settings: Settings) -> Broker:
    if settings.messaging.broker_type == "memory":
        raise OrchestratorError(
            "dlq needs a broker other processes can reach (broker_type redis or kafka): "
            "the in-memory broker's dead letters live and die inside the process that "
            "runs it"
        )
    return settings.messaging.create_broker()


async def _find(broker: Broker, dlq_id: str, topic: str | None) -> DeadLetterMessage:
    """Dead letter ``dlq_id`` of ``topic``, or of whichever topic has it."""
    topics = [topic] if topic is not None else await broker.get_dead_letter_topics()
    found: list[DeadLetterMessage] = []
    for name in topics:
        try:
            found.append(await broker.get_dead_letter_message(name, dlq_id))
        except DeadLetterError:
            continue
    if not found:
        where = f"on {topic!r}" if topic is not None else "on any topic"
        raise OrchestratorError(f"no dead letter {dlq_id!r} {where}")
    if len(found) > 1:
        names = ", ".join(d.original_message.topic for d in found)
        raise OrchestratorError(
            f"dead letter {dlq_id!r} is on several topics ({names}): say which with --topic"
        )
    return found[0]


# -- failed sagas -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WaitingSagas:
    """The failed sagas of the store, or why there are none to show."""

    sagas: list[SagaState]
    note: str | None = None


def _missing_file(url: str) -> bool:
    """Whether ``url`` names a SQLite file that does not exist (no store: no sagas)."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return False
    database = parsed.database
    return (
        parsed.get_backend_name() == "sqlite"
        and database not in (None, "", ":memory:")
        and not Path(str(database)).exists()
    )


async def waiting_sagas(settings: Settings, limit: int) -> WaitingSagas:
    """The first ``limit`` failed sagas (status ``failed``: waiting for a person to run
    ``orchestrator resume``), read from the store opened read-only. A store file that
    does not exist holds none; any other store that cannot be read is an error."""
    if _missing_file(settings.store):
        return WaitingSagas([], f"no event store at {settings.store}: no sagas to resume")
    store = await EventStore.open(settings.store, read_only=True)
    found: list[SagaState] = []
    after = ""
    try:
        while len(found) < limit:
            page = await store.streams(STREAM_PREFIX, after=after, limit=500)
            if not page:
                break
            for info in page:
                state, _ = await read_saga(store, saga_of(info.stream_id))
                if state is not None and state.status is SagaStatus.FAILED:
                    found.append(state)
            after = page[-1].stream_id
    finally:
        await store.close()
    return WaitingSagas(found[:limit])


def _resume_command(saga_id: str, config_file: str | None, store: str | None) -> str:
    """The command that resumes ``saga_id``, with the ``--config`` / ``--store`` given."""
    command = f"orchestrator resume {shlex.quote(saga_id)}"
    if config_file:
        command += f" --config {shlex.quote(config_file)}"
    if store:
        command += f" --store {shlex.quote(store)}"
    return command


# -- output ---------------------------------------------------------------------------


# -- commands ---------------------------------------------------------------------------

F = TypeVar("F", bound=Callable[..., Any])


def _common(fn: F) -> F:
    """What every ``dlq`` command takes: the store options and ``--json``."""
    fn = click.option("--json", "as_json", is_flag=True, help="Print a JSON document.")(fn)
    return store_options(fn)


def _options(fn: F) -> F:
    """The options of the commands that act on dead letters: ``--topic`` too."""
    fn = click.option(
        "--topic",
        help="Only this topic (needed when a dead letter's id is on several).",
    )(fn)
    return _common(fn)


def _run(
    ctx: click.Context,
    paths: tuple[str | None, str | None, str | None],
    as_json: bool,
    work: Callable[[Settings], Awaitable[int]],
) -> NoReturn:
    """Load the settings (``--config``, ``--store``, ``--workflows``), run ``work`` and
    exit with its code; errors are one line (a JSON document with ``--json``)."""
    settings = settings_of(*paths, as_json=as_json, ctx=ctx)
    sys.exit(run_async(ctx, work(settings), as_json=as_json))


@cli.group()
def dlq() -> None:
    """Dead letters and failed sagas: list, show, reprocess, discard.

    \b
    Examples:
      orchestrator dlq list --config sagaflow.yaml
      orchestrator dlq show 1733140000000-0 --config sagaflow.yaml
      orchestrator dlq reprocess --all --topic saga.replies --config sagaflow.yaml
      orchestrator dlq discard 1733140000000-0 --reason "duplicate order" --config …
    """


async def _list(
    settings: Settings,
    topic: str | None,
    *,
    limit: int,
    discarded: bool,
    sagas: bool,
    resume_flags: tuple[str | None, str | None],
    as_json: bool,
) -> int:
    now = time.time()
    archive: list[DiscardedDeadLetter] = []
    letters: list[DeadLetterMessage] = []
    async with _broker(settings) as broker:
        if discarded:
            assert topic is not None
            archive = await broker.get_discarded_dead_letters(topic, limit)
        else:
            topics = [topic] if topic is not None else await broker.get_dead_letter_topics()
            for name in topics:
                letters += await broker.get_dead_letter_messages(name, limit)
    waiting = await waiting_sagas(settings, limit) if sagas and not discarded else None
    resume = {
        s.saga_id: _resume_command(s.saga_id, *resume_flags)
        for s in (waiting.sagas if waiting else [])
    }
    if as_json:
        doc: dict[str, Any] = {"ok": True}
        if discarded:
            doc["discarded"] = [discarded_json(d, now) for d in archive]
        else:
            doc["dead_letters"] = [letter_json(d, now) for d in letters]
        if waiting is not None:
            doc["sagas"] = [
                {
                    "saga_id": s.saga_id,
                    "workflow": s.workflow,
                    "status": s.status.value,
                    "why": s.failure_summary,
                    "resume": resume[s.saga_id],
                }
                for s in waiting.sagas
            ]
            doc["sagas_note"] = waiting.note
        echo_json(doc)
        return 0
    if discarded:
        print_archive(topic or "", archive, now)
        return 0
    if letters:
        console.print(letters_table(letters, now, "dead letters"))
    else:
        where = f"on {topic}" if topic is not None else "on any topic"
        console.print(f"no dead letters {where}", highlight=False)
    if waiting is not None:
        if waiting.sagas:
            print_sagas(waiting.sagas, resume)
        else:
            console.print(waiting.note or "no failed sagas waiting for a person", highlight=False)
    return 0


@dlq.command("list")
@_common
@click.argument("topic", required=False)
@click.option("--limit", default=100, show_default=True, help="Most listed per topic.")
@click.option(
    "--discarded",
    is_flag=True,
    help="List TOPIC's discard archive (who discarded what, when and why) instead.",
)
@click.option("--no-sagas", is_flag=True, help="Leave out the failed sagas.")
@click.pass_context
def list_command(
    ctx: click.Context,
    config_file: str | None,
    store: str | None,
    workflows_dir: str | None,
    as_json: bool,
    topic: str | None,
    limit: int,
    discarded: bool,
    no_sagas: bool,
) -> None:
    """Dead letters (of TOPIC, else of every topic that has some), then the failed
    sagas waiting for `orchestrator resume`.

    The table has each dead letter's id, topic, group, reason, retries and age; the
    sagas come with the command that resumes each. A store file that does not exist
    holds no sagas; any other store or broker problem is an error (exit 2).
    """
    if discarded and topic is None:
        fail(ctx, OrchestratorError("--discarded needs a TOPIC"), as_json=as_json)
    _run(
        ctx,
        (config_file, store, workflows_dir),
        as_json,
        lambda settings: _list(
            settings,
            topic,
            limit=limit,
            discarded=discarded,
            sagas=not no_sagas,
            resume_flags=(config_file, store),
            as_json=as_json,
        ),
    )


async def _show(settings: Settings, dlq_id: str, topic: str | None, as_json: bool) -> int:
    async with _broker(settings) as broker:
        dead = await _find(broker, dlq_id, topic)
    now = time.time()
    message = dead.original_message
    check = provenance(dead)
    code = EXIT_PROVENANCE if check["verified"] is False else 0
    if as_json:
        doc = {
            "ok": code == 0,
            "dead_letter": {
                **letter_json(dead, now),
                "headers": message.headers.to_dict(),
                "payload": None if dead.raw is not None else message.payload,
                "raw": dead.raw,
                "created_at": None if dead.raw is not None else message.created_at,
                "provenance": check,
            },
        }
        echo_json(doc)
        return code
    lines = [
        f"dead letter {dead.dlq_id} on {message.topic}",
        f"  reason      {dead.failure_reason}",
        f"  failed      {when(dead.failed_at)} UTC ({age(now - dead.failed_at)} ago) in "
        f"group {dead.consumer_group}" + (f", consumer {dead.consumer}" if dead.consumer else ""),
    ]
    if dead.raw is None:
        lines.append(f"  message     {message.id} (retries {message.retry_count})")
    verdict = {True: "ok", False: "MISMATCH", None: "none"}[check["verified"]]
    lines.append(f"  provenance  {verdict}: {check['note']}")
    if check["hash"]:
        lines.append(f"  sha256      {check['hash']}")
    for line in lines:
        say(line)
    if dead.raw is not None:
        console.print("raw entry", highlight=False)
        click.echo(dead.raw)
    else:
        console.print("headers", highlight=False)
        click.echo(json.dumps(message.headers.to_dict(), indent=2, ensure_ascii=False))
        console.print("payload", highlight=False)
        click.echo(json.dumps(message.payload, indent=2, ensure_ascii=False))
    return code


@dlq.command("show")
@_options
@click.argument("dlq_id", metavar="ID")
@click.pass_context
def show_command(
    ctx: click.Context,
    config_file: str | None,
    store: str | None,
    workflows_dir: str | None,
    topic: str | None,
    as_json: bool,
    dlq_id: str,
) -> None:
    """One dead letter: reason, group, retries, headers, payload, and its provenance
    check (the SHA-256 of payload and headers recorded at publish, recomputed now).

    Exit 0, 1 when the provenance hash does not match, 2 on an error.
    """
    paths = (config_file, store, workflows_dir)
    _run(ctx, paths, as_json, lambda settings: _show(settings, dlq_id, topic, as_json))


async def _reprocess(
    settings: Settings, dlq_id: str | None, topic: str | None, as_json: bool
) -> int:
    done: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    async with _broker(settings) as broker:
        if dlq_id is not None:
            letters = [await _find(broker, dlq_id, topic)]
        else:
            topics = [topic] if topic is not None else await broker.get_dead_letter_topics()
            letters = [
                d for t in topics for d in await broker.get_dead_letter_messages(t, ALL_LIMIT)
            ]
        for dead in letters:
            entry = {"id": dead.dlq_id, "topic": dead.original_message.topic}
            if not dead.reprocessable and dlq_id is None:
                skipped.append({**entry, "why": "malformed entry: cannot be delivered again"})
                continue
            message_id = await broker.reprocess_dead_letter_message(dead)
            done.append({**entry, "message_id": message_id, "group": dead.consumer_group})
    if as_json:
        echo_json({"ok": True, "reprocessed": done, "skipped": skipped})
        return 0
    for item in done:
        say(
            f"reprocessed {item['id']} on {item['topic']}: message {item['message_id']} "
            f"delivered again to group {item['group']}"
        )
    for item in skipped:
        say(f"skipped {item['id']} on {item['topic']}: {item['why']}")
    if not done and not skipped:
        console.print("no dead letters to reprocess", highlight=False)
    return 0


@dlq.command("reprocess")
@_options
@click.argument("dlq_id", metavar="[ID]", required=False)
@click.option("--all", "every", is_flag=True, help="Every dead letter (of --topic, else all).")
@click.pass_context
def reprocess_command(
    ctx: click.Context,
    config_file: str | None,
    store: str | None,
    workflows_dir: str | None,
    topic: str | None,
    as_json: bool,
    dlq_id: str | None,
    every: bool,
) -> None:
    """Deliver dead letter ID (or --all of them) again, to the group that gave up on
    it, with its retry count reset; it leaves the dead-letter queue. Malformed entries
    cannot be delivered again: --all skips them and says so."""
    if (dlq_id is None) == (not every):
        raise click.UsageError("give a dead letter ID or --all (not both)")
    paths = (config_file, store, workflows_dir)
    _run(ctx, paths, as_json, lambda settings: _reprocess(settings, dlq_id, topic, as_json))


def who() -> str:
    """Who runs this command: ``user@host``."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


async def _discard(
    settings: Settings, dlq_id: str, topic: str | None, reason: str, as_json: bool
) -> int:
    by = who()
    async with _broker(settings) as broker:
        dead = await _find(broker, dlq_id, topic)
        await broker.discard_dead_letter_message(dead, reason=reason, discarded_by=by)
    name = dead.original_message.topic
    if as_json:
        doc = {"ok": True, "discarded": {"id": dlq_id, "topic": name, "by": by, "reason": reason}}
        echo_json(doc)
        return 0
    say(f"discarded {dlq_id} on {name} by {by}: {reason}")
    say(f"  kept in the discard archive: orchestrator dlq list {name} --discarded")
    return 0


@dlq.command("discard")
@_options
@click.argument("dlq_id", metavar="ID")
@click.option("--reason", required=True, help="Why it is discarded (recorded with it).")
@click.pass_context
def discard_command(
    ctx: click.Context,
    config_file: str | None,
    store: str | None,
    workflows_dir: str | None,
    topic: str | None,
    as_json: bool,
    dlq_id: str,
    reason: str,
) -> None:
    """Take dead letter ID out of the dead-letter queue, recorded: it moves to its
    topic's discard archive with who discarded it (user@host), when and --reason
    (`orchestrator dlq list TOPIC --discarded`)."""
    paths = (config_file, store, workflows_dir)
    _run(ctx, paths, as_json, lambda s: _discard(s, dlq_id, topic, reason, as_json))


__all__ = ["dlq", "waiting_sagas", "who"]
