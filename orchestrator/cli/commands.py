"""The ``orchestrator`` command line.

Every command takes ``--config FILE`` (YAML), ``--store URL`` and ``--workflows DIR``;
with none of them it uses the embedded default: ``sqlite:///sagaflow.sqlite`` in the
working directory, the in-memory broker, and ``./workflows``.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn, TypeVar

import click
from rich.console import Console

from brokers import BrokerError, InMemoryBroker
from eventstore import EventStore, EventStoreError
from orchestrator.cli.audit_commands import (
    export_records,
    replay_saga,
    show_status,
    verify_chain,
    write_export,
)
from orchestrator.cli.demo import run_demo
from orchestrator.cli.render import dot, failure_line, mermaid
from orchestrator.core.state import SagaState
from orchestrator.core.workflow import Workflow
from orchestrator.errors import OrchestratorError
from orchestrator.runtime.client import read_saga, request_saga, wait_in_store
from orchestrator.runtime.engine import Engine, EngineOptions
from orchestrator.runtime.loader import load_workflows
from orchestrator.runtime.settings import Settings, load_settings

console = Console()
err_console = Console(stderr=True)
EXIT_CODES = {"completed": 0, "compensated": 3, "failed": 4}
"""Exit codes of ``start --wait`` and ``resume``: 0 completed, 3 compensated, 4 failed."""

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")


def _common(fn: F) -> F:
    fn = click.option(
        "--workflows",
        "workflows_dir",
        type=click.Path(file_okay=False),
        help="Directory of workflow definitions (default ./workflows).",
    )(fn)
    fn = click.option("--store", help="Event store URL (default sqlite:///sagaflow.sqlite).")(fn)
    fn = click.option(
        "--config", "config_file", type=click.Path(dir_okay=False), help="YAML configuration file."
    )(fn)
    return fn


def _settings(config_file: str | None, store: str | None, workflows_dir: str | None) -> Settings:
    return load_settings(config_file, store=store, workflows=workflows_dir)


def _run(ctx: click.Context, work: Awaitable[T]) -> T:
    """Run ``work``; a known error is one line on stderr (a traceback with --debug)."""
    try:
        return asyncio.run(work)  # type: ignore[arg-type]
    except (
        OrchestratorError,
        EventStoreError,
        BrokerError,
        TimeoutError,
        OSError,
        ValueError,
    ) as exc:
        _fail(ctx, exc)


def _fail(ctx: click.Context, exc: Exception) -> NoReturn:
    """A known error: one line on stderr and exit 2 (re-raised with --debug)."""
    if ctx.find_root().obj.get("debug"):
        raise exc
    err_console.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
    sys.exit(2)


@click.group()
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Durable saga orchestration on a SHA-256 hash-chained event store.

    \b
    Try it:  orchestrator demo
    Serve:   orchestrator run
    Start:   orchestrator start order_fulfilment --input '{"sku": "A1", "qty": 2}' --wait
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


# -- run / worker ---------------------------------------------------------------------


async def _open(settings: Settings) -> tuple[dict[str, Workflow], EventStore]:
    workflows = load_workflows(settings.workflows)
    store = await EventStore.open(settings.store)
    return workflows, store


async def _serve(settings: Settings, *, workers: bool) -> None:
    workflows, store = await _open(settings)
    broker = settings.messaging.create_broker()
    try:
        await broker.connect()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with Engine(
            store, broker, workflows, options=EngineOptions(run_workers=workers)
        ) as engine:
            console.print(
                f"engine running: store [bold]{settings.store}[/bold], broker "
                f"[bold]{settings.messaging.broker_type}[/bold], workflows "
                f"{', '.join(workflows) or 'none'}; Ctrl-C stops it",
                highlight=False,
            )
            await stop.wait()
            console.print(f"stopping; {engine.counts}", highlight=False)
    finally:
        await broker.disconnect()
        await store.close()


@cli.command()
@_common
@click.option("--no-workers", is_flag=True, help="Run no step workers in this process.")
@click.pass_context
def run(
    ctx: click.Context,
    config_file: str | None,
    store: str | None,
    workflows_dir: str | None,
    no_workers: bool,
) -> None:
    """Run the engine (and step workers) for the workflows until stopped.

    \b
    Example:  orchestrator run --workflows workflows
    """
    _run(ctx, _serve(_settings(config_file, store, workflows_dir), workers=not no_workers))


# -- start / resume -------------------------------------------------------------------


def _parse_input(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"--input is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise ValueError(f"--input must be a JSON object, got {type(value).__name__}")
    return value


async def _engine_here(
    settings: Settings, store: EventStore, workflows: dict[str, Workflow]
) -> tuple[Engine, Any]:
    """An engine in this process for one saga: no recovery, no intake."""
    broker = (
        InMemoryBroker()
        if settings.messaging.broker_type == "memory"
        else settings.messaging.create_broker()
    )
    await broker.connect()
    engine = Engine(store, broker, workflows, options=EngineOptions(recover=False, intake=False))
    await engine.start()
    return engine, broker


async def _start(
    settings: Settings,
    workflow: str,
    data: dict[str, Any],
    wait: bool,
    timeout: float,
    saga_id: str | None,
    pickup: float,
) -> int:
    workflows, store = await _open(settings)
    try:
        if workflow not in workflows:
            known = ", ".join(workflows) or "none"
            raise OrchestratorError(
                f"unknown workflow {workflow!r} (in {settings.workflows}: {known})"
            )
        saga_id = await request_saga(store, workflow, data, saga_id=saga_id)
        console.print(saga_id, highlight=False)
        if not wait:
            return 0
        state = await _await_pickup(store, saga_id, pickup)
        if state is None:  # no engine took it: run one here, for this saga
            engine, broker = await _engine_here(settings, store, workflows)
            try:
                await engine.pick_up(saga_id)
                state = await engine.wait(saga_id, timeout)
            finally:
                await engine.stop()
                await broker.disconnect()
        elif not state.is_terminal:
            state = await wait_in_store(store, saga_id, timeout=timeout)
        return _report(state)
    finally:
        await store.close()


async def _await_pickup(store: EventStore, saga_id: str, seconds: float) -> SagaState | None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        state, _ = await read_saga(store, saga_id)
        if state is not None or loop.time() >= deadline:
            return state
        await asyncio.sleep(0.05)


def _report(state: SagaState) -> int:
    console.print(f"{state.saga_id}: {state.status.value}", highlight=False)
    reason = failure_line(state)
    if reason:
        console.print(f"  {reason}", highlight=False)
    return EXIT_CODES[state.status.value]


@cli.command()
@_common
@click.argument("workflow")
@click.option(
    "--input",
    "input_json",
    default="{}",
    show_default=True,
    help="The saga's input, a JSON object.",
)
@click.option(
    "--wait", is_flag=True, help="Wait for the end; exit 0 completed, 3 compensated, 4 failed."
)
@click.option("--timeout", default=300.0, show_default=True, help="Seconds --wait waits.")
@click.option("--saga-id", help="Choose the saga's id (default: a new UUID).")
@click.option(
    "--pickup",
    default=2.0,
    show_default=True,
    help="Seconds --wait gives a running engine to pick the saga up before "
    "running one in this process.",
)
@click.pass_context
def start(
    ctx: click.Context,
    config_file: str | None,
    store: str | None,
    workflows_dir: str | None,
    workflow: str,
    input_json: str,
    wait: bool,
    timeout: float,
    saga_id: str | None,
    pickup: float,
) -> None:
    """Start a saga of WORKFLOW and print its id.

    \b
    Example:  orchestrator start esg_report --input '{"company": "ACME"}' --wait
    """
    settings = _settings(config_file, store, workflows_dir)
    code = _run(
        ctx,
        _start(
            settings,
            workflow,
            _parse_input_or_exit(ctx, input_json),
            wait,
            timeout,
            saga_id,
            pickup,
        ),
    )
    sys.exit(code)


def _parse_input_or_exit(ctx: click.Context, text: str) -> dict[str, Any]:
    try:
        return _parse_input(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param_hint="--input") from None


async def _resume(settings: Settings, saga_id: str, timeout: float) -> int:
    workflows, store = await _open(settings)
    try:
        engine, broker = await _engine_here(settings, store, workflows)
        try:
            await engine.resume_saga(saga_id)
            return _report(await engine.wait(saga_id, timeout))
        finally:
            await engine.stop()
            await broker.disconnect()
    finally:
        await store.close()


@cli.command()
@_common
@click.argument("saga_id")
@click.option("--timeout", default=300.0, show_default=True)
@click.pass_context
def resume(
    ctx: click.Context,
    config_file: str | None,
    store: str | None,
    workflows_dir: str | None,
    saga_id: str,
    timeout: float,
) -> None:
    """Retry a failed saga's failed compensation (or step) and wait for the end."""
    sys.exit(_run(ctx, _resume(_settings(config_file, store, workflows_dir), saga_id, timeout)))


