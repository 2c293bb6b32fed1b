"""The ``orchestrator`` command line."""

from __future__ import annotations

import click


@click.group()
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Durable saga orchestration on a SHA-256 hash-chained event store."""
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


def main() -> None:
    cli()
