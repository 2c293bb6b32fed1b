"""``orchestrator ui``: the dashboard over a store alone, read-only; and the dashboard
``orchestrator run`` serves beside its engine (``serve_ui``)."""

from __future__ import annotations

import asyncio
import logging
import secrets
import signal
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import click

from brokers import Broker
from eventstore import EventLog, EventStore
from orchestrator.cli.app import cli, console, run_async, settings_of, store_options
from orchestrator.core.workflow import Workflow
from orchestrator.runtime.engine import Engine
from orchestrator.runtime.loader import load_workflows
from orchestrator.runtime.settings import Settings, UiSettings

if TYPE_CHECKING:  # starlette, jinja2 and uvicorn load when a dashboard is served
    from orchestrator.ui.index import SagaIndex
    from orchestrator.ui.server import UiServer

logger = logging.getLogger("orchestrator")


@dataclass(frozen=True, slots=True)
class RunningUi:
    """A dashboard being served: its address, and how to stop it."""

    server: UiServer
    index: SagaIndex
    token: str | None = None
    """What actions ask for (``None``: it only reads)."""

    @property
    def url(self) -> str:
        return self.server.url

    async def close(self) -> None:
        await self.server.close()
        await self.index.close()


async def serve_ui(
    config: UiSettings,
    store: EventLog,
    workflows: Mapping[str, Workflow],
    *,
    engine: Engine | None = None,
    broker: Broker | None = None,
) -> RunningUi:
    """Start the dashboard on ``config.host:port``; ``OSError`` if it cannot bind. With
    an ``engine`` and its ``broker`` it acts too, asking for ``config.token`` (or one
    made now: ``RunningUi.token``)."""
    from orchestrator.ui.actions import Actions
    from orchestrator.ui.app import Dashboard, create_app
    from orchestrator.ui.index import SagaIndex
    from orchestrator.ui.server import UiServer

    actions = None
    if engine is not None and broker is not None:
        actions = Actions(engine, broker, config.token or secrets.token_urlsafe(18))
    index = SagaIndex(store)
    app = create_app(Dashboard(store, workflows, index, config.live_interval, actions))
    server = UiServer(app, config.host, config.port)
    try:
        await server.start()
    except OSError:
        await index.close()
        raise
    return RunningUi(server, index, None if actions is None else actions.token)


async def _ui(settings: Settings, host: str | None, port: int | None) -> None:
    workflows = load_workflows(settings.workflows)
    store = await EventStore.open(settings.store, read_only=True)
    try:
        config = settings.ui.model_copy(
            update={k: v for k, v in (("host", host), ("port", port)) if v is not None}
        )
        try:
            running = await serve_ui(config, store, workflows)
        except OSError as exc:
            where = f"{config.host}:{config.port}"
            raise OSError(f"the dashboard cannot listen on {where}: {exc}") from None
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        console.print(
            f"dashboard at {running.url} (store [bold]{settings.store}[/bold], read-only); "
            "Ctrl-C stops it",
            highlight=False,
            soft_wrap=True,
        )
        await stop.wait()
        await running.close()
    finally:
        await store.close()


@cli.command()
@store_options
@click.option("--host", help="Address to bind (default 127.0.0.1, or ui.host).")
@click.option("--port", type=click.IntRange(0, 65535), help="Port (default 8484, or ui.port).")
@click.pass_context
def ui(
    ctx: click.Context,
    config_file: str | None,
    store: str | None,
    workflows_dir: str | None,
    host: str | None,
    port: int | None,
) -> None:
    """Serve the dashboard over a store, read-only: sagas, each saga's graph and verified
    timeline, workflows.

    \b
    Example:  orchestrator ui --store sqlite:///sagaflow.sqlite --port 8484
    """
    settings = settings_of(config_file, store, workflows_dir)
    run_async(ctx, _ui(settings, host, port))
