"""The ``orchestrator`` command group and what every command shares: the store options,
settings, running a coroutine, and one-line errors.

The group knows its commands by name (:data:`COMMANDS`) and imports a command's module
only when that command is run or asked for its help, so ``orchestrator --help`` starts
without loading the engine, SQLAlchemy, networkx or redis.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, NamedTuple, NoReturn, TypeVar

import click
from rich.console import Console
from rich.markup import escape

from orchestrator.errors import OrchestratorError
from orchestrator.telemetry.logs import configure_logging

if TYPE_CHECKING:
    from orchestrator.runtime.settings import Settings

__all__ = [
    "COMMANDS",
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
    from orchestrator.runtime.settings import load_settings

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
    except Exception as exc:
        from brokers import BrokerError  # loaded by then: not imported at start-up
        from eventstore import EventStoreError

        known = (OrchestratorError, EventStoreError, BrokerError, TimeoutError, OSError, ValueError)
        if not isinstance(exc, known):
            raise
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


class Command(NamedTuple):
    module: str
    """The module whose import registers the command on :func:`cli`."""
    summary: str
    """What ``orchestrator --help`` lists: the first paragraph of the command's help."""


COMMANDS: dict[str, Command] = {
    "demo": Command(
        "orchestrator.cli.saga_commands",
        "Run the example workflows end to end: one saga completes, others compensate.",
    ),
    "dlq": Command(
        "orchestrator.cli.dlq_commands",
        "Dead letters and failed sagas: list, show, reprocess, discard.",
    ),
    "export": Command(
        "orchestrator.cli.audit_commands",
        "Every record of the saga's stream, one JSON object a line, for auditors.",
    ),
    "graph": Command(
        "orchestrator.cli.audit_commands",
        "Draw WORKFLOW's DAG with its compensations (mermaid or Graphviz dot).",
    ),
    "keygen": Command(
        "orchestrator.cli.audit_commands", "Create an ed25519 key pair for signed checkpoints."
    ),
    "migrate": Command(
        "orchestrator.cli.saga_commands",
        "Upgrade the store's schema to this release's version (explicitly, never silently).",
    ),
    "replay": Command(
        "orchestrator.cli.audit_commands",
        "The saga's timeline (every command and event) and its rebuilt state.",
    ),
    "resume": Command(
        "orchestrator.cli.saga_commands",
        "Retry a failed saga's failed compensation (or step) and wait for the end.",
    ),
    "run": Command(
        "orchestrator.cli.saga_commands",
        "Run the engine and/or step workers for the workflows until stopped.",
    ),
    "start": Command(
        "orchestrator.cli.saga_commands", "Start a saga of WORKFLOW and print its id."
    ),
    "status": Command("orchestrator.cli.saga_commands", "A table of sagas, or one saga's steps."),
    "ui": Command(
        "orchestrator.cli.ui_command",
        "Serve the dashboard over a store, read-only: sagas, each saga's graph and verified "
        "timeline, workflows.",
    ),
    "verify": Command(
        "orchestrator.cli.audit_commands",
        "Recompute the SHA-256 chains of the whole store (or one stream), read-only.",
    ),
}
"""Every command, by name: where it is defined, and its summary (a test checks that
each summary is its command's help)."""


class LazyGroup(click.Group):
    """A group that imports a command's module on first use (see the module docstring)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = COMMANDS.get(cmd_name)
        if entry is not None and cmd_name not in self.commands:
            importlib.import_module(entry.module)  # its decorators register it here
        return self.commands.get(cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        limit = formatter.width - 6 - max(len(name) for name in COMMANDS)
        rows = [
            (name, click.Command(name, help=entry.summary).get_short_help_str(limit))
            for name, entry in sorted(COMMANDS.items())
        ]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup)
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