# -- status / graph / verify / migrate --------------------------------------------------


@cli.command()
@_common
@click.argument("saga_id", required=False)
@click.option("--limit", default=50, show_default=True, help="Most sagas listed.")
@click.pass_context
def status(
    ctx: click.Context,
    config_file: str | None,
    store: str | None,
    workflows_dir: str | None,
    saga_id: str | None,
    limit: int,
) -> None:
    """A table of sagas, or one saga's steps.

    \b
    Example:  orchestrator status 3f2a…
    """
    settings = _settings(config_file, store, workflows_dir)
    sys.exit(_run(ctx, show_status(settings, saga_id, limit, console=console)))


@cli.command()
@_common
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
    settings = _settings(config_file, store, workflows_dir)
    try:
        workflows = load_workflows(settings.workflows)
        if workflow not in workflows:
            raise OrchestratorError(
                f"unknown workflow {workflow!r} (in {settings.workflows}: "
                f"{', '.join(workflows) or 'none'})"
            )
    except OrchestratorError as exc:
        _fail(ctx, exc)
    click.echo(mermaid(workflows[workflow]) if fmt == "mermaid" else dot(workflows[workflow]))


@cli.command()
@_common
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
    settings = _settings(config_file, store, workflows_dir)
    sys.exit(_run(ctx, verify_chain(settings, stream, as_json=as_json, console=console)))


