"""The ``orchestrator`` command group and what every command shares: the store options,
settings, running a coroutine, and one-line errors."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn, TypeVar

import click
from rich.console import Console
from rich.markup import escape

from brokers import BrokerError
from eventstore import EventStoreError
from orchestrator.errors import OrchestratorError
from orchestrator.runtime.settings import Settings, load_settings
from orchestrator.telemetry.logs import configure_logging

__all__ = [
    "EXIT_CODES",
    "cli",
    "console",
    "echo_json",
    "err_console",
    "fail",
    "main",
    "run_async",
    "settings_of",
    "store_options",
]

console = Console()
err_console = Console(stderr=True)
EXIT_CODES = {"completed": 0, "compensated": 3, "failed": 4}
"""Exit codes of ``start --wait`` and ``resume``: 0 completed, 3 compensated, 4 failed."""

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")


def store_options(fn: F) -> F:
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


def settings_of(
    config_file: str | None,
    store: str | None,
    workflows_dir: str | None,
    *,
    as_json: bool = False,
    ctx: click.Context | None = None,
) -> Settings:
    """The settings, or a one-line error and exit 2 (a JSON document with ``as_json``).

    Every command reads them first, so here the project's loggers take the seed's
    ``log_level`` (nothing configures logging at import)."""
    ctx = ctx or click.get_current_context()
    try:
        settings = load_settings(config_file, store=store, workflows=workflows_dir)
    except OrchestratorError as exc:
        fail(ctx, exc, as_json=as_json)
    fmt = (ctx.find_root().obj or {}).get("log_format", "text")
    configure_logging(settings.messaging.log_level, "json" if fmt == "json" else "text")
    return settings


def run_async(ctx: click.Context, work: Awaitable[T], *, as_json: bool = False) -> T:
    """Run ``work``; a known error is one line on stderr (a traceback with --debug), or
    with ``as_json`` a JSON document on stdout."""
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
        fail(ctx, exc, as_json=as_json)


def echo_json(doc: dict[str, Any]) -> None:
    """A JSON document on stdout (what every ``--json`` prints)."""
    click.echo(json.dumps(doc, indent=2, ensure_ascii=False, allow_nan=False, default=str))


def fail(ctx: click.Context, exc: Exception, *, as_json: bool = False) -> NoReturn:
    """A known error: one line on stderr and exit 2 (re-raised with --debug). With
    ``as_json``, ``{"ok": false, "error": …}`` on stdout instead: --json always prints
    a JSON document."""
    if ctx.find_root().obj.get("debug"):
        raise exc
    if as_json:
        click.echo(json.dumps({"ok": False, "exit_code": 2, "error": str(exc)}))
    else:
        # escaped: an error naming `x[otel]` is not rich markup
        err_console.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
    sys.exit(2)


@click.group()
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    envvar="GREENLANG_LOG_FORMAT",
    help="Log lines as text or one JSON object each; both carry the saga, step and "
    "attempt a record is about.",
)
@click.pass_context
def cli(ctx: click.Context, debug: bool, log_format: str) -> None:
    """Durable saga orchestration on a SHA-256 hash-chained event store.

    \b
    Try it:  orchestrator demo
    Serve:   orchestrator run
    Start:   orchestrator start esg_report --wait --input '{"company": "ACME",
             "year": 2024, "activities": {"scope1": {"diesel_l": 1200}}}'
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
    ctx.obj["log_format"] = log_format


def main() -> None:
    cli(obj={})
