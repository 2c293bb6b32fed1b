"""The read-only commands: ``replay``, ``verify``, ``export``, ``graph``, and the body of
``status``. Each opens the store, reads, prints, and returns the exit code."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from eventstore import EventStore, Record
from orchestrator.audit import audit_saga, export_lines, export_saga, verify_store
from orchestrator.cli.app import cli, console, fail, run_async, settings_of, store_options
from orchestrator.cli.render import (
    audit_lines,
    dot,
    mermaid,
    saga_table,
    sagas_table,
    timeline_table,
    verification_lines,
)
from orchestrator.core.state import SagaState
from orchestrator.core.workflow import Workflow
from orchestrator.errors import OrchestratorError
from orchestrator.runtime.client import list_sagas, read_saga
from orchestrator.runtime.loader import load_workflows
from orchestrator.runtime.settings import Settings


async def replay_saga(
    settings: Settings, saga_id: str, *, verify: bool, as_json: bool, console: Console
) -> int:
    workflows = load_workflows(settings.workflows) if settings.workflows.is_dir() else {}
    store = await EventStore.open(settings.store)
    try:
        audit = await audit_saga(store, saga_id, workflows, verify=verify)
    finally:
        await store.close()
    if as_json:
        _echo_json(audit.to_json())
        return audit.exit_code
    console.print(timeline_table(audit))
    _show_state(console, workflows, saga_id, audit.state)
    for line in audit_lines(audit):
        console.print(line, highlight=False, soft_wrap=True)
    return audit.exit_code


async def show_status(
    settings: Settings, saga_id: str | None, limit: int, *, console: Console
) -> int:
    """``orchestrator status``: a table of sagas, or one saga's steps."""
    store = await EventStore.open(settings.store)
    try:
        if saga_id is None:
            console.print(sagas_table(await list_sagas(store, limit)))
            return 0
        state, version = await read_saga(store, saga_id)
    finally:
        await store.close()
    if version == 0:
        raise OrchestratorError(f"no saga {saga_id!r} in {settings.store}")
    workflows = load_workflows(settings.workflows) if settings.workflows.is_dir() else {}
    _show_state(console, workflows, saga_id, state)
    return 0


def _show_state(
    console: Console, workflows: Mapping[str, Workflow], saga_id: str, state: SagaState | None
) -> None:
    if state is None:
        console.print(f"{saga_id}: requested, not started by an engine yet", highlight=False)
        return
    console.print(saga_table(workflows.get(state.workflow), state))
    reason = state.failure_summary
    if reason:
        console.print(f"why: {reason}", highlight=False)


async def verify_chain(
    settings: Settings, stream: str | None, *, as_json: bool, console: Console
) -> int:
    store = await EventStore.open(settings.store)
    try:
        result = await verify_store(store, stream)
    finally:
        await store.close()
    if as_json:
        _echo_json(result.to_json())
    else:
        for line in verification_lines(result):
            console.print(line, highlight=False, soft_wrap=True)
    return result.exit_code


async def export_records(settings: Settings, saga_id: str) -> list[Record]:
    store = await EventStore.open(settings.store)
    try:
        return await export_saga(store, saga_id)
    finally:
        await store.close()


def write_export(records: list[Record], output: str | None) -> None:
    """JSONL to ``output`` (stdout when ``None``)."""
    if output is None:
        sys.stdout.writelines(line + "\n" for line in export_lines(records))
        sys.stdout.flush()
        return
    with Path(output).open("w", encoding="utf-8", newline="\n") as out:
        out.writelines(line + "\n" for line in export_lines(records))


def _echo_json(doc: dict[str, Any]) -> None:
    click.echo(json.dumps(doc, indent=2, ensure_ascii=False, allow_nan=False))


@cli.command()
@store_options
@click.argument("workflow")
@click.option(
    "--format", "fmt", type=click.Choice(["mermaid", "dot"]), default="mermaid", show_default=True
)
@click.pass_context
def graph(
    ctx: click.Context,
    config_file: str | None,
    store: str | None,
    workflows_dir: str | None,
    workflow: str,
    fmt: str,
) -> None:
    """Draw WORKFLOW's DAG with its compensations (mermaid or Graphviz dot).

    \b
    Example:  orchestrator graph esg_report --format dot | dot -Tpng > esg.png
    """
    settings = settings_of(config_file, store, workflows_dir)
    try:
        workflows = load_workflows(settings.workflows)
        if workflow not in workflows:
            raise OrchestratorError(
                f"unknown workflow {workflow!r} (in {settings.workflows}: "
                f"{', '.join(workflows) or 'none'})"
            )
    except OrchestratorError as exc:
        fail(ctx, exc)
    click.echo(mermaid(workflows[workflow]) if fmt == "mermaid" else dot(workflows[workflow]))


@cli.command()
@store_options
@click.option("--stream", help="Verify one stream only (e.g. saga-<id>).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_context
def verify(
    ctx: click.Context,
    config_file: str | None,
    store: str | None,
    workflows_dir: str | None,
    stream: str | None,
    as_json: bool,
) -> None:
    """Recompute the SHA-256 chain of the whole store (or one stream).

    Prints the records and streams checked and the last hash; on tampering, the first
    broken record (stream, version, position) with the expected and found values.
    Exit 0 intact, 1 broken, 2 error.
    """
    settings = settings_of(config_file, store, workflows_dir)
    sys.exit(run_async(ctx, verify_chain(settings, stream, as_json=as_json, console=console)))


@cli.command()
@store_options
@click.argument("saga_id")
@click.option(
    "--verify",
    "check",
    is_flag=True,
    help="Also verify the chain and re-run the workflow over the events.",
)
@click.option("--json", "as_json", is_flag=True, help="Print timeline, state and verdict as JSON.")
@click.pass_context
def replay(
    ctx: click.Context,
    config_file: str | None,
    store: str | None,
    workflows_dir: str | None,
    saga_id: str,
    check: bool,
    as_json: bool,
) -> None:
    """The saga's timeline (every command and event) and its rebuilt state.

    With --verify, the chain is recomputed and the pure core re-decides every recorded
    event: each recorded command must be exactly what the workflow decides, else the
    first differing record is named. A definition changed since the saga started is
    said plainly.

    \b
    Exit codes (these differ from the other commands'):
      0  ok
      1  chain broken (records changed, missing or inserted)
      2  divergence: the log is not what the workflow decides, or the workflow is not
         loaded to check it; also any error (unknown saga, bad store), on one line
    """
    settings = settings_of(config_file, store, workflows_dir)
    work = replay_saga(settings, saga_id, verify=check, as_json=as_json, console=console)
    sys.exit(run_async(ctx, work))


@cli.command()
@store_options
@click.argument("saga_id")
@click.option("--format", "fmt", type=click.Choice(["jsonl"]), default="jsonl", show_default=True)
@click.option("--output", "-o", type=click.Path(dir_okay=False), help="File (default stdout).")
@click.pass_context
def export(
    ctx: click.Context,
    config_file: str | None,
    store: str | None,
    workflows_dir: str | None,
    saga_id: str,
    fmt: str,
    output: str | None,
) -> None:
    """Every record of the saga's stream, one JSON object a line, for auditors.

    docs/CHAIN.md's standard-library script verifies the file:
    python verify_chain.py saga.jsonl

    \b
    Example:  orchestrator export 3f2a… -o saga.jsonl
    """
    settings = settings_of(config_file, store, workflows_dir)
    write_export(run_async(ctx, export_records(settings, saga_id)), output)
