"""The bodies of the read-only commands, ``replay``, ``verify``, ``export`` and
``status`` (cli.py holds their options): open the store, read, print, return the exit
code."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from eventstore import EventStore, Record
from orchestrator.audit.checks import audit_saga, export_lines, export_saga, verify_store
from orchestrator.cli.render import (
    audit_lines,
    failure_line,
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
    reason = failure_line(state)
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
