"""The commands that drive sagas: ``run``, ``start``, ``resume``, ``status``, ``migrate``
and ``demo``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import signal
import sys
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import click

from brokers import Broker, InMemoryBroker
from eventstore import EventLog, EventStore
from orchestrator.cli.app import (
    EXIT_CODES,
    cli,
    console,
    run_async,
    settings_of,
    store_options,
)
from orchestrator.cli.audit_commands import show_status
from orchestrator.cli.demo import run_demo
from orchestrator.core.state import SagaState
from orchestrator.core.workflow import Workflow
from orchestrator.errors import OrchestratorError
from orchestrator.runtime.client import read_saga, request_saga, wait_in_store
from orchestrator.runtime.engine import Engine
from orchestrator.runtime.loader import load_workflows
from orchestrator.runtime.options import EngineOptions
from orchestrator.runtime.settings import Settings
from orchestrator.runtime.worker import StepWorker

if TYPE_CHECKING:
    from orchestrator.cli.ui_command import RunningUi
    from orchestrator.telemetry.metrics import Metrics
    from orchestrator.telemetry.server import MetricsServer
    from orchestrator.telemetry.tracing_export import Exporting

logger = logging.getLogger("orchestrator")


async def _open(settings: Settings) -> tuple[dict[str, Workflow], EventStore]:
    workflows = load_workflows(settings.workflows)
    store = await EventStore.open(settings.store)
    return workflows, store


ROLES = ("both", "engine", "worker")
"""What ``orchestrator run`` runs: the engine and step workers, the engine alone, or
step workers alone (which need only the broker and the workflows, no store)."""


async def _serve(settings: Settings, *, role: str) -> None:
    if role != "both" and settings.messaging.broker_type == "memory":
        raise OrchestratorError(
            f"--role {role} needs a broker other processes can reach (broker_type redis or "
            "kafka): the in-memory broker lives inside one process, so its engine and "
            "workers must run together (--role both)"
        )
    workflows = load_workflows(settings.workflows)
    exporting = _tracing(settings, role)
    tracing = None if exporting is None else exporting.tracing
    dashboard = None
    store = None
    if role != "worker":  # checkpoints are signed when a key is configured (audit:)
        store = await EventStore.open(settings.store, **settings.audit.store_options())
    broker = settings.messaging.create_broker()
    server = None
    try:
        await broker.connect()
        metrics, server = await _metrics(settings, broker, store, workflows)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        names = ", ".join(workflows) or "none"
        broker_type = settings.messaging.broker_type
        serving = "metrics off" if server is None else f"metrics at {server.url}"
        if exporting is not None:
            serving += f", spans to {exporting.where}"
        if store is None:
            worker = StepWorker(broker, workflows, observer=metrics, tracing=tracing)
            working = asyncio.create_task(worker.run())
            console.print(
                f"step workers running: broker [bold]{broker_type}[/bold], workflows "
                f"{names}, {serving}; Ctrl-C stops them",
                highlight=False,
                soft_wrap=True,
            )
            await stop.wait()
            working.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await working
            return
        options = EngineOptions(
            run_workers=role == "both",
            observer=metrics,
            tracing=tracing,
            **settings.engine.options(),
        )
        engine = Engine(store, broker, workflows, options=options)
        dashboard = await _dashboard(settings, store, workflows, engine, broker)
        if dashboard is not None:
            serving += f", dashboard at {dashboard.url}"
            if settings.ui.token is None:  # made now: who may act has to learn it here
                serving += f" (token {dashboard.token})"
        if metrics is not None:
            metrics.attach_engine(engine)
        async with engine:
            with_workers = " with step workers" if role == "both" else ""
            console.print(
                f"engine running{with_workers}: store [bold]{settings.store}[/bold], broker "
                f"[bold]{broker_type}[/bold], workflows {names}, {serving}; Ctrl-C stops it",
                highlight=False,
                soft_wrap=True,
            )
            await stop.wait()
            console.print(
                f"stopping; counts {json.dumps(engine.counts)}", highlight=False, soft_wrap=True
            )
    finally:
        if dashboard is not None:
            await dashboard.close()
        if server is not None:
            await server.close()
        await broker.disconnect()
        if store is not None:
            await store.close()
        if exporting is not None:
            await asyncio.to_thread(exporting.shutdown)


async def _dashboard(
    settings: Settings,
    store: EventStore,
    workflows: dict[str, Workflow],
    engine: Engine,
    broker: Broker,
) -> RunningUi | None:
    """The dashboard beside the engine, unless ``ui.enabled`` is false; an address that
    cannot be bound is a warning, not a failure: the engine runs on without."""
    if not settings.ui.enabled:
        return None
    from orchestrator.cli.ui_command import serve_ui

    try:
        return await serve_ui(settings.ui, store, workflows, engine=engine, broker=broker)
    except OSError as exc:
        where = f"{settings.ui.host}:{settings.ui.port}"
        logger.warning("dashboard not served: cannot listen on %s: %s", where, exc)
        return None


def _tracing(settings: Settings, role: str) -> Exporting | None:
    """The process's spans and their exporter; nothing (no OpenTelemetry import) unless
    ``tracing.enabled``."""
    if not settings.tracing.enabled:
        return None
    from orchestrator.telemetry.tracing_export import exporting

    return exporting(settings.tracing, role)


async def _metrics(
    settings: Settings, broker: Broker, store: EventStore | None, workflows: dict[str, Workflow]
) -> tuple[Metrics | None, MetricsServer | None]:
    """The process's metrics and their ``/metrics`` server, started; nothing at all (not
    even an import of prometheus_client) with ``metrics_enabled: false``. An address
    that cannot be bound is a warning, not a failure: the engine runs on without."""
    if not settings.messaging.metrics_enabled:
        return None, None
    from orchestrator.telemetry.metrics import Metrics
    from orchestrator.telemetry.server import MetricsServer

    config = settings.metrics
    metrics = Metrics(
        broker,
        workflows=workflows,
        broker_type=settings.messaging.broker_type,
        probe_interval=config.probe_interval,
        store_stats=None if store is None else store.stats,
    )
    server = MetricsServer(metrics.render, config.host, config.port)
    try:
        await server.start()
    except OSError as exc:
        where = f"{config.host}:{config.port}"
        logger.warning("metrics not served: cannot listen on %s: %s", where, exc)
        metrics.detach()
        return None, None
    return metrics, server


@cli.command()
@store_options
@click.option(
    "--role",
    type=click.Choice(ROLES),
    default="both",
    show_default=True,
    help="Run the engine and step workers, the engine only, or step workers only "
    "(a worker process needs no store). Any number of each can share a store and a broker.",
)
@click.option("--no-workers", is_flag=True, help="The same as --role engine.")
@click.pass_context
def run(
    ctx: click.Context,
    config_file: str | None,
    store: str | None,
    workflows_dir: str | None,
    role: str,
    no_workers: bool,
) -> None:
    """Run the engine and/or step workers for the workflows until stopped.

    \b
    Examples:
      orchestrator run                  (engine + workers on the embedded default)
      orchestrator run --role engine    (engine only; needs broker_type redis or kafka)
      orchestrator run --role worker    (step workers only; no store needed)
    """
    if no_workers:
        if role == "worker":
            raise click.UsageError("--no-workers and --role worker contradict each other")
        role = "engine"
    run_async(ctx, _serve(settings_of(config_file, store, workflows_dir), role=role))


# -- start / resume -------------------------------------------------------------------


def _parse_input(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"--input is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise ValueError(f"--input must be a JSON object, got {type(value).__name__}")
    return value


@contextlib.asynccontextmanager
async def _engine_here(
    settings: Settings, store: EventLog, workflows: dict[str, Workflow]
) -> AsyncIterator[Engine]:
    """An engine in this process for one saga: no ownership (it adopts nothing), no
    intake; it traces when ``tracing.enabled``, and flushes its spans when done."""
    exporting = _tracing(settings, "engine")
    broker = (
        InMemoryBroker()
        if settings.messaging.broker_type == "memory"
        else settings.messaging.create_broker()
    )
    tracing = None if exporting is None else exporting.tracing
    options = EngineOptions(recover=False, intake=False, tracing=tracing)
    engine = Engine(store, broker, workflows, options=options)
    try:
        await broker.connect()
        await engine.start()
        yield engine
    finally:
        await engine.stop()
        await broker.disconnect()
        if exporting is not None:
            await asyncio.to_thread(exporting.shutdown)


async def _start(
    settings: Settings,
    workflow: str,
    data: dict[str, Any],
    wait: bool,
    timeout: float,
    saga_id: str | None,
    pickup: float,
    traceparent: str | None = None,
) -> int:
    workflows, store = await _open(settings)
    try:
        if workflow not in workflows:
            known = ", ".join(workflows) or "none"
            raise OrchestratorError(
                f"unknown workflow {workflow!r} (in {settings.workflows}: {known})"
            )
        data = workflows[workflow].validate_input(data)  # InputError: nothing written
        saga_id = await request_saga(
            store, workflow, data, saga_id=saga_id, traceparent=traceparent
        )
        console.print(saga_id, highlight=False)
        if not wait:
            return 0
        state = await _await_pickup(store, saga_id, pickup)
        if state is None:  # no engine took it: run one here, for this saga
            async with _engine_here(settings, store, workflows) as engine:
                await engine.pick_up(saga_id)
                state = await engine.wait(saga_id, timeout)
        elif not state.is_terminal:
            state = await wait_in_store(store, saga_id, timeout=timeout)
        return _report(state)
    finally:
        await store.close()


async def _await_pickup(store: EventLog, saga_id: str, seconds: float) -> SagaState | None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        state, _ = await read_saga(store, saga_id)
        if state is not None or loop.time() >= deadline:
            return state
        await asyncio.sleep(0.05)


def _report(state: SagaState) -> int:
    console.print(f"{state.saga_id}: {state.status.value}", highlight=False)
    reason = state.failure_summary
    if reason:
        console.print(f"  {reason}", highlight=False)
    return EXIT_CODES[state.status.value]


@cli.command()
@store_options
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
@click.option(
    "--traceparent",
    envvar="TRACEPARENT",
    callback=lambda ctx, param, value: _traceparent(value),
    help="A W3C trace context (00-<trace id>-<span id>-<flags>; env TRACEPARENT): the "
    "saga's spans join that trace when the engine traces.",
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
    traceparent: str | None,
) -> None:
    """Start a saga of WORKFLOW and print its id.

    \b
    Example:  orchestrator start order_fulfilment --wait --input '{"order_id": "o-2",
              "sku": "gizmo", "quantity": 1, "card": "4242424242424242",
              "address": "2 Side St"}'
    """
    settings = settings_of(config_file, store, workflows_dir)
    code = run_async(
        ctx,
        _start(
            settings,
            workflow,
            _parse_input_or_exit(ctx, input_json),
            wait,
            timeout,
            saga_id,
            pickup,
            traceparent,
        ),
    )
    sys.exit(code)


_TRACEPARENT = re.compile(r"[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")


def _traceparent(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    if not _TRACEPARENT.fullmatch(value) or value.startswith("ff"):
        raise click.BadParameter(
            f"{value!r} is not a W3C traceparent (00-<32 hex>-<16 hex>-<2 hex>, lower case)"
        )
    return value


def _parse_input_or_exit(ctx: click.Context, text: str) -> dict[str, Any]:
    try:
        return _parse_input(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param_hint="--input") from None


async def _resume(settings: Settings, saga_id: str, timeout: float) -> int:
    workflows, store = await _open(settings)
    try:
        async with _engine_here(settings, store, workflows) as engine:
            await engine.resume_saga(saga_id)
            return _report(await engine.wait(saga_id, timeout))
    finally:
        await store.close()


@cli.command()
@store_options
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
    sys.exit(
        run_async(ctx, _resume(settings_of(config_file, store, workflows_dir), saga_id, timeout))
    )


@cli.command()
@store_options
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
    Example:  orchestrator status SAGA_ID
    """
    settings = settings_of(config_file, store, workflows_dir)
    sys.exit(run_async(ctx, show_status(settings, saga_id, limit, console=console)))


async def _migrate(settings: Settings) -> int:
    store = await EventStore.open(settings.store, migrate=True)
    await store.close()
    from eventstore import SCHEMA_VERSION

    console.print(f"{settings.store}: schema at version {SCHEMA_VERSION}", highlight=False)
    return 0


@cli.command()
@store_options
@click.pass_context
def migrate(
    ctx: click.Context, config_file: str | None, store: str | None, workflows_dir: str | None
) -> None:
    """Upgrade the store's schema to this release's version (explicitly, never silently)."""
    sys.exit(run_async(ctx, _migrate(settings_of(config_file, store, workflows_dir))))


@cli.command()
@store_options
@click.pass_context
def demo(
    ctx: click.Context, config_file: str | None, store: str | None, workflows_dir: str | None
) -> None:
    """Run the example workflows end to end: one saga completes, others compensate.

    \b
    Example:  orchestrator demo        (embedded default: ./sagaflow.sqlite, in-memory broker)
    """
    settings = settings_of(config_file, store, workflows_dir)
    sys.exit(run_async(ctx, run_demo(settings, console)))
