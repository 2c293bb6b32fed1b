"""How the command line shows things: rich tables, mermaid and dot graphs."""

from __future__ import annotations

import datetime as dt
import json

from rich.table import Table

from eventstore import VerifyReport
from orchestrator.audit import SagaAudit, StoreVerification
from orchestrator.core.state import SagaState
from orchestrator.core.workflow import Workflow
from orchestrator.runtime.client import SagaSummary


def when(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def sagas_table(summaries: list[SagaSummary]) -> Table:
    table = Table(title="sagas")
    for column in ("saga", "workflow", "status", "started (UTC)", "steps done", "records"):
        table.add_column(column)
    for s in summaries:
        table.add_row(
            s.saga_id,
            s.workflow,
            _status(s.status),
            when(s.started_at),
            str(s.steps_done),
            str(s.version),
        )
    return table


def saga_table(workflow: Workflow | None, state: SagaState) -> Table:
    table = Table(title=f"saga {state.saga_id} ({state.workflow}): {_status(state.status)}")
    for column in ("step", "kind", "phase", "attempt", "compensation", "error"):
        table.add_column(column)
    names = list(workflow.order) if workflow is not None else sorted(state.steps)
    for name in names:
        st = state.steps.get(name)
        comp = state.compensations.get(name)
        kind = workflow.steps[name].kind.value if workflow is not None else ""
        table.add_row(
            name,
            kind,
            st.phase.value if st else "not started",
            str(st.attempt) if st else "",
            _undo(comp.phase.value, comp.attempt) if comp else "",
            (comp.error if comp and comp.error else (st.error if st and st.error else "")) or "",
        )
    return table


def timeline_table(audit: SagaAudit) -> Table:
    """Every record of a saga's stream: what ``orchestrator replay`` shows first.

    Compact enough for 80 columns: times of day (the date is in the title), types
    without their ``saga.`` prefix, causation ids without the saga id."""
    first = audit.timeline[0].recorded_at[:10] if audit.timeline else ""
    table = Table(title=f"saga {audit.saga_id}: {len(audit.timeline)} records from {first} UTC")
    for column, min_width in _TIMELINE_COLUMNS:
        table.add_column(column, min_width=min_width, overflow="fold")
    for e in audit.timeline:
        day = e.recorded_at[:10]
        table.add_row(
            str(e.version),
            e.recorded_at[11:23] if day == first else e.recorded_at[:23].replace("T", " "),
            "cmd" if e.kind == "command" else e.kind,
            e.type.removeprefix("saga."),
            e.step or "",
            "" if e.attempt is None else str(e.attempt),
            e.short_hash,
            (e.causation or "").removeprefix(audit.saga_id + ":"),
        )
    return table


_TIMELINE_COLUMNS = (
    ("v", 2),
    ("time", 12),
    ("kind", 5),
    ("type", 12),
    ("step", 6),
    ("try", 3),
    ("hash", 8),
    ("caused by", 6),
)


def audit_lines(audit: SagaAudit) -> list[str]:
    """The verdict of ``replay`` (--verify): chain, decisions, definition drift."""
    lines = []
    drift = audit.drift_line()
    if drift:
        lines.append(f"[yellow]definition changed:[/yellow] {drift}")
    if not audit.verified:
        return lines
    broken = audit.chain_broken
    if broken is not None:
        lines.append(f"[red]chain broken:[/red] {broken.describe()}")
    elif audit.chain is not None:
        lines.append(f"chain verified: {audit.chain.records_checked} records")
    if audit.divergence is not None:
        lines.append(f"[red]{audit.divergence.describe()}[/red]")
        if audit.definition_changed:
            lines.append("  (the workflow definition changed since the saga ran: see above)")
    elif audit.unverifiable is not None:
        lines.append(f"[red]not verified:[/red] {audit.unverifiable}")
    else:
        lines.append("decisions verified: every recorded command is what the workflow decides")
    return lines


def verification_lines(result: StoreVerification) -> list[str]:
    """What ``orchestrator verify`` prints."""
    report, scope = result.report, result.stream_id or "the store"
    broken = report.first_broken
    if broken is not None:
        return [
            f"[red]chain broken[/red] in {scope} after {report.records_checked} records: "
            f"stream {broken.stream_id!r} version {broken.version} "
            f"(position {broken.position}): {broken.reason}",
            f"  expected: {broken.expected}",
            f"  found:    {broken.found}",
        ]
    head = report.head
    lines = [
        f"chain verified: {report.records_checked} records in {report.streams_checked} "
        f"streams of {scope}",
        f"  last position {result.last_position}",
        f"  last hash     {result.last_hash or '-'}",
    ]
    if head is not None and head.log_hash:
        lines.append(f"  log hash      {head.log_hash}")
    if result.stream_id is None:
        lines.append(_checkpoint_line(report))
    return lines


def _checkpoint_line(report: VerifyReport) -> str:
    if not report.log_chain:
        return "  [yellow]no store-wide chain[/yellow]: an old schema (migrate adds one)"
    if report.checkpoints == 0:
        return "  no signed checkpoints: nothing here is signed"
    checked = (
        "signatures verified"
        if report.signatures_checked
        else "[yellow]signatures not checked[/yellow] (pass --public-key)"
    )
    after = f"{report.unsigned} record{'' if report.unsigned == 1 else 's'} after it"
    return (
        f"  {report.checkpoints} checkpoints, {checked}; signed through position "
        f"{report.signed_through}, {after}"
    )


def _undo(phase: str, attempt: int) -> str:
    return {"succeeded": "undone", "gave_up": f"failed #{attempt}"}.get(
        phase, f"{phase} #{attempt}"
    )


def _status(status: str) -> str:
    colour = {"completed": "green", "compensated": "yellow", "failed": "red"}.get(status)
    return f"[{colour}]{status}[/{colour}]" if colour else status


def mermaid(workflow: Workflow) -> str:
    lines = ["flowchart TD"]
    for name in workflow.order:
        spec = workflow.steps[name]
        shape = (
            f'{name}{{{{"{name}<br/>pivot"}}}}'
            if spec.kind.value == "pivot"
            else (f'{name}["{name}<br/>{spec.kind.value}"]')
        )
        lines.append(f"    {shape}")
    for name in workflow.order:
        for dep in workflow.steps[name].deps:
            lines.append(f"    {dep} --> {name}")
    for name in workflow.order:
        comp = workflow.steps[name].compensation
        if comp is not None:
            lines.append(f'    {_node(comp.name)}(["{comp.name}"])')
            lines.append(f"    {name} -. compensation .-> {_node(comp.name)}")
    return "\n".join(lines)


def dot(workflow: Workflow) -> str:
    lines = [f"digraph {json.dumps(workflow.name)} {{", "    rankdir=TB;"]
    for name in workflow.order:
        spec = workflow.steps[name]
        shape = "hexagon" if spec.kind.value == "pivot" else "box"
        lines.append(
            f"    {json.dumps(name)} [shape={shape}, "
            f"label={json.dumps(f'{name} ({spec.kind.value})')}];"
        )
        if spec.compensation is not None:
            comp = spec.compensation.name
            lines.append(f"    {json.dumps(comp)} [shape=ellipse, style=dashed];")
            lines.append(
                f"    {json.dumps(name)} -> {json.dumps(comp)} [style=dashed, label=compensation];"
            )
    for name in workflow.order:
        for dep in workflow.steps[name].deps:
            lines.append(f"    {json.dumps(dep)} -> {json.dumps(name)};")
    lines.append("}")
    return "\n".join(lines)


def _node(name: str) -> str:
    return "comp_" + name.replace(".", "_").replace("-", "_")
