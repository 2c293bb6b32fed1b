"""Audit of one saga: its chain, its decisions replayed, its definition.

``check_saga`` (pure, over records) answers three questions about one saga's stream:

* is its hash chain intact (every record as written, none missing, none inserted)?
* does every recorded command follow from the recorded events under today's workflow
  definition (``replay``: the pure core re-decides each event)? The first record that
  differs is named;
* was the saga started under today's definition (``definition_hash`` of its
  ``saga.started`` record against the loaded workflow's)?
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from eventstore import (
    BrokenRecord,
    CorruptRecordError,
    EventLog,
    Record,
    VerifyReport,
    verify_records,
)
from orchestrator.audit.timeline import TimelineEntry, timeline
from orchestrator.audit.views import broken_json, divergence_json, state_json
from orchestrator.core.codec import encode
from orchestrator.core.commands import StartSaga
from orchestrator.core.messages import Command, SagaMessage
from orchestrator.core.replay import replay
from orchestrator.core.state import SagaState
from orchestrator.core.workflow import Workflow
from orchestrator.errors import CodecError, UnknownSagaError
from orchestrator.runtime.saga_log import fold_records, from_record, stream_of

__all__ = [
    "EXIT_CHAIN_BROKEN",
    "EXIT_DIVERGED",
    "EXIT_OK",
    "Divergence",
    "SagaAudit",
    "audit_saga",
    "check_saga",
]

EXIT_OK = 0
EXIT_CHAIN_BROKEN = 1
EXIT_DIVERGED = 2
"""Exit codes of ``orchestrator replay --verify`` (and ``verify``: 0 or 1)."""


@dataclass(frozen=True, slots=True)
class Divergence:
    """The first record where the log and the workflow's decisions part ways.

    ``version``/``position`` name the differing record; both are ``None`` when the log
    ends where the workflow decides one more command. ``expected`` is the command the
    workflow decides there (``None``: nothing), ``recorded`` the record's
    ``{kind, type, data}`` (``None``: the log has no command there).
    """

    after_version: int
    """The event whose decision differs (its version in the stream)."""
    version: int | None
    position: int | None
    expected: dict[str, Any] | None
    recorded: dict[str, Any] | None

    def describe(self) -> str:
        where = (
            f"record version {self.version} (position {self.position})"
            if self.version is not None
            else "the end of the log"
        )
        return (
            f"divergence at {where}, deciding the event at version {self.after_version}: "
            f"the workflow decides {_brief(self.expected)}, the log holds {_brief(self.recorded)}"
        )


@dataclass(frozen=True, slots=True)
class SagaAudit:
    """What ``orchestrator replay`` shows about one saga."""

    saga_id: str
    stream_id: str
    timeline: tuple[TimelineEntry, ...]
    state: SagaState | None
    """Folded from the records (``None`` before ``saga.started``, or if a tampered
    record no longer decodes)."""
    workflow: str | None
    recorded_definition: str | None
    """``definition_hash`` recorded when the saga started."""
    current_definition: str | None
    """``definition_hash`` of the workflow loaded today (``None``: not loaded)."""
    verified: bool = False
    """Whether the chain and the decisions were checked (``--verify``)."""
    chain: VerifyReport | None = None
    divergence: Divergence | None = None
    unverifiable: str | None = None
    """Why the decisions could not be re-run (workflow not loaded, undecodable record)."""

    @property
    def definition_changed(self) -> bool:
        return (
            self.recorded_definition is not None
            and self.current_definition is not None
            and self.recorded_definition != self.current_definition
        )

    @property
    def chain_broken(self) -> BrokenRecord | None:
        return None if self.chain is None else self.chain.first_broken

    @property
    def exit_code(self) -> int:
        """0 ok, 1 chain broken (takes precedence), 2 divergence or not checkable."""
        if self.chain_broken is not None:
            return EXIT_CHAIN_BROKEN
        if self.divergence is not None or self.unverifiable is not None:
            return EXIT_DIVERGED
        return EXIT_OK

    def drift_line(self) -> str | None:
        if not self.definition_changed:
            return None
        return (
            f"the definition of workflow {self.workflow!r} changed since this saga started: "
            f"recorded {self.recorded_definition}, loaded today {self.current_definition}"
        )

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "saga_id": self.saga_id,
            "stream_id": self.stream_id,
            "workflow": self.workflow,
            "definition": {
                "recorded": self.recorded_definition,
                "current": self.current_definition,
                "changed": self.definition_changed,
            },
            "timeline": [e.to_json() for e in self.timeline],
            "state": None if self.state is None else state_json(self.state),
        }
        if self.verified:
            broken = self.chain_broken
            doc["verify"] = {
                "ok": self.exit_code == EXIT_OK,
                "exit_code": self.exit_code,
                "chain": {
                    "ok": broken is None,
                    "records_checked": self.chain.records_checked if self.chain else 0,
                    "first_broken": None if broken is None else broken_json(broken),
                },
                "divergence": None if self.divergence is None else divergence_json(self.divergence),
                "unverifiable": self.unverifiable,
            }
        return doc


def check_saga(
    saga_id: str,
    records: Sequence[Record],
    workflows: Mapping[str, Workflow],
    *,
    verify: bool = False,
    chain: VerifyReport | None = None,
) -> SagaAudit:
    """Audit one saga's records (its whole stream, in version order).

    ``chain``: the store's own verification of the stream (``EventLog.verify``, which
    also checks the records' store-wide links); without it the records are verified as
    given (an export's check).
    """
    if verify and chain is None:
        chain = verify_records(records)
    try:
        messages = [from_record(r) for r in records]
    except CodecError as exc:
        if chain is not None and not chain.ok:
            messages = None  # tampered beyond decoding: the chain already says so
        else:
            raise CodecError(f"saga {saga_id!r}: {exc}") from exc
    state = fold_records(records) if messages is not None else None
    recorded_definition = state.definition_hash if state is not None else None
    workflow_name = state.workflow if state is not None else _requested_workflow(records)
    wf = workflows.get(workflow_name) if workflow_name is not None else None
    divergence, unverifiable = None, None
    if verify:
        if messages is None:
            unverifiable = "a record no longer decodes: the decisions cannot be re-run"
        elif wf is None:
            unverifiable = (
                f"workflow {workflow_name!r} is not loaded: the decisions cannot be re-run"
            )
        else:
            divergence = _first_divergence(wf, records, messages)
    return SagaAudit(
        saga_id=saga_id,
        stream_id=stream_of(saga_id),
        timeline=tuple(timeline(records)),
        state=state,
        workflow=workflow_name,
        recorded_definition=recorded_definition,
        current_definition=wf.definition_hash if wf is not None else None,
        verified=verify,
        chain=chain,
        divergence=divergence,
        unverifiable=unverifiable,
    )


async def audit_saga(
    store: EventLog, saga_id: str, workflows: Mapping[str, Workflow], *, verify: bool = False
) -> SagaAudit:
    """Read the saga's stream and audit it (``check_saga``).

    With ``verify`` the store verifies the stream first, reading it as stored: a record
    that can no longer be read is then the chain's finding (exit 1), not an error.
    """
    stream = stream_of(saga_id)
    chain = await store.verify(stream) if verify else None
    try:
        records = await store.read_stream(stream)
    except CorruptRecordError as exc:
        if chain is None or chain.ok:
            raise
        return SagaAudit(
            saga_id=saga_id,
            stream_id=stream,
            timeline=(),
            state=None,
            workflow=None,
            recorded_definition=None,
            current_definition=None,
            verified=True,
            chain=chain,
            unverifiable=f"a record cannot be read back: {exc.reason}",
        )
    if not records:
        raise UnknownSagaError(f"no saga {saga_id!r} in {store.url}")
    return check_saga(saga_id, records, workflows, verify=verify, chain=chain)


def _requested_workflow(records: Sequence[Record]) -> str | None:
    if records and records[0].type == StartSaga.type_name:
        name = records[0].data.get("workflow")
        return name if isinstance(name, str) else None
    return None


def _first_divergence(
    wf: Workflow, records: Sequence[Record], messages: Sequence[SagaMessage]
) -> Divergence | None:
    kept = [(r, m) for r, m in zip(records, messages, strict=True) if not isinstance(m, StartSaga)]
    result = replay(wf, [m for _, m in kept])
    if result.ok:
        return None
    first = result.mismatches[0]
    event_record = kept[first.index][0]
    if event_record.kind != "event":  # a command before any event
        return Divergence(
            event_record.version,
            event_record.version,
            event_record.position,
            None,
            _stored(event_record),
        )
    expected, recorded = first.expected, first.recorded
    k = next(
        (n for n, (e, r) in enumerate(zip(expected, recorded, strict=False)) if e != r),
        min(len(expected), len(recorded)),
    )
    at = first.index + 1 + k
    record = kept[at][0] if at < len(kept) else None
    return Divergence(
        after_version=event_record.version,
        version=record.version if record is not None else None,
        position=record.position if record is not None else None,
        expected=_encoded(expected[k]) if k < len(expected) else None,
        recorded=_encoded(recorded[k]) if k < len(recorded) else None,
    )


def _encoded(command: Command) -> dict[str, Any]:
    cls = type(command)
    return {"kind": cls.kind, "type": cls.type_name, "data": encode(command)}


def _stored(record: Record) -> dict[str, Any]:
    return {"kind": record.kind, "type": record.type, "data": record.data}


def _brief(command: dict[str, Any] | None) -> str:
    if command is None:
        return "nothing"
    data = command["data"]
    label = data.get("id") or data.get("step") or ""
    return f"{command['type']} {label}".strip()