@cli.command()
@_common
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
    settings = _settings(config_file, store, workflows_dir)
    work = replay_saga(settings, saga_id, verify=check, as_json=as_json, console=console)
    sys.exit(_run(ctx, work))


@cli.command()
@_common
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
    settings = _settings(config_file, store, workflows_dir)
    write_export(_run(ctx, export_records(settings, saga_id)), output)


async def _migrate(settings: Settings) -> int:
    store = await EventStore.open(settings.store, migrate=True)
    await store.close()
    from eventstore import SCHEMA_VERSION

    console.print(f"{settings.store}: schema at version {SCHEMA_VERSION}", highlight=False)
    return 0


@cli.command()
@_common
@click.pass_context
def migrate(
    ctx: click.Context, config_file: str | None, store: str | None, workflows_dir: str | None
) -> None:
    """Upgrade the store's schema to this release's version (explicitly, never silently)."""
    sys.exit(_run(ctx, _migrate(_settings(config_file, store, workflows_dir))))


@cli.command()
@_common
@click.pass_context
def demo(
    ctx: click.Context, config_file: str | None, store: str | None, workflows_dir: str | None
) -> None:
    """Run the example workflows end to end: one saga completes, others compensate.

    \b
    Example:  orchestrator demo        (embedded default: ./sagaflow.sqlite, in-memory broker)
    """
    sys.exit(_run(ctx, run_demo(_settings(config_file, store, workflows_dir), console)))


def main() -> None:
    cli(obj={})
