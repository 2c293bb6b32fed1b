"""The read-only commands: ``replay``, ``verify``, ``export``, ``graph``, and the body of
``status``. Each opens the store read-only (nothing is created, migrated or written),
reads, prints, and returns the exit code; and ``keygen``, for signed checkpoints."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path

import click
from rich.console import Console

from eventstore import CheckpointSigner, EventStore, Record
from orchestrator.audit import audit_saga, export_lines, export_saga, verify_store
from orchestrator.audit.store import read_heads, write_heads
from orchestrator.cli.app import (
    cli,
    console,
    echo_json,
    fail,
    run_async,
    settings_of,
    store_options,
)
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
    store = await read_only(settings)
    try:
        audit = await audit_saga(store, saga_id, workflows, verify=verify)
    finally:
        await store.close()
    if as_json:
        echo_json(audit.to_json())
        return audit.exit_code
    if audit.chain_broken is not None:  # the chain report first: nothing below is proven
        for line in audit_lines(audit):
            console.print(line, highlight=False, soft_wrap=True)
        if audit.timeline:
            console.print(timeline_table(audit))
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
    store = await read_only(settings)
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


async def read_only(settings: Settings) -> EventStore:
    """The configured store, opened read-only: a missing file, an empty one or a database
    that is not a store is an error, never a new store."""
    return await EventStore.open(settings.store, read_only=True)


async def verify_chain(
    settings: Settings,
    stream: str | None,
    *,
    public_keys: tuple[str, ...] = (),
    sealed: bool = False,
    heads: str | None = None,
    against: str | None = None,
    as_json: bool,
    console: Console,
) -> int:
    keys = settings.audit.public_keys(public_keys)
    noted = read_heads(against) if against is not None else None
    if stream is not None and (sealed or heads or noted):
        raise OrchestratorError("--sealed, --heads and --against apply to the whole store")
    if sealed and keys is None:
        raise OrchestratorError(
            "--sealed needs --public-key (or audit.public_key_files): without a key, "
            "anyone who can write the database can write a checkpoint too"
        )
    store = await read_only(settings)
    try:
        result = await verify_store(store, stream, keys=keys, sealed=sealed, against=noted)
    finally:
        await store.close()
    written = None
    if heads is not None and result.report.ok:
        written = write_heads(heads, result, settings.store)
    if as_json:
        doc = result.to_json()
        doc["heads_written"] = None if written is None else heads
        echo_json(doc)
    else:
        for line in verification_lines(result):
            console.print(line, highlight=False, soft_wrap=True)
        if heads is not None:
            console.print(
                f"  head written to {heads}: keep it, and later run "
                f"`orchestrator verify --against {heads}`"
                if written is not None
                else f"  [red]no head written to {heads}[/red]: the chain is broken",
                highlight=False,
                soft_wrap=True,
            )
    return result.exit_code


async def export_records(settings: Settings, saga_id: str) -> list[Record]:
    store = await read_only(settings)
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
    Example:  orchestrator graph esg_report --format dot > esg.dot
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
@click.option(
    "--public-key",
    "public_keys",
    multiple=True,
    type=click.Path(dir_okay=False),
    help="Check every checkpoint's signature with this ed25519 public key (PEM); "
    "repeatable; adds to audit.public_key_files.",
)
@click.option(
    "--sealed",
    is_flag=True,
    help="The store was shut down cleanly: every record must be covered by a checkpoint.",
)
@click.option(
    "--heads",
    type=click.Path(dir_okay=False),
    help="Write the verified head (position and hashes) to this file, to keep.",
)
@click.option(
    "--against",
    type=click.Path(dir_okay=False),
    help="Prove the store still holds the head noted in this file (by --heads), unchanged.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_context
def verify(
    ctx: click.Context,
    config_file: str | None,
    store: str | None,
    workflows_dir: str | None,
    stream: str | None,
    public_keys: tuple[str, ...],
    sealed: bool,
    heads: str | None,
    against: str | None,
    as_json: bool,
) -> None:
    """Recompute the SHA-256 chains of the whole store (or one stream), read-only.

    Checks each stream's chain, the store-wide chain in commit order, and the signed
    checkpoints (with --public-key). Prints the records and streams checked, the last
    hashes and what the checkpoints cover; on tampering, the first broken record
    (stream, version, position) with the reason, expected and found values.
    Exit 0 intact, 1 broken, 2 error.

    \b
    Example:  orchestrator verify --public-key checkpoint.pub --heads head.json
              orchestrator verify --public-key checkpoint.pub --against head.json
    """
    settings = settings_of(config_file, store, workflows_dir, as_json=as_json, ctx=ctx)
    work = verify_chain(
        settings,
        stream,
        public_keys=public_keys,
        sealed=sealed,
        heads=heads,
        against=against,
        as_json=as_json,
        console=console,
    )
    sys.exit(run_async(ctx, work, as_json=as_json))


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
      1  chain broken (records changed, missing, inserted or unreadable): the chain
         report is printed first, and 1 wins over any other finding
      2  divergence: the log is not what the workflow decides, or the workflow is not
         loaded to check it; also any error (unknown saga, bad store), on one line
    """
    settings = settings_of(config_file, store, workflows_dir, as_json=as_json, ctx=ctx)
    work = replay_saga(settings, saga_id, verify=check, as_json=as_json, console=console)
    sys.exit(run_async(ctx, work, as_json=as_json))


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
    Example:  orchestrator export SAGA_ID -o saga.jsonl
    """
    settings = settings_of(config_file, store, workflows_dir)
    write_export(run_async(ctx, export_records(settings, saga_id)), output)


@cli.command()
@click.option(
    "--out",
    default="checkpoint.key",
    show_default=True,
    type=click.Path(dir_okay=False),
    help="The private key file; the public key goes beside it, with the suffix .pub.",
)
@click.option("--force", is_flag=True, help="Overwrite existing key files.")
@click.pass_context
def keygen(ctx: click.Context, out: str, force: bool) -> None:
    """Create an ed25519 key pair for signed checkpoints.

    The engine signs with the private key (audit.signing_key_file, or the PEM text in
    GREENLANG_AUDIT_SIGNING_KEY); keep it outside the store. Auditors verify with the
    public key: orchestrator verify --public-key checkpoint.pub

    \b
    Example:  orchestrator keygen --out checkpoint.key
    """
    private, public = Path(out), Path(out).with_suffix(".pub")
    signer = CheckpointSigner.generate()
    files = ((private, signer.private_pem(), 0o600), (public, signer.public_pem(), 0o644))
    try:
        for path, _, _ in files:
            if path.exists() and not force:
                raise OrchestratorError(f"{path} exists; pass --force to overwrite it")
        for path, pem, mode in files:
            path.touch(mode=mode)
            path.chmod(mode)  # before the key is in it
            path.write_bytes(pem)
    except (OSError, OrchestratorError) as exc:
        fail(ctx, exc)
    click.echo(f"key id {signer.key_id}")
    click.echo(f"private key: {private} (mode 600; audit.signing_key_file)")
    click.echo(f"public key:  {public} (orchestrator verify --public-key {public})")
